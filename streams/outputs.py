"""Producing what the work made: outputs and dead letters, delivery callbacks, redelivery, refused outputs.

A record finishes (`PartitionTracker.finish`) only when everything it caused is acknowledged: with plain
commits each record counts its unacknowledged outputs (`pending_acks`: +1 per produce, -1 per successful
delivery); in a transaction the transaction commit is the acknowledgement. A dead letter is produced like
any output. A failed delivery is produced again (never dropped); an output the broker refuses (too large,
invalid) dead-letters its input instead. A dead letter keeps its input's original value: one larger than
`dead_letters.inline_max_bytes`, or one whose letter the broker refuses, goes to the sidecar store
(`streams/originals.py`) and the letter references it, keeping its first reason; only without a store is the
value cut to 1 KiB (the letter then says it cannot be replayed). Everything here runs in the runner's poll
thread (delivery callbacks are served by `producer.poll`), which never waits for the schema registry: a dead letter
built or rewritten here (an output the broker refused, a letter whose original moves to the sidecar store) while the
registry cannot give the letter's schema is owed, consumption paused (`schema_registry`), and built again at a
later turn of the loop (`redeliver_due`); the record finishes only once it is produced and acknowledged.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.commits import Commits
from streams.errors import RegistryUnavailable, StageError
from streams.originals import OriginalStore, OriginalUnavailable, object_name, sha256
from streams.records import now_ms
from streams.sensors import Sensor
from streams.tracker import TP, PartitionTracker
from streams.work import Abandon, Produced, Record, RecordWork, Result, as_registry_outage, registry_unavailable

log = logging.getLogger("assetstream.runner")
#: the dead letter detail saying its original value was cut to 1 KiB (no dead_letters.store): not replayable.
#: (Not `truncated`: the image and video decoders use that for a truncated upload, which is replayable.)
CUT_DETAIL = "original_value_cut"

# what the broker will never take. Kafka's CORRUPT_MESSAGE (code 2) is librdkafka's INVALID_MSG; the name
# KafkaError.CORRUPT_MESSAGE does not exist, and spelling it made every failed delivery raise AttributeError
_REFUSED = (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD,
            KafkaError.INVALID_MSG)


class Outputs:
    """Produce each finished record's outputs (or its dead letter) and finish the record once they are acked.

    A record still counts while it is not abandoned, its partition is in `assigned` (the runner's set) and it
    was taken since its partition was last assigned (`assign`) or rewound (`rewind`): a record still running
    when its partition was revoked is never output, nor finished, after the partition came back (its copy
    taken again from the committed offset is). `fatal(err)` stops the worker on an unrecoverable client
    error."""

    def __init__(self, producer: Producer, commits: Commits, work: RecordWork, tracker: PartitionTracker,
                 sensor: Sensor, assigned: set[TP], fatal: Callable[[KafkaError], None],
                 originals: OriginalStore | None = None, inline_max_bytes: int = 256 * 1024,
                 abandon: Callable[[Record], None] = lambda rec: None):
        self.producer, self.commits, self.work, self.tracker, self.sensor = producer, commits, work, tracker, sensor
        self.originals, self.inline_max_bytes = originals, inline_max_bytes
        self.name = work.name
        self.counts_acks = commits.counts_acks
        self.dead_letter_topic = work.names["dead_letter"]
        self.assigned = assigned
        self.epoch = 0  # records carry the epoch they were taken in
        self.since: dict[TP, int] = {}  # per partition: the epoch of its last assignment or rewind
        self.fatal = fatal
        self.redeliver: list[tuple[float, Record, Produced]] = []  # (due, record, output): owed, produced again
        self.acked: dict[str, int] = {}  # acknowledged outputs per topic since the last flush_acked
        self._done = sensor.on_record_done
        self.abandon = abandon  # a record left uncommitted (shutdown): the drain does not wait for it
        # (due, record, step, tries): dead-letter work waiting for the schema registry, each counted once in its
        # record's pending_acks (the record does not finish meanwhile)
        self.owed: list[tuple[float, Record, Callable[[], None], int]] = []
        self._outage: RegistryUnavailable | None = None  # the last one seen by _registry_outage

    def emit(self, res: Result) -> None:
        """Produce a worked record's outputs, or its dead letter."""
        rec = res.record
        if rec.abandoned or rec.tp not in self.assigned or rec.epoch < self.since.get(rec.tp, 0):
            return
        rec.event_time_ms = res.event_time_ms
        if res.dead_letter is None:
            self.produce_all(rec, res.outputs)
            return
        if not self.counts_acks:
            self.commits.begin()
        self._or_later(rec, lambda: self.produce_one(rec, self._letter_output(rec, res)))
        if not self.counts_acks and rec.pending_acks == 0:
            self.finish(rec)

    def produce_all(self, rec: Record, outputs: list[Produced]) -> None:
        if not self.counts_acks:
            self.commits.begin()
        if not outputs:
            if rec.pending_acks == 0:
                self.finish(rec)
            return
        for output in outputs:
            self.produce_one(rec, output)
        if not self.counts_acks and rec.pending_acks == 0:
            self.finish(rec)

    def produce_one(self, rec: Record, output: Produced, counted: bool = False) -> None:
        """`counted`: the output is already in `pending_acks` (a redelivery of an owed output)."""
        topic, key, value, headers = output
        if self.counts_acks and not counted:
            rec.pending_acks += 1
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers,
                                      on_delivery=self._delivery_cb(rec, output))
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: serve callbacks, then try again
            except KafkaException as exc:  # refused before sending, e.g. larger than message.max.bytes
                if self.counts_acks:
                    rec.pending_acks -= 1
                self._undeliverable(rec, output, exc.args[0])
                return

    def finish(self, rec: Record) -> None:
        if rec.abandoned or rec.epoch < self.since.get(rec.tp, 0):
            return  # its offset may have been taken again meanwhile: that copy finishes it
        self.tracker.finish(rec.tp, rec.offset)
        self._done(rec.received, rec.event_time_ms)

    def redeliver_due(self) -> None:
        """Produce again the owed outputs whose wait is over (and build the dead letters owed, see _or_later)."""
        if self.owed:
            self._owed_due()
        if not self.redeliver:
            return
        now = time.monotonic()
        due = [r for r in self.redeliver if r[0] <= now]
        self.redeliver = [r for r in self.redeliver if r[0] > now]
        for _, rec, output in due:
            if not (rec.abandoned or rec.tp not in self.assigned or rec.epoch < self.since.get(rec.tp, 0)):
                self.produce_one(rec, output, counted=True)

    def flush_acked(self) -> None:
        """Report the acknowledged outputs gathered since the last call (once per poll-loop iteration)."""
        if self.acked:
            acked, self.acked = self.acked, {}
            self.sensor.on_outputs_acked(acked)

    def assign(self, tps: list[TP]) -> None:
        """Partitions were assigned: records of theirs taken before (when they were last owned) are ignored."""
        self.epoch += 1
        for tp in tps:
            self.since[tp] = self.epoch

    def rewind(self) -> None:
        """A transaction was rewound: records taken before are ignored and nothing produced before is owed."""
        self.assign(list(self.assigned))
        self.redeliver = []

    def _delivery_cb(self, rec: Record, output: Produced) -> Callable[[KafkaError | None, Message], None]:
        def cb(err: KafkaError | None, msg: Message) -> None:
            if err is None and self.counts_acks:  # the hot path: one acknowledged output
                acked = self.acked
                acked[output[0]] = acked.get(output[0], 0) + 1
                rec.pending_acks -= 1
                if rec.pending_acks == 0:
                    self.finish(rec)
                return
            if not self.counts_acks:
                if err is not None:
                    self.commits.delivery_failed(err)
                return
            if err.fatal():
                self.fatal(err)
                return
            if err.code() in _REFUSED:
                rec.pending_acks -= 1  # this output is given up; what replaces it is counted anew
                self._undeliverable(rec, output, err)
                return
            # retriable or not, a delivery is tried again (never dropped): non-retriable errors such as an
            # authorization failure show as a stalled partition and in the logs until fixed
            log.warning("%s: delivery to %s failed (%s); producing again", self.name, output[0], err)
            self.redeliver.append((time.monotonic() + (1.0 if err.retriable() else 5.0), rec, output))
        return cb

    def _or_later(self, rec: Record, step: Callable[[], None]) -> None:
        """Run a step that builds or rewrites a dead letter and produces it. While the schema registry cannot give
        the letter's schema, the step is owed: tried again at a later turn of the loop (capped backoff, without
        limit), the record unfinished and consumption paused (schema_registry); the poll thread never waits."""
        if not self._registry_outage(step):
            return
        if self.work.stopping:
            self.abandon(rec)  # shutting down: left uncommitted, the next owner dead-letters it
            return
        rec.letter_owed = True
        rec.pending_acks += 1  # owed: the record does not finish before its letter is produced
        self.work.registry_down(True)
        self._owe(rec, step, 1)

    def _owe(self, rec: Record, step: Callable[[], None], tries: int) -> None:
        assert self._outage is not None
        try:
            delay = self.work.registry_delay(rec, tries, self._outage)
        except Abandon:  # the worker is stopping (since a moment): left uncommitted
            self.abandon(rec)
            rec.letter_owed = False
            self.work.registry_down(False)
            return
        self.owed.append((time.monotonic() + delay, rec, step, tries))

    def _owed_due(self) -> None:
        """Try again the dead-letter steps waiting for the schema registry whose wait is over (while stopping,
        all of them are given up: their records stay uncommitted)."""
        now, stopping = time.monotonic(), self.work.stopping
        due = [o for o in self.owed if o[0] <= now or stopping]
        self.owed = [o for o in self.owed if not (o[0] <= now or stopping)]
        for _, rec, step, tries in due:
            gone = rec.abandoned or rec.tp not in self.assigned or rec.epoch < self.since.get(rec.tp, 0)
            if gone or stopping:
                if not gone:
                    self.abandon(rec)
                rec.letter_owed = False
                self.work.registry_down(False)
                continue
            rec.pending_acks -= 1
            if not self.counts_acks:
                self.commits.begin()
            if self._registry_outage(step):
                rec.pending_acks += 1
                self._owe(rec, step, tries + 1)
                continue
            rec.letter_owed = False
            self.work.registry_down(False)
            if rec.pending_acks == 0:
                self.finish(rec)

    def _registry_outage(self, step: Callable[[], None]) -> bool:
        """Run the step; True (the outage kept in `_outage`) when the schema registry could not serve it."""
        try:
            step()
            return False
        except Exception as exc:
            if not (isinstance(exc, RegistryUnavailable) or registry_unavailable(exc)):
                raise
            self._outage = exc if isinstance(exc, RegistryUnavailable) else as_registry_outage(exc)
            return True

    def _undeliverable(self, rec: Record, output: Produced, err: KafkaError) -> None:
        """An output the broker will never take. A stage output: the input is dead-lettered instead.
        A dead letter: its original value goes to the sidecar store (or, with none, is cut to 1 KiB) and it is
        produced again with its first reason; a dead letter is never dropped."""
        if output[0] != self.dead_letter_topic:
            exc = StageError(f"output to {output[0]} rejected: {err.str()}", reason="output_rejected",
                             details={"kafka_error": err.name()})
            first = now_ms()
            self._or_later(rec, lambda: self.produce_one(
                rec, self._letter_output(rec, self.work.failure(rec, exc, 1, first, wait=False))))
            return
        if not rec.letter_truncated and rec.value is not None and len(rec.value) > 1024:
            self._or_later(rec, lambda: self._smaller_letter(rec, output, err))
            return
        self._redeliver_letter(rec, output, err)

    def _smaller_letter(self, rec: Record, output: Produced, err: KafkaError) -> None:
        """A dead letter too large for the broker: once, its original value moved to the sidecar store (or cut)."""
        rec.letter_truncated = True  # once: a letter that still does not fit is retried below
        try:
            data = self._kept(rec, output[2]) if self.originals is not None else self._cut(rec, output[2], err)
        except BaseException:
            rec.letter_truncated = False  # e.g. the registry is down: the whole letter is tried again
            raise
        if data is not None:
            self.produce_one(rec, (output[0], output[1], data, output[3]))
            return
        rec.letter_truncated = False  # the store is down: nothing is cut, the whole letter is tried again
        self._redeliver_letter(rec, output, err)

    def _redeliver_letter(self, rec: Record, output: Produced, err: KafkaError) -> None:
        log.error("%s: dead letter for %s/%d@%d cannot be delivered (%s); retrying", self.name, rec.topic,
                  rec.partition, rec.offset, err)
        if self.counts_acks:
            rec.pending_acks += 1  # the retry below is still owed
        self.redeliver.append((time.monotonic() + 5.0, rec, output))

    def _letter_output(self, rec: Record, letter: Result) -> Produced:
        data = letter.dead_letter
        if self.originals is not None and rec.value is not None and len(rec.value) > self.inline_max_bytes:
            data = self._kept(rec, data) or data  # the store is down: inline, and if the broker refuses, again
        self.sensor.on_dead_letter(letter.error_class)  # after what may wait for the registry: counted once
        return (self.dead_letter_topic, rec.key, data,
                [(k, v) for k, v in rec.headers if v is not None] +
                [("dlq-stage", self.name.encode()), ("dlq-error-class", letter.error_class.encode())])

    def _kept(self, rec: Record, letter: bytes) -> bytes | None:
        """The letter with its original value moved to the sidecar store (None when the store cannot take it)."""
        assert self.originals is not None and rec.value is not None
        name = object_name(self.dead_letter_topic, rec.topic, rec.partition, rec.offset, rec.value)
        try:
            ref = self.originals.put(name, rec.value)
        except OriginalUnavailable as exc:
            log.error("%s: cannot keep the original value of %s/%d@%d in the dead-letter store (%s)",
                      self.name, rec.topic, rec.partition, rec.offset, exc)
            return None
        return self._rewritten(letter, rec.value, {"original_value": None, "original_value_ref": ref}, {})

    def _cut(self, rec: Record, letter: bytes, err: KafkaError) -> bytes:
        """No store: the letter with the original value cut to 1 KiB, saying it cannot be replayed."""
        assert rec.value is not None
        note = (f"original value cut from {len(rec.value)} to 1024 bytes to fit the broker ({err.str()}); "
                "configure dead_letters.store to keep originals")
        data = self._rewritten(letter, rec.value, {"original_value": rec.value[:1024]}, {CUT_DETAIL: note})
        log.error("%s: dead letter for %s/%d@%d too large (%s) and no dead_letters.store configured: original "
                  "value cut to 1 KiB, this letter cannot be replayed", self.name, rec.topic, rec.partition,
                  rec.offset, err)
        return data

    def _rewritten(self, letter: bytes, value: bytes, fields: dict, details: dict[str, str]) -> bytes:
        """The same letter (first reason, message, stack) with the original value's place changed."""
        v = self.work.serde.deserialize("dead_letter", letter)
        v.update(fields, original_value_size=len(value), original_value_sha256=sha256(value))
        v["details"] = {**(v.get("details") or {}), **details}
        return self.work.serde.serialize("dead_letter", v)
