#!/usr/bin/env python3
"""Head-of-line blocking (issue 16.16): good assets' latency through the real preprocess stage when a few URLs are
slow-loris origins, with in-place retries vs retry topics (runner.retry_mode), every baseline in the same run.

    python bench/retry.py [--assets 300] [--slow-pct 5] [--rate 20] [--concurrency N] [--fetch-timeout 2]
                          [--first-attempt-timeout 0.5] [--repeat 1] [--skip-slow-baselines]

A loopback HTTP server started here serves small JPEGs (good) and slow-loris responses (headers, then one byte
every 0.3 s: every attempt ends at preprocess.fetch_timeout_s as a transient failure). Assets are published at a
steady rate to an embedded tansu broker and worked by one preprocess worker (StageRunner, thread pool,
runner.concurrency=--concurrency or the stage's default, default retry_max_attempts=5). Latency of an asset = its
`preprocessed` record's timestamp minus the time it was published. Five runs: clean (no slow URLs) in each mode,
then the mixed set in each mode, and the mixed set with retry topics but no first-attempt cut
(preprocess.first_attempt_timeout_s=0: every attempt may take the whole fetch timeout). The fetch limits are the
defaults scaled by 1/10 (fetch_timeout_s 20 -> 2, first_attempt_timeout_s 5 -> 0.5) so a run takes seconds.
Goal: good assets' p99 with slow URLs mixed in within 2x of the clean run (retry_mode=topic).
On a shared machine one run's p99 moves with other load: `--repeat N` does the runs N times, interleaved (round
after round of every run), and reports each run's median figures and the median over the rounds of its p99 / the
clean in-place p99 of the same round, with every round's ratio; `--skip-slow-baselines` leaves out the two long
runs (mixed set in place, and without the cut) that are there to show what the retry topics and the cut remove.
OCR, faces and NSFW are off and the images are 320x240, so the stage's own CPU cost stays small on a shared
machine: the figure is about waiting, not about decoding.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from app.producer import AssetPublisher, build_event  # noqa: E402
from app.settings import Settings  # noqa: E402
from consumers.preprocess.stage import PreprocessStage  # noqa: E402
from streams.embedded import Tansu  # noqa: E402
from streams.runner import StageRunner  # noqa: E402
from streams.topics import create_topics  # noqa: E402


def jpeg(seed: int) -> bytes:
    rnd = random.Random(seed)
    img = Image.new("RGB", (320, 240), tuple(rnd.randint(0, 255) for _ in range(3)))
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rnd.randint(0, 300), rnd.randint(0, 220)
        d.rectangle([x, y, x + rnd.randint(5, 60), y + rnd.randint(5, 60)], fill=tuple(rnd.randint(0, 255) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


class Origin:
    """/good/N: a JPEG; /slow/N: a slow-loris (headers at once, then a byte every 0.3 s for up to 60 s)."""

    def __init__(self) -> None:
        images = [jpeg(i) for i in range(16)]
        origin = self
        self.good_aborted = 0
        stop = threading.Event()
        self.stop_event = stop

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                kind, _, n = self.path.strip("/").partition("/")
                body = images[int(n) % len(images)]
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "good":
                    try:
                        self.wfile.write(body)
                    except OSError:  # the client closed first: counted (and printed per run), not a traceback
                        origin.good_aborted += 1
                    return
                try:
                    for i in range(200):
                        if stop.wait(0.3):
                            return
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                except OSError:
                    return  # the client gave up: what the fetch deadline is for

        class Server(ThreadingHTTPServer):
            # listen() backlog: the default 5 overflows when 16 fetch threads connect at once, and a dropped SYN
            # is sent again after TCP's 1 s timeout, which the bench would count against the pipeline
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop_event.set()
        self.server.shutdown()


def settings_for(bootstrap: str, mode: str, fetch_timeout: float, first_timeout: float,
                 concurrency: int | None) -> Settings:
    prefix = f"bench-retry-{mode}-{uuid.uuid4().hex[:6]}."
    return Settings.model_validate({
        "kafka": {"bootstrap_servers": bootstrap, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "topics": {"prefix": prefix, "partitions": 3}, "groups": {"prefix": prefix},
        "registry": {"url": "mock://bench-retry", "allow_in_process": True},
        "runner": {"metrics_port": -1, "retry_mode": mode, "retry_topic_delays_s": [2.0, 10.0, 30.0, 60.0],
                   **({"concurrency": concurrency} if concurrency else {})},
        "preprocess": {"allow_private_networks": True, "fetch_timeout_s": fetch_timeout,
                       "first_attempt_timeout_s": first_timeout, "ocr_enabled": False,
                       "faces_enabled": False, "nsfw_enabled": False},
    })


def one_run(bootstrap: str, origin: Origin, mode: str, n: int, slow_pct: float, rate: float,
            fetch_timeout: float, first_timeout: float, concurrency: int | None) -> dict[str, float]:
    s = settings_for(bootstrap, mode, fetch_timeout, first_timeout, concurrency)
    create_topics(s)
    rnd = random.Random(7)  # the same assets are slow in every run
    slow = set(rnd.sample(range(n), int(n * slow_pct / 100))) if slow_pct else set()
    events = [build_event(f"a-{i:05d}", f"http://127.0.0.1:{origin.port}/{'slow' if i in slow else 'good'}/{i}",
                          version=1) for i in range(n)]
    good = {e["asset_id"] for i, e in enumerate(events) if i not in slow}

    runner = StageRunner(PreprocessStage(s), s)
    worker = threading.Thread(target=runner.run, daemon=True)
    worker.start()
    out_topic = s.topics.name("preprocessed")
    reader = Consumer({**s.kafka.client_config(), "group.id": f"r-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
                       "enable.auto.commit": False})
    reader.assign([TopicPartition(out_topic, p, 0) for p in range(s.topics.partitions)])
    # let the worker join its group before the clock starts
    while not runner.assigned:
        time.sleep(0.1)
    time.sleep(1.0)

    published: dict[str, float] = {}
    arrived: dict[str, float] = {}

    def publish() -> None:
        with AssetPublisher(s) as pub:
            start = time.time()
            for i, ev in enumerate(events):
                wait = start + i / rate - time.time() if rate > 0 else 0
                if wait > 0:
                    time.sleep(wait)
                published[ev["asset_id"]] = time.time() * 1000
                pub.publish_events([ev])

    pub_thread = threading.Thread(target=publish, daemon=True)
    pub_thread.start()
    deadline = time.monotonic() + (n / rate if rate > 0 else 0) + 300
    while not good <= set(arrived) and time.monotonic() < deadline:
        msg = reader.poll(0.2)
        if msg is None or msg.error():
            continue
        arrived.setdefault(msg.key().decode(), msg.timestamp()[1])
    pub_thread.join()
    reader.close()
    runner.stop()
    worker.join(60)
    retried = len(good & retried_keys(s)) if mode == "topic" else 0
    lat = sorted((arrived[k] - published[k]) / 1000 for k in good if k in arrived and k in published)
    missing = len(good) - len(lat)
    return {"p50": statistics.median(lat), "p99": lat[max(0, int(len(lat) * 0.99) - 1)], "max": lat[-1],
            "good": len(good), "missing": missing, "good_retried": retried}


def retried_keys(s: Settings) -> set[str]:
    """Asset ids that went through the raw retry topic (a good asset there had its first attempt cut)."""
    topic = s.topics.retry_name("raw")
    c = Consumer({**s.kafka.client_config(), "group.id": f"r-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(s.topics.partitions)])
    keys, quiet = set(), time.monotonic() + 3.0
    while time.monotonic() < quiet:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            keys.add(msg.key().decode())
            quiet = time.monotonic() + 1.0
    c.close()
    return keys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=300)
    ap.add_argument("--slow-pct", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=20.0, help="assets published per second; 0 = all at once")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="runner.concurrency (threads of the worker); default: the stage's own (PreprocessStage: 16)")
    ap.add_argument("--fetch-timeout", type=float, default=2.0, help="preprocess.fetch_timeout_s")
    ap.add_argument("--first-attempt-timeout", type=float, default=0.5, help="preprocess.first_attempt_timeout_s")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of every run, interleaved; medians reported")
    ap.add_argument("--skip-slow-baselines", action="store_true",
                    help="leave out the mixed in-place and the 'no cut' runs (the long ones)")
    args = ap.parse_args()
    origin = Origin()
    first = args.first_attempt_timeout
    slow = f"{args.slow_pct:g}% slow"
    runs = [("clean, inplace", "inplace", 0.0, first), ("clean, topic", "topic", 0.0, first),
            (f"{slow}, inplace", "inplace", args.slow_pct, first),
            (f"{slow}, topic, no cut", "topic", args.slow_pct, 0.0), (f"{slow}, topic", "topic", args.slow_pct, first)]
    if args.skip_slow_baselines:
        runs = [r for r in runs if r[0] not in (f"{slow}, inplace", f"{slow}, topic, no cut")]
    rounds: list[dict[str, dict[str, float]]] = []
    with Tansu() as broker:
        one_run(broker.bootstrap, origin, "inplace", 40, 0.0, args.rate, args.fetch_timeout, first,
                args.concurrency)  # warm-up, not counted
        for i in range(args.repeat):
            results: dict[str, dict[str, float]] = {}
            for label, mode, pct, cut in runs:
                results[label] = one_run(broker.bootstrap, origin, mode, args.assets, pct, args.rate,
                                         args.fetch_timeout, cut, args.concurrency)
                print(f"  done: round {i + 1}, {label}: {results[label]} (load {os.getloadavg()[0]:.2f}, good "
                      f"responses the client closed early so far: {origin.good_aborted})", flush=True)
            rounds.append(results)
    origin.close()
    rate = f"{args.rate:g}/s" if args.rate > 0 else "once (all published at once)"
    print(f"\n{args.assets} assets at {rate}, {args.slow_pct:g}% slow-loris URLs, fetch_timeout_s="
          f"{args.fetch_timeout:g}, first_attempt_timeout_s={args.first_attempt_timeout:g} ('no cut': 0), one "
          f"preprocess worker ({args.concurrency or PreprocessStage.concurrency} threads"
          f"{'' if args.concurrency else ', the default'}), retry_max_attempts=5"
          + (f"; medians of {args.repeat} interleaved rounds" if args.repeat > 1 else ""))
    print(f"{'run':<28}{'good p50 s':>12}{'good p99 s':>12}{'good max s':>12}{'p99 / clean':>13}{'missing':>9}"
          f"{'good retried':>14}" + ("  p99 / clean per round" if args.repeat > 1 else ""))
    for label, *_ in runs:
        rs = [r[label] for r in rounds]
        ratios = [r[label]["p99"] / r["clean, inplace"]["p99"] for r in rounds]
        med = {k: statistics.median(x[k] for x in rs) for k in ("p50", "p99", "max")}
        print(f"{label:<28}{med['p50']:>12.3f}{med['p99']:>12.3f}{med['max']:>12.3f}"
              f"{statistics.median(ratios):>12.2f}x{sum(x['missing'] for x in rs):>9}"
              f"{sum(x['good_retried'] for x in rs):>14}"
              + ("  " + " ".join(f"{x:.2f}" for x in ratios) if args.repeat > 1 else ""))


if __name__ == "__main__":
    main()
