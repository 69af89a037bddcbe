"""The broker-kept schema list of the in-process (mock://) registry: what makes it behave like a real one.

A real Schema Registry keeps every schema it registered in its compacted `_schemas` topic, so any process
resolves any id any other process (of any release) registered. The mock:// registry lives in one process and
derives ids from the schema text (`streams.avro.stable_schema_id`), so a process used to know only its own
texts: after an upgrade (or any edit of an .avsc doc line) new processes could not read what old ones wrote.

`SchemaLog` keeps them on the broker the same way: topic `topics.prefix + topics.schemas` (`assetstream._schemas`,
compacted, created by `assetstream topics create` for a mock:// registry), key = the schema id (decimal
text), value = JSON {"id", "subject", "version", "schema", "schemaType"}. Every schema a process registers is
produced and acknowledged before the serializer writes a record with its id; an id a process does not know is
looked up there (read on from where the last look-up stopped, within `timeout_s`) before it is "Schema Not
Found". Without the topic everything works as before, with one warning per process.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any, Iterator

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.clientlog import client_logging

log = logging.getLogger("assetstream.registry")

RETRY_AFTER_S = 5.0
"""After the broker did not answer (or a read failed), look-ups of unknown ids fail at once for this
long instead of waiting on the broker for each record."""


class SchemaLog:
    def __init__(self, kafka_conf: dict[str, Any], topic: str, timeout_s: float = 10.0):
        self._conf = dict(kafka_conf)  # may carry secrets: never logged
        self.topic = topic
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._partitions: list[int] = []
        self._sent: set[int] = set()
        self._seen: set[int] = set()
        self._unavailable_until = 0.0
        self._warned = False

    def publish(self, schema_id: int, subject: str, version: int | None, schema_str: str) -> None:
        """Keep one registered schema on the broker; returns once the broker acknowledged it (or, without the
        topic or an answer, after one warning: the id then resolves only in processes that have the text)."""
        with self._lock:
            if schema_id in self._sent or schema_id in self._seen or not self._available():
                return
            # a producer for this one record (a process registers a few schemas, at its first writes): no client
            # and its threads kept for the life of the process
            producer = Producer({**self._conf, **client_logging("schemas"), "acks": "all", "linger.ms": 0,
                                 "message.timeout.ms": int(self.timeout_s * 1000)})
            failure: list[str] = []
            value = json.dumps({"id": schema_id, "subject": subject, "version": version, "schema": schema_str,
                                "schemaType": "AVRO"})
            producer.produce(self.topic, key=str(schema_id).encode(), value=value.encode(),
                             on_delivery=lambda err, _msg: failure.append(err.str()) if err else None)
            left = producer.flush(self.timeout_s)
            if left or failure:
                self._give_up(f"schema id {schema_id} ({subject}) was not acknowledged on {self.topic}: "
                              f"{failure[0] if failure else f'no answer within {self.timeout_s:g} s'}")
                return
            self._sent.add(schema_id)

    def read_new(self) -> list[dict[str, Any]]:
        """The entries written since the last call (all of them at the first), read up to the end of the topic
        as it is now; [] without the topic, or while the broker did not answer lately."""
        with self._lock:
            if not self._available():
                return []
            try:
                return list(self._read_to_end())
            except KafkaException as exc:
                self._give_up(f"cannot read {self.topic}: {_why(exc)}")
                return []

    def _read_to_end(self) -> Iterator[dict[str, Any]]:
        if self._consumer is None:
            self._consumer = Consumer({**self._conf, **client_logging("schemas"),
                                       "group.id": f"assetstream-schemas-{uuid.uuid4().hex[:8]}",
                                       "enable.auto.commit": False, "enable.auto.offset.store": False,
                                       "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
            self._consumer.assign([TopicPartition(self.topic, p, -2) for p in self._partitions])  # beginning
        c = self._consumer
        deadline = time.monotonic() + self.timeout_s
        ends = {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=self.timeout_s)[1]
                for p in self._partitions}
        while True:
            positions = {tp.partition: tp.offset for tp in c.position([TopicPartition(self.topic, p)
                                                                       for p in self._partitions])}
            if all(positions.get(p, -1) >= end for p, end in ends.items() if end > 0):
                return
            if time.monotonic() > deadline:
                raise KafkaException(f"the end of the topic was not reached within {self.timeout_s:g} s")
            for msg in c.consume(500, 0.05):
                if msg.error() is not None:
                    continue
                try:
                    entry = json.loads(msg.value())
                    entry["id"] = int(msg.key())
                    str(entry["schema"])
                except (TypeError, ValueError, KeyError):
                    log.warning("%s: skipping entry at %d/%d: not a schema entry", self.topic, msg.partition(),
                                msg.offset())
                    continue
                self._seen.add(entry["id"])
                yield entry

    def _available(self) -> bool:
        """Whether the topic exists: asked until it does (one metadata request), after no answer again only after
        RETRY_AFTER_S."""
        if self._partitions:
            return True
        if time.monotonic() < self._unavailable_until:
            return False
        try:
            admin = AdminClient({**self._conf, **client_logging("schemas")})
            topics = admin.list_topics(timeout=self.timeout_s).topics  # all topics: asking for one could create it
        except KafkaException as exc:
            self._give_up(f"no answer from the broker: {_why(exc)}", RETRY_AFTER_S)
            return False
        md = topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            # asked again at the next unknown id (one metadata request): `topics create` takes effect at once
            self._give_up(f"no topic {self.topic} (run `assetstream topics create`)", 0.0)
            return False
        self._partitions = sorted(md.partitions)
        return True

    def _give_up(self, why: str, retry_after_s: float = RETRY_AFTER_S) -> None:
        self._unavailable_until = time.monotonic() + retry_after_s
        if not self._warned:
            self._warned = True
            log.warning("in-process registry: %s; schemas are known only to the processes that have their "
                        "text, as without a schemas topic (said once)", why)


def _why(exc: KafkaException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.str() if hasattr(arg, "str") else str(arg)
