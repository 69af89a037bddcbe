"""A slow record at the head of a partition holds its own thread only (issue 16.16, the burst case): the finished
records behind it wait to be committed, but the worker keeps taking and finishing records past runner.max_in_flight;
only runner.max_uncommitted (per partition) bounds that window, so a restart never redoes more than it."""
from __future__ import annotations

from app.producer import AssetPublisher, build_event
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic, wait_committed
from tests.stages import EchoStage

SLOW_MS = 8000  # far longer than the 40 quick records take on 4 threads


def events(n: int) -> list[dict]:
    """asset-0000 is slow (first on the single partition), the n - 1 behind it are quick."""
    return [build_event(f"asset-{i:04d}", f"file:///library/{i}.jpg", version=1,
                        attributes={"slow_ms": str(SLOW_MS)} if i == 0 else {}) for i in range(n)]


def one_partition(broker: str, prefix: str, **runner) -> object:
    return make_settings(broker, prefix, topics={"partitions": 1},
                         runner={"concurrency": 4, "max_in_flight": 4, **runner})


def run(s, n: int) -> tuple[list[str], int]:
    """Keys of the outputs in the order they were produced, and the input's commit position at the end."""
    provision(s)
    with AssetPublisher(s) as pub:
        pub.publish_events(events(n))
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        out = read_topic(s, "preprocessed", n, timeout_s=60)
        position = wait_committed(s, runner.group_id, "raw", n)
    return [r["key"] for r in sorted(out, key=lambda r: r["offset"])], position


def test_records_behind_a_slow_one_are_worked_past_the_in_flight_limit(broker, unique):
    s = one_partition(broker, f"hol{unique}")
    keys, _ = run(s, 41)
    assert sorted(keys) == [f"asset-{i:04d}" for i in range(41)]
    # all 40 quick records went through while the slow one held one of the 4 threads; counting the finished ones
    # waiting behind it against max_in_flight=4 let only 3 pass before it, the other 37 after it
    assert keys[-1] == "asset-0000", f"the slow record came out at position {keys.index('asset-0000')}"


def test_the_uncommitted_window_behind_a_slow_record_is_bounded(broker, unique):
    s = one_partition(broker, f"holwin{unique}", max_uncommitted=10)
    keys, position = run(s, 41)
    assert sorted(keys) == [f"asset-{i:04d}" for i in range(41)]
    # 10 taken (the slow one + 9 quick; up to max_in_flight - 1 more from the last fetch before the pause), then
    # the partition waits for the slow record's commit
    assert 9 <= keys.index("asset-0000") <= 12, keys
    assert position == 41  # and then it went on to the end, everything committed


def test_finished_records_behind_an_unfinished_one_are_uncommitted_but_not_worked():
    from streams.tracker import PartitionTracker

    t, a, b = PartitionTracker(), ("raw", 0), ("raw", 1)
    for off in range(5):
        t.add(a, off)
    t.add(b, 0)
    for off in (1, 2, 3):  # offset 0 of partition 0 is the slow one
        t.finish(a, off)
    assert t.in_flight() == 6 and t.working() == 3  # a: 0 and 4 being worked; b: 0
    t.finish(a, 0)
    assert t.in_flight(a) == 1 and t.working() == 2 and t.position[a] == 4


def test_a_finish_from_before_a_partition_came_back_does_not_skew_the_working_count():
    """A record still running when its partition was revoked and given back finishes late: that offset is no
    longer (or not yet again) handed out, so it must not sit in the finished set for good."""
    from streams.tracker import PartitionTracker

    t, a = PartitionTracker(), ("raw", 0)
    for off in range(10, 14):  # handed out again after the partition came back at 10
        t.add(a, off)
    t.finish(a, 7)  # the old copy of offset 7 (committed before the revoke) finishes now
    t.finish(a, 20)  # and one the worker had fetched past what it has now
    assert t.working() == 4 and t.in_flight(a) == 4
    for off in range(10, 14):
        t.finish(a, off)
    assert t.working() == 0 and t.in_flight() == 0 and t.position[a] == 14
