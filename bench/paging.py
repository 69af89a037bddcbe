"""Paging one search (issue 17, user trial 3): does `total` (and the facets) stay the same from page to page, and
what does a deeper page cost? This tree vs a baseline tree (e.g. a checkout of the commit before), in one run,
against the same embedded osmem store and the same N synthetic documents (bench/search.py's: library words in
the titles, random unit text vectors, so a query has hundreds of keyword matches and of neighbours above the
relevance floor, and every leg fills its window).

    git worktree add /tmp/before 1c91350 && python bench/paging.py --baseline-tree /tmp/before --docs 10000

Per mode (semantic, hybrid): the distinct totals over pages 1..P (one query, size 20; "1" = stable), the
distinct facet answers, and p50 ms of page 1 and of page P (with this tree a page past index.rrf_window is
empty: its cost is still the whole window's). Each tree's code runs in its own process (the baseline with its
tree first on sys.path), one after the other, after one warm-up query each.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
TREE = Path(os.environ.get("BENCH_TREE") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(TREE))

QUERIES = ("birthday party", "wedding", "coffee cup", "sofa")
MODES = ("semantic", "hybrid")


def settings_for(url: str, index: str, args: argparse.Namespace):
    from app.settings import Settings

    return Settings().with_overrides(index={
        "url": url, "server_mode": "serverless", "index": index, "number_of_replicas": 0, "vector_mode": "off",
        "vector_scan_limit": max(args.docs, 20000), "request_timeout_s": 120, "image_cache_max_docs": args.docs,
        "image_scan_limit": max(args.docs, 5000), "visual_leg": False})


def measure(url: str, index: str, args: argparse.Namespace) -> dict:
    """This process's tree: totals, facets and latency of pages 1..P of each query, per mode."""
    from domain.store.api import SearchRequest, run_search
    from domain.store.client import make_client

    settings = settings_for(url, index, args)
    client = make_client(settings)
    run_search(client, settings, SearchRequest(query="warm", mode="hybrid", size=20))  # loads cache and encoder
    out: dict = {}
    for mode in MODES:
        totals, facets, first, last = [], [], [], []
        for _ in range(args.repeat):
            for q in QUERIES:
                per_query = set()
                for page in range(1, args.pages + 1):
                    t0 = time.perf_counter()
                    a = run_search(client, settings, SearchRequest(query=q, mode=mode, size=20, page=page))
                    ms = (time.perf_counter() - t0) * 1000
                    (first if page == 1 else last if page == args.pages else []).append(ms)
                    per_query.add((a["total"], a.get("total_relation")))
                    facets.append((q, json.dumps(a["facets"], sort_keys=True)))
                totals.append(len(per_query))
        out[mode] = {"distinct_totals_per_query": max(totals),
                     "distinct_facets_per_query": max(sum(1 for f in set(facets) if f[0] == q) for q in QUERIES),
                     "p50_page1_ms": round(statistics.median(first), 1),
                     f"p50_page{args.pages}_ms": round(statistics.median(last), 1)}
    client.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-tree", help="a checkout to compare with (its domain/store code)")
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--pages", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=2, metavar=("URL", "INDEX"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(measure(*args.worker, args)))
        return 0
    from elasticsearch import helpers

    from bench.search import synthetic_docs
    from domain.store.client import make_client
    from domain.store.management import ensure_index, read_alias, write_alias
    from streams.embedded_store import OsmemStore

    store = OsmemStore().start()
    try:
        index = f"bench-paging-{uuid.uuid4().hex[:6]}"
        settings = settings_for(store.url, index, args)
        client = make_client(settings)
        ensure_index(client, settings)
        helpers.bulk(client, synthetic_docs(write_alias(settings), argparse.Namespace(
            vector_mode="off", image_vectors=False), args.docs), chunk_size=1000)
        client.indices.refresh(index=read_alias(settings))
        trees = {"this": str(TREE)} | ({"baseline": args.baseline_tree} if args.baseline_tree else {})
        results = {}
        for name, tree in trees.items():
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", store.url, index, "--docs",
                   str(args.docs), "--pages", str(args.pages), "--repeat", str(args.repeat)]
            env = {**os.environ, "BENCH_TREE": tree, "PYTHONPATH": tree}
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{args.docs} documents, {len(QUERIES)} queries x {args.repeat}, size 20, pages 1..{args.pages}")
        for mode in MODES:
            print(f"\n{mode}")
            this = results["this"][mode]
            base = results.get("baseline", {}).get(mode, {})
            for key, value in this.items():
                b = base.get(key)
                ratio = f"{value / b:.2f}x" if b else ""
                print(f"  {key:28s} baseline {b!s:>8}  this {value!s:>8}  {ratio}")
        print(json.dumps(results))
    finally:
        store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
