"""The broker-kept schema list of the in-process (mock://) registry: what makes it behave like a real one.

A real Schema Registry keeps every schema it registered in its compacted `_schemas` topic, so any process
resolves any id any other process (of any release) registered. The mock:// registry lives in one process and
derives ids from the schema text (`streams.avro.stable_schema_id`), so a process used to know only its own
texts: after an upgrade (or any edit of an .avsc doc line) new processes could not read what old ones wrote.

`SchemaLog` keeps them on the broker the same way: topic `topics.prefix + topics.schemas` (`assetstream._schemas`,
compacted, created by `assetstream topics create` for a mock:// registry), key = the schema id (decimal
text), value = JSON {"id", "subject", "version", "schema", "schemaType"}. Every schema a process registers is
produced and acknowledged before the serializer writes a record with its id; one the topic cannot take then (no
topic yet, no answer) is named in a warning, remembered, and offered again at the process's later writes (at most
every RETRY_AFTER_S) until it is kept. An id a process does not know is looked up there (read on from where the
last look-up stopped, within `timeout_s`) before it is "Schema Not Found"; a read that fails is an outage
(SchemaLogUnavailable, retried), not "Schema Not Found". Without the topic everything works as before.
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
"""After the broker did not answer (or a read failed), look-ups of unknown ids fail at once (transient:
SchemaLogUnavailable) for this long instead of waiting on the broker for each record; schemas the topic could not
take are offered again at most this often."""


METADATA_TIMEOUT_S = 2.5
"""How long the check whether the schemas topic exists waits for the broker's metadata answer."""

class SchemaLogUnavailable(ConnectionError):
    """The schemas topic could not be read (no answer from the broker, or not read to its end in time): an id
    not found meanwhile is not "Schema Not Found" but a registry outage (retried, never a poison letter)."""


