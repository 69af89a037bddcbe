"""Idempotent topic provisioning (`assetstream topics create`)."""
from __future__ import annotations

import logging
import socket
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config.kafka import KafkaSettings
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
    if settings.registry.in_process:  # the mock:// registry's schemas, kept like a real registry's _schemas
        specs["schemas"] = NewTopic(t.name("schemas"), 1, t.replication_factor,
                                    config={"cleanup.policy": "compact"})
    return specs


def bootstrap_addresses(servers: str) -> list[tuple[str, int]]:
    """(host, port) of each bootstrap server as librdkafka reads them: `host:port`, `PROTOCOL://host:port`,
    `[::1]:9092`; 9092 when no port is given."""
    out: list[tuple[str, int]] = []
    for item in servers.split(","):
        item = item.strip().rpartition("://")[2]
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, sep, port = item.rpartition(":")
            if not sep:
                host, port = item, ""
        out.append((host, int(port) if port.isdigit() else 9092))
    return out


def check_broker_reachable(kafka: KafkaSettings) -> None:
    """The first thing a one-shot command does before it waits on the broker: open a TCP connection to each
    bootstrap server until one accepts, each within kafka.connect_timeout_s. None accepting raises
    KafkaException(_TRANSPORT) with what each one answered, at once for a refused connection, instead of the
    client's metadata wait (30 s for `topics create`) ending in 'Broker transport failure'. Callers bound the
    broker's first answer after it by kafka.connect_timeout_s too (something that accepts and never answers)."""
    problems: list[str] = []
    servers = str(kafka.client_config().get("bootstrap.servers") or kafka.bootstrap_servers)  # `extra` may set it
    for host, port in bootstrap_addresses(servers):
        try:
            with socket.create_connection((host, port), timeout=kafka.connect_timeout_s):
                return
        except OSError as exc:
            why = "no answer within {:g} s".format(kafka.connect_timeout_s) if isinstance(exc, TimeoutError) \
                else (exc.strerror or str(exc))
            problems.append(f"{host}:{port}: {why}")
    if problems:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "no broker reachable: " + "; ".join(problems)))


def create_topics(settings: RuntimeSettings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create every topic that does not exist yet. Returns topic -> 'created' | 'exists'."""
    check_broker_reachable(settings.kafka)
    admin = AdminClient(settings.kafka.client_config())
    specs = topic_specs(settings)
    existing = set(admin.list_topics(timeout=settings.kafka.connect_timeout_s).topics)  # its first answer
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
