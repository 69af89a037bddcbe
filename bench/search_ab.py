"""Search latency, old code against this tree's, in one process (issue 17, session 18): a shared machine's load
moves absolute figures by 2-5x from one minute to the next, so the two are interleaved query by query (which goes
first alternating) over one store and one index, and compared as ratios; each pair's whole answers (hits, scores,
snippets, totals, facets) are compared too.

    python bench/search_ab.py --base 014bdba --docs 100000 --queries 104 --modes hybrid
    python bench/search_ab.py --base HEAD~1 --url http://127.0.0.1:9200 --index lat --no-load   # an index loaded before
    python bench/search_ab.py --base HEAD~1 --request '{"page": 2, "facets": true}'

The old code is `domain/store/search.py` and `domain/store/api.py` at `--base` (git show), loaded as other modules
(the old api.py importing the old search.py); everything else (the client, the vector cache, the vocabulary) is
this tree's and shared. Documents: bench/search.py's synthetic ones (`synthetic_docs`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.search import QUERIES, bulk_loaded, synthetic_docs  # noqa: E402
from domain.store import api as new_api  # noqa: E402
from domain.store.client import make_client  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402


def old_api(base: str) -> types.ModuleType:
    """domain/store/api.py at `base`, importing domain/store/search.py at `base` (both as other module names)."""
    def source(path: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{base}:{path}"], capture_output=True, text=True,
                              check=True).stdout

    modules = {}
    for name, path, text in (("bench_ab_old_search", "domain/store/search.py", source("domain/store/search.py")),
                             ("bench_ab_old_api", "domain/store/api.py", source("domain/store/api.py").replace(
                                 "from domain.store.search import", "from bench_ab_old_search import"))):
        module = types.ModuleType(name)
        module.__file__ = f"{base}:{path}"
        sys.modules[name] = module
        exec(compile(text, module.__file__, "exec"), module.__dict__)
        modules[name] = module
    return modules["bench_ab_old_api"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)]


def compare(client, settings, old, mode: str, queries: int, request: dict) -> dict[str, float]:
    """Old and new run_search on the same queries, alternating which goes first; ms and answers compared."""
    for api in (old, new_api):  # warm: the vector cache, the models
        api.run_search(client, settings, api.SearchRequest(query="cat", mode=mode, size=10, facets=False))
    times: dict[str, list[float]] = {"old": [], "new": []}
    differing = ranked_differing = 0
    examples: list[str] = []
    for i in range(queries):
        query = QUERIES[i % len(QUERIES)][1]
        answers = {}
        for name, api in (("old", old), ("new", new_api)) if i % 2 else (("new", new_api), ("old", old)):
            t0 = time.perf_counter()
            answers[name] = api.run_search(client, settings, api.SearchRequest(query=query, mode=mode,
                                                                               **{"size": 10, **request}))
            times[name].append((time.perf_counter() - t0) * 1000)
        differing += json.dumps(answers["old"], sort_keys=True, default=str) != \
            json.dumps(answers["new"], sort_keys=True, default=str)
        ranked = {k: ([h.get("asset_id") for h in a.get("hits") or []], a.get("total")) for k, a in answers.items()}
        if ranked["old"] != ranked["new"]:  # other hits, order or total (not only scores)
            ranked_differing += 1
            if len(examples) < 3:
                examples.append(f"{query!r}: old {ranked['old']} new {ranked['new']}")
    o, n = times["old"], times["new"]
    return {"old_p50_ms": statistics.median(o), "old_p99_ms": percentile(o, 0.99), "old_mean_ms": sum(o) / len(o),
            "new_p50_ms": statistics.median(n), "new_p99_ms": percentile(n, 0.99), "new_mean_ms": sum(n) / len(n),
            "p50_ratio": statistics.median(n) / statistics.median(o), "p99_ratio": percentile(n, 0.99) / percentile(o, 0.99),
            "mean_ratio": sum(n) / sum(o), "per_query_median_ratio": statistics.median(b / a for a, b in zip(o, n)),
            "answers_differing": differing, "hits_or_total_differing": ranked_differing,
            "examples": " | ".join(examples)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the old code's commit (git rev)")
    ap.add_argument("--url", help="a store URL (default: start an embedded osmem store)")
    ap.add_argument("--index", default=None, help="the index name (default: a new one)")
    ap.add_argument("--docs", type=int, default=100_000, help="synthetic documents to load")
    ap.add_argument("--no-load", action="store_true", help="the index is loaded already (--url and --index)")
    ap.add_argument("--queries", type=int, default=104, help="query pairs per mode")
    ap.add_argument("--modes", default="keyword,semantic,hybrid")
    ap.add_argument("--request", default='{"facets": false}', help="more SearchRequest fields, JSON")
    args = ap.parse_args()
    if args.url:
        run(args, args.url)
        return 0
    store = OsmemStore().start()
    try:
        run(args, store.url)
    finally:
        store.stop()
    return 0


def run(args: argparse.Namespace, url: str) -> None:
    from app.settings import Settings

    index = args.index or f"bench-ab-{uuid.uuid4().hex[:6]}"
    settings = Settings().with_overrides(index={
        "url": url, "server_mode": "serverless", "index": index, "number_of_replicas": 0, "vector_mode": "off",
        "vector_scan_limit": max(args.docs, 20000), "request_timeout_s": 120,
        "image_cache_max_docs": max(args.docs, 100_000), "image_scan_limit": max(args.docs, 5000),
        "vector_cache_dir": os.path.join(os.environ.get("TMPDIR", "/tmp"), "assetstream-bench-ab", index)})
    if args.no_load:
        client = make_client(settings)
    else:
        docs = argparse.Namespace(vector_mode="off", image_vectors=True)
        client, load_s = bulk_loaded(settings, lambda alias: synthetic_docs(alias, docs, args.docs))
        print(f"{args.docs} synthetic documents loaded in {load_s:.0f} s")
    old = old_api(args.base)
    for mode in args.modes.split(","):
        got = compare(client, settings, old, mode, args.queries, json.loads(args.request))
        print(f"{mode}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()))


if __name__ == "__main__":
    raise SystemExit(main())
