"""`backfill --wait`: after publishing, wait until every event the run published is through the pipeline.

"Through" is read per asset, where a person would look:

- **indexed**: the index document of the asset is the event's (its `event_id`), read with `mget` (real time, no
  refresh) for the assets still pending, once per `poll_s`;
- **superseded**: the index holds a *newer* version of the asset (enrich drops an event older than the indexed
  version, the sink refuses it with 409): nothing more will happen to this event;
- **dead-lettered**: a dead letter of *this* event: keyed by the asset's document id (every stage keeps the input
  key) and holding a record of the event's `event_id` (every record embeds the event), written since the run began (on a re-run, since the earliest publish the state file
  records of the events it waits for) (the `dlq` topic is read from the offsets of that time; `dlq list`/`show` have the details). A letter of another
  event of the asset (the previous run's, live traffic's) does not count; one whose record cannot be read (a poison
  record, one kept in the sidecar store) counts by its key. A write-back letter does not count, since the asset
  was indexed before write-back. A letter counts only while the index does not hold the event: decided from the
  records' own facts, never from when each was written (a worker's clock against the sink's): the document names
  the event it is of (`event_id`) and its version, so a document of this event, or of a newer version, means the
  event's content is in the index, whether its letter came before (the cause was fixed and the letter replayed:
  trial 27 M1) or after (a redelivery of the same event, after a rebalance, failed where the first delivery had
  succeeded). Such an asset is reported indexed *and* as having a letter of its event (`also_dead_lettered`: both
  are true, nothing to replay); one superseded is reported superseded (a replay of its letter would be refused). Both facts are kept per asset, so the order they are
  read in does not matter, assets with a letter are looked up again at every check, and the wait ends only once the
  `dlq` partitions were read to their end;
- **not newer**: already indexed at the *same* version by another event when the wait begins. The sink keeps the
  document it has (external versioning: only a newer version replaces it), so this event can never be seen
  arriving; it is reported and not waited for (`--only-stale` publishes such assets with version + 1). The one
  exception: a record carrying a newer human review is written at the same version (`external_gte`), so such an
  asset may still arrive after it was reported as not newer.

Why not the consumer groups' committed offsets: they say a group has passed an offset of its *input* topic, and
an asset's records are at other offsets on every topic, mixed with other traffic. Following them means either
waiting until each group's whole lag is drained (live traffic keeps that from ever ending, and says nothing of
which assets failed) or reading every intermediate topic to map our events to offsets. The index and the DLQ are
the two places an asset ends up, they name the asset, and they are what the operator would check by hand. The
cost: the wait needs the search store reachable from where the backfill runs, one `mget` per poll of the assets
still pending or dead-lettered (500 ids per request), and a dead letter written more than `DLQ_SLACK_MS` before the run by a
worker whose clock is that far behind is not seen.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from app.ops.backfill import IndexView, Sent
from app.ops.dlq import indexed_as, logical_topics, original_asset
from streams.avro import Serde, topic_names
from streams.clientlog import client_logging

DLQ_SLACK_MS = 60_000
"""Dead letters stamped up to this long before the run began still count (a worker's clock may be behind)."""


@dataclass
class WaitResult:
    total: int
    indexed: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    not_newer: list[str] = field(default_factory=list)
    dead: dict[str, dict[str, Any]] = field(default_factory=dict)
    """asset id -> {stage, reason, error_class, ref} of its dead letter"""
    also_dead: dict[str, dict[str, Any]] = field(default_factory=dict)
    """asset id -> its letter, of the assets indexed that also have a dead letter of the event (a failed
    redelivery, or a letter since replayed): both are true; they count as indexed"""
    waiting: list[str] = field(default_factory=list)
    timed_out: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    index_error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.dead or self.waiting)

    def summary(self) -> dict[str, Any]:
        return {"total": self.total, "indexed": len(self.indexed), "superseded": len(self.superseded),
                "not_newer": len(self.not_newer), "dead_lettered": len(self.dead), "waiting": len(self.waiting),
                "timed_out": self.timed_out, "interrupted": self.interrupted, "seconds": round(self.seconds, 1),
                "index_error": self.index_error, "dead_lettered_ids": self.dead, "waiting_ids": self.waiting,
                "superseded_ids": self.superseded, "not_newer_ids": self.not_newer,
                "also_dead_lettered_ids": self.also_dead}


