"""What honest facets cost (issue 17, user trial: facets stopped at 30 values without saying so). One run, one
embedded osmem-server, N synthetic documents whose tags follow a long tail (Zipf over --tags distinct tags, 3-8 per
document, so a facet is cut at 30): the same size-20 keyword request (every document, newest first, exact total),
timed in turns (each round rotates the order, so a shared machine's load falls on all alike) with

    before         the aggregations before this change: a terms aggregation per facet, size 30 (cut silently)
    this           facet_aggs(30): a terms aggregation per facet of FACET_SCAN (1000) values, 30 listed, the rest
                   counted (facets_other)
    this-500       facet_aggs(500): the most a client may ask for (MAX_FACET_SIZE): the same request
    +cardinality   the alternative not taken: terms of 30 plus a cardinality aggregation per facet

and the whole `run_search` answer (keyword, facets on, facet_size 30) beside them. p50/p99 ms and the ratio to
`before`; and what the answer says about the tags facet.

    python bench/facets.py --docs 10000 100000 --queries 100
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import Settings  # noqa: E402
from domain.store.api import FACETS, SearchRequest, facet_aggs, run_search  # noqa: E402
from domain.store.management import read_alias  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402


def documents(index: str, n: int, tags: int):
    import numpy as np

    rng = np.random.default_rng(17)
    weights = 1.0 / np.arange(1, tags + 1) ** 1.1
    weights /= weights.sum()
    statuses = ["auto_applied", "needs_review", "approved", "rejected"]
    for i in range(n):
        picked = rng.choice(tags, size=int(rng.integers(3, 9)), replace=False, p=weights)
        yield {"_index": index, "_id": f"f{i}", "_source": {
            "asset_id": f"f{i}", "title": f"photo {i}", "tags": [f"subject:t{int(t)}" for t in picked],
            "status": statuses[i % 4], "usage_flag": "ok", "family_id": f"f{i}",
            "place": {"country": ["France", "Germany", "Japan"][i % 3]},
            "indexed_at": "2026-11-30T12:00:00.000+00:00"}}


def timed(fns: dict[str, Callable[[], Any]], queries: int) -> dict[str, dict[str, float]]:
    """p50/p99 ms of each function, run in turns (each round in a rotated order), so a shared machine's load falls
    on every variant alike."""
    names = list(fns)
    ms: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        fns[name]()  # warm
    for i in range(queries):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            ms[name].append((time.perf_counter() - t0) * 1000)
    out = {}
    for name, values in ms.items():
        values.sort()
        out[name] = {"p50": round(statistics.median(values), 2),
                     "p99": round(values[min(len(values) - 1, int(0.99 * len(values)))], 2)}
    return out


def measure(url: str, n: int, tags: int, queries: int) -> None:
    from bench.search import bulk_loaded

    settings = Settings().with_overrides(index={"url": url, "server_mode": "serverless", "number_of_replicas": 0,
                                                "index": f"bench-facets-{uuid.uuid4().hex[:6]}",
                                                "request_timeout_s": 120})
    client, load_s = bulk_loaded(settings, lambda index: documents(index, n, tags))
    before = {name: {"terms": {"field": fld, "size": 30}} for name, fld in FACETS.items()}

    def request(aggs):
        return lambda: client.search(index=read_alias(settings), query={"match_all": {}}, size=20,
                                     track_total_hits=True, aggs=aggs, sort=[{"indexed_at": "desc"}])

    cardinality = {**before, **{f"{name}__distinct": {"cardinality": {"field": fld}} for name, fld in FACETS.items()}}
    runs = timed({"before": request(before), "this": request(facet_aggs(30)),
                  "+cardinality": request(cardinality),
                  "run_search (facets, 30)": lambda: run_search(client, settings, SearchRequest(mode="keyword"))},
                 queries)
    answer = run_search(client, settings, SearchRequest(mode="keyword"))
    print(f"\n{n} documents, {tags} distinct tags (loaded in {load_s:.0f} s), {queries} queries each")
    base = runs["before"]
    for name, r in runs.items():
        print(f"  {name:26s} p50 {r['p50']:8.2f} ms ({r['p50'] / base['p50']:.2f}x)   "
              f"p99 {r['p99']:8.2f} ms ({r['p99'] / base['p99']:.2f}x)")
    other = answer["facets_other"]["tags"]
    print(f"  answer: {len(answer['facets']['tags'])} tags listed, facets_truncated {answer['facets_truncated']}, "
          f"facets_other.tags {other}")
    client.indices.delete(index=read_alias(settings), ignore_unavailable=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, nargs="+", default=[10_000])
    ap.add_argument("--tags", type=int, default=2000, help="distinct tags in the library")
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()
    with OsmemStore() as store:
        for n in args.docs:
            measure(store.url, n, args.tags, args.queries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
