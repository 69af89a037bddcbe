"""Index sink throughput vs a direct `helpers.bulk` of the same documents into the same store, in one run.

    python bench/index.py                      # starts its own osmem-server
    python bench/index.py --url http://127.0.0.1:9200 --server-mode stack --docs 20000

Sink: IndexSink.process_batch over runner-sized batches of ValidatedAsset records (includes building the
documents from the records, external versioning, per-item result mapping and metrics).
Direct: elasticsearch.helpers.bulk of the already-built documents (built outside the timer), same
`_id`/external version, same chunk size. Each round writes into fresh indices with the same mappings.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import helpers  # noqa: E402

from domain.store.client import make_client  # noqa: E402
from consumers.index.document import document_from_validated  # noqa: E402
from domain.store.management import ensure_index, read_alias, write_alias  # noqa: E402
from consumers.index.sink import IndexSink  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402
from tests.store_support import as_items, validated_asset  # noqa: E402
from app.settings import Settings  # noqa: E402


def _store_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) the store process has used so far (0 when it is not ours)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="an existing store (default: start osmem-server)")
    ap.add_argument("--server-mode", default="serverless", choices=["stack", "serverless"])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500, help="records per process_batch call / bulk chunk")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    store = None
    url = args.url
    if url is None:
        store = OsmemStore().start()
        url = store.url
    try:
        values = [validated_asset(f"bench-{i:06d}", 1 + i % 7, title=f"Product photo {i} of a red running shoe")
                  for i in range(args.docs)]
        items = as_items(values)
        built = [document_from_validated(v) for v in values]
        probe = IndexSink(Settings().with_overrides(index={"url": url, "server_mode": args.server_mode}))
        t0 = time.perf_counter()
        for pos, (value, _ctx) in enumerate(items):
            probe._prepare(pos, *document_from_validated(value))
        print(f"sink client-side CPU cost (record -> document -> bulk lines, without the text vector): "
              f"{(time.perf_counter() - t0) / len(items) * 1e6:.0f} us/doc")
        probe.close()
        sink_rates, direct_rates, sink_cpu, direct_cpu = [], [], [], []
        pid = store.proc.pid if store is not None and store.proc is not None else None
        for rnd in range(args.rounds):
            base = f"bench-{uuid.uuid4().hex[:6]}"
            settings = Settings().with_overrides(index={"url": url, "server_mode": args.server_mode,
                                                        "index": f"{base}-sink", "number_of_replicas": 0,
                                                        "bulk_max_actions": args.batch})
            direct_settings = settings.with_overrides(index={"index": f"{base}-direct"})
            sink = IndexSink(settings)
            client = make_client(settings)
            ensure_index(sink.client, settings)
            ensure_index(client, direct_settings)
            dest = write_alias(direct_settings)

            # interleave the two writers batch by batch (alternating which goes first) so that load from
            # other processes on the machine hits both equally
            failures, errors, sink_s, direct_s = 0, [], 0.0, 0.0
            cpu = {"sink": 0.0, "direct": 0.0}
            for k, start in enumerate(range(0, len(items), args.batch)):
                batch = items[start:start + args.batch]
                actions = [{"_op_type": "index", "_index": dest, "_id": doc_id, "version": version,
                            "version_type": "external", "_source": body}
                           for doc_id, version, body in built[start:start + args.batch]]
                for which in (("sink", "direct") if k % 2 == 0 else ("direct", "sink")):
                    c0 = time.process_time() + _store_cpu(pid)
                    t0 = time.perf_counter()
                    if which == "sink":
                        failures += sum(r is not None for r in sink.process_batch(batch))
                        sink_s += time.perf_counter() - t0
                    else:
                        _, errs = helpers.bulk(client, actions, chunk_size=args.batch,
                                               max_chunk_bytes=100 * 1024 * 1024, raise_on_error=False)
                        errors += errs
                        direct_s += time.perf_counter() - t0
                    cpu[which] += time.process_time() + _store_cpu(pid) - c0

            client.indices.refresh(index=[read_alias(settings), read_alias(direct_settings)])
            n_sink = client.count(index=read_alias(settings))["count"]
            n_direct = client.count(index=read_alias(direct_settings))["count"]
            assert failures == 0 and not errors and n_sink == n_direct == args.docs, (failures, errors, n_sink,
                                                                                       n_direct)
            sink_rates.append(args.docs / sink_s)
            direct_rates.append(args.docs / direct_s)
            line = (f"round {rnd + 1}: sink {sink_rates[-1]:6.0f} docs/s   direct helpers.bulk "
                    f"{direct_rates[-1]:6.0f} docs/s   ratio {sink_rates[-1] / direct_rates[-1]:.2f}")
            if pid is not None:
                sink_cpu.append(args.docs / cpu["sink"])
                direct_cpu.append(args.docs / cpu["direct"])
                line += (f"   | per CPU-second (client + store): sink {sink_cpu[-1]:6.0f} direct "
                         f"{direct_cpu[-1]:6.0f} ratio {sink_cpu[-1] / direct_cpu[-1]:.2f}")
            print(line, flush=True)
            client.indices.delete(index=f"{base}-*")
            sink.close()
            client.close()
        s, d = statistics.median(sink_rates), statistics.median(direct_rates)
        ratio = statistics.median(a / b for a, b in zip(sink_rates, direct_rates))
        print(f"median over {args.rounds} rounds, {args.docs} docs, batch {args.batch}: sink {s:.0f} docs/s, "
              f"direct {d:.0f} docs/s, median per-round ratio {ratio:.2f} (goal >= 0.80)")
        if sink_cpu:
            cratio = statistics.median(a / b for a, b in zip(sink_cpu, direct_cpu))
            print(f"per CPU-second (client + store, insensitive to other load on the machine): sink "
                  f"{statistics.median(sink_cpu):.0f}, direct {statistics.median(direct_cpu):.0f} docs/CPU-s, "
                  f"median per-round ratio {cratio:.2f}")
    finally:
        if store is not None:
            store.stop()


if __name__ == "__main__":
    main()
