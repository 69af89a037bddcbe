"""The append-only audit log: who or what wrote each field of an asset, with which prompt and model, when.

The KPI app writes one AuditEntry per validated record (its generated field set + provenance) and one per editor
decision (and the writeback sink one per conflict), key = the tenant-scoped asset id (`audit_key`: `acme::a1`, the
plain id for the default tenant, as every other topic), to an explicit partition: `audit_partition(key, n)` = the
Java client's default partitioner (murmur2 of the key bytes), which is also aiokafka's. The writeback sink's
conflict entries go through the runner's producer instead, whose librdkafka default partitioner
(`consistent_random`) puts a key on its CRC-32 partition. `history()` reads those (at most two) partitions, and
only that key: two tenants' entries for the same asset id never mix.
"""
from __future__ import annotations

import time
import uuid
import zlib
from typing import Any

from aiokafka.partitioner import murmur2
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from domain.events import TENANT_SEPARATOR, scoped_id
from streams.avro import Serde
from streams.topics import check_broker_reachable
from app.settings import Settings


def audit_key(entry: dict[str, Any]) -> str:
    """The Kafka key of an AuditEntry: its asset's tenant-scoped id."""
    return scoped_id(entry["asset_id"], entry.get("tenant"))


def history_key(asset_id: str, tenant: str | None = None) -> str:
    """The key whose history to read: a scoped id (`acme::a1`) as given, or the asset id in `tenant` (none: the
    default tenant). A scoped id and a different tenant contradict each other: ValueError."""
    if TENANT_SEPARATOR in asset_id:
        if tenant and not asset_id.startswith(f"{tenant}{TENANT_SEPARATOR}"):
            raise ValueError(f"{asset_id!r} is a tenant-scoped id of another tenant than {tenant!r}")
        return asset_id
    return scoped_id(asset_id, tenant)


def audit_partition(asset_id: str, partitions: int) -> int:
    """Partition of an asset's audit entries (murmur2, as Java clients and aiokafka key-partition)."""
    return (murmur2(asset_id.encode("utf-8")) & 0x7FFFFFFF) % partitions


def history_partitions(asset_id: str, partitions: int) -> list[int]:
    """Where an asset's audit entries can be: the KPI app's murmur2 partition, and the CRC-32 one of
    librdkafka's `consistent_random` (the runner's producer: writeback conflict entries)."""
    return sorted({audit_partition(asset_id, partitions), zlib.crc32(asset_id.encode("utf-8")) % partitions})


def history(settings: Settings, asset_id: str, timeout_s: float = 30.0,
            tenant: str | None = None) -> list[dict[str, Any]]:
    """Every audit entry of the asset, deduplicated by entry_id (first occurrence wins), ordered by `at`
    (ties: log order). Reads the asset's partitions from the beginning to their high watermarks. `asset_id` is the
    tenant-scoped id (`acme::a1`), or the asset's own id with `tenant` (none: the default tenant)."""
    asset_id = history_key(asset_id, tenant)
    topic = settings.topics.name("audit")
    check_broker_reachable(settings.kafka)
    conf = {**settings.kafka.client_config(), "group.id": f"assetstream-audit-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True}
    consumer = Consumer(conf)
    serde = Serde.for_settings(settings)
    try:
        md = consumer.list_topics(topic, timeout=settings.kafka.connect_timeout_s)
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return []
        entries: list[tuple[int, int, dict[str, Any]]] = []
        seen: set[str] = set()
        deadline = time.monotonic() + timeout_s
        for partition in history_partitions(asset_id, len(meta.partitions)):
            for offset, value in _read_key(consumer, topic, partition, asset_id, deadline, timeout_s):
                entry = serde.deserialize("audit", value)
                if entry["entry_id"] not in seen:
                    seen.add(entry["entry_id"])
                    entries.append((_ms(entry["at"]), offset, entry))
        entries.sort(key=lambda e: (e[0], e[1]))
        return [e[2] for e in entries]
    finally:
        consumer.close()


def _ms(value: Any) -> int:
    from app.kpis.compute import to_ms
    return to_ms(value)


def _read_key(consumer: Consumer, topic: str, partition: int, key: str, deadline: float,
              timeout_s: float) -> list[tuple[int, bytes]]:
    """(offset, value) of every record of `key` in the partition, read from the beginning to its high watermark."""
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    found: list[tuple[int, bytes]] = []
    next_offset = 0
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            next_offset = msg.offset() + 1
            if msg.key() is not None and msg.key().decode("utf-8", "replace") == key:
                found.append((msg.offset(), msg.value()))
        elif msg is not None and msg.error().code() != -191:  # -191 = _PARTITION_EOF
            raise KafkaException(msg.error())
        # tansu answers ListOffsets(latest) wrongly: use the high watermark the last fetch reported
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if high >= 0 and next_offset >= high and (msg is None or msg.error() is not None or next_offset == high):
            return found
    raise TimeoutError(f"audit history of {key}: partition {partition} not read to its end within {timeout_s}s")
