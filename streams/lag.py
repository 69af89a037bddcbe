"""Consumer lag per assigned partition: the high watermark minus the next offset to consume
(`assetstream_consumer_lag`), and minus the committed offset (`assetstream_consumer_lag_committed`). The first
leaves out the records this worker has taken and not finished or not committed yet (up to runner.max_in_flight /
max_uncommitted); the second counts them, as `assetstream status` and KEDA's Kafka scaler do, so it is the one
that says whether work is waiting (trial 22: lag 0 on every partition with 27 records in flight). The committed
offset is the one this worker last committed, else the first offset it took since the partition was assigned
(`PartitionTracker.committed_from`): no extra broker request.

The high watermark comes from fetch responses (librdkafka's cached watermarks), never from ListOffsets alone:
brokers such as tansu answer ListOffsets(latest) with the start of the last batch, short of the real end. A
paused partition is not fetched, so its cached watermark freezes (issue 16.6: "true lag 5, metric 3"): for
those, a small probe consumer (assign-only, no group membership, fetches of one batch at most) is pointed at
the end of each paused partition, and the fetch responses it gets carry the true high watermark. The probe exists
only while partitions are paused, never blocks the poll thread (it fetches in librdkafka's threads; an update
reads its watermarks), is assign-only (never joins the group, never commits) and fetches only what is published
during the pause, a batch at a time (`max.partition.fetch.bytes=1`, `queued.max.messages.kbytes=1`).

With the lag, each update reports how many partitions of each input topic the worker owns and how many the topic
has (`TopicSizes`): a partition nobody owns reports no lag at all, so only the pair shows it
(AssetstreamPartitionsUnowned, docs/monitoring.md).
"""
from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from streams.sensors import Sensor
from streams.tracker import TP, PartitionTracker


def probe_config(client_config: dict[str, Any], group_id: str, fetch_wait_ms: int) -> dict[str, Any]:
    """An assign-only consumer that learns high watermarks from fetch responses (never joins a group, never
    commits; fetches a batch at a time and keeps at most 1 KB queued)."""
    return {**client_config, "group.id": group_id, "enable.auto.commit": False, "enable.auto.offset.store": False,
            "isolation.level": "read_committed", "fetch.wait.max.ms": fetch_wait_ms,
            "max.partition.fetch.bytes": 1, "queued.max.messages.kbytes": 1}


class ConsumerLag:
    """The lag of one worker's assigned partitions, reported to the sensor. Poll thread only."""

    def __init__(self, consumer: Consumer, client_config: dict[str, Any], group_id: str, tracker: PartitionTracker,
                 sensor: Sensor, interval_s: float = 2.0, topics: tuple[str, ...] = ()):
        self.consumer, self.sensor, self.tracker = consumer, sensor, tracker
        self.sizes = TopicSizes(consumer, topics)  # the input topics whose partitions are counted
        self.interval_s = interval_s
        self.lags: dict[TP, int] = {}
        self._last = 0.0
        self._probe_config = probe_config(client_config, f"{group_id}.lag-probe", fetch_wait_ms=500)
        self._probe: Consumer | None = None
        self._probed: set[TP] = set()  # what the probe is assigned to

    def update(self, assigned: set[TP], paused: set[TP], force: bool = False) -> None:
        if not force and time.monotonic() - self._last < self.interval_s:
            return
        self._last = time.monotonic()
        self._report_ownership(assigned)
        if not assigned:
            return
        try:
            positions = self.consumer.position([TopicPartition(t, p) for t, p in assigned])
        except KafkaException:
            return
        probed = self._probe_ends(paused & assigned)
        for tp in positions:
            key = (tp.topic, tp.partition)
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            high = max(high if high is not None else -1, probed.get(key, -1))
            if high < 0:
                continue
            floor = low if low is not None else 0
            committed = self.tracker.committed_from(key)
            pos = tp.offset if tp.offset >= 0 else (committed if committed is not None else floor)
            self.lags[key] = max(0, high - max(pos, floor))
            self.sensor.on_lag(tp.topic, tp.partition, self.lags[key],
                               max(0, high - max(committed if committed is not None else pos, floor)))

    def _report_ownership(self, assigned: set[TP]) -> None:
        self.sizes.refresh()
        for topic in self.sizes.topics:
            self.sensor.on_partitions(topic, sum(1 for t, _ in assigned if t == topic), self.sizes.counts.get(topic))

    def _probe_ends(self, tps: set[TP]) -> dict[TP, int]:
        """The fetch-reported high watermark of partitions the worker does not fetch (paused). Never blocks the
        poll thread: the probe stays assigned at the end of the paused partitions while they are paused, fetches
        in librdkafka's background threads, and each update only reads its watermarks and drops what it fetched
        (so its 1 KB queue never fills and fetching goes on)."""
        if not tps:
            if self._probed and self._probe is not None:
                self._probe.unassign()
            self._probed = set()
            return {}
        if self._probe is None:
            self._probe = Consumer(self._probe_config)
        if tps != self._probed:
            self._probe.assign([TopicPartition(t, p, OFFSET_END) for t, p in tps])
            self._probed = set(tps)
        self._probe.consume(num_messages=1000, timeout=0)  # the records themselves are not wanted
        ends: dict[TP, int] = {}
        for t, p in tps:
            try:
                _, high = self._probe.get_watermark_offsets(TopicPartition(t, p), cached=True)
            except KafkaException:
                continue
            if high is not None and high >= 0:
                ends[(t, p)] = high
        return ends

    def forget(self, tp: TP) -> None:
        self.lags.pop(tp, None)
        self.sensor.on_lag(tp[0], tp[1], 0, 0)

    def total(self, assigned: set[TP]) -> int:
        return sum(self.lags.get(tp, 0) for tp in assigned)

    def close(self) -> None:
        self.sizes.close()
        if self._probe is not None:
            self._probe.close()
            self._probe = None


class TopicSizes:
    """How many partitions each topic has, from the consumer's metadata, refreshed at most every `refresh_s` by a
    short-lived background thread: a metadata request (up to `timeout_s` with the broker down) never blocks the
    poll loop, which only reads `counts`. librdkafka's metadata call is thread-safe; `close()` waits for a refresh
    in progress, so it must come before the consumer is closed."""

    def __init__(self, consumer: Consumer, topics: tuple[str, ...], refresh_s: float = 30.0, timeout_s: float = 3.0):
        self.consumer, self.topics = consumer, tuple(topics)
        self.refresh_s, self.timeout_s = refresh_s, timeout_s
        self.counts: dict[str, int] = {}
        self._last = float("-inf")
        self._thread: threading.Thread | None = None
        self._closed = False

    def refresh(self) -> None:
        busy = self._thread is not None and self._thread.is_alive()
        if not self.topics or self._closed or busy or time.monotonic() - self._last < self.refresh_s:
            return
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._fetch, name="topic-sizes", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        for topic in self.topics:
            if self._closed:
                return
            try:
                md = self.consumer.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
            except (KafkaException, RuntimeError):  # broker unreachable, or the consumer closed meanwhile
                return
            if md is not None and md.error is None and md.partitions:
                self.counts[topic] = len(md.partitions)  # one dict store: safe to read from the poll thread

    def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1)
