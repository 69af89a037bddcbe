"""Text encoder speed and agreement: the numpy encoder as it was (baseline, loaded from git in this same run) vs
this tree's numpy path vs the onnxruntime path (fp32; and int8 dynamic quantization, measured only).

    OMP_THREAD_LIMIT=1 python bench/embed.py                     # baseline = domain/textembed.py at 171394f
    python bench/embed.py --baseline-rev HEAD~3 --repeat 3 --json out.json

Texts: documents built the way the index sink builds them (consumers/index/document.py + embedding_text, with
the bundled vocabulary's tag synonyms): the 24 assets of bench/search.py and one per image of
tests/data/quality/truth.json (subject words as title/alt text, editor tags, its visible text), 10 to 200+
tokens; queries: bench/search.py's 18 and the truth subjects (1-3 words).

Reported per encoder, one thread (the sink runs one embedder per worker process):
  doc ms p50/p99  - one document per call (a sink batch of one)
  docs/s          - sink-shaped calls (bulks of 24, embed(batch_size=8, max_len=256) as add_text_vectors does)
  cpu ms/doc      - the same calls' process CPU time per document; x base = baseline cpu / this cpu (the figure
                    to compare on a shared machine: wall times there move with other people's load)
  cpu ms/q        - one short query per call, process CPU time per query
  query ms p50/p99- one short query per call (what search does)
  min cos         - lowest cosine to the baseline's vector over every text
  top-5 same      - queries whose top-5 documents (cosine over the 24 library documents) equal the baseline's
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# one BLAS thread for the numpy encoders, like onnxruntime's intra_op_num_threads=1 (OpenBLAS ignores
# OMP_THREAD_LIMIT and would start a thread per core); set before numpy loads
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bench.search import LIBRARY, QUERIES  # noqa: E402
from consumers.index.document import document_from_validated  # noqa: E402
from domain import textembed  # noqa: E402
from domain.store.vectors import embedding_text  # noqa: E402
from domain.taxonomy import load_taxonomy  # noqa: E402
from tests.store_support import validated_asset  # noqa: E402

SINK_BULK = 24


def bench_texts() -> tuple[list[str], list[str]]:
    """(documents, queries); the first len(LIBRARY) documents are bench/search.py's library, in order."""
    tax = load_taxonomy()

    def synonyms_of(tag: str) -> list[str]:
        entry = tax.entries.get(tag)
        return list(entry.synonyms) if entry is not None else []

    def doc(value: dict) -> str:
        return embedding_text(document_from_validated(value, synonyms_of=synonyms_of)[2])

    docs = [doc(validated_asset(aid, 1, title=t, alt_text=a, tags=tags, ocr_text="")) for aid, t, a, tags in LIBRARY]
    truth = json.loads((ROOT / "tests/data/quality/truth.json").read_text())["images"]
    queries = [q for _, q, _ in QUERIES]
    for name, t in truth.items():
        tags = [tuple(x.split(":", 1)) for x in t["tags"] + t["ok"][:3] if ":" in x]
        subject = t["subject"] or [Path(name).stem.replace("_", " ")]
        docs.append(doc(validated_asset(Path(name).stem, 1, title=subject[0].capitalize(),
                                        alt_text=f"a photo of {' and '.join(subject[:2])}", tags=tags,
                                        ocr_text=t["text"] or "")))
        queries.append(subject[-1])
    return docs, list(dict.fromkeys(queries))


