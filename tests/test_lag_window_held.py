"""The consumer-lag gauge tells the truth for a partition paused on its own by runner.max_uncommitted (a slow
record at its head): records published while it is held show up in its lag, like those of any paused partition
(issue 16.6; the window hold came with issue 16.16). The committed-offset gauge counts the records taken and not
finished as well (trial 22: lag 0 with 27 records in flight, an HPA on it scaled down early)."""
from __future__ import annotations

import time

from app.producer import AssetPublisher, build_event
from streams import metrics
from streams.avro import topic_names
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision
from tests.stages import EchoStage


def test_lag_counts_records_published_while_a_partition_is_window_held(broker, unique):
    s = make_settings(broker, f"lagwin{unique}", topics={"partitions": 1},
                      runner={"concurrency": 4, "max_in_flight": 4, "max_uncommitted": 10, "drain_timeout_s": 1})
    provision(s)
    tp = (topic_names(s)["raw"], 0)
    with AssetPublisher(s) as pub:  # the first record is slow: 19 quick ones finish behind it, uncommitted
        pub.publish_events([build_event(f"lw-{i:04d}", f"file:///library/{i}.jpg", version=1,
                                        attributes={"slow_ms": "60000"} if i == 0 else {}) for i in range(20)])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        deadline = time.monotonic() + 30
        while tp not in runner.backpressure.window_held and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tp in runner.backpressure.window_held, "the partition was not held by max_uncommitted"
        time.sleep(1.0)  # a fetch issued before the pause has been answered
        taken = runner.tracker.in_flight(tp)
        with AssetPublisher(s) as pub:  # 15 more while the partition is held: nothing of them is consumed
            pub.publish_events([build_event(f"lw-{i:04d}", f"file:///library/{i}.jpg", version=1)
                                for i in range(20, 35)])
        expected = 35 - taken
        committed_gauge = metrics.CONSUMER_LAG_COMMITTED.labels(runner.stage.name, tp[0], "0")
        shown = from_committed = None
        while time.monotonic() < deadline + 15:
            shown, from_committed = runner.lags.get(tp), committed_gauge._value.get()
            if shown == expected and from_committed == 35:
                break
            time.sleep(0.5)
        assert shown == expected, f"lag {shown} while window-held, true lag {expected} ({taken} taken of 35)"
        # nothing is committed (offset 0 is still being worked): all 35 are work waiting, as `status` shows
        assert taken > 0 and from_committed == 35, f"committed lag {from_committed}, {taken} taken, 0 committed"
        assert tp in runner.backpressure.window_held and runner.tracker.in_flight(tp) == taken
        # and an operator sees why the partition is not consumed
        assert metrics.PAUSED.labels(runner.stage.name, "uncommitted_window")._value.get() == 1


def test_lag_counts_retry_records_while_the_retry_partitions_are_held(broker, unique):
    """While more retries than runner.retry_held_max wait in memory the retry topic's partitions are paused:
    their lag must still count the retries not yet taken, not a frozen fetch watermark."""
    s = make_settings(broker, f"lagrt{unique}", topics={"partitions": 1},
                      runner={"retry_mode": "topic", "retry_topic_delays_s": [60], "retry_held_max": 2,
                              "drain_timeout_s": 1})
    provision(s)
    retry_tp = (s.topics.retry_name("raw"), 0)
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        time.sleep(1.0)  # assigned, both topics fetched once
        def wave(start, n):  # every one fails once and waits 60 s in the retry topic
            with AssetPublisher(s) as pub:
                pub.publish_events([build_event(f"lr-{i:04d}", f"file:///library/{i}.jpg", version=1,
                                                attributes={"fail": "transient:1"}) for i in range(start, start + n)])

        wave(0, 4)
        deadline = time.monotonic() + 30
        while not runner._retries_paused and time.monotonic() < deadline:
            time.sleep(0.2)
        assert runner._retries_paused, "the retry partitions were never held"
        wave(4, 8)  # these reach the retry topic while its partition is paused
        shown, expected = None, None
        while time.monotonic() < deadline + 15:
            expected = 12 - len(runner.delayed)  # in the retry topic, not taken
            shown = runner.lags.get(retry_tp)
            if shown == expected and expected > 0:
                break
            time.sleep(0.5)
        assert runner._retries_paused, "the retry partitions were never held"
        assert shown == expected and expected > 0, f"retry lag {shown}, true {expected}"
