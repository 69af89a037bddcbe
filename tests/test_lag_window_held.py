"""The consumer-lag gauge tells the truth for a partition paused on its own by runner.max_uncommitted (a slow
record at its head): records published while it is held show up in its lag, like those of any paused partition
(issue 16.6; the window hold came with issue 16.16)."""
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
        shown = None
        while time.monotonic() < deadline + 15:
            shown = runner.lags.get(tp)
            if shown == expected:
                break
            time.sleep(0.5)
        assert shown == expected, f"lag {shown} while window-held, true lag {expected} ({taken} taken of 35)"
        assert tp in runner.backpressure.window_held and runner.tracker.in_flight(tp) == taken
        # and an operator sees why the partition is not consumed
        assert metrics.PAUSED.labels(runner.stage.name, "uncommitted_window")._value.get() == 1
