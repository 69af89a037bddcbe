"""Reproduction of a tansu group-coordinator defect: a static member (group.instance.id) that goes away keeps its
partitions for ever. Plain confluent-kafka consumers, no assetstream code in the group.

    python bench/tansu_static_members.py [--session-ms 6000] [--watch-s 40]

Two consumers (range assignment, one topic with 4 partitions) join a group and split it; then one closes. A
static member sends no LeaveGroup on close (KIP-345), so the broker must drop it when its session expires and
give its partitions to the other (Apache Kafka does). Printed: the survivor's partitions every 5 s after the close,
for a static group and, as the control, a dynamic one (whose close sends LeaveGroup). See docs/operations.md
#scaling-a-group.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from streams.embedded import Tansu  # noqa: E402


def consumer(bootstrap: str, group: str, instance: str | None, session_ms: int) -> Consumer:
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "partition.assignment.strategy": "range",
            "session.timeout.ms": session_ms, "heartbeat.interval.ms": max(100, session_ms // 6)}
    if instance:
        conf["group.instance.id"] = instance
    c = Consumer(conf)
    c.subscribe([group])
    return c


def poll(consumers: list[Consumer], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for c in consumers:
            c.poll(0.05)


def run(bootstrap: str, static: bool, args: argparse.Namespace) -> list[str]:
    group = f"{'static' if static else 'dynamic'}-{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(group, 4, 1)]).values():
        f.result()
    a = consumer(bootstrap, group, "a" if static else None, args.session_ms)
    b = consumer(bootstrap, group, "b" if static else None, args.session_ms)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (a.assignment() and b.assignment()):
        poll([a, b], 0.5)
    rows = [f"split: survivor {sorted(p.partition for p in a.assignment())}, "
            f"other {sorted(p.partition for p in b.assignment())}"]
    b.close()
    started = time.monotonic()
    while time.monotonic() - started < args.watch_s:
        poll([a], 5)
        rows.append(f"{time.monotonic() - started:3.0f} s after the close: survivor "
                    f"{sorted(p.partition for p in a.assignment())}")
    a.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--watch-s", type=float, default=40)
    args = ap.parse_args()
    with Tansu() as broker:
        for static in (True, False):
            print(f"{'static (group.instance.id)' if static else 'dynamic (control)'}, "
                  f"session.timeout.ms={args.session_ms}:")
            for row in run(broker.bootstrap, static, args):
                print("  " + row, flush=True)


if __name__ == "__main__":
    main()
