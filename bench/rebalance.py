"""How long a consumer group takes to split its partitions when a second worker starts, and to take them back
when it stops (SIGTERM) or dies (kill -9), per partition.assignment.strategy, side by side in one run on one
tansu broker, with the production session timeout (45 s, heartbeat 3 s) unless told otherwise.

    python bench/rebalance.py [--session-ms 45000] [--partitions 6] [--limit-s 240] [--no-kill]

Each strategy gets its own topics and group; its workers are real `assetstream worker validate` processes (no
POD_NAME). A phase ends when every worker's last `assigned …` log line shows the expected share of the INPUT
topic (its `-retry` topic is not counted): after a scale-up both workers own input partitions; after a stop
the one left owns all of them. "not within" means the limit passed first (the last assignments are printed).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.embedded import Tansu  # noqa: E402
from tests.kafka_support import REPO, env_for, make_settings, provision  # noqa: E402

STRATEGIES = ("cooperative-sticky", "range")


def inputs(log: Path, topic: str) -> int:
    """Input partitions the worker owns, replaying its `assigned …` / `revoking …` / `partitions lost …` lines
    (with cooperative-sticky an `assigned` line lists only what was added; with range every rebalance revokes
    everything first, so both replay alike)."""
    owned: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        for marker, add in (("runner: validate: assigned ", True), ("runner: validate: revoking ", False),
                            ("runner: validate: partitions lost ", False)):
            if marker in line:
                parts = {p.strip() for p in line.split(marker, 1)[1].split(" (not committing)")[0].split(",")}
                parts = {p for p in parts if p.startswith(f"{topic}[")}
                owned = owned | parts if add else owned - parts
    return len(owned)


class Group:
    def __init__(self, broker: str, strategy: str, args: argparse.Namespace, workdir: Path):
        prefix = f"rb{STRATEGIES.index(strategy)}{os.getpid()}"
        self.settings = make_settings(broker, prefix, topics={"partitions": args.partitions},
                                      kafka={"session_timeout_ms": args.session_ms,
                                             "heartbeat_interval_ms": args.session_ms // 15,
                                             "assignment_strategy": strategy})
        provision(self.settings)
        self.topic = f"{prefix}.enriched"
        self.strategy, self.args, self.workdir = strategy, args, workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.results: list[tuple[str, str]] = []

    def start(self, name: str) -> None:
        env = {k: v for k, v in env_for(self.settings).items() if k != "POD_NAME"}
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "validate"], env=env,
                                            stdout=open(self.workdir / f"{name}.log", "ab"),
                                            stderr=subprocess.STDOUT, cwd=str(REPO))

    def owned(self, name: str) -> int:
        return inputs(self.workdir / f"{name}.log", self.topic)

    def phase(self, label: str, done) -> None:
        started = time.monotonic()
        while time.monotonic() - started < self.args.limit_s and not done():
            time.sleep(0.5)
        took = time.monotonic() - started
        shares = ", ".join(f"{n}: {self.owned(n)}" for n in self.procs if self.procs[n].poll() is None)
        self.results.append((label, f"{took:.0f} s" if done() else f"not within {self.args.limit_s:.0f} s "
                                                                   f"(input partitions {shares})"))

    def run(self) -> None:
        p = self.args.partitions
        self.start("a")
        self.phase("first worker assigned", lambda: self.owned("a") == p)
        self.start("b")
        self.phase("second worker started: both own input", lambda: self.owned("a") > 0 and self.owned("b") > 0)
        self.procs["b"].send_signal(signal.SIGTERM)
        self.procs["b"].wait(60)
        self.phase("second worker SIGTERM: first owns all input", lambda: self.owned("a") == p)
        if not self.args.no_kill:
            self.start("c")
            self.phase("third worker started: both own input", lambda: self.owned("a") > 0 and self.owned("c") > 0)
            self.procs["c"].kill()
            self.procs["c"].wait(10)
            self.phase("third worker kill -9: first owns all input", lambda: self.owned("a") == p)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--session-ms", type=int, default=45000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--limit-s", type=float, default=240)
    ap.add_argument("--no-kill", action="store_true")
    args = ap.parse_args()
    with Tansu() as broker, tempfile.TemporaryDirectory(prefix="bench-rebalance-") as tmp:
        groups = []
        for strategy in STRATEGIES:
            workdir = Path(tmp) / strategy
            workdir.mkdir()
            groups.append(Group(broker.bootstrap, strategy, args, workdir))
        threads = [threading.Thread(target=g.run) for g in groups]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(f"tansu, session.timeout.ms={args.session_ms}, {args.partitions} partitions + {args.partitions} retry "
          "partitions, worker validate")
    print(f"| phase | {' | '.join(STRATEGIES)} | range / cooperative-sticky |")
    print("| --- | --- | --- | --- |")
    for i, (label, _) in enumerate(groups[0].results):
        coop, rng = groups[0].results[i][1], groups[1].results[i][1]
        ratio = (f"{float(rng.split()[0]) / max(1.0, float(coop.split()[0])):.2f}"
                 if not coop.startswith("not") and not rng.startswith("not") else "-")
        print(f"| {label} | {coop} | {rng} | {ratio} |")


if __name__ == "__main__":
    main()
