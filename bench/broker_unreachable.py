"""How long a user waits for "check the broker" when there is none: `topics create`, `audit`, `feedback` and the KPI
app (`streams kpis`) as a user runs them, against a port nothing listens on and against a socket that accepts and
never answers, next to the client call each command waited on before kafka.connect_timeout_s, timed in the same run
on the same addresses (the baseline).

    python bench/broker_unreachable.py [--connect-timeout 10]

Each command is a fresh `python -m app.cli ...` process: its figure includes the interpreter and imports (about 1 s
here); the baseline is the bare client call in this process.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from streams.embedded import free_port  # noqa: E402

COMMANDS = {  # command -> (its arguments, the client call it waited on before: (client kind, seconds))
    "topics create": (["topics", "create"], ("admin", 30.0)),
    "audit": (["audit", "mug-1"], ("consumer", 10.0)),
    "feedback": (["feedback", "mug-1", "--approve", "--editor", "bench", "--no-check"], ("producer", 30.0)),
    "streams kpis": (["streams", "kpis", "--data-dir", tempfile.mkdtemp(prefix="bench-kpis-")], ("admin", 20.0)),
}


def command_seconds(args: list[str], bootstrap: str, connect_timeout: float) -> tuple[float, int, bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env.update({"PYTHONPATH": str(ROOT), "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                "ASSETSTREAM_KAFKA__CONNECT_TIMEOUT_S": str(connect_timeout)})
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    return time.monotonic() - started, res.returncode, f"check the broker at {bootstrap}" in res.stderr


def client_seconds(kind: str, timeout_s: float, bootstrap: str) -> float:
    """The wait the command had before: the client's own metadata request (or flush) with its old timeout."""
    conf = {"bootstrap.servers": bootstrap, "log_level": 0}
    started = time.monotonic()
    if kind == "producer":
        p = Producer({**conf, "acks": "all", "enable.idempotence": True})
        p.produce("bench-feedback", key=b"mug-1", value=b"x")
        p.flush(timeout_s)
    else:
        client = AdminClient(conf) if kind == "admin" else Consumer({**conf, "group.id": "bench"})
        try:
            client.list_topics(timeout=timeout_s)
        except KafkaException:
            pass
        if kind == "consumer":
            client.close()
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect-timeout", type=float, default=10.0, help="kafka.connect_timeout_s for the commands")
    args = ap.parse_args()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    cases = {"nothing listens": f"127.0.0.1:{free_port()}", "accepts, never answers": f"127.0.0.1:"
             f"{silent.getsockname()[1]}"}
    print(f"kafka.connect_timeout_s = {args.connect_timeout:g}")
    print(f"{'case':24} {'command':14} {'before (client wait)':>21} {'now (command)':>14} {'ratio':>7}  message")
    for case, bootstrap in cases.items():
        for name, (cli_args, (kind, old_timeout)) in COMMANDS.items():
            before = client_seconds(kind, old_timeout, bootstrap)
            now, code, says = command_seconds(cli_args, bootstrap, args.connect_timeout)
            print(f"{case:24} {name:14} {before:20.1f}s {now:13.1f}s {before / now:6.1f}x  exit {code}, "
                  f"{'names the broker' if says else 'NO broker message'}")
    silent.close()


if __name__ == "__main__":
    main()
