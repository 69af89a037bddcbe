"""Search by an uploaded image (`POST /v1/similar`, `search --similar-to FILE`): does the exact file of an indexed
image find itself first, and at what similarity? Trial 12: the original Paris photo scored 0.885, under its resized
copy's 0.899, because the upload was embedded whole while the index embeds its 384 px preview.

    OPENBLAS_NUM_THREADS=1 python bench/similar_upload.py            # this tree
    OPENBLAS_NUM_THREADS=1 python bench/similar_upload.py --details  # one row per image, and each one's nearest other

Every image of tests/data/quality/images and samples/ is indexed as the pipeline does it: the real
PreprocessStage.preprocess_bytes (OCR and faces off: they do not touch the thumbnail) -> the index document's
preview (consumers/index/document.py) -> add_image_vectors (the stored float16 vector). Each file's exact bytes
are then embedded as a query (embed_image_bytes, what search calls) and ranked by cosine against all of them (what
the embedded store's exact ranking does). Prints: images first, similarity of the exact file (min/median/mean),
how many under 0.9 and 0.99, and the CPU time of a query's embedding (ms p50/p95, one thread)."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.settings import Settings  # noqa: E402
from consumers.index.document import document_from_validated  # noqa: E402
from consumers.preprocess.stage import PreprocessStage  # noqa: E402
from domain.store.vectors import add_image_vectors, embed_image_bytes, image_vector_model, unpack  # noqa: E402
from domain.vision.classifier import shared_classifier  # noqa: E402
from tests.store_support import validated_asset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--details", action="store_true", help="one row per image")
    args = ap.parse_args()
    paths = sorted((ROOT / "tests/data/quality/images").iterdir()) + sorted(
        p for p in (ROOT / "samples").iterdir() if p.suffix in (".jpg", ".png"))
    stage = PreprocessStage(Settings().with_overrides(preprocess={"ocr_enabled": False, "faces_enabled": False}))
    clf = shared_classifier()
    bodies = []
    for i, p in enumerate(paths):
        v = validated_asset(f"a{i}", 1, ocr_text="")
        v["enriched"]["pre"]["thumbnail"] = stage.preprocess_bytes({"asset_id": p.stem}, p.read_bytes())["thumbnail"]
        bodies.append(document_from_validated(v)[2])
    add_image_vectors(bodies, clf, image_vector_model())
    index = np.stack([unpack(b, "image") for b in bodies])
    embed_image_bytes(paths[0].read_bytes(), clf)  # warm
    sims, ranks, ms = [], [], []
    for i, p in enumerate(paths):
        data = p.read_bytes()
        t = time.process_time()
        s = index @ embed_image_bytes(data, clf)
        ms.append((time.process_time() - t) * 1000)
        sims.append(float(s[i]))
        ranks.append(1 + int((s > s[i]).sum()))
        if args.details:
            s[i] = -1
            j = int(np.argmax(s))
            print(f"{p.name:32s} {sims[-1]:.4f} rank {ranks[-1]}  nearest other {paths[j].name} {s[j]:.4f}")
    sim = np.array(sims)
    q = statistics.quantiles(ms, n=20)
    print(f"{len(paths)} images: first {sum(r == 1 for r in ranks)}, exact-file similarity min {sim.min():.4f} "
          f"median {np.median(sim):.4f} mean {sim.mean():.4f}, under 0.9: {(sim < 0.9).sum()}, "
          f"under 0.99: {(sim < 0.99).sum()}; query embedding CPU {statistics.median(ms):.1f} ms p50, {q[18]:.1f} ms p95")


if __name__ == "__main__":
    main()
