"""Text -> image space: the classifier's class prototypes, so a text query can find images whose text never names
what they show (hybrid search's visual leg, domain/store/search.py).

EfficientNet-Lite0's last layer (`_fc.weight`, 1000 x 1280) holds one row per ImageNet class: the class's
direction in the same space as the pooled features the index stores per document as its image vector
(`Classifier.features`, unit norm). A query is embedded with MiniLM (the encoder search already runs) and
compared with the MiniLM embeddings of the 1000 class names; the classes at or above a cosine threshold (at most
`max_classes`, closest first) give the image-space query: the normalised sum of their unit-norm rows. "box" ->
"cardboard box carton" finds gift boxes, "stones" -> "stone wall" finds gravel, "crater" -> "volcano" finds the
moon (bench/search.py measures it, with a random-class control).

Computed once per process: the rows come from the same weights file the image vectors were written with (the
variant `image_model()` names); the class names' MiniLM embeddings are kept on disk by `embed_persistent` (the
file the local provider also reads: same names, same normalisation), so a fresh `assetstream search` reads them.
"""
from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from domain.vision.imagenet_labels import IMAGENET_CLASSES


def class_text(name: str) -> str:
    """What is embedded of a class name ("cardboard box / carton" -> "cardboard box carton"); the local provider
    normalises its labels and class names with this too, so both read one cached file of class-name vectors."""
    return " ".join(re.sub(r"[-_/]+", " ", str(name)).lower().split())


@dataclass(frozen=True)
class VisualQuery:
    """An image-space query: `vector` (unit norm, the image vectors' dimensions), the `classes` it was made of
    as (ImageNet class name, cosine of its name with the query), closest first, and the image `model` whose
    vectors it may be compared with."""

    vector: list[float]
    classes: list[tuple[str, float]]
    model: dict[str, str]
    weights: list[float]
    """the same query over class scores (class_scores): 1 / |sum of the rows| at the classes used, 0 elsewhere,
    so class_scores(v) . weights == v . vector for every image vector v"""

    def explain(self) -> dict[str, Any]:
        """For a search answer: which classes, how close, and the model."""
        return {"classes": [{"name": n, "similarity": round(s, 3)} for n, s in self.classes],
                "image_model": dict(self.model)}


@functools.lru_cache(maxsize=1)
def class_rows() -> np.ndarray:
    """(1000, 1280) float32: the classifier's last-layer rows, unit norm, from the weights file of the variant
    `image_model()` names (read once per process)."""
    from domain.vision.classifier import weights_path
    from domain.vision.weights import read_torch_checkpoint

    rows = read_torch_checkpoint(weights_path())["_fc.weight"].astype(np.float32)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    rows.flags.writeable = False
    return rows


def class_scores(vectors: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(n, 1000) float32: each image vector's cosine with every class row (the vectors are unit norm). The
    embedded store's vector cache holds these for the visual leg: a query then reads its few classes' columns
    (VisualQuery.weights) instead of the whole 1280-d image matrix."""
    rows = class_rows()
    out = np.empty((len(vectors), len(rows)), np.float32)
    for i in range(0, len(vectors), chunk):
        out[i:i + chunk] = vectors[i:i + chunk] @ rows.T
    return out


class Prototypes:
    """The class rows (unit norm) and the class names' text embeddings."""

    def __init__(self, embedder: Any = None) -> None:
        from domain.textembed import shared_embedder
        from domain.vision.classifier import image_model

        self.rows = class_rows()
        self.names = IMAGENET_CLASSES
        self.embedder = embedder or shared_embedder()
        self.name_vectors = self.embedder.embed_persistent([class_text(n) for n in self.names])
        self.model = image_model()

    def classes(self, query_vector: np.ndarray, threshold: float, max_classes: int) -> list[tuple[int, float]]:
        """(class index, cosine) of the class names at or above the threshold with the query, closest first,
        at most max_classes."""
        sims = self.name_vectors @ np.asarray(query_vector, np.float32)
        idx = np.flatnonzero(sims >= threshold)
        idx = idx[np.argsort(-sims[idx], kind="stable")][:max_classes]
        return [(int(i), float(sims[i])) for i in idx]

    def query(self, text: str, threshold: float, max_classes: int,
              query_vector: np.ndarray | None = None) -> VisualQuery | None:
        """The image-space query for a text (its MiniLM vector when the caller has it), or None when no class
        name is close enough."""
        if query_vector is None:
            query_vector = self.embedder.embed([text], cache=False)[0]
        matched = self.classes(query_vector, threshold, max_classes)
        if not matched:
            return None
        v = self.rows[[i for i, _ in matched]].sum(0)
        norm = max(float(np.linalg.norm(v)), 1e-12)
        weights = np.zeros(len(self.rows), np.float32)
        weights[[i for i, _ in matched]] = 1.0 / norm
        return VisualQuery([float(x) for x in v / norm], [(self.names[i], s) for i, s in matched], dict(self.model),
                           [float(x) for x in weights])


_shared: Prototypes | None = None
_shared_lock = threading.Lock()


def shared_prototypes() -> Prototypes:
    """One Prototypes per process (read on first use: the weights file, and the names' embeddings from the
    disk cache or ~1 s of MiniLM)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Prototypes()
        return _shared
