"""The consumer-lag gauge tells the truth while a worker's partitions are paused (issue 16.6): records
published during a pause show up in `assetstream_consumer_lag` on the partitions they went to."""
from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from app.producer import AssetPublisher, build_event
from streams import metrics
from streams.avro import topic_names
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic
from tests.stages import HoldableEchoStage


def high_watermarks(settings, logical: str) -> dict[int, int]:
    """What an operator would compare with: how many records each partition holds, counted by reading them all
    (tansu answers ListOffsets with the start of the last batch, so the watermark query is not the truth)."""
    topic = topic_names(settings)[logical]
    c = Consumer({**settings.kafka.client_config(), "group.id": "lag-count", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        ends, eof = {p: 0 for p in parts}, set()
        deadline = time.monotonic() + 20
        while len(eof) < len(parts) and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                eof.add(msg.partition())
                continue
            ends[msg.partition()] = msg.offset() + 1
        return ends
    finally:
        c.close()


def gauge(settings, partition: int) -> float:
    topic = topic_names(settings)["raw"]
    return metrics.CONSUMER_LAG.labels("holdecho", topic, str(partition))._value.get()


def publish(settings, first: int, n: int) -> None:
    with AssetPublisher(settings) as pub:
        pub.publish_events([build_event(f"lag-{i:04d}", f"file:///library/{i}.jpg", version=1)
                            for i in range(first, first + n)])


def test_lag_gauge_follows_records_published_while_the_partitions_are_paused(broker, unique):
    s = make_settings(broker, f"lagpause{unique}")
    provision(s)
    publish(s, 0, 6)
    with RunnerThread(StageRunner(HoldableEchoStage(s), s)) as runner:
        read_topic(s, "preprocessed", 6, timeout_s=60)
        consumed = high_watermarks(s, "raw")
        deadline = time.monotonic() + 30
        while any(gauge(s, p) for p in consumed) and time.monotonic() < deadline:
            time.sleep(0.2)
        runner.stage.hold = True
        while runner.backpressure.current != "held" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runner.backpressure.current == "held"
        publish(s, 6, 9)  # while paused: nothing is consumed, the lag must grow
        ends = high_watermarks(s, "raw")
        expected = {p: ends[p] - consumed[p] for p in ends}
        assert sum(expected.values()) == 9 and sum(1 for v in expected.values() if v) >= 2
        shown: dict[int, float] = {}
        while time.monotonic() < deadline + 15:
            shown = {p: gauge(s, p) for p in expected}
            if shown == expected:
                break
            time.sleep(0.5)
        assert shown == expected, f"lag gauge {shown} while paused, true lag {expected}"
        runner.stage.hold = False
        read_topic(s, "preprocessed", 15, timeout_s=60)
        while any(gauge(s, p) for p in expected) and time.monotonic() < deadline + 45:
            time.sleep(0.2)
        assert {p: gauge(s, p) for p in expected} == {p: 0 for p in expected}
