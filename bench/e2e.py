"""End to end on the embedded stack (tansu + osmem-server + the four worker processes, local provider):
a steady stream of assets at --rate for --seconds, then a burst; reports raw -> indexed latency
(event_time -> the index document's indexed_at) and the sustained rate.

    python bench/e2e.py [--rate 10] [--seconds 60] [--burst 150]

Goal (issue #7): p99 raw -> indexed < 2 s at 10 assets/s; report the maximum sustained rate.
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw  # noqa: E402

from domain.store.client import make_client  # noqa: E402
from domain.store.management import ensure_index, read_alias  # noqa: E402
from app.embedded_run import EmbeddedRun  # noqa: E402
from app.producer import AssetPublisher  # noqa: E402
from streams.topics import create_topics  # noqa: E402


def make_images(directory: Path, n: int) -> list[Path]:
    """n distinct 640x480 product-like JPEGs (distinct so dedupe does not skip them)."""
    paths = []
    for i in range(n):
        rnd = random.Random(i)
        img = Image.new("RGB", (640, 480), tuple(rnd.randint(180, 255) for _ in range(3)))
        d = ImageDraw.Draw(img)
        for _ in range(rnd.randint(3, 8)):
            x, y = rnd.randint(0, 560), rnd.randint(0, 400)
            box = (x, y, x + rnd.randint(40, 300), y + rnd.randint(40, 300))
            colour = tuple(rnd.randint(0, 255) for _ in range(3))
            (d.ellipse if rnd.random() < 0.5 else d.rectangle)(box, fill=colour)
        path = directory / f"bench-{i:05d}.jpg"
        img.save(path, quality=85)
        paths.append(path)
    return paths


def indexed(es, alias: str, ids: list[str]) -> dict[str, dict]:
    es.indices.refresh(index=alias)
    found = {}
    for i in range(0, len(ids), 500):
        for doc in es.mget(index=alias, ids=ids[i:i + 500], source_includes=["event_time", "indexed_at"])["docs"]:
            if doc.get("found"):
                found[doc["_id"]] = doc["_source"]
    return found


def wait_indexed(es, alias: str, ids: list[str], timeout_s: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = indexed(es, alias, ids)
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def latency_s(doc: dict) -> float:
    t0 = dt.datetime.fromisoformat(doc["event_time"])
    t1 = dt.datetime.fromisoformat(doc["indexed_at"])
    return (t1 - t0).total_seconds()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def hop_latencies(settings, ids: set[str], found: dict[str, dict]) -> dict[str, list[float]]:
    """Per-hop latency from the stage stamps every record carries (read back from `validated`)."""
    import uuid

    from confluent_kafka import Consumer, TopicPartition

    from streams.avro import Serde, topic_names
    from streams.records import to_ms

    names = topic_names(settings)
    serde = Serde.for_settings(settings)
    c = Consumer({**settings.kafka.client_config(), "group.id": uuid.uuid4().hex, "enable.auto.commit": False})
    topic = names["validated"]
    c.assign([TopicPartition(topic, p, 0) for p in c.list_topics(topic, timeout=10).topics[topic].partitions])
    hops: dict[str, list[float]] = {"raw->preprocessed": [], "preprocessed->enriched": [],
                                    "enriched->validated": [], "validated->indexed": []}
    seen: set[str] = set()
    idle = time.monotonic()
    while time.monotonic() - idle < 3 and len(seen) < len(ids):
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        idle = time.monotonic()
        key = m.key().decode()
        if key not in ids or key in seen:
            continue
        seen.add(key)
        v = serde.deserialize("validated", m.value())
        e, pre = v["enriched"], v["enriched"]["pre"]
        t_event = to_ms(pre["asset"]["event_time"])
        t_pre, t_enr, t_val = to_ms(pre["stamp"]["at"]), to_ms(e["stamp"]["at"]), to_ms(v["stamp"]["at"])
        t_idx = int(dt.datetime.fromisoformat(found[key]["indexed_at"]).timestamp() * 1000)
        for hop, a, b in (("raw->preprocessed", t_event, t_pre), ("preprocessed->enriched", t_pre, t_enr),
                          ("enriched->validated", t_enr, t_val), ("validated->indexed", t_val, t_idx)):
            hops[hop].append((b - a) / 1000)
    c.close()
    return hops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--burst", type=int, default=150)
    args = ap.parse_args()
    steady_n = int(args.rate * args.seconds)
    work = Path(tempfile.mkdtemp(prefix="assetstream-e2e-"))
    images = make_images(work, steady_n + args.burst + 3)
    job = EmbeddedRun([str(work)], out_dir=work / "out", show_progress=False)
    settings = job.configure(images).with_overrides(runner={"metrics_port": -1})
    try:
        create_topics(settings)
        es = make_client(settings)
        ensure_index(es, settings)
        alias = read_alias(settings)
        job.start_workers(settings)
        with AssetPublisher(settings) as pub:
            # warm-up: models load, groups join
            warm = [pub.publish_asset(f"warm-{i}", images[i].as_uri())["asset_id"] for i in range(3)]
            t = time.monotonic()
            assert len(wait_indexed(es, alias, warm, 180)) == 3, "warm-up assets were not indexed"
            print(f"warm-up (model load + group joins): {time.monotonic() - t:.1f} s")

            # steady stream
            ids = []
            start = time.monotonic()
            for i in range(steady_n):
                due = start + i / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                ids.append(pub.publish_asset(f"steady-{i}", images[3 + i].as_uri(), wait=False)["asset_id"])
                pub.producer.poll(0)
            pub.flush()
            found = wait_indexed(es, alias, ids, 120)
            lat = [latency_s(d) for d in found.values()]
            hops = hop_latencies(settings, set(ids), found)

            # burst: how fast does the fleet drain a backlog?
            burst_ids = []
            t0 = time.monotonic()
            for i in range(args.burst):
                burst_ids.append(pub.publish_asset(f"burst-{i}", images[3 + steady_n + i].as_uri(),
                                                   wait=False)["asset_id"])
            pub.flush()
            burst_found = wait_indexed(es, alias, burst_ids, 600)
            burst_s = time.monotonic() - t0
    finally:
        job.stop()
    print(f"steady: {steady_n} assets at {args.rate:g}/s for {args.seconds:g} s; indexed {len(found)}/{steady_n}")
    if lat:
        print(f"  raw -> indexed latency: p50 {statistics.median(lat):.2f} s   p90 {pct(lat, 90):.2f} s   "
              f"p99 {pct(lat, 99):.2f} s   max {max(lat):.2f} s   (goal p99 < 2 s)")
        for hop, values in hops.items():
            if values:
                print(f"    {hop:24} p50 {statistics.median(values):.2f} s   p99 {pct(values, 99):.2f} s   "
                      f"max {max(values):.2f} s  (stage stamps)")
    print(f"burst: {args.burst} assets published at once, {len(burst_found)} indexed in {burst_s:.1f} s "
          f"-> sustained {len(burst_found) / burst_s:.1f} assets/s on this machine")


if __name__ == "__main__":
    main()
