"""What the queue page's bulk-approval digest costs (issue 15 review fix, branch `bulkids`): the page now lists the
ids "Approve all" would cover (up to review.scan_limit, no `_source`) and posts their sha256, so the approval
approves exactly what the editor confirmed. Against one embedded osmem store holding N needs-review documents:

    python bench/review_queue.py --docs 5000

Baseline, in the same run and process: the reads the queue page made before (a count and the page of rows, what
Index.queue did for a plain status filter), p50 over --repeat loads, interleaved with the others; then the id listing alone, the page as it is
now (Index.queue: count, rows, ids, digest), and the approval's own read (Index.matching, unchanged) for scale. Also the
collapsed queue (one row per family), which already read every asset and whose digest is free.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def p50_ms(fns: dict, repeat: int) -> dict[str, float]:
    """p50 ms of each function, interleaved (one call of each per round) so a busy machine slows all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: round(statistics.median(ts), 1) for name, ts in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    from elasticsearch import helpers

    from app.review.queries import LIST_FIELDS, SORT, Filters, Index, _query, parts
    from app.settings import Settings
    from domain.store.client import make_client
    from domain.store.management import ensure_index, read_alias, write_alias
    from streams.embedded_store import OsmemStore

    store = OsmemStore().start()
    try:
        index = f"bench-rq-{uuid.uuid4().hex[:6]}"
        settings = Settings().with_overrides(index={"url": store.url, "server_mode": "serverless", "index": index,
                                                    "number_of_replicas": 0, "request_timeout_s": 120})
        client = make_client(settings)
        ensure_index(client, settings)
        t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        docs = ({"_index": write_alias(settings), "_id": f"a{i:06d}", "_source": {
            "asset_id": f"a{i:06d}", "status": "needs_review", "title": f"asset {i}",
            "alt_text": f"An image numbered {i}", "reasons": ["confidence 0.62 < 0.7: below the review threshold"],
            "event_time": (t0 + dt.timedelta(seconds=i)).isoformat(), "family_id": f"f{i // 2:06d}",
            "family_size": 2}} for i in range(args.docs))
        helpers.bulk(client, docs, chunk_size=1000)
        client.indices.refresh(index=read_alias(settings))
        idx = Index(client, settings)
        alias, size = read_alias(settings), settings.review.page_size
        plain, collapsed = Filters(), Filters(collapse="1")
        query = _query(parts(plain)[0])

        def before():  # the plain queue's reads before this change
            client.count(index=alias, query=query)
            client.search(index=alias, query=query, sort=SORT, size=size, source_includes=LIST_FIELDS)

        def ids_only():
            client.search(index=alias, query=query, sort=SORT, size=settings.review.scan_limit, source=False)

        assert idx.queue(plain, 1)["selection"] and idx.queue(plain, 1)["total"] == args.docs
        rows = p50_ms({
            "plain queue: reads before (count + page)": before,
            "plain queue: id listing alone (no _source)": ids_only,
            "plain queue: Index.queue now (+ ids, digest)": lambda: idx.queue(plain, 1),
            "approval's read (Index.matching, unchanged)": lambda: idx.matching(plain),
            "collapsed queue: Index.queue now": lambda: idx.queue(collapsed, 1),
        }, args.repeat)
        base = rows["plain queue: reads before (count + page)"]
        print(f"{args.docs} needs-review documents, review.scan_limit {settings.review.scan_limit}, "
              f"p50 of {args.repeat} loads (ms; ratio to the reads before)")
        for name, ms in rows.items():
            print(f"  {name:48s} {ms:8.1f}  {ms / base:6.2f}x")
        client.close()
    finally:
        store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
