"""How finished offsets are committed: plainly (at least once) or in a Kafka transaction (exactly once).

Both take the commit positions from the runner's PartitionTracker. `PlainCommits` commits the consumer's
offsets once every output of the records below them was acknowledged (records count their own outputs).
`TransactionalCommits` (`runner.transactional`) produces outputs inside one open transaction and commits it
together with the positions of every assigned partition (`send_offsets_to_transaction`); a failed produce
or commit, or lost partitions, abort it and rewind every partition to its committed offset.
"""
from __future__ import annotations

import logging
from typing import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from streams.sensors import Sensor
from streams.tracker import TP, PartitionTracker

log = logging.getLogger("assetstream.runner")


class PlainCommits:
    """At least once: a record finishes when the broker acknowledged all its outputs; commit its offsets."""

    counts_acks = True
    """Each record counts its unacknowledged outputs and finishes when they reach 0."""

    def __init__(self, name: str, consumer: Consumer, tracker: PartitionTracker, sensor: Sensor):
        self.name, self.consumer, self.tracker, self.sensor = name, consumer, tracker, sensor

    def begin(self) -> None:
        """Before a record's outputs are produced (nothing to do without transactions)."""

    def delivery_failed(self, err: KafkaError) -> None:
        """Not called: without a transaction a failed delivery is produced again (streams.outputs)."""

    def commit(self, tps: set[TP] | None = None) -> None:
        """Commit the positions that moved (of these partitions, or of all)."""
        offsets = self.tracker.to_commit(tps)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.tracker.mark_committed(offsets)
            self.sensor.on_commit()
        except KafkaException as exc:
            log.warning("%s: commit failed (will retry): %s", self.name, exc)

    def lost(self) -> None:
        """Partitions were lost: nothing of them is committed (the tracker already forgot them)."""


class TransactionalCommits:
    """Exactly once: outputs and input offsets in one transaction; anything failing aborts and rewinds."""

    counts_acks = False
    """A record finishes once its outputs are produced: the transaction commit is the acknowledgement."""

    def __init__(self, name: str, consumer: Consumer, producer: Producer, tracker: PartitionTracker,
                 sensor: Sensor, rewind: Callable[[], None]):
        self.name, self.consumer, self.producer, self.tracker, self.sensor = name, consumer, producer, tracker, sensor
        self.rewind = rewind  # the runner forgets every record since the last commit and seeks back to it
        self.open = False
        self.failed = False
        producer.init_transactions(30)

    def begin(self) -> None:
        if not self.open:
            self.producer.begin_transaction()
            self.open = True

    def delivery_failed(self, err: KafkaError) -> None:
        log.error("%s: transactional produce failed: %s", self.name, err)
        self.failed = True  # the commit aborts and rewinds

    def commit(self, tps: set[TP] | None = None) -> None:
        """The open transaction holds outputs of every partition: commit all positions with it (`tps` is
        ignored)."""
        offsets = self.tracker.to_commit(None)
        if not self.open and not offsets:
            return
        try:
            if self.failed:
                raise KafkaException(KafkaError(KafkaError._FAIL, "a produce in this transaction failed"))
            self.begin()
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
            self.open = False
            self.tracker.mark_committed(offsets)
            self.sensor.on_commit()
        except KafkaException as exc:
            log.warning("%s: transaction failed (%s): aborting and rewinding to the committed offsets",
                        self.name, exc)
            self.abort_and_rewind()

    def lost(self) -> None:
        if self.open:
            self.abort_and_rewind()  # the open transaction holds outputs of the lost partitions too

    def abort_and_rewind(self) -> None:
        """Throw away the open transaction and everything since the last commit."""
        try:
            self.producer.abort_transaction(30)
        except KafkaException as exc:
            log.error("%s: abort_transaction: %s", self.name, exc)
        self.open = False
        self.failed = False
        self.rewind()


Commits = PlainCommits | TransactionalCommits
