"""Idempotent topic provisioning (`assetstream topics create`)."""
from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import RuntimeSettings

log = logging.getLogger("assetstream.topics")

PIPELINE = ("raw", "preprocessed", "enriched", "validated")
RETRIED = ("raw", "preprocessed", "enriched", "feedback")
"""Inputs of record-by-record stages: each has a retry topic (runner.retry_mode=topic), created with the same
partition count as its input (tansu cannot add partitions later), whatever the mode, so switching needs no
provisioning."""


def topic_specs(settings: RuntimeSettings) -> dict[str, NewTopic]:
    t = settings.topics
    specs: dict[str, NewTopic] = {}
    for logical in PIPELINE + ("feedback", "kpis"):
        specs[logical] = NewTopic(t.name(logical), t.partitions, t.replication_factor,
                                  config={"retention.ms": str(t.retention_ms)})
    specs["dead_letter"] = NewTopic(t.name("dead_letter"), t.partitions, t.replication_factor,
                                    config={"retention.ms": str(t.dlq_retention_ms)})
    for logical in RETRIED:
        specs[f"{logical}_retry"] = NewTopic(t.retry_name(logical), t.partitions, t.replication_factor,
                                             config={"retention.ms": str(t.retention_ms)})
    # append-only audit log: kept forever (archive it with a sink connector; see docs/kpis.md)
    specs["audit"] = NewTopic(t.name("audit"), t.partitions, t.replication_factor,
                              config={"retention.ms": "-1", "cleanup.policy": "delete"})
    return specs


def create_topics(settings: RuntimeSettings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create every topic that does not exist yet. Returns topic -> 'created' | 'exists'."""
    admin = AdminClient(settings.kafka.client_config())
    specs = topic_specs(settings)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    result: dict[str, str] = {}
    todo = []
    for spec in specs.values():
        if spec.topic in existing:
            result[spec.topic] = "exists"
        else:
            todo.append(spec)
    if todo:
        for topic, fut in admin.create_topics(todo, request_timeout=timeout_s).items():
            try:
                fut.result()
                result[topic] = "created"
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    result[topic] = "exists"
                else:
                    raise
    wait_for_topics(admin, [s.topic for s in specs.values()], timeout_s)
    return result


def wait_for_topics(admin: AdminClient, topics: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(timeout=timeout_s).topics
        missing = [t for t in topics if t not in md or md[t].error is not None]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {timeout_s}s: {missing}")
        time.sleep(0.2)
