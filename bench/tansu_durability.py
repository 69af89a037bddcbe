"""Reproduction of a tansu durability defect: records a producer saw acknowledged (idempotent, acks=all) are
missing after the broker on S3 storage (SeaweedFS) restarts while the producer is producing.

    python bench/tansu_durability.py [--signal term|kill] [--restarts 3] [--rate 100]

Prints, per signal, how many records were acknowledged and how many of those a consumer reading the topic from
the start cannot find. See docs/tansu-defect.md.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from streams.embedded import SeaweedS3, Tansu  # noqa: E402


def stop(broker: Tansu, how: str) -> None:
    if how == "kill":
        broker.stop()  # the project's stop: SIGKILL
        return
    broker.proc.send_signal(signal.SIGTERM)
    broker.proc.wait(30)
    broker.proc = None


def run(how: str, restarts: int, rate: float) -> tuple[int, int]:
    s3 = SeaweedS3().start()
    client = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
                          aws_secret_access_key=s3.secret_key, region_name="us-east-1")
    for _ in range(100):
        try:
            client.create_bucket(Bucket="tansu")
            break
        except Exception:  # noqa: BLE001 - S3 still starting
            time.sleep(0.3)
    broker = Tansu(storage="s3://tansu/", env=s3.tansu_env()).start()
    conf = {"bootstrap.servers": broker.bootstrap}
    topic = f"durability-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    acked: set[bytes] = set()
    done = threading.Event()

    def produce() -> None:
        p = Producer({**conf, "enable.idempotence": True, "acks": "all", "message.timeout.ms": 60000})
        n = 0
        while not done.is_set():
            p.produce(topic, key=f"k{n % 6}".encode(), value=f"v{n}".encode(),
                      on_delivery=lambda err, msg: err is None and acked.add(msg.value()))
            p.poll(0)
            n += 1
            time.sleep(1 / rate)
        p.flush(60)

    t = threading.Thread(target=produce)
    t.start()
    try:
        for _ in range(restarts):
            time.sleep(1.5)
            stop(broker, how)
            time.sleep(0.5)
            broker.start()
        time.sleep(1.5)
    finally:
        done.set()
        t.join(90)
    c = Consumer({**conf, "group.id": f"check-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    seen: set[bytes] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not acked <= seen:
        seen.update(m.value() for m in c.consume(500, 0.5) if not m.error())
    c.close()
    broker.stop()
    s3.stop()
    return len(acked), len(acked - seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--signal", choices=["term", "kill", "both"], default="both")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    for how in (("term", "kill") if args.signal == "both" else (args.signal,)):
        for r in range(args.rounds):
            acked, missing = run(how, args.restarts, args.rate)
            print(f"SIG{how.upper():4} round {r + 1}: {args.restarts} restarts, {acked} acknowledged, "
                  f"{missing} missing", flush=True)


if __name__ == "__main__":
    main()