class SchemaLog:
    def __init__(self, kafka_conf: dict[str, Any], topic: str, timeout_s: float = 10.0,
                 retry_after_s: float = RETRY_AFTER_S):
        self.retry_after_s = retry_after_s
        self._conf = dict(kafka_conf)  # may carry secrets: never logged
        self.topic = topic
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._admin: AdminClient | None = None
        self._partitions: list[int] = []
        self._sent: set[int] = set()
        self._seen: set[int] = set()
        self._unread: list[dict[str, Any]] = []  # read before a read failed: handed out by the next read_new
        self._unavailable_until = 0.0
        self._no_topic = False  # the broker answered that the topic does not exist
        self._warned = False
        self.pending: dict[int, tuple[str, int | None, str]] = {}
        """Registered by this process but not kept on the topic yet (no topic, or no answer): offered again by
        `publish_pending` (called at a later write, at most every RETRY_AFTER_S)."""
        self._pending_due = 0.0

    def publish(self, schema_id: int, subject: str, version: int | None, schema_str: str) -> bool:
        """Keep one registered schema on the broker; returns once the broker acknowledged it (True), or, without
        the topic or an answer, after a warning naming the schema, which is then remembered in `pending` (False):
        until it is kept the id resolves only in processes that have the text."""
        with self._lock:
            if schema_id in self._sent or schema_id in self._seen:
                self.pending.pop(schema_id, None)
                return True
            why = None if self._available() else (
                f"no topic {self.topic} (run `assetstream topics create`)" if self._no_topic
                else f"no answer from the broker lately for {self.topic}")
            if why is None:
                # a producer for this one record (a process registers a few schemas, at its first writes): no
                # client and its threads kept for the life of the process
                producer = Producer({**self._conf, **client_logging("schemas"), "acks": "all", "linger.ms": 0,
                                     "message.timeout.ms": int(self.timeout_s * 1000)})
                failure: list[str] = []
                value = json.dumps({"id": schema_id, "subject": subject, "version": version, "schema": schema_str,
                                    "schemaType": "AVRO"})
                producer.produce(self.topic, key=str(schema_id).encode(), value=value.encode(),
                                 on_delivery=lambda err, _msg: failure.append(err.str()) if err else None)
                left = producer.flush(self.timeout_s)
                if left or failure:
                    why = f"not acknowledged: {failure[0] if failure else f'no answer within {self.timeout_s:g} s'}"
                    self._unavailable_until = time.monotonic() + self.retry_after_s
            if why is not None:
                if schema_id not in self.pending:
                    log.warning("in-process registry: schema id %d (%s) is not kept on %s (%s): until it is, only "
                                "processes that have its text can read records written with it; offered again "
                                "at this process's next writes", schema_id, subject, self.topic, why)
                self.pending[schema_id] = (subject, version, schema_str)
                return False
            self._sent.add(schema_id)
            if self.pending.pop(schema_id, None) is not None:
                log.info("in-process registry: schema id %d (%s) is now kept on %s", schema_id, subject, self.topic)
            return True

    def publish_pending(self) -> None:
        """Offer the schemas not kept yet again (at most every RETRY_AFTER_S): a process that registered them
        before `assetstream topics create`, or while the broker did not answer, keeps them once it writes again."""
        now = time.monotonic()
        if not self.pending or now < self._pending_due:
            return
        self._pending_due = now + self.retry_after_s
        for schema_id, (subject, version, schema_str) in list(self.pending.items()):
            if not self.publish(schema_id, subject, version, schema_str):
                return  # the topic still cannot take them: the rest at the next turn

    def read_new(self) -> list[dict[str, Any]]:
        """The entries written since the last call (all of them at the first), read up to the end of the topic
        as it is now; [] without the topic. Raises SchemaLogUnavailable when the topic could not be read (or the
        broker did not answer lately): a look-up then is an outage, not "Schema Not Found"."""
        with self._lock:
            if not self._available():
                if self._no_topic:
                    return []
                raise SchemaLogUnavailable(f"{self.topic}: no answer from the broker lately (asked again after "
                                           f"{self.retry_after_s:g} s)")
            try:
                for entry in self._read_to_end():
                    self._unread.append(entry)
            except KafkaException as exc:
                self._give_up(f"cannot read {self.topic}: {_why(exc)}")
                raise SchemaLogUnavailable(f"cannot read {self.topic}: {_why(exc)}") from None
            entries, self._unread = self._unread, []
            return entries

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
        """Whether the topic exists: asked until it does (one metadata request), after no answer (or a failed
        read) again only after RETRY_AFTER_S."""
        if time.monotonic() < self._unavailable_until:
            return False
        if self._partitions:
            return True
        try:
            if self._admin is None:
                self._admin = AdminClient({**self._conf, **client_logging("schemas")})
            # all topics: asking for one could create it. A short wait: a broker that answers does so in
            # milliseconds, and this runs in the path of a first write (an editor's decision waited
            # kafka.connect_timeout_s on a broker that was down, before its own publish timeout counted)
            topics = self._admin.list_topics(timeout=min(self.timeout_s, METADATA_TIMEOUT_S)).topics
        except KafkaException as exc:
            self._give_up(f"no answer from the broker: {_why(exc)}")
            return False
        md = topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            # asked again at the next unknown id (one metadata request): `topics create` takes effect at once
            self._no_topic = True
            self._give_up(f"no topic {self.topic} (run `assetstream topics create`)", 0.0)
            return False
        self._no_topic = False
        self._partitions = sorted(md.partitions)
        return True

    def _give_up(self, why: str, retry_after_s: float | None = None) -> None:
        retry_after_s = self.retry_after_s if retry_after_s is None else retry_after_s
        self._unavailable_until = time.monotonic() + retry_after_s
        if retry_after_s > 0:  # the broker did not answer: said each time (at most every RETRY_AFTER_S)
            log.warning("in-process registry: %s; ids not known to this process are retried after %g s", why,
                        retry_after_s)
        elif not self._warned:
            self._warned = True
            log.warning("in-process registry: %s; schemas are known only to the processes that have their "
                        "text, as without a schemas topic (said once)", why)


def _why(exc: KafkaException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.str() if hasattr(arg, "str") else str(arg)
