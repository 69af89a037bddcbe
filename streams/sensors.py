"""What the runtime reports while it runs, behind one small interface (faust's Sensor is the model).

The runner, its executors and its outputs call a `Sensor` as things happen; `PrometheusSensor` turns the calls
into the metrics of `streams.metrics` (rules and dashboards are tested against those). Per-record counts and
observations are gathered in the poll thread and added to Prometheus once per loop iteration (`flush`).
"""
from __future__ import annotations

import time
from typing import Any

from streams import metrics
from streams.records import now_ms


class Sensor:
    """Does nothing: the interface, and a sensor for runs that export no metrics. Every method is called from
    the runner's poll thread, except on_failed/on_retried (from the thread that works the record)."""

    def on_records_in(self, n: int) -> None:
        """n records were taken from the input topic."""

    def on_record_done(self, received: float, event_time_ms: int | None) -> None:
        """A record finished (all its outputs acknowledged): taken at `received` (monotonic), about an event
        that happened at `event_time_ms` (epoch ms, if the stage said)."""

    def on_outputs_acked(self, counts: dict[str, int]) -> None:
        """The broker acknowledged this many outputs (and dead letters) per topic since the last call."""

    def on_dead_letter(self, error_class: str) -> None:
        """A record is dead-lettered."""

    def on_failed(self, error_class: str, n: int = 1) -> None:
        """n processing attempts failed with this error class."""

    def on_retried(self, n: int = 1) -> None:
        """n retries after a transient error."""

    def on_commit(self) -> None:
        """Offsets were committed (or a transaction with them)."""

    def on_pause(self, reason: str | None, previous: str | None) -> None:
        """The reason the assigned partitions are paused changed (None: consuming)."""

    def on_offset_gap(self, topic: str, partition: int, first: int, last: int) -> None:
        """The broker skipped offsets first..last of a partition this worker reads."""

    def on_lag(self, topic: str, partition: int, lag: int, committed_lag: int) -> None:
        """Consumer lag of an assigned partition from the next offset to consume (`lag`) and from the committed
        offset (`committed_lag`: also counts records taken and not finished or not committed yet); 0 once it is
        revoked."""

    def on_partitions(self, topic: str, owned: int, total: int | None) -> None:
        """This worker owns `owned` partitions of an input topic that has `total` (None: not known yet)."""

    def on_in_flight(self, n: int) -> None:
        """Records taken and not yet committable."""

    def flush(self) -> None:
        """Add what was gathered since the last flush (once per poll-loop iteration)."""


class PrometheusSensor(Sensor):
    """The metrics every worker exports (streams.metrics), for one stage."""

    def __init__(self, stage: str):
        self.stage = stage
        # labelled children looked up once: .labels() costs microseconds on the per-record path
        self._in = metrics.RECORDS_IN.labels(stage)
        self._in_flight = metrics.IN_FLIGHT.labels(stage)
        self._seconds = metrics.HistogramBatch(metrics.PROCESSING_SECONDS.labels(stage))
        self._age = metrics.HistogramBatch(metrics.RECORD_AGE.labels(stage))
        self._out: dict[str, Any] = {}

    def on_records_in(self, n: int) -> None:
        self._in.inc(n)

    def on_record_done(self, received: float, event_time_ms: int | None) -> None:
        self._seconds.observe(time.monotonic() - received)
        if event_time_ms:
            self._age.observe(max(0.0, (now_ms() - event_time_ms) / 1000))

    def on_outputs_acked(self, counts: dict[str, int]) -> None:
        for topic, n in counts.items():
            counter = self._out.get(topic)
            if counter is None:
                counter = self._out[topic] = metrics.RECORDS_OUT.labels(self.stage, topic)
            counter.inc(n)

    def on_dead_letter(self, error_class: str) -> None:
        metrics.RECORDS_DEAD_LETTERED.labels(self.stage, error_class).inc()

    def on_failed(self, error_class: str, n: int = 1) -> None:
        metrics.RECORDS_FAILED.labels(self.stage, error_class).inc(n)

    def on_retried(self, n: int = 1) -> None:
        metrics.RECORDS_RETRIED.labels(self.stage).inc(n)

    def on_commit(self) -> None:
        metrics.COMMITS.labels(self.stage).inc()

    def on_pause(self, reason: str | None, previous: str | None) -> None:
        if previous:
            metrics.PAUSED.labels(self.stage, previous).set(0)
        if reason:
            metrics.PAUSED.labels(self.stage, reason).set(1)

    def on_offset_gap(self, topic: str, partition: int, first: int, last: int) -> None:
        metrics.OFFSET_GAPS.labels(self.stage, topic, str(partition)).inc()

    def on_lag(self, topic: str, partition: int, lag: int, committed_lag: int) -> None:
        metrics.CONSUMER_LAG.labels(self.stage, topic, str(partition)).set(lag)
        metrics.CONSUMER_LAG_COMMITTED.labels(self.stage, topic, str(partition)).set(committed_lag)

    def on_partitions(self, topic: str, owned: int, total: int | None) -> None:
        metrics.PARTITIONS_ASSIGNED.labels(self.stage, topic).set(owned)
        if total is not None:
            metrics.TOPIC_PARTITIONS.labels(self.stage, topic).set(total)

    def on_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def flush(self) -> None:
        self._seconds.flush()
        self._age.flush()
