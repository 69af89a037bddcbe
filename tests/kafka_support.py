"""Helpers for tests that talk to the real broker: settings, a runner in a thread, reading a topic."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.avro import Serde, topic_names
from streams.runner import StageRunner
from app.settings import Settings
from streams.topics import create_topics

REPO = Path(__file__).resolve().parent.parent


def make_settings(broker: str, prefix: str, **overrides: dict[str, Any]) -> Settings:
    """Settings for one test: its own topic prefix and groups, fast group joins (tansu), no metrics port."""
    base = {
        "kafka": {"bootstrap_servers": broker, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "topics": {"prefix": f"{prefix}.", "partitions": 3},
        "groups": {"prefix": f"{prefix}."},
        "registry": {"url": "mock://assetstream-tests", "allow_in_process": True},
        "runner": {"metrics_port": -1, "retry_base_delay_s": 0.05, "retry_max_delay_s": 0.5,
                   "retry_topic_delays_s": [0.05, 0.2, 0.5], "drain_timeout_s": 10},
    }
    for section, values in overrides.items():
        base.setdefault(section, {}).update(values)
    return Settings.model_validate(base)


def env_for(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for worker subprocesses."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_THREAD_LIMIT": "1"}
    flat = settings.model_dump(mode="json", by_alias=True, exclude_none=True)
    for section, values in flat.items():
        if not isinstance(values, dict):
            continue
        for key, val in values.items():
            if isinstance(val, (dict, list)) or val == "**********":
                continue
            env[f"ASSETSTREAM_{section.upper()}__{key.upper()}"] = str(val).lower() if isinstance(val, bool) else str(val)
    return env


def provision(settings: Settings) -> None:
    create_topics(settings)


class RunnerThread:
    """A StageRunner in a background thread, stopped (drained) on exit."""

    def __init__(self, runner: StageRunner):
        self.runner = runner
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> StageRunner:
        self.thread.start()
        return self.runner

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "runner did not stop"
        if self.error:
            raise self.error


def read_topic(settings: Settings, logical: str, expect: int, timeout_s: float = 40.0,
               decode: bool = True, distinct_keys: bool = False) -> list[dict[str, Any]]:
    """Read a topic from the beginning until `expect` records (or, with distinct_keys, `expect` different
    keys) arrived, or time out; returns dicts with key, value (decoded Avro), headers, partition, offset.
    `logical` may also be a full topic name (a retry topic: decode=False)."""
    c, partitions, as_dict = _reader(settings, logical, decode)
    c.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in partitions])
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        def count() -> int:
            return len({g["key"] for g in got}) if distinct_keys else len(got)

        while count() < expect and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            got.append(as_dict(msg))
        # linger briefly to catch unexpected extra records (duplicates)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            msg = c.poll(0.1)
            if msg is not None and not msg.error():
                got.append(as_dict(msg))
    finally:
        c.close()
    return got


def read_to_end(settings: Settings, logical: str, decode: bool = True, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every record the topic holds now, read from the beginning to the end of each partition (as read_topic
    returns them). For what a worker left once it has stopped (its outputs are flushed on stop: nothing more can
    arrive), so a test asserting that nothing is there waits for the broker's answer, not for a timeout."""
    c, partitions, as_dict = _reader(settings, logical, decode, {"enable.partition.eof": True})
    c.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in partitions])
    open_partitions = {tp.partition for tp in partitions}
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while open_partitions:
            assert time.monotonic() < deadline, f"{logical}: partitions {open_partitions} never reached their end"
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(msg.partition())
                continue
            got.append(as_dict(msg))
    finally:
        c.close()
    return got


def _reader(settings: Settings, logical: str, decode: bool, extra: dict[str, Any] | None = None):
    """(a consumer in its own group, the topic's partitions, msg -> the dict read_topic returns)."""
    names = topic_names(settings)
    names.setdefault(logical, logical)
    topic = names[logical]
    serde = Serde.for_settings(settings)
    c = Consumer({**settings.kafka.client_config(), "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, **(extra or {})})
    md = c.list_topics(topic, timeout=10).topics[topic]
    partitions = [TopicPartition(topic, p) for p in md.partitions]

    def as_dict(msg) -> dict[str, Any]:
        return {"key": msg.key().decode() if msg.key() else None,
                "value": serde.deserialize(logical, msg.value()) if decode else msg.value(),
                "headers": dict(msg.headers() or []), "partition": msg.partition(),
                "offset": msg.offset(), "timestamp_ms": msg.timestamp()[1]}
    return c, partitions, as_dict


def committed(settings: Settings, group: str, logical: str) -> dict[int, int]:
    names = topic_names(settings)
    names.setdefault(logical, logical)  # or a full topic name
    c = Consumer({**settings.kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        md = c.list_topics(names[logical], timeout=10).topics[names[logical]]
        tps = c.committed([TopicPartition(names[logical], p) for p in md.partitions], timeout=10)
        return {tp.partition: max(0, tp.offset) for tp in tps}  # no commit yet (-1001) counts as 0
    finally:
        c.close()


def wait_committed(settings: Settings, group: str, logical: str, at_least: int, timeout_s: float = 15.0) -> int:
    """Wait until the group's committed offsets on a topic add up to `at_least` (or time out); the total."""
    deadline = time.monotonic() + timeout_s
    while (total := sum(committed(settings, group, logical).values())) < at_least and time.monotonic() < deadline:
        time.sleep(0.3)
    return total


def start_worker(settings: Settings, stage: str, log_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "worker", stage], env=env_for(settings),
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, cwd=str(REPO))