def baseline_module(rev: str):
    """domain/textembed.py as it was at `rev`, imported as its own module (the same weights package)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:domain/textembed.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "textembed_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("textembed_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Int8:
    """The onnx graph after onnxruntime.quantization.quantize_dynamic (int8 weights, MatMul only): measured
    here to decide whether it is worth shipping; not a run-time path."""

    def __init__(self) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from domain import textembed_onnx as tox

        tmp = Path(tempfile.mkdtemp())
        src = tmp / "fp32.onnx"
        weights = textembed.TextEmbedder("numpy").w  # the onnx embedder does not keep them
        src.write_bytes(tox.build_graph(weights, textembed.N_LAYERS, textembed.N_HEADS, textembed.LN_EPS))
        dst = tmp / "int8.onnx"
        # only the weight GEMMs: the attention MatMuls (scores, context) multiply two activations
        attention = [f"encoder.layer.{i}.attention.self.{n}" for i in range(textembed.N_LAYERS)
                     for n in ("scores", "ctx")]
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=attention, per_channel=True)
        self.enc = textembed.TextEmbedder("numpy")
        self.enc._onnx = tox.OnnxEncoder(str(dst))
        self.enc.backend = "onnx-int8"

    def embed(self, *a, **k):
        return self.enc.embed(*a, **k)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def measure(encoders: dict, docs: list[str], queries: list[str], repeat: int) -> dict[str, dict]:
    """Round-robin: each repeat runs every encoder's pass in turn, so a busy moment on a shared machine hits
    them all alike (the ratios are what to read)."""
    dl = textembed.DOC_MAX_LEN
    t_doc: dict[str, list[float]] = {n: [] for n in encoders}
    t_q: dict[str, list[float]] = {n: [] for n in encoders}
    t_bulk = dict.fromkeys(encoders, 0.0)
    cpu_bulk = dict.fromkeys(encoders, 0.0)
    cpu_q = dict.fromkeys(encoders, 0.0)
    for enc in encoders.values():
        enc.embed(docs[:SINK_BULK], batch_size=8, cache=False, max_len=dl)  # warm
    for _ in range(repeat):
        for name, enc in encoders.items():
            for d in docs:
                t = time.perf_counter()
                enc.embed([d], cache=False, max_len=dl)
                t_doc[name].append((time.perf_counter() - t) * 1000)
            c = time.process_time()
            for q in queries:
                t = time.perf_counter()
                enc.embed([q], cache=False)
                t_q[name].append((time.perf_counter() - t) * 1000)
            cpu_q[name] += time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            for s in range(0, len(docs), SINK_BULK):
                enc.embed(docs[s:s + SINK_BULK], batch_size=8, cache=False, max_len=dl)
            t_bulk[name] += time.perf_counter() - t
            cpu_bulk[name] += time.process_time() - c
    return {name: {"doc_p50_ms": statistics.median(t_doc[name]), "doc_p99_ms": pct(t_doc[name], 99),
                   "docs_per_s": repeat * len(docs) / t_bulk[name],
                   "doc_cpu_ms": cpu_bulk[name] * 1000 / (repeat * len(docs)),
                   "query_cpu_ms": cpu_q[name] * 1000 / (repeat * len(queries)),
                   "query_p50_ms": statistics.median(t_q[name]), "query_p99_ms": pct(t_q[name], 99),
                   "doc_vecs": enc.embed(docs, batch_size=8, cache=False, max_len=dl),
                   "query_vecs": enc.embed(queries, cache=False)} for name, enc in encoders.items()}


def top5(qv: np.ndarray, dv: np.ndarray) -> list[list[int]]:
    return [list(np.argsort(-(dv @ q), kind="stable")[:5]) for q in qv]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-rev", default="171394f", help="git revision of the baseline numpy encoder")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-int8", action="store_true", help="skip the int8-quantized measurement")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    docs, queries = bench_texts()
    tok = textembed.shared_embedder().tok
    lens = sorted(len(tok.encode(d, textembed.DOC_MAX_LEN)) for d in docs)
    print(f"{len(docs)} documents ({lens[0]}-{lens[-1]} tokens, median {statistics.median(lens):.0f}), "
          f"{len(queries)} queries; repeat {args.repeat}; OMP_THREAD_LIMIT={os.environ.get('OMP_THREAD_LIMIT')}")
    encoders = {f"numpy @{args.baseline_rev} (baseline)": baseline_module(args.baseline_rev).TextEmbedder(),
                "numpy (this tree)": textembed.TextEmbedder("numpy"),
                "onnxruntime fp32": textembed.TextEmbedder("onnx")}
    if not args.no_int8:
        encoders["onnxruntime int8 (not shipped)"] = Int8()
    rows = measure(encoders, docs, queries, args.repeat)
    base = next(iter(rows.values()))
    lib = len(LIBRARY)
    base_top = top5(base["query_vecs"], base["doc_vecs"][:lib])
    print(f"{'encoder':32} {'doc ms p50/p99':>15} {'docs/s':>7} {'cpu ms/doc':>10} {'x base':>6} "
          f"{'query ms p50/p99':>16} {'cpu ms/q':>8} {'x base':>6} {'min cos':>8} {'top-5 same':>10}")
    out = {}
    for name, r in rows.items():
        cos = min(float((r["doc_vecs"] * base["doc_vecs"]).sum(1).min()),
                  float((r["query_vecs"] * base["query_vecs"]).sum(1).min()))
        same = sum(a == b for a, b in zip(top5(r["query_vecs"], r["doc_vecs"][:lib]), base_top))
        out[name] = {k: round(v, 3) for k, v in r.items() if not k.endswith("_vecs")} | {
            "min_cos": cos, "top5_same": same, "queries": len(queries),
            "doc_speedup_cpu": base["doc_cpu_ms"] / r["doc_cpu_ms"],
            "query_speedup_cpu": base["query_cpu_ms"] / r["query_cpu_ms"]}
        print(f"{name:32} {r['doc_p50_ms']:6.1f} / {r['doc_p99_ms']:6.1f} {r['docs_per_s']:7.1f} "
              f"{r['doc_cpu_ms']:10.1f} {out[name]['doc_speedup_cpu']:5.2f}x "
              f"{r['query_p50_ms']:6.2f} / {r['query_p99_ms']:6.2f} {r['query_cpu_ms']:8.2f} "
              f"{out[name]['query_speedup_cpu']:5.2f}x {cos:8.5f} {same:4d}/{len(queries)}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