class PipelineWatch:
    """Which of the acknowledged events (document id -> Sent) have come through: `check()` once per poll.

    Each asset's outcome is settled from two facts kept per asset, whatever order they are read in: the index
    document at or after the awaited event (this event's `event_id`, or a newer version), and the newest dead letter
    of the event (the highest offset: an asset's letters share its key, so one partition). The document wins whenever
    there is one (what is indexed is indexed); the letter is then said beside it (`also_dead`). Assets with a letter
    are looked up in the index again at every check, and the wait ends only once the dead letters have been read to
    the end."""

    def __init__(self, settings: Any, index: IndexView, sent: dict[str, Sent], since_ms: int):
        self.index = index
        self.sent = dict(sent)
        self.pending = dict(sent)
        self.arrived: dict[str, str] = {}
        """document id -> indexed | superseded (the document is this event's, or of a newer version)"""
        self.letters: dict[str, dict[str, Any]] = {}
        """document id -> {stage, reason, error_class, message, ref} of the event's newest dead letter"""
        self.not_newer: set[str] = set()
        self.result = WaitResult(total=len(sent))
        self.serde = Serde.for_settings(settings)
        self.since_ms = since_ms
        self.first = True
        self.topic = topic_names(settings)["dead_letter"]
        self.logical_of = logical_topics(settings)
        self.dlq = Consumer({**settings.kafka.client_config(), **client_logging("backfill-wait"),
                             "group.id": f"assetstream-backfill-wait-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "enable.auto.offset.store": False,
                             "enable.partition.eof": True, "fetch.wait.max.ms": 100})
        self.dlq_parts: set[int] = set()
        self.dlq_at_end: set[int] = set()
        self._assign_dlq(settings.kafka.connect_timeout_s)

    def _assign_dlq(self, timeout_s: float) -> None:
        """The dead-letter partitions from the first letter stamped since the run (or the earliest earlier publish it
        waits for) began, less the slack; the
        partition's end where there is none yet (the letters read before it are skipped by their time)."""
        md = self.dlq.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        parts = sorted(md.partitions) if md is not None and md.error is None else []
        if not parts:
            return
        try:
            found = self.dlq.offsets_for_times([TopicPartition(self.topic, p, self.since_ms - DLQ_SLACK_MS)
                                                for p in parts], timeout=timeout_s)
            start = [TopicPartition(self.topic, tp.partition, tp.offset if tp.offset >= 0 else
                                    max(0, self.dlq.get_watermark_offsets(tp, timeout=timeout_s)[1]))
                     for tp in found]
        except KafkaException:  # a broker without timestamps lookup: from the start, filtered by time
            start = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts]
        self.dlq.assign(start)
        self.dlq_parts = set(parts)

    @property
    def done(self) -> int:
        return self.result.total - len(self.pending)

    @property
    def letters_read(self) -> bool:
        """Every dead-letter partition was read to its end at least once since its last letter."""
        return self.dlq_at_end >= self.dlq_parts

    def detail(self) -> str:
        r = self.result
        parts = [f"{len(r.indexed) + len(r.superseded)} indexed"]
        if r.dead:
            parts.append(f"{len(r.dead)} dead-lettered")
        if r.not_newer:
            parts.append(f"{len(r.not_newer)} not newer than the index")
        if r.index_error:
            parts.append(f"index not answering: {r.index_error}")
        return "(" + ", ".join(parts) + ")"

    def _outcome(self, doc_id: str) -> str | None:
        """indexed | superseded | not_newer | dead, or None while pending."""
        if doc_id in self.arrived:
            return self.arrived[doc_id]
        if doc_id in self.letters:
            return "dead"
        return "not_newer" if doc_id in self.not_newer else None

    def check(self, read_s: float = 0.3) -> None:
        self._read_dead_letters(read_s)
        look = [d for d in self.sent if self._outcome(d) in (None, "dead")]
        try:
            docs = self.index.facts(look) if look else {}
        except Exception as exc:  # noqa: BLE001 - the store may come back before the timeout
            self.result.index_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            docs = None
        if docs is not None:
            self.result.index_error = None
            for doc_id, doc in docs.items():
                sent = self.sent.get(doc_id)
                if sent is None:
                    continue
                standing = indexed_as(doc, sent.event_id, sent.version)
                if standing == "this event":
                    self.arrived[doc_id] = "indexed"
                elif standing == "newer":
                    self.arrived[doc_id] = "superseded"
                elif standing == "same version" and self.first:
                    self.not_newer.add(doc_id)
            self.first = False
        self._tally()

    def _tally(self) -> None:
        r = self.result
        r.indexed, r.superseded, r.not_newer, r.dead, r.also_dead = [], [], [], {}, {}
        self.pending = {}
        for doc_id, sent in self.sent.items():
            outcome = self._outcome(doc_id)
            if outcome is None:
                self.pending[doc_id] = sent
            elif outcome == "dead":
                r.dead[sent.asset_id] = self.letters[doc_id]
            else:
                getattr(r, outcome).append(sent.asset_id)
                if doc_id in self.letters and outcome == "indexed":
                    r.also_dead[sent.asset_id] = self.letters[doc_id]

    def _read_dead_letters(self, read_s: float) -> None:
        deadline = time.monotonic() + read_s
        while time.monotonic() < deadline:
            msg = self.dlq.poll(0.05)
            if msg is None:
                if not self.dlq.assignment():
                    return
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    self.dlq_at_end.add(msg.partition())
                    if self.letters_read:
                        return
                continue
            self.dlq_at_end.discard(msg.partition())
            if msg.key() is None:
                continue
            doc_id = msg.key().decode("utf-8", "replace")
            ts = msg.timestamp()
            if doc_id not in self.sent or (ts[0] and ts[1] < self.since_ms - DLQ_SLACK_MS):
                continue
            try:
                letter = self.serde.deserialize("dead_letter", msg.value())
            except Exception:  # noqa: BLE001 - a letter we cannot read still says the asset failed
                letter = {}
            if letter.get("stage") == "writeback":  # indexed first: the index check sees it
                continue
            event = original_asset(letter, self.serde, self.logical_of)
            if event is not None and event.get("event_id") != self.sent[doc_id].event_id:
                continue  # another event's letter (review 14 M3: the previous run's counted as this one's)
            # read in offset order, and an asset's letters share one partition (its key): the last read is the newest
            self.letters[doc_id] = {
                "stage": letter.get("stage"), "error_class": letter.get("error_class"),
                "reason": (letter.get("details") or {}).get("reason"), "message": str(letter.get("message") or "")[:200],
                "ref": f"{msg.partition()}/{msg.offset()}"}

    def close(self) -> None:
        self.dlq.close()


def wait_for_pipeline(watch: PipelineWatch, timeout_s: float, *, stop: threading.Event | None = None,
                      poll_s: float = 1.0, on_check: Callable[[], None] = lambda: None) -> WaitResult:
    """Check until nothing is pending, `timeout_s` passed (timed_out) or `stop` is set (interrupted)."""
    started = time.monotonic()
    stop = stop or threading.Event()
    while True:
        watch.check()
        on_check()
        if not watch.pending and watch.letters_read:  # a letter newer than a document may still be on its way
            break
        if stop.is_set():
            watch.result.interrupted = True
            break
        if time.monotonic() - started >= timeout_s:
            watch.result.timed_out = bool(watch.pending)
            break
        stop.wait(poll_s)
    r = watch.result
    r.waiting = [s.asset_id for s in watch.pending.values()]
    r.seconds = time.monotonic() - started
    return r
