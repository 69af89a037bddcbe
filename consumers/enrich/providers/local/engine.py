"""The local provider's CPU work: image analysis + templates per task. Pure functions of (request, models).

Everything here is synchronous and thread-safe; `LocalProvider` runs it with `asyncio.to_thread`.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domain.rights import RESTRICTED, grants
from domain.taxonomy import Taxonomy, load_taxonomy, normalize
from domain.vision.detector import Detection, Detector, check_files, models_dir
from domain.vision.faces import FaceDetector
from domain.vision.faces import check_files as check_face_files
from domain.vision.imagenet_labels import IMAGENET_CLASSES
from domain.vision.prototypes import class_text

from .classifier import Classifier, decode_image

# --- models, loaded lazily once per process -------------------------------------------------------------

_models_lock = threading.Lock()
_classifier: Classifier | None = None
_embedder: Any = None


class _FileModel:
    """A model whose files sit in a configured directory: checked when configured (at worker start, so a missing
    file stops the worker), built on first use once per process, built again when the directories change."""

    def __init__(self, check: Any, build: Any) -> None:
        self._check, self._build = check, build
        self._dirs: tuple[str | None, str | None] = (None, None)
        self._model: Any = None

    def configure(self, directory: str | None, cache_dir: str | None) -> None:
        self._check(directory)
        with _models_lock:
            if (directory, cache_dir) != self._dirs:
                self._dirs, self._model = (directory, cache_dir), None

    def get(self, threads: int) -> Any:
        if self._model is None:
            with _models_lock:
                if self._model is None:
                    self._model = self._build(self._dirs[0], intra_op_threads=threads, cache_dir=self._dirs[1])
        return self._model


_detector = _FileModel(lambda d: check_files(models_dir(d)), Detector)
_face_model = _FileModel(check_face_files, FaceDetector)


def configure_detector(directory: str | None, cache_dir: str | None) -> None:
    """Where the detector's model files are (enrich.local_models_dir) and its built graph is kept
    (enrich.local_cache_dir). Checks the files now (DetectorUnavailable, at worker start); the model itself is
    built on first use."""
    _detector.configure(directory, cache_dir)


def configure_faces(directory: str | None, cache_dir: str | None) -> None:
    """Where the face detector's model files are (vision.models_dir, else enrich.local_models_dir) and its built
    graphs are kept; checks the files now (FaceModelUnavailable, at worker start)."""
    _face_model.configure(directory, cache_dir)


def face_detector(threads: int = 1) -> FaceDetector:
    return _face_model.get(threads)


def detector(threads: int = 1) -> Detector:
    return _detector.get(threads)


def classifier(threads: int = 1) -> Classifier:
    global _classifier
    if _classifier is None:
        with _models_lock:
            if _classifier is None:
                _classifier = Classifier(intra_op_threads=threads)
    return _classifier


def embedder():
    global _embedder
    if _embedder is None:
        with _models_lock:
            if _embedder is None:
                from .textembed import TextEmbedder

                _embedder = TextEmbedder()
    return _embedder


# --- vocabulary index (embeddings cached per vocabulary) ------------------------------------------------

# one normalisation of labels and class names: the class names' embeddings are read from the cache file
# search's visual leg (domain/vision/prototypes.py) writes and reads too
_norm = class_text


@dataclass
class VocabIndex:
    entries: list[dict[str, Any]]
    facets: list[str]
    texts: list[str]
    owner: np.ndarray
    """row -> entry index"""
    emb: np.ndarray | None = None
    exact: dict[str, list[int]] = field(default_factory=dict)
    """normalised label/synonym/value -> entry indices"""
    class_sims: np.ndarray | None = None
    """(1000, n_entries): best cosine between each ImageNet class name and each entry, computed once"""
    renamed: dict[str, int] = field(default_factory=dict)
    """a renamed (deprecated) tag id -> the entry of its current name (`tag_renames`): the hard-coded ids and words
    the rules name (COCO_TAGS, "logo", "text"...) follow the taxonomy's renames"""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def entry_sims(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 384) unit vectors -> (n, n_entries) best cosine over each entry's texts."""
        assert self.emb is not None
        row_sims = vectors @ self.emb.T
        # rows are grouped by entry (owner is non-decreasing), so a segmented max does it
        starts = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])
        return np.maximum.reduceat(row_sims, starts, axis=1)

    def imagenet_sims(self) -> np.ndarray:
        if self.class_sims is None:
            with self.lock:
                if self.class_sims is None:
                    from .imagenet_labels import IMAGENET_CLASSES

                    names = embedder().embed_persistent([_norm(n) for n in IMAGENET_CLASSES])
                    self.class_sims = self.entry_sims(names)
        return self.class_sims

    def lookup(self, word: str, facets: tuple[str, ...] | None = None) -> list[int]:
        """Entries whose value, label or synonym is `word` (in `facets`), else the current name of a renamed
        tag whose value it is ("logo" in content -> content:brand-logo after content:logo -> content:brand-logo)."""
        hits = [i for i in self.exact.get(_norm(word), []) if facets is None or self.facets[i] in facets]
        if hits or not self.renamed:
            return hits
        value = normalize(word)
        return list(dict.fromkeys(i for old, i in self.renamed.items()
                                  if old.split(":", 1)[1] == value and (facets is None or old.split(":", 1)[0] in facets)))

    def positions(self) -> dict[str, int]:
        """tag id -> entry, for the current ids and the renamed ones (`renamed`)."""
        return {**self.renamed, **{str(e["tag"]): i for i, e in enumerate(self.entries)}}


_vocab_cache: "OrderedDict[str, VocabIndex]" = OrderedDict()
_vocab_lock = threading.Lock()


def tag_renames(tax: Taxonomy) -> dict[str, str]:
    """Every renamed tag of a taxonomy -> its current name (deprecated ids with a replacement, renames followed;
    the removed ones left out), and each id of the rules' own table that `tax` names otherwise (`table_name`):
    what the provider puts in the request context ("renames") for `vocab_index`."""
    out = {old: new for old in tax.deprecated if (new := tax.current_name(old)) is not None and tax.allowed(new)}
    for tag in hard_coded_tags():
        name = table_name(tag, tax)
        if name is not None and name != tag:
            out[tag] = name
    return out


def hard_coded_tags() -> dict[str, str]:
    """Every tag id the rules name themselves -> where (the detector's table): `unmapped_tags` checks them."""
    return {tag: f"COCO class {label!r}" for label, tags in COCO_TAGS.items() for tag in tags}


def table_name(tag: str, tax: Taxonomy) -> str | None:
    """The current name in `tax` of an id the rules name (written against the bundled latest taxonomy): the id
    itself, its replacement when `tax` renamed it, or, for a taxonomy older than the table (v1 pinned by
    `validate.taxonomy_path`), the older name `tax` still has (subject:car -> v1's subject:automobile); None when
    `tax` removed it or has none of its names."""
    for name in load_taxonomy().same_tags(tag):
        current = tax.current_name(name)
        if current is not None and tax.allowed(current):
            return current
    return None


def unmapped_tags(tax: Taxonomy) -> list[str]:
    """The hard-coded tag ids (`hard_coded_tags`) that have no current name in `tax` (`table_name`), each with
    why: the provider cannot emit them (it logs these when it loads)."""
    out = []
    for tag, where in hard_coded_tags().items():
        if table_name(tag, tax) is not None:
            continue
        new = tax.current_name(tag)
        why = "was removed" if new is None else ("is denied" if tax.is_denied(new) else "is not a tag")
        out.append(f"{tag} ({where}) {why} in taxonomy {tax.version}")
    return out


def vocab_index(vocabulary: list[dict[str, Any]], with_embeddings: bool,
                renames: dict[str, str] | None = None) -> VocabIndex:
    """The vocabulary's index, cached per (vocabulary, renames); `renames` (`tag_renames`) lets the rules' ids and
    words follow the taxonomy's renames."""
    renames = dict(renames or {})
    key = hashlib.sha256(json.dumps([vocabulary, renames], sort_keys=True, default=str).encode()).hexdigest()
    with _vocab_lock:
        idx = _vocab_cache.get(key)
        if idx is not None:
            _vocab_cache.move_to_end(key)
    if idx is None:
        entries, facets, texts, owner, exact = [], [], [], [], {}
        for e in vocabulary:
            tag = e.get("tag") if isinstance(e, dict) else None
            if not isinstance(tag, str) or ":" not in tag:
                continue
            if e.get("deprecated"):
                continue
            i = len(entries)
            entries.append(e)
            facet = str(e.get("facet") or tag.split(":", 1)[0])
            facets.append(facet)
            words = [tag.split(":", 1)[1], e.get("label") or ""] + list(e.get("synonyms") or [])
            seen = set()
            for w in words:
                n = _norm(w)
                if n and n not in seen:
                    seen.add(n)
                    texts.append(n)
                    owner.append(i)
                    exact.setdefault(n, []).append(i)
        idx = VocabIndex(entries, facets, texts, np.array(owner, np.int64), None, exact)
        current = {str(e["tag"]): i for i, e in enumerate(entries)}
        idx.renamed = {old: current[new] for old, new in renames.items() if new in current and old not in current}
        with _vocab_lock:
            _vocab_cache[key] = idx
            while len(_vocab_cache) > 8:
                _vocab_cache.popitem(last=False)
    if with_embeddings and idx.emb is None and idx.texts:
        with idx.lock:
            if idx.emb is None:
                idx.emb = embedder().embed_persistent(idx.texts)
    return idx


# --- image facts ----------------------------------------------------------------------------------------

RULES_REVISION = ("2026-12-03.sounds+medium2+ocrquote+lowguess2+writingtag+renames+names+drawnbox+agree+neutralfigure"
                  "+shadows+neutralfigure2+videonotdecorative+graphicevidence")
"""Bump when these rules answer differently for the same image, models and prompt (the result cache keys on it,
consumers/enrich/results.py): "2026-12-01.logo" names logos from the pixels (docs/local-provider.md);
"2026-12-01.medium" tags the medium (content:photo / content:graphic); "2026-12-01.wordmark" titles a logo by a
wordmark OCR is sure of that the dictionary does not know, and no longer quotes unknown words with a run of
MAX_CONSONANT_RUN + 1 consonants; "2026-12-01.medium+wordmark" is both; "2026-12-01.writing" adds to them
that writing OCR could not read is named ("A black-and-white photograph showing writing that could not be read",
`unread_writing`); "2026-12-01.sounds" counts a consonant run by sounds ("Nightshade" is quoted).
"2026-12-01.sounds+medium2" also tags no medium on a video without keyframe thumbnails, nor a medium
the other tags contradict (content:photo beside content:illustration). "+ocrquote" splits words OCR glued
together before the quote checks (`glued_parts`), quotes whole passing lines of a text too few of whose words
pass, and leaves a logo's monogram out (`_ocr_tokens`). "+lowguess": the summary's "Likely contents" names only
the guesses `named_classes` lets the alt text name (>= CONFIDENT, classes of one name merged), none at all when
none pass; "+lowguess2": its floor is SUMMARY_FLOOR (0.03), not CONFIDENT. "+writingtag": writing OCR could not
read is tagged content:text too (WRITING_TAG_SCORE). "+renames": the detector's tags follow the taxonomy's renames
(a detected car is subject:car, a phone product:phone: the table named their deprecated v1 ids). "+names": a class and
a box agree by name too (`same_name`), and the everyday noun after a breed or model name comes from a fixed table
(`_EVERYDAY_NOUN`), not the text encoder ("umbrella aircraft"). "+drawnbox": on a drawing a detector box names the
subject only when a classifier class at >= SUMMARY_FLOOR agrees with it or it scores >= DRAWING_BOX_ALONE
(`_box_backed`; Open Clip Art drawings were "a banana" for a broom and a fish, bench/drawings.py). "+agree": a
classifier class and a large detector box that name one thing name the subject below either one's own floor
(AGREE_CLASS_MIN, AGREE_BOX_MIN, `agreed_class`: the traffic light). "+neutralfigure": a figure on a plain ground
that is mostly black, white or grey is said in that colour ("in black on a white background", `figure_neutral`).
"+shadows": exactly-flat deep shadows (SHADOW_GREY) no longer make a photo a graphic (the Paris sunset's web copy).
"+neutralfigure2": no "charcoal" beside the figure's black or grey ("in black and charcoal").
"+videonotdecorative": a video's alt text is never decorative (a flat poster frame describes it, trial 35 F7).
"+graphicevidence": on a drawing the alt text's subject origin says the image kind ('graphic:detector', `with_kind`)."""

_PALETTE = {
    "black": (20, 20, 20), "white": (245, 245, 245), "gray": (128, 128, 128), "red": (200, 30, 30),
    "orange": (240, 140, 20), "yellow": (240, 220, 40), "green": (40, 160, 60), "blue": (40, 80, 200),
    "purple": (130, 50, 160), "pink": (240, 140, 180), "brown": (120, 70, 30), "beige": (225, 205, 170),
}


def _basic_colour(hex_: Any) -> str | None:
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", str(hex_ or ""))
    if not m:
        return None
    rgb = np.array([int(m.group(1)[k:k + 2], 16) for k in (0, 2, 4)], np.float32)
    return min(_PALETTE, key=lambda n: float(((np.array(_PALETTE[n], np.float32) - rgb) ** 2).sum()))


@dataclass
class ImageFacts:
    ok: bool = False
    width: int = 0
    height: int = 0
    detail: float = 0.0
    """mean |Laplacian| of the blurred 64x64 grey image: ~0.1 for flat fields and gradients, 2-6 for photos and
    noise, 10+ for line art and text"""
    colour_levels: int = 0
    saturation: float = 0.0
    colors: list[tuple[str, float]] = field(default_factory=list)
    top: list[tuple[str, int, float]] = field(default_factory=list)
    """classifier top-k (label, index, probability)"""
    flat_share: float = 0.0
    """share of pixels (128 px grey) whose 3x3 neighbourhood is exactly one value: 0-0.15 for photos (sensor
    noise, texture), 0.2-1.0 for renders, logos, text on plain ground and products cut out on white"""
    lit_flat_share: float = 0.0
    """flat_share without the deep shadows (exactly-flat pixels darker than SHADOW_GREY): what decides `graphic`"""
    figure_flat_share: float = 0.0
    """flat_share of the pixels that differ from the image's border (its ground): high when the drawing itself is
    flat-filled (a silhouette, a flat render), low for an object photographed on a plain ground"""
    face_share: float = 0.0
    """area of the largest face the stricter on-thumbnail check confirms, as a share of the image (0 = none)"""
    objects: list[Detection] = field(default_factory=list)
    """COCO detections (NanoDet-m), best first, boxes as shares of the image"""
    ink: "Ink | None" = None
    """dark thin strokes on a light ground (`ink_on_ground`): what writing on paper looks like"""
    figure_neutral: str | None = None
    """the neutral colour ("black", "white", "gray") of the figure on a plain ground, when most of it is
    that colour (`figure_neutral`): a black product on white is "in black", though black is 13 % of the image"""
    logo_look: bool = False
    """drawn like a logo (`logo_look`): coloured shapes of few, evenly filled colours on a plain light (or
    transparent, flattened on white) ground; `is_logo` adds what the text and the detector say"""

    @property
    def graphic(self) -> bool:
        """A drawn/rendered image (not a photograph): large exactly-flat areas that are not deep shadow
        (`lit_flat_share`), no structure at all, or drawn like a logo (a small JPEG icon has no exactly-flat areas
        left)."""
        return self.ok and (self.lit_flat_share >= GRAPHIC_FLAT_SHARE or self.detail < DECORATIVE_DETAIL
                            or self.logo_look)


_facts_cache: "OrderedDict[tuple[str, int], ImageFacts]" = OrderedDict()
_facts_lock = threading.Lock()


def analyse_image(data: bytes | None, top_k: int, threads: int, run_classifier: bool = True,
                  detect: bool = True) -> ImageFacts:
    """Image facts, cached for the last 64 images: tagging and alt_text of one asset share one forward pass
    (classifier + detector). `detect=False` leaves the detector out (a video's keyframes: CPU bound)."""
    if not data or not run_classifier:
        return _analyse(data, top_k, threads, run_classifier, False)
    key = (hashlib.sha1(data).hexdigest(), top_k, detect)
    with _facts_lock:
        hit = _facts_cache.get(key)
        if hit is not None:
            _facts_cache.move_to_end(key)
            return hit
    facts = _analyse(data, top_k, threads, run_classifier, detect)
    with _facts_lock:
        _facts_cache[key] = facts
        while len(_facts_cache) > 64:
            _facts_cache.popitem(last=False)
    return facts


def _analyse(data: bytes | None, top_k: int, threads: int, run_classifier: bool, detect: bool) -> ImageFacts:
    import cv2

    facts = ImageFacts()
    if not data:
        return facts
    arr = decode_image(data)
    if arr is None:
        return facts
    facts.ok = True
    facts.height, facts.width = arr.shape[:2]
    small = cv2.resize(arr, (64, 64), interpolation=cv2.INTER_AREA)
    # float grey + a light blur, so JPEG/8-bit quantisation steps of a smooth gradient do not count as detail
    grey = cv2.GaussianBlur(cv2.cvtColor(small.astype(np.float32), cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    facts.detail = float(np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[2:-2, 2:-2]).mean())
    q = (small // 32).reshape(-1, 3).astype(np.int32)
    facts.colour_levels = int(np.count_nonzero(np.bincount(q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2], minlength=512)))
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    facts.saturation = float(hsv[..., 1].mean() / 255.0)
    pal_names = list(_PALETTE)
    pal = np.array([_PALETTE[n] for n in pal_names], np.float32)
    px = small.reshape(-1, 3).astype(np.float32)
    nearest = np.argmin(((px[:, None, :] - pal[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=len(pal_names)) / len(nearest)
    facts.colors = [(pal_names[i], float(counts[i])) for i in np.argsort(-counts) if counts[i] >= 0.05]
    grey128 = cv2.cvtColor(cv2.resize(arr, (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    k3 = np.ones((3, 3), np.uint8)
    flat = cv2.dilate(grey128, k3) == cv2.erode(grey128, k3)
    facts.flat_share = float(np.mean(flat))
    facts.lit_flat_share = float(np.mean(flat & (grey128 >= SHADOW_GREY)))
    ring = np.concatenate([grey128[:2].ravel(), grey128[-2:].ravel(), grey128[:, :2].ravel(), grey128[:, -2:].ravel()])
    figure = np.abs(grey128.astype(np.int16) - int(np.median(ring))) > 2
    facts.figure_flat_share = float(flat[figure].mean()) if figure.mean() >= 0.02 else facts.flat_share
    facts.figure_neutral = figure_neutral(arr)
    facts.logo_look = logo_look(arr)
    facts.ink = ink_on_ground(arr)
    if run_classifier:
        facts.top = classifier(threads).predict(arr, top_k=top_k)
        facts.face_share = _largest_face_share(arr)
    if run_classifier and detect:
        facts.objects = detector(threads).detect(arr)
    return facts


INK_EDGE = 640
"""long edge (px) the ink is measured at (as preprocess's OCR gate sees an image; a smaller image is not enlarged)"""
INK_STEP = 40
"""grey levels a pixel must be darker than its local ground to be ink"""


@dataclass(frozen=True)
class Ink:
    ground: float
    """median brightness (0-255) of the ground, the image with its dark strokes closed away"""
    share: float
    """share of the pixels that are ink (>= INK_STEP darker than the ground around them)"""
    stroke: float
    """mean stroke width (px at INK_EDGE): twice the mean distance of an ink pixel to the ground"""


def ink_on_ground(arr: np.ndarray) -> Ink:
    """Dark strokes on a lighter ground, on the grey image at <= INK_EDGE px: the ground is the image closed
    (a grey-level closing with a disc of 6 % of the short side fills strokes thinner than that with the ground
    around them); ink is what is INK_STEP darker than its ground. Writing on paper: a light ground (quality set's
    handwriting 144, rendered pages 200+), 2-20 % ink in strokes 2-3 px wide; grass, gravel and foliage are 30-85 %
    'ink' in wider blobs; a star field or a night photo has a dark ground."""
    import cv2

    grey = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    if max(h, w) > INK_EDGE:
        scale = INK_EDGE / max(h, w)
        grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if min(grey.shape) < 16:
        return Ink(0.0, 0.0, 0.0)
    k = max(7, int(min(grey.shape) * 0.06)) | 1
    ground = cv2.morphologyEx(grey, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    ground = cv2.medianBlur(ground, 5)
    dark = (ground.astype(np.int16) - grey.astype(np.int16)) >= INK_STEP
    if not dark.any():
        return Ink(float(np.median(ground)), 0.0, 0.0)
    dist = cv2.distanceTransform(dark.astype(np.uint8), cv2.DIST_L2, 3)
    return Ink(float(np.median(ground)), float(dark.mean()), float(2.0 * dist[dark].mean()))


LOGO_GROUND_PLAIN = 0.9
"""share of the image's 2-pixel outer ring (128 px) within LOGO_TOLERANCE of its median: the ground is plain"""
LOGO_GROUND_LIGHT = 220
LOGO_GROUND_GREY = 20
"""... and light and neutral (white, off-white; a transparent ground is flattened on white before analysis): a
logo file, not a banner or a web page on a coloured field"""
LOGO_TOLERANCE = 28
"""channel difference from the ground above which a pixel is part of the drawing"""
LOGO_DRAWN_SHARE = (0.08, 0.85)
"""the drawing covers a compact part of the image, neither a speck nor the whole frame (a photo)"""
LOGO_SATURATION = 0.3
"""mean HSV saturation of the drawing: brand colours (a black silhouette, a black-on-white sign or page is not a
logo by its pixels)"""
LOGO_FEW_COLOURS = 0.6
"""share of the drawing in its 3 commonest colours (4 levels per channel): few colours"""
LOGO_EVEN_FILL = 6.0
"""std of the brightness inside the commonest colour: evenly filled (a logo's flat colour: 3-4; a product's or
render's shading: 9-17 on the quality set)"""


def plain_ground(px: np.ndarray) -> np.ndarray | None:
    """The median colour of the image's 2-pixel outer ring when the ground is plain (LOGO_GROUND_PLAIN of the ring
    within LOGO_TOLERANCE of it), else None: what `logo_look` and `figure_neutral` draw their figure against."""
    ring = np.concatenate([px[:2].reshape(-1, 3), px[-2:].reshape(-1, 3), px[:, :2].reshape(-1, 3),
                           px[:, -2:].reshape(-1, 3)])
    ground = np.median(ring, axis=0)
    return ground if float(np.mean(np.abs(ring - ground).max(1) <= LOGO_TOLERANCE)) >= LOGO_GROUND_PLAIN else None


def logo_look(arr: np.ndarray) -> bool:
    """Pixels drawn like a logo: a plain light ground (its outer ring), and on it a compact drawing in few,
    saturated, evenly filled colours. Decided from the image alone (`is_logo` adds text and detections)."""
    import cv2

    small = cv2.resize(arr, (128, 128), interpolation=cv2.INTER_AREA)
    px = small.astype(np.int16)
    ground = plain_ground(px)
    if ground is None or ground.min() < LOGO_GROUND_LIGHT or ground.max() - ground.min() > LOGO_GROUND_GREY:
        return False
    drawn = np.abs(px - ground).max(2) > LOGO_TOLERANCE
    if not LOGO_DRAWN_SHARE[0] <= float(drawn.mean()) <= LOGO_DRAWN_SHARE[1]:
        return False
    if float(cv2.cvtColor(small, cv2.COLOR_RGB2HSV)[..., 1][drawn].mean()) / 255.0 < LOGO_SATURATION:
        return False
    ink = px[drawn]
    q = ink // 64
    bins = q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]
    counts = np.bincount(bins, minlength=64)
    if float(np.sort(counts)[::-1][:3].sum()) / len(ink) < LOGO_FEW_COLOURS:
        return False
    return float(ink[bins == int(counts.argmax())].max(1).std()) <= LOGO_EVEN_FILL


FIGURE_NEUTRAL_SHARE = 0.5
"""share of the figure (the pixels more than LOGO_TOLERANCE from a plain ground, LOGO_GROUND_PLAIN) in one neutral
shade from which the figure is that colour (most of it): a drawn black trainer on white 1.0 black, the quality set's
red gift box recoloured black 0.71 (grey ribbon and shading are the rest), recoloured grey 0.92 grey; the red gift
box itself is 0.29 neutral pixels, the green lemon bottle 0.04"""
NEUTRAL_CHROMA = 24
"""a pixel is neutral (black, grey, white) when its channels differ by at most this (0-255): a muted green bottle
(90, 150, 90) is green, not grey, though grey is its nearest `_PALETTE` colour"""
NEUTRAL_SHADES = ((70, "black"), (190, "gray"), (256, "white"))
"""a neutral pixel's shade by its mean channel value: below 70 black, below 190 grey, else white"""


FIGURE_EDGE = 256
"""side (px) of the square image the figure's colour is measured on"""


def figure_neutral(arr: np.ndarray) -> str | None:
    """The figure's neutral colour (`ImageFacts.figure_neutral`), on the image at FIGURE_EDGE px: the ground is its
    2-pixel outer ring, plain when LOGO_GROUND_PLAIN of it is within LOGO_TOLERANCE of its median; the figure is
    what differs from it by more, without its outline (an erosion by one pixel: anti-aliased edges and thin strokes,
    such as text, are grey whatever their colour), at least 2 % of the image; its colour is the neutral shade
    (NEUTRAL_CHROMA, NEUTRAL_SHADES) covering FIGURE_NEUTRAL_SHARE of it. None for a busy ground (a photograph's
    scene), no solid figure, or a figure in colours."""
    import cv2

    px = cv2.resize(arr, (FIGURE_EDGE, FIGURE_EDGE), interpolation=cv2.INTER_AREA).astype(np.int16)
    ground = plain_ground(px)
    if ground is None:
        return None
    drawn = (np.abs(px - ground).max(2) > LOGO_TOLERANCE).astype(np.uint8)
    inside = cv2.erode(drawn, np.ones((3, 3), np.uint8)).astype(bool)
    if inside.mean() < 0.02:
        return None
    figure = px[inside]
    neutral = (figure.max(1) - figure.min(1)) <= NEUTRAL_CHROMA
    level = figure.mean(1)
    low = 0
    for high, name in NEUTRAL_SHADES:
        if float(np.mean(neutral & (level >= low) & (level < high))) >= FIGURE_NEUTRAL_SHARE:
            return name
        low = high
    return None


FACE_SUBJECT_SCORE = 0.75
"""BlazeFace score a face needs to be measured for the subject (the preprocess count takes candidates from 0.5)"""
FACE_SUBJECT_MIN_SIDE = 0.08
"""faces that may become the subject are at least this share of the image's short side"""


def _largest_face_share(arr: np.ndarray) -> float:
    """Largest face as a share of the image, by the same face detector as the preprocess count (BlazeFace
    confirmed by the face mesh model) with stricter settings (BlazeFace score >= 0.75, faces >= 8 % of the short
    side): a face only becomes the subject of the alt text when it is large and confidently found."""
    faces = face_detector(1).detect(arr, score_min=FACE_SUBJECT_SCORE, min_side=FACE_SUBJECT_MIN_SIDE)
    return max((f.area for f in faces), default=0.0)


# --- helpers on the preprocessed record -----------------------------------------------------------------

def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _f(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _pre(request) -> dict[str, Any]:
    pre = (request.context or {}).get("preprocessed") or {}
    return pre if isinstance(pre, dict) else {}


def _signals(pre: dict[str, Any]) -> dict[str, Any]:
    return _d(pre.get("signals"))


QUOTE_KNOWN_CONF = 60.0
"""OCR word confidence (0-100) a dictionary word needs to be quoted"""
QUOTE_SHAPE_CONF = 88.0
"""... and a word the dictionary does not know (names, brands, numbers), which must also look like a word"""
MAX_CONSONANT_RUN = 4
"""an unknown word with a longer run of consonant sounds (y counts as a vowel; a spelling of one sound, "ght",
"tch", "sch", "ch", "ck", "gh", "ng", "ph", "sh", "th", counts once) does not look like a word of a European
language: a misread that dropped or merged letters ("matpltlib" for matplotlib's wordmark, whose "o" is drawn;
"Brxtnk"). English spelling rarely has more than four in a row ("angstrom", "strengths" are dictionary words);
names and compounds such as "Nightshade", "Catchphrase", "Hirschfeld" have five letters but three or four sounds"""
_ONE_SOUND = re.compile(r"ght|tch|sch|ch|ck|gh|ng|ph|sh|th")
QUOTE_MIN_SHARE = 0.6
"""no text is quoted when fewer than this share of the OCR words pass: what is left would be fragments"""
_EDGE_PUNCT = "\"'“”‘’.,;:!?()[]{}<>«»-–—*·•|/\\"
_NUMBER = re.compile(r"^[$€£]?\d+(?:[.,:]\d+)*(?:%|st|nd|rd|th|am|pm|h|s|m|kg|g|cm|mm|km)?$", re.I)
_WORD_SHAPE = re.compile(r"^(?:[A-Z]?[a-z]+|[A-Z]+)(?:['’-](?:[A-Za-z]+))*$")
_CLOCK = re.compile(r"^\d{1,2}(?:[:.][0-5]\d)?\s?(?:[ap]\.?m\.?)?(?:\s?[-–]\s?\d{1,2}(?:[:.][0-5]\d)?\s?(?:[ap]\.?m\.?)?)?$",
                    re.I)
"""a clock time or opening hours ("9AM-2PM", "10:30", "9-11am"): with an am/pm or a :minutes, a shape as
constraining as a dictionary word (QUOTE_KNOWN_CONF), and often the key fact of a poster or sign"""
_dictionary_cache: set[str] | None = None


def _dictionary() -> set[str]:
    """Lower-case whole words of the MiniLM WordPiece vocabulary (~20k common English words and names), the
    dictionary the OCR quote check uses; empty (shape checks only) when the text model is not installed."""
    global _dictionary_cache
    if _dictionary_cache is None:
        try:
            vocab = embedder().tok.vocab
            _dictionary_cache = {t for t in vocab if t.isalpha() and (len(t) > 1 or t in ("a", "i"))}
        except Exception:  # noqa: BLE001 - no text model: shape checks only
            _dictionary_cache = set()
    return _dictionary_cache


def _word_ok(text: str, conf: float, dictionary: set[str]) -> bool:
    core = text.strip(_EDGE_PUNCT)
    if not core:
        return False
    if _CLOCK.match(core) and re.search(r"[ap]\.?m|:\d\d", core, re.I):
        return conf >= QUOTE_KNOWN_CONF
    if _NUMBER.match(core):
        return conf >= QUOTE_SHAPE_CONF
    if not _WORD_SHAPE.match(core):  # mixed letters/digits/symbols, "lOt", "@96"
        return False
    if core.lower() in dictionary or core.lower().rstrip("s") in dictionary:
        return conf >= QUOTE_KNOWN_CONF
    # an unknown word must look like one: a vowel, no unpronounceable run of consonants, and not so long that
    # it is several words read as one
    return (3 <= len(core) <= 12 and bool(re.search(r"[aeiouyAEIOUY]", core)) and conf >= QUOTE_SHAPE_CONF
            and not re.search(r"[^aeiouy\W\d_'’-]{%d}" % (MAX_CONSONANT_RUN + 1),
                              _ONE_SOUND.sub("c", core.lower())))


GLUE_DIGIT_RANK = 2000
"""letters glued to digits ("at5") are split only when the letters are one of the this many most frequent English
words (wordninja's Wikipedia unigram ranks): "at 5", "page 3", but "mp3", "h264", "B52" stay one token"""
_GLUED_PUNCT = re.compile(r"(?<=[A-Za-z][,;:!?])(?=[A-Za-z])")
_GLUED_CASE = re.compile(r"^([a-z]{2,})([A-Z][a-z]+)$")
_GLUED_DIGITS = re.compile(r"^([a-z]{2,})(\d+)$")
_word_ranks_cache: dict[str, float] | None = None


def _common(word: str) -> bool:
    """`word` is one of the GLUE_DIGIT_RANK most frequent English words (False without wordninja)."""
    global _word_ranks_cache
    if _word_ranks_cache is None:
        try:
            import wordninja

            costs = wordninja.DEFAULT_LANGUAGE_MODEL._wordcost
            _word_ranks_cache = {w: c for w, c in sorted(costs.items(), key=lambda wc: wc[1])[:GLUE_DIGIT_RANK]}
        except Exception:  # noqa: BLE001 - not installed: letters and digits are never split
            _word_ranks_cache = {}
    return word in _word_ranks_cache


def glued_parts(token: str) -> list[str]:
    """An OCR word split where OCR dropped a space and the split is unambiguous: after punctuation between
    letters ("milk,eggs" -> "milk," "eggs"), at a lower-to-upper case change after a lower-case word
    ("callMarta" -> "call" "Marta"), and between a common lower-case word and digits ("at5" -> "at" "5").
    Kept whole: "iPhone", "eBay" (one lower-case letter first), "McDonald", "YouTube" (capital first), "B52",
    "3D", "mp3" (not a common word), "10:30", URLs' "http://"."""
    parts = [p for p in _GLUED_PUNCT.split(token) if p]
    out: list[str] = []
    for part in parts:
        core = part.strip(_EDGE_PUNCT)
        lead, trail = part[:part.index(core)] if core else part, part[part.index(core) + len(core):] if core else ""
        m = _GLUED_CASE.match(core) or (_GLUED_DIGITS.match(core) if _common(core.rstrip("0123456789")) else None)
        out.extend([lead + m.group(1), m.group(2) + trail] if m else [part])
    return out


MONOGRAM_MAX_WORDS = 3
"""a one-letter line is a monogram only in text this short (a logo's mark beside its wordmark)"""


def _ocr_tokens(pre: dict[str, Any]) -> tuple[list[tuple[str, float]], list[list[str]] | None]:
    """The OCR words as (token, confidence 0-100) after `glued_parts`, and the text's lines in the same tokens
    (None when the lines do not line up with the words). A monogram, a one capital letter line that is the
    initial of another word in a short text ("Q" above "Qorvexa" in an app icon), is left out of both: it is a
    mark, not a word to quote, and does not count against the words beside it."""
    ocr = _d(pre.get("ocr"))
    if ocr.get("skipped"):
        return [], None
    tokens: list[tuple[str, float]] = []
    for w in ocr.get("words") or []:
        if isinstance(w, dict) and str(w.get("text") or "").strip():
            conf = _f(w.get("confidence"))
            conf = conf * 100.0 if conf <= 1.0 else conf
            tokens.extend((part, conf) for t in str(w["text"]).split() for part in glued_parts(t))
    lines = [[part for t in ln.split() for part in glued_parts(t)]
             for ln in str(ocr.get("text") or "").splitlines() if ln.split()]
    if sum(len(ln) for ln in lines) != len(tokens):
        return tokens, None
    if len(tokens) <= MONOGRAM_MAX_WORDS:
        initials = {t[0] for t, _ in tokens if len(t) >= 3 and t[0].isupper()}
        mono = [len(ln) == 1 and len(ln[0]) == 1 and ln[0] in initials for ln in lines]
        if any(mono) and not all(mono):
            keep = [k for k, m in enumerate(mono) for _ in lines[k] if not m]
            tokens = [tc for tc, k in zip(tokens, [k for k, ln in enumerate(lines) for _ in ln]) if k in keep]
            lines = [ln for ln, m in zip(lines, mono) if not m]
    return tokens, lines


LINE_MIN_WORDS = 2
"""when too few of all the words pass (QUOTE_MIN_SHARE), a line is still quoted when every word of it passes and
it has at least this many: a lone word among noise is as likely noise itself"""


def confident_text(pre: dict[str, Any]) -> str:
    """The OCR text an alt text, title or caption may quote: words that are confident and look like words
    (dictionary, or a word/number shape at higher confidence), in reading order, whole lines only; words OCR
    glued together are split first (`glued_parts`) and a monogram is left out (`_ocr_tokens`). When fewer
    than QUOTE_MIN_SHARE of the words pass, only lines of >= LINE_MIN_WORDS words that all pass are quoted.
    Text read from images is untrusted and noisy ("6 @96", "lot ae"): what is not sure is not quoted."""
    return _sure_text(*_ocr_tokens(pre))


def _sure_text(tokens: list[tuple[str, float]], lines: list[list[str]] | None) -> str:
    """`confident_text` of the OCR words `_ocr_tokens` parsed (for a caller that reads the tokens again)."""
    return " ".join(_sure_lines(tokens, lines))


def _sure_lines(tokens: list[tuple[str, float]], lines: list[list[str]] | None) -> list[str]:
    """`_sure_text` as its whole lines (the passing words one by one when the lines do not line up): the phrases a
    quote may keep or drop (`_quote`), never cut."""
    if not tokens:
        return []
    dictionary = _dictionary()
    ok = [_word_ok(t, conf, dictionary) for t, conf in tokens]
    enough = sum(ok) >= QUOTE_MIN_SHARE * len(tokens)
    # whole lines only (a quote with words cut out of its middle says something the image does not), when the
    # text's lines line up with the words; else the passing words, when enough pass
    if lines is not None:
        kept, i = [], 0
        for ln in lines:
            if all(ok[i:i + len(ln)]) and (enough or len(ln) >= LINE_MIN_WORDS):
                kept.append(" ".join(ln))
            i += len(ln)
        return kept
    if not enough:
        return []
    return [t for (t, _), good in zip(tokens, ok) if good]


def _first_sure_line(lines: list[list[str]] | None, sure: str) -> str:
    """The first OCR line (`_ocr_tokens`) made only of words OCR is sure of (a title), else the first 8 sure
    words."""
    ok = set(sure.split())
    for words in lines or []:
        if words and all(w in ok for w in words):
            return " ".join(words)
    return " ".join(sure.split()[:8])


def _ocr(pre: dict[str, Any]) -> tuple[str, int, float]:
    """(clean text, number of real words, mean confidence 0..1)."""
    ocr = _d(pre.get("ocr"))
    if ocr.get("skipped"):
        return "", 0, 0.0
    words = [w for w in (ocr.get("words") or []) if isinstance(w, dict)]
    conf = ocr.get("mean_confidence")
    if conf is None and words:
        conf = float(np.mean([_f(w.get("confidence")) for w in words]))
    conf = _f(conf)
    if conf > 1.0:  # tesseract reports 0..100
        conf /= 100.0
    text = " ".join(str(ocr.get("text") or "").split())
    real = [t for t in re.findall(r"[^\W_]{2,}", text)]
    return text, len(real), max(0.0, min(1.0, conf if words or conf else 0.6))


def _colors(pre: dict[str, Any], facts: ImageFacts) -> list[tuple[str, float]]:
    cols = []
    for c in _signals(pre).get("colors") or []:
        if isinstance(c, dict) and str(c.get("name") or "").strip():
            cols.append((str(c["name"]).strip(), _f(c.get("share"))))
    return cols or facts.colors


def _faces(pre: dict[str, Any]) -> int:
    try:
        return max(0, int(_signals(pre).get("face_count") or 0))
    except (TypeError, ValueError):
        return 0


FACE_SUBJECT_SHARE = 0.01
"""a face must cover >= 1 % of the image (and pass the stricter check) to make people the subject"""


def _subject_faces(pre: dict[str, Any], facts: ImageFacts) -> int:
    """Faces that may name the subject and the people tags: preprocessing counted them AND the stricter check
    on the thumbnail found a large one. Without the thumbnail (template path) the count is used as is."""
    faces = _faces(pre)
    if not faces or not facts.ok:
        return faces
    return faces if facts.face_share >= FACE_SUBJECT_SHARE else 0


def _product(pre: dict[str, Any]) -> dict[str, str]:
    pc = _d(_d(pre.get("asset")).get("product_context"))
    return {k: " ".join(str(v).split()) for k, v in pc.items() if v} if isinstance(pc, dict) else {}


# --- tagging --------------------------------------------------------------------------------------------

SIM_MIN = 0.5
SIM_FULL = 0.8
"""cosine(class name, vocabulary text): below SIM_MIN a class says nothing about a tag, from SIM_FULL on it
counts fully; linear in between (MiniLM puts unrelated short nouns at 0.3-0.55)"""
CLASS_MIN_SCORE = 0.15
CLASS_FACETS = ("subject", "product", "content", "setting", "activity", "style")
"""facets a classifier label may map onto (colour and mood come from other evidence)"""


def _best(idx: VocabIndex, words: list[str], facets: tuple[str, ...] | None, query: str | None,
          min_sim: float = 0.6) -> int | None:
    for w in words:
        hits = idx.lookup(w, facets)
        if hits:
            return hits[0]
    if query and idx.emb is not None:
        sims = idx.entry_sims(embedder().embed([query]))[0]
        cand = [i for i in range(len(idx.entries)) if facets is None or idx.facets[i] in facets]
        if cand:
            j = max(cand, key=lambda i: sims[i])
            if sims[j] >= min_sim:
                return j
    return None


COLOUR_TAGS = 2
COLOUR_MIN_SHARE = 0.15
NEUTRAL_MIN_SHARE = 0.3
"""colour tags: at most 2, each covering a large share of the (opaque) pixels: >= 15 % for a chromatic colour;
the shades (white, black, gray, brown, beige...) only on graphics and products cut out on white, with >= 30 %"""
_SHADES = {"white", "black", "gray", "grey", "silver", "charcoal", "beige", "cream", "ivory", "off-white", "tan",
           "brown"}
SHOWN_SCORE = 0.3
"""tags scored below this are dropped by the validate stage (validate.min_tag_score default)"""


def class_evidence(idx: VocabIndex, facts: ImageFacts, skip=()) -> dict[int, float]:
    """Vocabulary entry -> score from the classifier's top-k (classes named in `skip` left out): sqrt(p) x
    calibrated similarity, noisy-or over classes; facets subject/product/content/setting/activity/style only."""
    scores: dict[int, float] = {}
    if not facts.top or idx.emb is None or not len(idx.entries):
        return scores
    table = idx.imagenet_sims()
    for _name, cls, p in facts.top:
        if _name in skip:
            continue
        row = table[cls]
        for i in np.nonzero(row > SIM_MIN)[0]:
            if idx.facets[i] in CLASS_FACETS:
                weight = min(1.0, (float(row[i]) - SIM_MIN) / (SIM_FULL - SIM_MIN))
                s = min(0.99, float(np.sqrt(p)) * weight)
                if s >= CLASS_MIN_SCORE:
                    scores[int(i)] = 1.0 - (1.0 - scores.get(int(i), 0.0)) * (1.0 - s)
    return scores


# --- evidence origins (issue 15 item 6: validate calibrates per field and per evidence source) -------------

EVIDENCE = "evidence"
"""the key of a tag's evidence origin / the alt text's subject evidence in the local provider's answers; the
provider takes it out of the answer (the prompt schemas do not have it) and reports it beside it
(ProviderResponse.evidence)"""
_ORIGIN_ORDER = ("detector", "classifier", "ocr", "face", "pixels", "colour")


def evidence_name(origins) -> str:
    """'detector+classifier', 'classifier', 'ocr', 'face', 'pixels' (a style fact), 'colour'... in a fixed order;
    'none' for no origin."""
    named = [o for o in _ORIGIN_ORDER if o in origins] + sorted(set(origins) - set(_ORIGIN_ORDER))
    return "+".join(named) or "none"


GRAPHIC_KIND = "graphic"
"""the image kind an evidence origin is prefixed with ('graphic:detector') on a drawing (`ImageFacts.graphic`)"""
RECOGNISERS = frozenset({"detector", "classifier", "classifier-weak", "face"})
"""the origins that are a model recognising a thing in the pixels: trained on photographs, they are another source
on a drawing (Open Clip Art: "An airplane" for a grasshopper from a 0.69 box), so validate must not read them
through a curve fitted on photos"""


def with_kind(origin: str, facts: "ImageFacts") -> str:
    """The evidence origin with the image kind when a recogniser backs it on a drawing (`facts.graphic`; a video:
    its poster frame): 'graphic:detector+classifier'. A photo's origins, and origins that recognise nothing (text
    read, pixels, colours, a logo's look, none), stay as they are. Validate keys the field's curve by it
    (consumers/validate/calibration.py `origin_keys`)."""
    if facts.graphic and RECOGNISERS.intersection(origin.split("+")):
        return f"{GRAPHIC_KIND}:{origin}"
    return origin


# --- object detections (NanoDet-m, COCO) -> tags and subjects --------------------------------------------

COCO_TAGS: dict[str, tuple[str, ...]] = {
    "person": ("subject:person",), "bicycle": ("subject:bicycle", "subject:vehicle"),
    "car": ("subject:car", "subject:vehicle"), "motorcycle": ("subject:motorcycle", "subject:vehicle"),
    "airplane": ("subject:aircraft", "subject:vehicle"), "bus": ("subject:vehicle",),
    "train": ("subject:train", "subject:vehicle"), "truck": ("subject:truck", "subject:vehicle"),
    "boat": ("subject:boat",), "bird": ("subject:bird", "subject:animal"), "cat": ("subject:cat", "subject:animal"),
    "dog": ("subject:dog", "subject:animal"), "horse": ("subject:horse", "subject:animal"),
    "sheep": ("subject:farm-animal", "subject:animal"), "cow": ("subject:farm-animal", "subject:animal"),
    "elephant": ("subject:wild-animal", "subject:animal"), "bear": ("subject:wild-animal", "subject:animal"),
    "zebra": ("subject:wild-animal", "subject:animal"), "giraffe": ("subject:wild-animal", "subject:animal"),
    "backpack": ("product:bag",), "handbag": ("product:bag",), "suitcase": ("product:bag",),
    "bottle": ("product:bottle",), "wine glass": ("product:kitchenware",), "cup": ("product:cup",),
    "fork": ("product:kitchenware",), "knife": ("product:kitchenware",), "spoon": ("product:kitchenware",),
    "bowl": ("product:kitchenware",), "banana": ("subject:fruit", "subject:food"),
    "apple": ("subject:fruit", "subject:food"), "orange": ("subject:fruit", "subject:food"),
    "broccoli": ("subject:vegetable", "subject:food"), "carrot": ("subject:vegetable", "subject:food"),
    "sandwich": ("subject:food",), "hot dog": ("subject:food",), "pizza": ("subject:food",),
    "donut": ("subject:dessert", "subject:food"), "cake": ("subject:dessert", "subject:food"),
    "chair": ("product:chair", "product:furniture"), "couch": ("product:sofa", "product:furniture"),
    "potted plant": ("subject:plant",), "tv": ("product:television", "product:electronics"),
    "laptop": ("product:laptop", "product:computer"), "keyboard": ("product:electronics",),
    "cell phone": ("product:phone", "product:electronics"), "book": ("subject:book",),
    "teddy bear": ("subject:toy",), "scissors": ("subject:tool",),
}
"""COCO class -> controlled-vocabulary tags, only where the vocabulary has the right term (no tag for a toilet,
sink, bed, dining table, kite, surfboard...: those are also the detector's commonest false positives on the
quality set, full-frame guesses on textures and logos). Ids named as the bundled taxonomy has them now; a tag a
deployment's taxonomy renames is emitted under its current name (the request context's "renames", `vocab_index`),
and one it removes or lacks is logged when the provider loads (`unmapped_tags`)."""
LOGO_TAG_SCORE = 0.7
"""content:logo's raw score when `is_logo` holds (validate calibrates it per evidence source, 'tag:content|pixels')"""
WRITING_TAG_SCORE = 0.6
"""content:text's raw score on writing OCR could not read (`unread_writing`, evidence `ink`, as the alt text's
"showing writing"); validate has no 'tag:content|ink' curve yet, so it reads the pooled 'tag:content' one"""
SUBJECT_NOUNS: dict[str, tuple[str, str]] = {
    "person": ("person", "people"), "bicycle": ("bicycle", "bicycles"), "car": ("car", "cars"),
    "motorcycle": ("motorcycle", "motorcycles"), "airplane": ("airplane", "airplanes"), "bus": ("bus", "buses"),
    "train": ("train", "trains"), "truck": ("truck", "trucks"), "boat": ("boat", "boats"),
    "bird": ("bird", "birds"), "cat": ("cat", "cats"), "dog": ("dog", "dogs"), "horse": ("horse", "horses"),
    "sheep": ("sheep", "sheep"), "cow": ("cow", "cows"), "elephant": ("elephant", "elephants"),
    "bear": ("bear", "bears"), "zebra": ("zebra", "zebras"), "giraffe": ("giraffe", "giraffes"),
    "backpack": ("backpack", "backpacks"), "handbag": ("handbag", "handbags"), "suitcase": ("suitcase", "suitcases"),
    "bottle": ("bottle", "bottles"), "wine glass": ("wine glass", "wine glasses"), "cup": ("cup", "cups"),
    "banana": ("banana", "bananas"), "apple": ("apple", "apples"), "orange": ("orange", "oranges"),
    "broccoli": ("broccoli", "broccoli"), "carrot": ("carrot", "carrots"), "sandwich": ("sandwich", "sandwiches"),
    "pizza": ("pizza", "pizzas"), "donut": ("donut", "donuts"), "cake": ("cake", "cakes"),
    "chair": ("chair", "chairs"), "couch": ("sofa", "sofas"), "potted plant": ("potted plant", "potted plants"),
    "tv": ("television", "televisions"), "laptop": ("laptop", "laptops"), "cell phone": ("mobile phone",
                                                                                       "mobile phones"),
    "book": ("book", "books"), "teddy bear": ("teddy bear", "teddy bears"),
}
"""classes that may name the alt text's subject, in plain words (singular, plural)"""
DET_TAG_MIN = 0.5
"""detection score for a tag on the detector's word alone (NanoDet's quality-focal scores: right objects 0.5-0.9,
its false positives mostly 0.25-0.45)"""
DET_AGREE_MIN = 0.3
"""... when the classifier's evidence supports the same tag (agreement raises the tag's score by noisy-or)"""
DET_MIN_AREA = 0.01
"""boxes smaller than 1 % of the image are not evidence (the detector's texture false positives are small)"""
DET_SOLO_AREA = 0.05
"""a box the classifier does not back must cover >= 5 % of the image to tag on its own (bowls and clocks on the
coins photo: 2 % boxes at 0.55-0.61)"""
DET_SUBJECT_MIN = 0.5
DET_SUBJECT_AREA = 0.08
"""a detection names the subject when score >= DET_SUBJECT_MIN and its box covers >= DET_SUBJECT_AREA"""
PERSON_SUBJECT_MIN = 0.7
PERSON_SUBJECT_AREA = 0.1
"""a person box must be large and confident to be the subject (or tag) without a face (a cat scored 'person' 0.60)"""
DET_BEATS_CLASS = 0.5
"""a subject detection replaces a classifier label whose probability is below this (a weak ImageNet class)"""
DET_COUNT_MIN = 0.4
"""further boxes of the subject's class at this score (and DET_MIN_AREA) count in the subject ("two horses")"""
_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def detection_evidence(idx: VocabIndex, facts: ImageFacts, class_scores: dict[int, float],
                       faces: int = 0) -> dict[int, float]:
    """Vocabulary entry -> score from the detections: a box's score (x0.8 under 5 % of the image), noisy-or over
    boxes; a tag needs DET_TAG_MIN and DET_SOLO_AREA alone, or DET_AGREE_MIN when the classifier (class_scores)
    or, for a person, a face agrees; a person box without a face must be large and confident."""
    pos = idx.positions()
    scores: dict[int, float] = {}
    for d in facts.objects:
        if d.area < DET_MIN_AREA:
            continue
        targets = list(dict.fromkeys(pos[t] for t in COCO_TAGS.get(d.label, ()) if t in pos))  # renames may merge
        if not targets:
            continue
        if d.label == "person" and not faces and (d.score < PERSON_SUBJECT_MIN or d.area < PERSON_SUBJECT_AREA):
            continue
        agree = any(i in class_scores for i in targets) or (d.label == "person" and faces > 0)
        if d.score < (DET_AGREE_MIN if agree else DET_TAG_MIN) or (not agree and d.area < DET_SOLO_AREA):
            continue
        s = min(0.95, d.score * (1.0 if d.area >= 0.05 else 0.8))
        for i in targets:
            scores[i] = 1.0 - (1.0 - scores.get(i, 0.0)) * (1.0 - s)
    return scores


def subject_detection(facts: ImageFacts, faces: int = 0) -> tuple[Detection, int] | None:
    """The detection that may name the subject (best score among large, confident boxes of a nameable class) and
    how many boxes of its class there are, or None."""
    def strong(d: Detection) -> bool:
        if d.label not in SUBJECT_NOUNS:
            return False
        if d.label == "person":
            return d.score >= PERSON_SUBJECT_MIN and d.area >= PERSON_SUBJECT_AREA
        return d.score >= DET_SUBJECT_MIN and d.area >= DET_SUBJECT_AREA

    cand = [d for d in facts.objects if strong(d)]
    if not cand:
        return None
    best = max(cand, key=lambda d: d.score)
    n = sum(1 for d in facts.objects if d.label == best.label and d.score >= DET_COUNT_MIN and d.area >= DET_MIN_AREA)
    return best, max(1, n)


def _detection_phrase(det: Detection, n: int) -> str:
    one, many = SUBJECT_NOUNS[det.label]
    if n == 1:
        return _article(one)
    return f"{_NUMBERS.get(n, 'several')} {many}"


def keyframe_images(request) -> list[bytes]:
    """A video's keyframe JPEGs (preprocess `video.keyframes[].thumbnail`), in time order; [] for an image."""
    frames = _d(_pre(request).get("video")).get("keyframes") or []
    return [k["thumbnail"] for k in frames if isinstance(k, dict) and k.get("thumbnail")]


def keyframe_evidence(idx: VocabIndex, frames: list[ImageFacts], skip=(), n_words: int = 0,
                      faces: int = 0) -> dict[int, float]:
    """A video's class evidence: each keyframe's `class_evidence`, aggregated as frequency x confidence (the
    mean over the keyframes that show something of each tag's score, 0 where a keyframe lacks it): a subject
    seen throughout outranks one glimpsed once, flat frames (fades, blank cards) do not count."""
    shown = [f for f in frames if f.ok and not is_decorative(f, n_words, faces)]
    total: dict[int, float] = {}
    for f in shown:
        for i, s in class_evidence(idx, f, skip).items():
            total[i] = total.get(i, 0.0) + s
    return {i: s / len(shown) for i, s in total.items()}


MEDIUM_PHOTO_FLAT = 0.12
"""a photograph for the medium tag: not a graphic and at most this share of exactly-flat pixels (quality set:
photos 0-0.10, one at 0.15; graphics from 0.2): between this and GRAPHIC_FLAT_SHARE no medium is claimed"""
MEDIUM_DRAWN_FLAT = 0.6
"""exactly-flat share of the image, with MEDIUM_FIGURE_FLAT of its figure (ImageFacts.figure_flat_share), from
which the drawing itself is flat-filled, not only its ground: a graphic whatever the detector sees in it (a drawn
horse); a small product photographed on a large white ground is flat only around it"""
MEDIUM_FIGURE_FLAT = 0.3
"""... of its figure (thumbnails of the quality set: drawn horse 0.55, drawn bottles 0.67; cups and gifts on white
0.00-0.08)"""
MEDIUM_OBJECT = 0.4
"""a classifier class (p) or a detector box (score, >= DET_SOLO_AREA) at this level on a flat ground: the image
shows an object that may have been photographed (a cup cut out on white): no medium is claimed"""
MEDIUM_TAG_SCORE = 0.6
"""the medium tag's raw score when it is the only tag but colours (raised above them if they score more); with
other tags it is scored just below the lowest of them: it ranks between them and the colours (issue 15 item 1)
without changing any colour's score. Validate calibrates it on 'tag:content|pixels' (its pooled
'tag:content' curve until one is fitted): the raw score is a rank, not evidence strength"""


def is_video(pre: dict[str, Any]) -> bool:
    """Is the preprocessed record a video's (preprocess sets media_type "video" and its `video` facts)?"""
    return pre.get("media_type") == "video" or bool(pre.get("video"))


def medium(facts: ImageFacts, logo: bool) -> str | None:
    """'photo' / 'graphic' when the pixels say so clearly (ImageFacts.flat_share, is_logo), else None: a
    product on a white ground that the classifier or detector names may be a photograph (cup_on_white) or a
    render, and an image that is a "graphic" only for its lack of detail may be a smooth photograph."""
    if not facts.ok or not facts.top:  # the classifier did not run (template answer): no object evidence to check
        return None
    if not facts.graphic:
        return "photo" if facts.flat_share <= MEDIUM_PHOTO_FLAT else None
    if logo or (facts.flat_share >= MEDIUM_DRAWN_FLAT and facts.figure_flat_share >= MEDIUM_FIGURE_FLAT):
        return "graphic"  # (a logo_look alone is not enough: is_logo also asks the detector and the classifier)
    if facts.flat_share < GRAPHIC_FLAT_SHARE:
        return None
    seen = facts.top[0][2] >= MEDIUM_OBJECT or any(d.score >= MEDIUM_OBJECT and d.area >= DET_SOLO_AREA
                                                    for d in facts.objects)
    return None if seen else "graphic"


def _add_medium(idx: VocabIndex, kind: str | None, scores: dict[int, float], origins: dict[int, set[str]],
                parents: dict[str, list[str]]) -> None:
    """The medium tag (`medium`), after the colours were scored: ranked below every other tag shown and above the
    colours, which stay exactly as they were without it. None when the image is a page of running text
    (content:document from OCR) or a screen (content:screenshot): those say what it is. The classifier's own
    "document" (an envelope icon) does not count. None either when another tag already says the other medium:
    content:photo is not added beside content:graphic or a kind of it (content:illustration from a comic book
    class; `parents`: the taxonomy's ancestors of each tag, from the enrich stage), nor content:graphic beside
    content:photo or a kind of it."""
    doc, screen = (_best(idx, [w], ("content",), None) for w in ("document", "screenshot"))
    if not kind or "ocr" in origins.get(doc, ()) or (screen is not None and scores.get(screen, 0.0) >= SHOWN_SCORE):
        return
    i = _best(idx, [kind], ("content",), None)
    if i is None or i in scores:
        return
    other = _best(idx, ["graphic" if kind == "photo" else "photo"], ("content",), None)
    against = idx.entries[other]["tag"] if other is not None else None
    said = [idx.entries[j]["tag"] for j, s in scores.items() if s >= 0.1]
    if against and any(t == against or against in parents.get(t, ()) for t in said):
        return
    others = [v for j, v in scores.items() if v >= SHOWN_SCORE and origins.get(j) != {"colour"}]
    colours = [v for j, v in scores.items() if origins.get(j) == {"colour"}]
    if others:  # the colours are scored <= min(others) - 0.01
        scores[i] = max(SHOWN_SCORE, min(others) - 0.005)
    else:
        scores[i] = min(0.99, max([MEDIUM_TAG_SCORE, *(v + 0.005 for v in colours)]))
    origins[i] = {"pixels"}


def text_evidence(idx: VocabIndex, pre: dict[str, Any], facts: ImageFacts, n_sure: int, conf: float, faces: int, *,
                  use_embeddings: bool, video: bool) -> list[tuple[int | None, float, str]]:
    """(vocabulary index, score, origin) of the content tags text backs: content:text from the words OCR is sure
    of (and content:document for running text, as the alt text's "a text document"), or, on an image with none,
    content:text for writing OCR could not read (`unread_writing`, as the alt text's "showing writing")."""
    if n_sure:
        out = [(_best(idx, ["text", "typography", "lettering", "words"], ("content",),
                      "text" if use_embeddings else None), 0.35 + 0.6 * min(1.0, n_sure / 8.0) * max(conf, 0.3), "ocr")]
        if n_sure >= 12:  # running text: a document, whatever the classifier says
            out.append((_best(idx, ["document", "page"], ("content",), None),
                        0.3 + 0.6 * min(1.0, n_sure / 30.0) * max(conf, 0.3), "ocr"))
        return out
    if not video and unread_writing(pre, facts, n_sure, faces):
        return [(_best(idx, ["text", "writing", "lettering"], ("content",), None), WRITING_TAG_SCORE, "ink")]
    return []


def tagging(request, facts: ImageFacts, use_embeddings: bool = True,
            frames: list[ImageFacts] | None = None) -> dict[str, Any]:
    """Tags for one image (`facts`), or for a video from its keyframes' `frames` (keyframe_evidence) with the
    text, faces and colours of the whole video."""
    pre = _pre(request)
    vocab = (request.context or {}).get("vocabulary") or []
    allowed = _schema_enum(request.output_schema)
    idx = vocab_index(vocab, with_embeddings=use_embeddings, renames=(request.context or {}).get("renames"))
    scores: dict[int, float] = {}
    origins: dict[int, set[str]] = {}

    def add(i: int | None, s: float, origin: str) -> None:
        if i is None:
            return
        s = float(max(0.0, min(0.99, s)))
        scores[i] = 1.0 - (1.0 - scores.get(i, 0.0)) * (1.0 - s)  # noisy-or over evidence
        origins.setdefault(i, set()).add(origin)

    text, n_words, conf = _ocr(pre)
    n_sure = len(confident_text(pre).split())
    faces = _subject_faces(pre, facts)
    # a logo, decided from the pixels: content:logo, and the classifier's guesses on it are not evidence
    logo = not frames and is_logo(facts, n_sure, n_words, faces, idx)

    # 1. classifier labels -> vocabulary, score = sqrt(p) * calibrated similarity (not for flat fields: the
    #    classifier's guesses on an empty image are noise, "jellyfish" for a blue background)
    # with text OCR is sure of, page-like guesses ("website" -> screenshot) are what the text already says
    skip = _TEXTY if n_sure else ()
    if use_embeddings and frames:
        for i, s in keyframe_evidence(idx, frames, skip, n_sure, faces).items():
            add(i, s, "classifier")
    elif use_embeddings and not logo and not is_decorative(facts, n_sure, faces):
        cls_scores = class_evidence(idx, facts, skip=skip)
        for i, s in cls_scores.items():
            add(i, s, "classifier")
        # 1b. detected objects (the poster frame of a video too): agreement with the classifier raises the score
        for i, s in detection_evidence(idx, facts, cls_scores, faces).items():
            add(i, s, "detector")
    if use_embeddings and frames and facts.objects:
        for i, s in detection_evidence(idx, facts, {}, faces).items():
            add(i, s, "detector")

    # 2. text found by OCR (only words it is sure of), or writing it could not read
    for i, s, origin in text_evidence(idx, pre, facts, n_sure, conf, faces, use_embeddings=use_embeddings,
                                      video=bool(frames)):
        add(i, s, origin)

    if logo:
        add(_best(idx, ["logo"], ("content",), None), LOGO_TAG_SCORE, "pixels")

    # 3. faces -> people tags
    if faces:
        person = _best(idx, ["person", "people", "portrait"], ("subject", "people"), None)
        people = _best(idx, ["people", "group", "crowd"], ("subject", "people"), None)
        face = _best(idx, ["face"], ("subject", "people"), None)
        add(person if faces == 1 or people is None else people, 0.55 + 0.1 * min(faces, 4), "face")
        add(face, 0.45, "face")

    # 4. cheap style facts
    greyscale = facts.ok and facts.saturation < 0.04 and facts.detail > DECORATIVE_DETAIL
    if greyscale:
        add(_best(idx, ["black and white", "monochrome", "grayscale"], ("style",), None), 0.6, "pixels")
    if facts.ok and facts.height > 1.2 * facts.width:
        add(_best(idx, ["portrait orientation", "vertical"], ("style",), None), 0.5, "pixels")

    # 5. dominant colours, last: at most COLOUR_TAGS, only colours covering a large share, scored below every
    #    other tag an editor would see so they never push a subject out of the top 5
    hexes = {str(c.get("name")): c.get("hex") for c in (_signals(pre).get("colors") or []) if isinstance(c, dict)}
    shown = [v for v in scores.values() if v >= SHOWN_SCORE]
    ceiling = min(shown) - 0.01 if shown else 0.99
    colours = 0
    for name, share in _colors(pre, facts)[:5]:
        neutral = name.lower() in _SHADES
        if share < (NEUTRAL_MIN_SHARE if neutral else COLOUR_MIN_SHARE) or colours >= COLOUR_TAGS:
            continue
        if neutral and (greyscale or not facts.graphic):
            continue  # a photo's blacks, greys and browns are light and shade (or its black-and-white style)
        i = _best(idx, [name, *name.split()[-1:]], ("color", "colour"), f"{name} color" if use_embeddings else None, 0.7)
        if i is None:  # a name the vocabulary does not know (coral, mauve): nearest basic colour of its hex
            basic = _basic_colour(hexes.get(name))
            i = _best(idx, [basic], ("color", "colour"), None) if basic else None
        if i is None or i in scores:
            continue
        colours += 1
        scores[i] = min(0.35 + 0.6 * min(1.0, share / 0.6), ceiling)
        origins[i] = {"colour"}

    # 6. the medium (content:photo / content:graphic) from the pixels, ranked between the other tags and the
    #    colours; not for a video (with or without keyframe thumbnails), nor a decorative image (no content tags,
    #    as for the classifier's)
    if not is_video(pre) and not is_decorative(facts, n_sure, faces):
        _add_medium(idx, medium(facts, logo), scores, origins, (request.context or {}).get("parents") or {})

    out = []
    for i, s in sorted(scores.items(), key=lambda kv: -kv[1]):
        tag = idx.entries[i]["tag"]
        if allowed is not None and tag not in allowed:
            continue
        if s < 0.1:
            continue
        # a tag's origin keeps no kind: tags of drawings read the curves they read before (holding them all lost
        # right subject tags on product photos the pixels call graphic, cup_on_white; session 18)
        out.append({"tag": tag, "score": round(float(s), 4), EVIDENCE: evidence_name(origins.get(i, ()))})
    return {"tags": out[:_max_items(request.output_schema, "tags", 20)]}


# --- alt text -------------------------------------------------------------------------------------------

IMAGE_OF = re.compile(r"\b(image|picture|photo|photograph|graphic) of\b", re.I)
"""phrases an alt text must not contain (WCAG: the reader already knows it is an image)"""
_BAD_PHRASE = re.compile(r"\b(?:an?\s+|the\s+)?(?:image|picture|photo|photograph|graphic)\s+of\s+", re.I)
_VOWEL = re.compile(r"^[aeiou]", re.I)
CONFIDENT = 0.25
"""classifier probability needed to name the subject"""


def _article(noun: str) -> str:
    if re.search(r"[^s]s$", noun) or noun in ("food", "money", "art", "water", "snow", "technology"):
        return noun  # plural or mass noun: "headphones", "food"
    return ("an " if _VOWEL.match(noun) else "a ") + noun


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())
    if len(s) <= n:
        return s
    cut = s[: n - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:-") + "…"


def _quote(lines: list[str], room: int) -> tuple[str, bool]:
    """(the image's text to quote within `room` characters, whether it is all of it): all of it when it fits,
    else the whole lines (phrases) that fit, in reading order, the others dropped; never a line cut mid-phrase
    ("fresh local…" read aloud says nothing). ("", False) when not even one line fits."""
    text = " ".join(lines)
    if len(text) <= room:
        return text, True
    kept: list[str] = []
    for ln in lines:
        if len(" ".join(kept + [ln])) <= room:
            kept.append(ln)
    return " ".join(kept), False


def _with_text(heads: list[str], lines: list[str], limit: int) -> str:
    """The first head (the subject with its colours, then the subject alone) that quotes all of the image's text
    within `limit` (' with the text "…"'), else the last one with the whole lines that fit (' with text including
    "…"'), else the first head alone."""
    text = " ".join(lines)
    for head in heads:
        if len(head) + len(' with the text ""') + len(text) <= limit:
            return f'{head} with the text "{text}"'
    part, _ = _quote(lines, limit - len(heads[-1]) - len(' with text including ""'))
    return f'{heads[-1]} with text including "{part}"' if len(part) >= 12 else heads[0]


def _said(lines: list[str], room: int, all_of: str, some_of: str) -> str:
    """A sentence quoting the image's text: `all_of` ('Visible text reads') with all of it when it fits in
    `room`, else `some_of` ('Visible text includes') with the whole lines that fit."""
    part, whole = _quote(lines, room)
    return f'{all_of if whole else some_of} "{part}".' if part else ""


_NEUTRAL = {"white", "black", "gray", "grey", "silver", "beige", "off-white", "ivory", "cream"}


def _colour_phrase(shares: list[tuple[str, float]], figure: str | None = None) -> str:
    """' in red on a white background' / ' in red and blue' / ''; with the figure's own neutral colour
    (`ImageFacts.figure_neutral`) first beside a neutral background: ' in black on a white background' (a black
    product on white: black is only ~13 % of the image, so the shares alone name no colour)."""
    if not shares:
        return ""
    chroma = [c for c, _ in shares if c.lower() not in _NEUTRAL][:2]
    bg = shares[0][0] if shares[0][0].lower() in _NEUTRAL and shares[0][1] >= 0.45 else None
    if bg and figure and figure != bg.lower():  # "charcoal", a dark grey, would repeat it ("in black and charcoal")
        chroma = [figure, *(c for c in chroma if c.lower() != "charcoal")][:2]
    out = f" in {' and '.join(chroma)}" if chroma else ""
    if bg:
        out += f" on a {bg} background"
    elif not chroma:
        out = f" in {' and '.join(c for c, _ in shares[:2])}"
    return out


def _human_text(value: Any) -> str:
    text = " ".join(str(value or "").split())
    return text if len(re.findall(r"[^\W\d_]{2,}", text)) >= 2 else ""


DECORATIVE_DETAIL = 0.6
_TEXTY = {"website", "menu", "envelope", "book jacket", "comic book", "crossword", "packet", "scoreboard",
          "slide rule", "notebook computer", "monitor", "screen", "television"}
"""ImageNet guesses for "a page of text": when OCR found real words, say what we know (text) instead"""


def is_decorative(facts: ImageFacts, n_words: int, faces: int) -> bool:
    """No text, no faces, no confident class, and (almost) no structure: flat fields and smooth gradients."""
    if not facts.ok or n_words or faces or subject_detection(facts):
        return False
    top_p = facts.top[0][2] if facts.top else 0.0
    return facts.detail < DECORATIVE_DETAIL and top_p < 0.5


WRITING_GROUND = 120
"""Ink.ground a page needs (quality set: handwriting 144; coins 99, a star field 64)"""
WRITING_SATURATION = 0.15
"""ImageFacts.saturation below which the image is ink on paper-like ground (handwriting 0.00; a leafy or
coloured photo 0.3+)"""
WRITING_INK = (0.02, 0.2)
"""Ink.share of writing: strokes over a ground (handwriting 0.09; grass 0.8, gravel 0.65, brick 0.38)"""
WRITING_STROKE = 3.5
"""Ink.stroke (px at INK_EDGE) at most: pen lines, not blobs (handwriting 2.5; grass 4.8, a star field 7.3)"""


UNREAD = " that could not be read"


def unread_writing(pre: dict[str, Any], facts: ImageFacts, n_words: int, faces: int) -> bool:
    """Writing OCR could not read: preprocess's OCR gate found text-line candidates (the OCR record is not
    skipped), OCR is sure of no word to quote, no face, and the photo is thin dark strokes on a light, colourless
    ground (`ink_on_ground`: WRITING_GROUND, WRITING_SATURATION, WRITING_INK, WRITING_STROKE). Handwriting,
    formulas on a board or a page too blurred to read; not grass, gravel, brick, fabric or foliage (too much
    'ink', in blobs, or coloured), not a star field (a dark ground), not a drawing (`graphic`)."""
    ocr = _d(pre.get("ocr"))
    ink = facts.ink
    if not ocr or ocr.get("skipped") or n_words or faces or ink is None or not facts.ok or facts.graphic:
        return False
    return (facts.saturation < WRITING_SATURATION and ink.ground >= WRITING_GROUND
            and WRITING_INK[0] <= ink.share <= WRITING_INK[1] and 0 < ink.stroke <= WRITING_STROKE)


GRAPHIC_FLAT_SHARE = 0.2
"""ImageFacts.lit_flat_share from which an image is a graphic, not a photograph (quality set: photos <= 0.15)"""
SHADOW_GREY = 40
"""grey level (0-255, 128 px thumbnail) below which exactly-flat pixels are a photograph's deep shadow, not a drawn
fill: downscaling and JPEG recompression flatten a dark area to one value. The Paris sunset's web copy
(samples/photo_paris_sunset_copy.jpg, 60 % and recompressed) is 0.275 exactly flat, all of it its night river bank
at grey 22-34 (the original 0.059), and was "A simple graphic"; above 40 it is 0.001 flat. On the quality set and the
89 drawings of tests/data/clipart no graphic changes but bokeh_dots.jpg (blurred dots on a black ground)"""
EVIDENCE_SUBJECT = 0.4
"""class evidence (sqrt(p) x similarity, noisy-or over the top-k) a subject tag needs to name the subject when
no single class is confident (product tags are not used: texture guesses such as "headphones" for a star field
score as high as right ones)"""
def _classes(first: int, last: int) -> tuple[str, ...]:
    return IMAGENET_CLASSES[first:last + 1]


_EVERYDAY_NOUN: dict[str, tuple[str, ...]] = {
    # the animals by ImageNet's own order (WordNet hypernyms): its breed and species names
    "dog": _classes(151, 268),
    "cat": _classes(281, 285),
    "bird": _classes(7, 24) + _classes(80, 100) + _classes(127, 146),
    "fish": _classes(0, 1) + _classes(389, 397),
    # vehicles, buildings and plants whose class name is a kind of them (checked by eye)
    "car": ("station wagon", "taxicab", "convertible", "jeep", "limousine", "minivan", "race car", "sports car"),
    "motorcycle": ("moped", "motor scooter"),
    "bicycle": ("mountain bike",),
    "boat": ("kayak", "catamaran", "container ship", "gondola", "ocean liner", "pirate ship", "schooner",
             "trimaran", "fireboat", "lifeboat"),
    "train": ("electric locomotive", "steam locomotive", "freight car", "railroad car", "tram",
              "high-speed train"),
    "aircraft": ("airliner", "airship"),
    "building": ("barbershop", "barn", "bell tower", "boathouse", "butcher shop", "castle", "church",
                 "movie theater", "greenhouse", "grocery store", "library", "monastery", "mosque", "palace",
                 "restaurant", "shoe store", "stupa", "tobacco shop", "water tower", "bakery",
                 "planetarium", "prison", "toy store", "bookstore", "candy store", "apiary"),
    "bridge": ("viaduct", "suspension bridge"),
    "truck": ("moving van", "fire truck", "garbage truck", "tow truck", "semi-trailer truck", "pickup truck"),
    "flower": ("daisy", "yellow lady's slipper", "rose hip"),
}
"""the everyday noun a specific class name gets in the alt text ("Egyptian Mau" -> "Egyptian Mau cat", "moped"
-> "moped motorcycle"), when the name does not say it. A fixed table, not the text encoder's similarity: by
similarity, "umbrella", "balloon" and "fly" became aircraft, "lab coat" and "punching bag" dogs, "mop" a
motorcycle and "lighthouse" a bridge."""
_NOUN_OF = {name: noun for noun, names in _EVERYDAY_NOUN.items() for name in names}


def _merged_top(top: list[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
    """The classifier's top-k with classes of one name taken together (ImageNet has two "missile" classes,
    0.19 + 0.11 for a rocket launch: each alone is under CONFIDENT), best first; the best class's index kept."""
    merged: dict[str, tuple[str, int, float]] = {}
    for name, cls, p in top:
        key = name.lower()
        first = merged.get(key)
        merged[key] = (first[0], first[1], first[2] + p) if first else (name, cls, p)
    return sorted(merged.values(), key=lambda t: -t[2])


def _plain_label(label: str, cls: int) -> str:
    """A class name in plain words: a breed, species or model name gets its everyday noun (`_EVERYDAY_NOUN`:
    "Beagle" -> "Beagle dog", "moped" -> "moped motorcycle"); any other name is already one."""
    name = IMAGENET_CLASSES[cls] if 0 <= cls < len(IMAGENET_CLASSES) else label
    noun = _NOUN_OF.get(name)
    if noun and noun not in label.lower():  # "hummingbird", "Old English Sheepdog" say it
        return f"{label} {noun}"
    return label


LOGO_WORDMARK_WORDS = 2
"""a logo's text is a wordmark: at most this many words OCR is sure of (and at most LOGO_RAW_WORDS read at all);
more is a sign, a banner's sale sentence, a label or a page"""
LOGO_RAW_WORDS = 3
LOGO_OBJECT_BOX = 0.4
LOGO_OBJECT_AREA = (0.1, 0.85)
"""a detector box at this score covering this share of the image says the drawing is of an object (a bottle or a
mug drawn flat); full-frame boxes are the detector's guesses on a round or square logo ('bowl' 0.45 on the
scikit-image disc), specks are parts"""
LOGO_PRODUCT_CLASS = 0.5
"""product-tag class evidence at which the classifier sees a product in the drawing ('lotion' for a bottle)"""


def is_logo(facts: ImageFacts, n_sure: int, n_raw: int, faces: int, idx: VocabIndex | None = None) -> bool:
    """A logo: drawn like one (`ImageFacts.logo_look`, from the pixels), its text at most a short wordmark, no
    face, and nothing the detector or the classifier names as an object or product (a flat-drawn bottle with
    "LEMON" on its label looks like a logo too)."""
    if not facts.logo_look or faces or n_sure > LOGO_WORDMARK_WORDS or n_raw > LOGO_RAW_WORDS:
        return False
    if subject_detection(facts) or any(d.score >= LOGO_OBJECT_BOX and LOGO_OBJECT_AREA[0] <= d.area
                                       <= LOGO_OBJECT_AREA[1] for d in facts.objects):
        return False
    if idx is not None and idx.emb is not None:
        products = [s for i, s in class_evidence(idx, facts).items() if idx.facets[i] == "product"]
        if max(products, default=0.0) >= LOGO_PRODUCT_CLASS:
            return False
    return True


WORDMARK_CONF = 95.0
"""OCR word confidence at which a wordmark the dictionary does not know ("Zentorix", a product name) titles the
logo, quoted as read ('"Zentorix" logo'); below it, and at >= QUOTE_SHAPE_CONF, it is only quoted in the alt text"""


def _wordmark(text: str) -> str:
    """The logo's name from the text OCR is sure of (`confident_text`), when it is one or two words the dictionary
    knows; else '' (the text, if any, is then quoted as read, not asserted as the name: an unknown word is a
    misread as often as a brand, see `_read_wordmark`)."""
    words = text.split()
    name = " ".join(words)
    if not 1 <= len(words) <= LOGO_WORDMARK_WORDS or len(name) > 24:
        return ""
    dictionary = _dictionary()
    return name if all(w.strip(_EDGE_PUNCT).lower() in dictionary for w in words) else ""


def _read_wordmark(read: list[tuple[str, float]], text: str) -> str:
    """A logo's wordmark the dictionary does not know, as OCR read it, when OCR is sure of it: the sure text
    (`confident_text`: word shape, no run of more than MAX_CONSONANT_RUN consonants) is one or two words, they
    are every word OCR read (`read`: `_ocr_tokens`, so a monogram beside the wordmark is not one of its words),
    and each was read at >= WORDMARK_CONF. The logo is then titled by it in quotes
    ('"Zentorix" logo'): what the image says, not a claim of whose logo it is. Else ''."""
    words = text.split()
    if not 1 <= len(words) <= LOGO_WORDMARK_WORDS or len(text) > 24:
        return ""
    if [t for t, _ in read] != words:
        return ""
    return text if all(c >= WORDMARK_CONF for _, c in read) else ""


GRAPHIC_CLASS_MIN = 0.7
"""on a drawing (ImageFacts.graphic) an ImageNet class names the subject only at this probability, or when a
detector box of the same thing agrees: the classifier knows photographs, its guesses on drawings are shapes
("plectrum" for a round logo, "tool kit" for a wordmark)"""


def _class_backed(idx: VocabIndex | None, facts: ImageFacts, top: tuple[str, int, float]) -> bool:
    """A class that may name a drawing's subject: very confident, or a box (DET_AGREE_MIN, DET_MIN_AREA) agrees."""
    if top[2] >= GRAPHIC_CLASS_MIN:
        return True
    return any(d.score >= DET_AGREE_MIN and d.area >= DET_MIN_AREA and _label_agrees(idx, top[1], d)
               for d in facts.objects)


def _evidence_subject(idx: VocabIndex | None, facts: ImageFacts) -> str | None:
    """The subject/product tag the classifier's top-k supports best, as a plain noun ("building"), or None."""
    if idx is None:
        return None
    best = [(s, i) for i, s in class_evidence(idx, facts).items()
            if idx.facets[i] == "subject" and s >= EVIDENCE_SUBJECT]
    if not best:
        return None
    entry = idx.entries[max(best)[1]]
    return str(entry.get("label") or entry["tag"].split(":", 1)[1]).replace("-", " ").lower()


_NOT_THE_SAME = {("car", "car mirror"), ("car", "car wheel"), ("airplane", "airplane wing"),
                 ("kite", "kite (bird of prey)"), ("bird", "kite (bird of prey)"), ("dog", "hot dog"),
                 ("dog", "dog sled"), ("horse", "horse chestnut seed"), ("horse", "horse-drawn vehicle"), ("bear", "teddy bear"), ("bottle", "bottle cap"),
                 ("toilet", "toilet seat"), ("toilet", "toilet paper"), ("keyboard", "keyboard space bar"),
                 ("apple", "cherimoya (custard apple)"), ("oven", "Dutch oven"), ("book", "comic book"),
                 ("car", "freight car"), ("car", "railroad car"), ("oven", "microwave oven")}
"""(COCO class, ImageNet class) pairs whose names share a word but not a thing: a part ("car wheel"), a homonym
("kite (bird of prey)"), another thing named after it ("hot dog", "teddy bear")"""


def same_name(class_label: str, det_label: str) -> bool:
    """The ImageNet class and the COCO detection name the same thing by name: the detector's class is a whole word
    of the classifier's ("umbrella" and "umbrella", "wall clock" and "clock", "park bench" and "bench"), unless
    the pair is a part or a homonym (_NOT_THE_SAME). Needs no vocabulary: an umbrella is an umbrella whether or not
    the controlled vocabulary has a tag for it."""
    if (det_label, class_label) in _NOT_THE_SAME:
        return False
    return re.search(r"\b" + re.escape(det_label) + r"s?\b", class_label, re.I) is not None


def _label_agrees(idx: VocabIndex | None, cls: int, det: Detection) -> bool:
    """The classifier's class names what the detection names: by name (`same_name`: "umbrella" and an umbrella
    box) or through the detection's vocabulary tags ("tabby" and a cat box)."""
    if 0 <= cls < len(IMAGENET_CLASSES) and same_name(IMAGENET_CLASSES[cls], det.label):
        return True
    if idx is None or idx.emb is None or not len(idx.entries):
        return False
    row = idx.imagenet_sims()[cls]
    pos = idx.positions()
    return any(row[pos[t]] >= 0.6 for t in COCO_TAGS.get(det.label, ()) if t in pos)


DRAWING_BOX_ALONE = 0.6
"""on a drawing (ImageFacts.graphic) a detector box names the subject with no classifier class agreeing only from
this score (else DET_SUBJECT_MIN): the detector learned COCO photographs and guesses shapes in drawings as the
classifier does. Chosen on the drawings rules may be fitted on: a baseball glove's "cake" box at 0.55 (the fit
split of tests/data/clipart), the drawn horse's "horse" box at 0.66 (tests/data/quality); checked on the held-out
drawings (bench/drawings.py, docs/benchmarks.md), where boxes alone at 0.58 said "a banana" for a broom and a fish"""


def _box_backed(idx: VocabIndex | None, facts: ImageFacts, det: Detection) -> bool:
    """A box that may name a drawing's subject: one of the classifier's top-k classes at >= SUMMARY_FLOOR names the
    same thing (`_label_agrees`: the two models agree, as a class on a drawing needs, `_class_backed`), or the box
    alone is at >= DRAWING_BOX_ALONE."""
    if det.score >= DRAWING_BOX_ALONE:
        return True
    return any(p >= SUMMARY_FLOOR and _label_agrees(idx, cls, det) for _, cls, p in facts.top)


AGREE_CLASS_MIN = 0.15
AGREE_BOX_MIN = 0.4
"""two models naming the same thing are stronger evidence than either alone: a classifier class (merged,
`_merged_top`) at >= AGREE_CLASS_MIN (not CONFIDENT) and a detector box at >= AGREE_BOX_MIN (not DET_SUBJECT_MIN)
covering >= DET_SUBJECT_AREA that name one thing (`_label_agrees`) name the subject (`agreed_class`). Chosen on the
quality set and the fit split of tests/data/clipart: the quality set's traffic light (class 0.22, box 0.49 over 24 %
of the image) was "A simple graphic on a silver background"; the agreeing pairs that would name a wrong subject
have a class at <= 0.07 (an "umbrella" class 0.07 and box 0.58 for a drawn box, a "wall clock" 0.04 and clock box
0.35 for a strawberry); none on either set has a class >= 0.15 and a box under 0.4. Checked on the held-out
drawings (bench/drawings.py, docs/benchmarks.md session 17)"""


def agreed_class(idx: VocabIndex | None, facts: ImageFacts,
                 listed: list[tuple[str, int, float]]) -> tuple[str, int, float] | None:
    """The best guess of `listed` (`named_classes`, best first) at >= AGREE_CLASS_MIN that a large box at
    >= AGREE_BOX_MIN names too (`_label_agrees`), else None: the subject when neither a class (CONFIDENT) nor a
    box (`_detected_subject`) names it on its own."""
    boxes = [d for d in facts.objects if d.score >= AGREE_BOX_MIN and d.area >= DET_SUBJECT_AREA]
    for guess in listed:
        if guess[2] < AGREE_CLASS_MIN:
            break
        if any(_label_agrees(idx, guess[1], d) for d in boxes):
            return guess
    return None


def _detected_subject(idx: VocabIndex | None, facts: ImageFacts, faces: int,
                      conf_top: list) -> tuple[str, str] | None:
    """The subject phrase from the detector ("a horse", "two cups"), when it should name the subject: a large,
    confident box (on a drawing also `_box_backed`), and the classifier has no confident label, a weak one
    (< DET_BEATS_CLASS) or one that agrees but there are several boxes (the count is the detector's). A
    classifier label that agrees with a single box is kept: it is the more specific name ("tabby cat"). With the
    phrase: what named it ('detector', 'detector+classifier')."""
    if faces:
        return None
    found = subject_detection(facts, faces)
    if found is None:
        return None
    det, n = found
    if facts.graphic and not _box_backed(idx, facts, det):
        return None  # on a drawing the box alone is a guess at a shape ("a banana" for a broom)
    if not conf_top:
        return _detection_phrase(det, n), "detector"
    agree = _label_agrees(idx, conf_top[0][1], det)
    if agree and n == 1:
        return None
    if agree:
        return _detection_phrase(det, n), evidence_name({"detector", "classifier"})
    if conf_top[0][2] < DET_BEATS_CLASS:
        return _detection_phrase(det, n), "detector"
    if det.label == "person":  # a confident class that is not a person: what the person is with ("a tripod")
        return (f"{_detection_phrase(det, n)} with {_article(_plain_label(conf_top[0][0], conf_top[0][1]))}",
                evidence_name({"detector", "classifier"}))
    return None


def _subject(product: dict[str, Any], faces: int, label: str | None, conf_top: list, n_raw: int, n_words: int,
             facts: ImageFacts, evidence: str | None, detected: tuple[str, str] | None = None,
             boxed: bool = False, logo: bool = False, wordmark: str = "", writing: bool = False) -> tuple[str, str]:
    """The alt text's subject in plain words, by the strongest evidence: the product named in the event, a
    confident face, a large confident detected object, a confident class, text, a weaker class, and only then
    what the pixels look like; and what named it (`evidence_name` origins: 'product', 'face',
    'detector+classifier', 'detector', 'classifier' (`boxed`: a box of the same class agrees), 'ocr',
    'classifier-weak', 'none'; 'logo' when `is_logo` decided it: "the Harbor logo" with a sure `wordmark`,
    else "a logo"; 'ink' for `writing` that OCR could not read: "a photograph showing writing")."""
    if product.get("name"):
        subject, source = product["name"], "product"
        if product.get("category"):
            subject = f"{subject} ({product['category']})"
    elif logo:
        subject, source = (f"the {wordmark} logo" if wordmark else "a logo"), "logo"
    elif faces:
        subject = "a person" if faces == 1 else ("two people" if faces == 2 else f"a group of {faces} people")
        source = "face"
        if label:
            subject += f" with {_article(label)}"
    elif detected:
        subject, source = detected
    elif label and over_text(conf_top[:1], n_raw):
        subject, source = _article(label), evidence_name({"classifier", "detector"} if boxed else {"classifier"})
    elif n_words or (n_raw >= 3 and facts.graphic):
        if n_words >= 12 or n_raw >= 20:
            subject = "a text document"
        elif facts.height > 1.1 * facts.width and n_words >= 3:
            subject = "a poster"
        else:
            subject = "a sign" if n_words >= 2 else "a text graphic"
        source = "ocr"
    elif writing:
        # "photograph showing": "... photograph of ..." is a phrase the enrich stage rejects (_BAD_PHRASE)
        subject = ("a black-and-white photograph" if facts.saturation < 0.04 else "a photograph") + " showing writing"
        source = "ink"
    elif evidence:
        subject, source = _article(evidence), "classifier-weak"
    elif not facts.ok:
        subject, source = "an image", "none"
    elif not facts.graphic:  # a photograph whose subject we cannot name: never "graphic"/"pattern"
        subject = "a black-and-white photograph" if facts.saturation < 0.04 else "a photograph"
        source = "none"
    else:
        subject = "an abstract pattern" if facts.detail > 10 or facts.colour_levels > 100 else "a simple graphic"
        source = "none"
    return subject, source


SUMMARY_FLOOR = 0.03
"""classifier probability a guess needs to be listed in the summary's "Likely contents" (the alt text, title and
caption name a class at >= CONFIDENT). Chosen by bench/summary_floor.py over 0.03-0.25: docs/local-provider.md.
At most CONFIDENT: alt_text takes the named guesses at >= CONFIDENT from this list"""


def named_classes(facts: ImageFacts, idx: VocabIndex | None, *, writing: bool, logo: bool,
                  floor: float = CONFIDENT) -> list[tuple[str, int, float]]:
    """The classifier's guesses the provider may put into words, best first: merged classes (`_merged_top`) at
    >= floor (CONFIDENT for the alt text, title and caption; SUMMARY_FLOOR for the summary's list); none on
    writing OCR could not read when the best is a page's guess (_TEXTY), on a logo, or on a drawing whose best
    class is not backed (`_class_backed`). Below the floor a guess is as often wrong as any (bench/class_floor.py,
    docs/local-provider.md): it is not named anywhere a person reads or a search matches."""
    named = [t for t in _merged_top(facts.top) if t[2] >= floor]
    if writing and named and named[0][0] in _TEXTY:
        return []  # "website", "menu": the classifier's guess for a page; the page is what we can say
    if logo or (facts.graphic and named and not _class_backed(idx, facts, named[0])):
        return []  # the classifier's guess on a drawing ("plectrum", "tool kit") is not its subject
    return named


TEXT_RAW_WORDS = 3
TEXT_CLASS_MIN = 0.6
"""on an image OCR read >= TEXT_RAW_WORDS words in, a class names what it shows only at >= TEXT_CLASS_MIN and when
it is not a page's guess (_TEXTY): the text is what a page, sign or label is ("pill bottle" 27 % for a page scan)"""


def over_text(guesses: list[tuple[str, int, float]], n_raw: int) -> list[tuple[str, int, float]]:
    """The guesses that still name something on an image with text (TEXT_RAW_WORDS, TEXT_CLASS_MIN, _TEXTY)."""
    if n_raw < TEXT_RAW_WORDS:
        return guesses
    return [t for t in guesses if t[2] >= TEXT_CLASS_MIN and t[0] not in _TEXTY]


def alt_text(request, facts: ImageFacts) -> dict[str, Any]:
    pre = _pre(request)
    raw_text, n_raw, _ = _ocr(pre)
    tokens, lines = _ocr_tokens(pre)  # parsed once: the quote, the wordmark and the title read them
    sure = _sure_lines(tokens, lines)  # only text OCR is sure of is quoted (confident_text), whole lines
    text = " ".join(sure)
    n_words = len(text.split())
    faces = _subject_faces(pre, facts)
    vocab = (request.context or {}).get("vocabulary") or []
    try:
        idx = (vocab_index(vocab, with_embeddings=True, renames=(request.context or {}).get("renames"))
               if vocab and facts.top else None)
    except Exception:  # noqa: BLE001 - no text model: class names only
        idx = None
    colour_shares = [(c, s) for c, s in _colors(pre, facts) if s >= 0.1]
    colours = [c for c, _ in colour_shares][:2]
    product = _product(pre)
    visible = _clip(text, _max_len(request.output_schema, "visible_text", 1000))
    emb = _d(pre.get("embedded"))
    # the author's own alt text / title from the file's XMP/IPTC, when it is real words (not "IMG_0042")
    author_alt = _human_text(emb.get("alt_text"))
    author_title = _human_text(emb.get("title"))

    if is_decorative(facts, n_words, faces) and not author_alt and not is_video(pre):  # a video is never decorative
        tone = " and ".join(colours) if colours else "plain"
        return {"alt_text": "", "decorative": True,
                "caption": f"Decorative {tone} background.",
                "title": "Decorative background",
                "summary": f"A {tone} background with no text or distinct subject; it carries no information.",
                "visible_text": "", EVIDENCE: "pixels"}

    writing = unread_writing(pre, facts, n_words, faces)
    logo = is_logo(facts, n_words, n_raw, faces, idx)
    # one pass: the guesses at >= CONFIDENT are the first of those at >= SUMMARY_FLOOR (best first, the same
    # best guess decides whether any is named)
    listed = named_classes(facts, idx, writing=writing, logo=logo, floor=SUMMARY_FLOOR)  # the summary's list
    conf_top = [t for t in listed if t[2] >= CONFIDENT]
    label = _plain_label(conf_top[0][0], conf_top[0][1]) if conf_top else None
    detected = None if logo else _detected_subject(idx, facts, faces, conf_top)
    if detected:
        label = None
    # no class sure on its own and no box either: a class and a large box that name one thing name it together
    agreed = None if conf_top or detected or logo or faces else agreed_class(idx, facts, listed)
    if agreed:
        conf_top, label = [agreed], _plain_label(agreed[0], agreed[1])
    evidence = None if label or detected or facts.graphic else _evidence_subject(idx, facts)
    # a classifier subject is detector-backed too when the subject box's class names it ("Egyptian Mau cat")
    found = subject_detection(facts, faces) if label and conf_top else None
    boxed = agreed is not None or found is not None and (_label_agrees(idx, conf_top[0][1], found[0]) or re.search(
        r"\b" + re.escape(SUBJECT_NOUNS[found[0].label][0]) + r"\b", label or "", re.I) is not None)
    wordmark = _wordmark(text) if logo else ""
    subject, subject_source = _subject(product, faces, label, conf_top, n_raw, n_words, facts, evidence, detected,
                                       boxed, logo=logo, wordmark=wordmark, writing=writing)
    # no colour phrase for people, nor for a black-and-white photograph: its greys are the photo's light and
    # shade, not "a gray background"
    bw_photo = facts.ok and not facts.graphic and facts.saturation < 0.04
    colour_phrase = ("" if faces or bw_photo or subject_source == "ink"
                     else _colour_phrase(colour_shares, facts.figure_neutral))
    base = f"{subject}{colour_phrase}"
    base = base[0].upper() + base[1:]
    alt = base
    limit = _max_len(request.output_schema, "alt_text", 125)
    read_mark = _read_wordmark(tokens, text) if logo and not wordmark else ""
    if subject_source == "ink":
        alt += UNREAD  # never what OCR guessed: nothing it read was sure
    if n_words and not (subject_source == "logo" and wordmark):
        # all of the text, with the colours or without them (the words say more); else the whole lines that fit
        bare = subject[0].upper() + subject[1:] + (UNREAD if subject_source == "ink" else "")
        alt = _with_text([alt, bare] if bare != alt else [alt], sure, limit)
    if author_alt:
        alt = author_alt
    alt = _BAD_PHRASE.sub("", _clip(alt, limit)).strip() or "Untitled image"
    alt = alt[0].upper() + alt[1:]

    # caption: 1-2 sentences; the caption and summary name only guesses with evidence (named_classes), none on
    # a logo ("plectrum"), none over a page's text (over_text)
    # it adds to the alt text (trial 20: its first sentence was the alt text, read twice next to an <img alt>):
    # the kind of image and its shape, then what else it shows or says
    said = over_text(conf_top, n_raw)
    sentences = [_caption_lead(pre, facts, logo, subject)]
    if subject_source == "ink":
        sentences.append("The writing could not be read.")
    elif n_words:
        sentences.append(_said(sure, 120, "Visible text reads", "Visible text includes"))
    elif len(said) > 1:
        sentences.append(f"It may also show {_article(said[1][0])}.")
    caption = _clip(" ".join(filter(None, sentences[:2])), _max_len(request.output_schema, "caption", 400))

    if author_title:
        title_src = author_title
    elif product.get("name"):
        title_src = product["name"]
    elif subject_source == "logo":
        title_src = f"{wordmark} logo" if wordmark else (f'"{read_mark}" logo' if read_mark else "Logo")
    elif subject_source == "ink":
        title_src = "Unreadable writing"
    elif subject.startswith(("a ", "an ")) and label and label in subject:
        title_src = label
    elif n_words:
        title_src = _clip(_first_sure_line(lines, text), 60) or "Text graphic"
    else:
        title_src = re.sub(r"^(an?)\s+", "", subject)
    title_src = title_src or "Image"
    title = _clip(title_src[0].upper() + title_src[1:], _max_len(request.output_schema, "title", 120))
    parts = [base + "."]
    listed = over_text(listed, n_raw)
    if listed:
        parts.append("Likely contents: " + ", ".join(f"{n} ({p:.0%})" for n, _, p in listed[:3]) + ".")
    shown = [d for d in facts.objects if d.label in SUBJECT_NOUNS and d.score >= DET_TAG_MIN and d.area >= DET_MIN_AREA
             and (d.label != "person" or faces or (d.score >= PERSON_SUBJECT_MIN and d.area >= PERSON_SUBJECT_AREA))]
    if shown:
        parts.append("Objects: " + ", ".join(f"{SUBJECT_NOUNS[d.label][0]} ({d.score:.0%})" for d in shown[:3]) + ".")
    if colours:
        parts.append("Dominant colours: " + ", ".join(colours) + ".")
    if faces:
        parts.append(f"Faces detected: {faces}.")
    if n_words:
        parts.append(_said(sure, 200, "Text:", "Text includes:"))
    summary = _clip(" ".join(parts), _max_len(request.output_schema, "summary", 600))
    return {"alt_text": alt, "decorative": False, "caption": caption, "title": title, "summary": summary,
            "visible_text": visible, EVIDENCE: "embedded" if author_alt else with_kind(subject_source, facts)}


def _caption_lead(pre: dict[str, Any], facts: ImageFacts, logo: bool, subject: str) -> str:
    """The caption's first sentence, which the alt text does not say: the kind of image and its shape, of the
    subject (without the colours the alt text names): "Landscape photograph of a tea cup.", "Square graphic of a
    logo on a transparent background.", "A simple graphic, landscape format." """
    kind = "video" if is_video(pre) else {"photo": "photograph", "graphic": "graphic"}.get(medium(facts, logo) or "")
    shape = ""
    if facts.ok and facts.width and facts.height and not is_video(pre):
        ratio = facts.width / facts.height
        shape = "square" if 0.9 <= ratio <= 1.1 else "portrait" if ratio < 1 else "landscape"
    ground = " on a transparent background" if _d(pre.get("image")).get("has_alpha") else ""
    if kind:
        lead = f"{shape} {kind} of {subject}{ground}".strip()
    else:  # the medium is not clear: the shape alone
        lead = f"{subject}{ground}" + (f", {shape} format" if shape else "")
    return lead[0].upper() + lead[1:] + "."


# --- rights ---------------------------------------------------------------------------------------------

_CC_URL = re.compile(r"creativecommons\.org/(?:licenses/([a-z\-]+)/([\d.]+)?|publicdomain/(zero|mark))", re.I)
_CC_NAME = re.compile(r"\b(?:cc|creative\s+commons)[\s\-]*((?:by|attribution)(?:[\s\-]+(?:nc|nd|sa|non[\s\-]?commercial|"
                      r"no[\s\-]?derivatives|share[\s\-]?alike))*)(?:[\s\-]*(\d\.\d))?", re.I)
_PD = re.compile(r"\bcc0\b|cc[\s\-]?zero|public[\s\-]?domain|\bpdm\b|no known copyright", re.I)
_RESTRICTED = re.compile(r"editorial|not for commercial|non[\s\-]?commercial use only|personal use only|"
                         r"rights[\s\-]managed|do not (?:use|publish|reproduce)|\brestricted\b|embargo|no license|"
                         r"not licen[cs]ed", re.I)
_RESERVED = re.compile(r"all rights reserved|©|\(c\)|\bcopyright\b", re.I)
_CREDIT_REQ = re.compile(r"credit (?:required|must|line required)|attribution required|must (?:credit|attribute)|"
                         r"please credit", re.I)


def _cc_name(text: str) -> str | None:
    m = _CC_URL.search(text)
    if m:
        if m.group(3):
            return "CC0 1.0" if m.group(3).lower() == "zero" else "Public Domain Mark"
        return f"CC {m.group(1).upper()}" + (f" {m.group(2)}" if m.group(2) else "")
    m = _CC_NAME.search(text)
    if m:
        parts = re.split(r"[\s\-]+", m.group(1).lower())
        mapped = []
        for p in parts:
            p = {"attribution": "by", "noncommercial": "nc", "non": "nc", "commercial": "",
                 "noderivatives": "nd", "no": "nd", "derivatives": "", "sharealike": "sa", "share": "sa",
                 "alike": ""}.get(p, p)
            if p and p not in mapped:
                mapped.append(p)
        return "CC " + "-".join(x.upper() for x in mapped) + (f" {m.group(2)}" if m.group(2) else "")
    return None


def rights(request) -> dict[str, Any]:
    pre = _pre(request)
    asset = _d(pre.get("asset"))
    emb = _d(pre.get("embedded"))
    exif = _d(pre.get("exif"))
    evidence = [(src, " ".join(str(v).split())) for src, v in (
        ("declared license", asset.get("declared_license")),
        ("usage terms", emb.get("usage_terms")),
        ("license URL", emb.get("license_url")),
        ("copyright notice", emb.get("copyright") or exif.get("copyright")),
        ("uploader notes", asset.get("uploader_notes")),
    ) if v and str(v).strip()]
    creator = emb.get("creator") or exif.get("artist")
    creator = str(creator) if creator else None
    credit_line = emb.get("credit_line")
    copyright_ = emb.get("copyright") or exif.get("copyright")

    licence, src_of_licence, restricted, reserved, pd, credit_req = None, None, None, False, False, False
    for src, text in evidence:
        # a negated grant ("Not CC0 and not public domain", "not CC BY") is no licence: the text restricts use
        pd_found, pd_negated = grants(_PD, text)
        cc_found, cc_negated = grants(_CC_NAME, text)
        negated_grant = pd_negated or cc_negated
        name = _cc_name(text) if not cc_negated else None
        if name and licence is None and not negated_grant:
            licence, src_of_licence = name, src
        if pd_found and licence is None and not negated_grant:
            licence, src_of_licence = "Public domain (CC0)" if "cc0" in text.lower() else "Public domain", src
        if (_RESTRICTED.search(text) or RESTRICTED.search(text) or negated_grant) and restricted is None:
            restricted = (src, text)
        if _RESERVED.search(text) and src != "license URL":
            reserved = True
        if _CREDIT_REQ.search(text):
            credit_req = True
    pd = bool(licence and (licence.startswith("CC0") or licence.startswith("Public")))
    by = bool(licence and re.match(r"CC BY", licence))

    if restricted:
        licensing = f"Restricted: {_clip(restricted[1], 200)} (from {restricted[0]})"
        if licence:
            licensing += f"; also states {licence}"
    elif licence:
        licensing = f"{licence} (from {src_of_licence})"
    elif reserved:
        holder = copyright_ or creator
        licensing = "Restricted: all rights reserved" + (f" ({_clip(str(holder), 120)})" if holder else "")
    else:
        licensing = "unknown"

    must_credit = by or credit_req or (bool(credit_line) and not pd)
    if pd and not credit_req:
        must_credit = False
    credit_text = None
    if must_credit:
        holder = None
        if copyright_:
            holder = re.sub(r"^(?:©|\(c\)|copyright)\s*(?:\d{4}\s*)?", "", str(copyright_), flags=re.I).strip()
        credit_text = str(credit_line or creator or holder or "") or None
        if credit_text and by and licence and licence not in credit_text:
            credit_text = f"{credit_text} / {licence}"
    elif credit_line:
        credit_text = str(credit_line)
    return {"licensing": _clip(licensing, _max_len(request.output_schema, "licensing", 300)),
            "must_display_credit": bool(must_credit),
            "credit_text": _clip(credit_text, 300) if credit_text else None}


# --- schema helpers -------------------------------------------------------------------------------------

def _schema_enum(schema: dict[str, Any]) -> set[str] | None:
    try:
        enum = schema["properties"]["tags"]["items"]["properties"]["tag"].get("enum")
    except (KeyError, TypeError, AttributeError):
        return None
    return set(enum) if enum else None


def _max_items(schema: dict[str, Any], prop: str, default: int) -> int:
    try:
        return int(schema["properties"][prop].get("maxItems", default))
    except (KeyError, TypeError, AttributeError, ValueError):
        return default


def _max_len(schema: dict[str, Any], prop: str, default: int) -> int:
    try:
        return int(schema["properties"][prop].get("maxLength", default))
    except (KeyError, TypeError, AttributeError, ValueError):
        return default
