"""The KPI app's cost of the end-to-end count check (issue 22): catching up a backlog of N published events
(raw) and their N validated records, with the count check on (it reads raw as well: two KPI events per asset
instead of one) against off (`kpis.flow_enabled=false`, the app as before), on the same broker in one run.

    python bench/kpis_flow.py [--records 1000] [--rounds 1]

Prints records/s for both and the ratio on/off; "done" = every validated record in the running total (and,
with the count check, every publication matched).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.kpis import testing as T  # noqa: E402
from app.producer import AssetPublisher, build_event  # noqa: E402
from app.settings import Settings  # noqa: E402
from streams.embedded import Tansu, free_port  # noqa: E402
from streams.topics import create_topics  # noqa: E402


def run_once(bootstrap: str, n: int, flow_on: bool) -> float:
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    settings = Settings().with_overrides(
        kafka={"bootstrap_servers": bootstrap}, registry={"url": f"mock://bench-{tag}"},
        topics={"prefix": f"b{tag}.", "partitions": 3}, groups={"prefix": f"b{tag}."},
        kpis={"app_id": f"kpis-{tag}", "web_port": port})
    create_topics(settings)
    now = int(time.time() * 1000)
    with AssetPublisher(settings) as pub:
        pub.publish_events([build_event(f"a{i}", f"file:///lib/{i}.jpg", version=1) for i in range(n)])
    T.produce(settings, "validated", [(f"a{i}", T.validated_record(f"a{i}", 1, event_time_ms=now, published_ms=now + 10,
                                                                   title="t", alt_text="a", tags=("color:red",)))
                                      for i in range(n)])
    data = tempfile.mkdtemp(prefix="kpis-bench-")
    env = {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "ASSETSTREAM_TOPICS__PREFIX": f"b{tag}.",
           "ASSETSTREAM_TOPICS__PARTITIONS": "3", "ASSETSTREAM_KPIS__APP_ID": f"kpis-{tag}",
           "ASSETSTREAM_KPIS__WEB_PORT": str(port), "ASSETSTREAM_KPIS__PUBLISH_INTERVAL_S": "0.5",
           "ASSETSTREAM_KPIS__DATA_DIR": data, "ASSETSTREAM_KPIS__FLOW_ENABLED": str(flow_on).lower(),
           "ASSETSTREAM_KAFKA__SESSION_TIMEOUT_MS": "6000", "ASSETSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
           "ASSETSTREAM_REGISTRY__URL": f"mock://bench-{tag}"}

    def done(view: dict) -> bool:
        total = next((s for s in view["snapshots"] if s["window"] == "total"), None)
        flow = view["flow"]
        return bool(total and total["validated_records"] == n
                    and (not flow_on or (flow["published"], flow["validated"]) == (n, n)))

    start = time.monotonic()
    with T.RunningApp(env, port, str(Path(data) / "app.log")) as app:
        T.wait_for(lambda: done(app.view()), 1800, 0.5, "backlog caught up")
        took = time.monotonic() - start
    return n / took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    with Tansu() as broker:
        off, on = [], []
        for _ in range(args.rounds):
            off.append(run_once(broker.bootstrap, args.records, False))
            on.append(run_once(broker.bootstrap, args.records, True))
    best_off, best_on = max(off), max(on)
    print(f"{args.records} assets, best of {args.rounds} (start of the app to caught up, tansu, 2 shared cores)")
    print(f"  count check off : {best_off:8.1f} validated records/s")
    print(f"  count check on  : {best_on:8.1f} validated records/s   ratio on/off {best_on / best_off:.2f}")


if __name__ == "__main__":
    main()
