"""The stage runner on a real tansu broker: delivery, dead letters, retries, crashes, rebalances, drain."""
from __future__ import annotations

import signal
import time
from collections import Counter

from confluent_kafka import Producer

from app.producer import AssetPublisher, build_event
from streams.runner import StageRunner
from tests.kafka_support import (RunnerThread, committed, make_settings, provision, read_to_end, read_topic,
                                 start_worker, wait_committed)
from tests.stages import EchoStage


def publish(settings, events):
    with AssetPublisher(settings) as pub:
        pub.publish_events(events)


def ev(i: int, **attrs) -> dict:
    return build_event(f"asset-{i:04d}", f"file:///library/{i}.jpg", version=i + 1,
                       attributes={k: str(v) for k, v in attrs.items()})


def test_record_passes_through_with_key_headers_and_payload(broker, unique):
    s = make_settings(broker, f"pass{unique}")
    provision(s)
    event = ev(1)
    event["product_context"] = {"sku": "SKU-1", "category": "shoes", "name": None, "brand": None}
    publish(s, [event])
    with RunnerThread(StageRunner(EchoStage(s), s)):
        out = read_topic(s, "preprocessed", 1)
    assert len(out) == 1
    rec = out[0]
    assert rec["key"] == "asset-0001"
    assert rec["value"]["asset"]["product_context"]["sku"] == "SKU-1"
    assert rec["value"]["asset"]["event_id"] == event["event_id"]
    assert rec["value"]["stamp"]["stage"] == "echo"
    for header in ("trace-id", "idempotency-key", "stage", "stage-version", "source", "echo"):
        assert header in rec["headers"], header
    assert rec["headers"]["source"].decode().startswith(f"{s.topics.name('raw')}/")


def test_poison_and_permanent_failures_are_dead_lettered_and_the_stream_continues(broker, unique):
    s = make_settings(broker, f"dlq{unique}")
    provision(s)
    p = Producer({"bootstrap.servers": broker})
    p.produce(s.topics.name("raw"), key=b"asset-poison", value=b"\x00garbage-not-avro", headers=[("x", b"1")])
    p.flush(10)
    publish(s, [ev(1, fail="permanent"), ev(2), ev(3), ev(4, bad_output="1")])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        out = read_topic(s, "preprocessed", 2)
        dead = read_topic(s, "dead_letter", 3)
        wait_committed(s, runner.group_id, "raw", 5, timeout_s=10)
    assert sorted(r["key"] for r in out) == ["asset-0002", "asset-0003"]
    by_key = {d["key"]: d["value"] for d in dead}
    assert set(by_key) == {"asset-poison", "asset-0001", "asset-0004"}
    # an output its schema refuses is the stage's bug, said as such: a reason, the topic and the Avro message
    unserializable = by_key["asset-0004"]
    assert unserializable["error_class"] == "permanent"
    assert unserializable["details"]["reason"] == "output_not_serializable"
    assert unserializable["details"]["output_topic"] == "preprocessed" and "stamp" in unserializable["message"]
    poison, perm = by_key["asset-poison"], by_key["asset-0001"]
    assert poison["error_class"] == "poison" and poison["original_value"] == b"\x00garbage-not-avro"
    assert poison["original_headers"][0] == {"key": "x", "value": b"1"}
    assert perm["error_class"] == "permanent" and perm["details"]["reason"] == "test_permanent"
    assert perm["message"] == "asked to fail permanently" and "PermanentError" in perm["stack"]
    assert perm["original_topic"] == s.topics.name("raw") and perm["stage"] == "echo"
    assert perm["attempts"] == 1 and perm["first_failure_time"] <= perm["last_failure_time"]
    # everything, including the dead letters, is committed
    assert sum(committed(s, s.groups.name("echo"), "raw").values()) == 5


def test_transient_failure_is_retried_then_succeeds_without_duplicates(broker, unique):
    s = make_settings(broker, f"retry{unique}")
    provision(s)
    publish(s, [ev(1, fail="transient:2"), ev(2, fail="transient:99")])
    with RunnerThread(StageRunner(EchoStage(s), s.with_overrides(runner={"retry_max_attempts": 4}))):
        out = read_topic(s, "preprocessed", 1)
        dead = read_topic(s, "dead_letter", 1)
    assert [r["key"] for r in out] == ["asset-0001"]  # exactly once, after two retries
    assert len(dead) == 1 and dead[0]["value"]["error_class"] == "transient_exhausted"
    assert dead[0]["value"]["attempts"] == 4


def test_sigkill_mid_batch_then_restart_delivers_every_asset(broker, unique, tmp_path):
    s = make_settings(broker, f"kill{unique}", runner={"concurrency": 2, "max_in_flight": 8})
    provision(s)
    n = 40
    publish(s, [ev(i, slow_ms=50) for i in range(n)])
    proc = start_worker(s, "tests.stages:EchoStage", tmp_path / "w1.log")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until it is part-way through
            if len(read_topic(s, "preprocessed", 5, timeout_s=1)) >= 5:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        before = len(read_topic(s, "preprocessed", n, timeout_s=2))
        assert before < n, "the worker finished before it was killed; the test proves nothing"
        proc = start_worker(s, "tests.stages:EchoStage", tmp_path / "w2.log")
        out = read_topic(s, "preprocessed", n, timeout_s=90, distinct_keys=True)
        wait_committed(s, s.groups.name("echo"), "raw", n, timeout_s=30)
        final_offsets = committed(s, s.groups.name("echo"), "raw")
    finally:
        proc.kill()
        proc.wait(10)
    keys = Counter(r["key"] for r in out)
    assert set(keys) == {f"asset-{i:04d}" for i in range(n)}  # at least once, nothing lost
    assert sum(final_offsets.values()) == n  # and the restarted worker committed everything
    # idempotent keys: every copy of an asset carries the same idempotency key, so a keyed view dedupes
    by_key: dict[str, set] = {}
    for r in out:
        by_key.setdefault(r["key"], set()).add(r["headers"]["idempotency-key"])
    assert all(len(v) == 1 for v in by_key.values())


def test_two_workers_split_partitions_and_a_rebalance_loses_nothing(broker, unique):
    s = make_settings(broker, f"two{unique}", runner={"concurrency": 2})
    provision(s)
    n = 60
    publish(s, [ev(i, slow_ms=20) for i in range(n // 2)])
    first = RunnerThread(StageRunner(EchoStage(s), s))
    first.__enter__()
    second = RunnerThread(StageRunner(EchoStage(s), s))
    try:
        time.sleep(1)
        second.__enter__()
        publish(s, [ev(i, slow_ms=20) for i in range(n // 2, n)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (first.runner.assigned and second.runner.assigned):
            time.sleep(0.2)
        assert first.runner.assigned and second.runner.assigned, "partitions were not split"
        assert not (first.runner.assigned & second.runner.assigned)
        first.stop()  # rebalance: everything moves to the second worker
        out = read_topic(s, "preprocessed", n, timeout_s=60, distinct_keys=True)
    finally:
        second.stop()
    assert {r["key"] for r in out} == {f"asset-{i:04d}" for i in range(n)}


def test_a_worker_added_mid_stream_takes_a_share_of_the_input_and_every_record_is_output_once(broker, unique):
    """Scale 1 -> 2 -> 1 while records flow: the second member gets input partitions within a few seconds (not
    only retry partitions, not after minutes), the first keeps the rest, and after the second leaves again the
    first takes everything back; every record is in the output exactly once."""
    s = make_settings(broker, f"scale{unique}", topics={"partitions": 4}, runner={"concurrency": 2})
    provision(s)
    first = RunnerThread(StageRunner(EchoStage(s), s))
    a = first.__enter__()
    second = RunnerThread(StageRunner(EchoStage(s), s))
    keys = [f"asset-{i:04d}" for i in range(150)]

    def inputs(runner: StageRunner) -> set[int]:
        return {p for t, p in runner.assigned if t == runner.input_topic}

    try:
        publish(s, [ev(i, slow_ms=40) for i in range(100)])  # ~2 s of work for one worker
        assert wait_committed(s, s.groups.name("echo"), "raw", 5, timeout_s=20) >= 5, "the first worker is idle"
        b = second.__enter__()  # joins while the first is consuming
        publish(s, [ev(i, slow_ms=40) for i in range(100, 120)])
        started, deadline = time.monotonic(), time.monotonic() + 20
        while time.monotonic() < deadline and not (inputs(a) and inputs(b)):
            time.sleep(0.1)
        split_after = time.monotonic() - started
        assert inputs(a) and inputs(b), (f"input partitions not split: first {sorted(a.assigned)}, "
                                         f"second {sorted(b.assigned)}")
        assert not (a.assigned & b.assigned)
        assert inputs(a) | inputs(b) == {0, 1, 2, 3}
        assert split_after < 3 * s.kafka.session_timeout_ms / 1000, f"the split took {split_after:.1f}s"
        assert len(read_topic(s, "preprocessed", 120, timeout_s=30)) >= 120
        second.stop()  # scale down: its partitions go back to the first worker
        publish(s, [ev(i) for i in range(120, 150)])
        out = read_topic(s, "preprocessed", 150, timeout_s=30)
        assert inputs(a) == {0, 1, 2, 3}
    finally:
        second.stop() if second.thread.is_alive() else None
        first.stop()
    by_key = Counter(r["key"] for r in out)
    assert set(by_key) == set(keys), f"lost: {sorted(set(keys) - set(by_key))[:10]}"
    assert [k for k, c in by_key.items() if c > 1] == [], "records output twice"


def test_with_pod_names_a_stopped_worker_s_partitions_go_to_the_one_left(broker, unique, monkeypatch):
    """POD_NAME set (static membership asked for) on tansu, which never expires a static member: the workers
    join as dynamic members, so when one stops for good the other takes all partitions within seconds."""
    s = make_settings(broker, f"pods{unique}", topics={"partitions": 4})
    provision(s)
    monkeypatch.setenv("POD_NAME", "validate-a")
    first = RunnerThread(StageRunner(EchoStage(s), s))
    monkeypatch.setenv("POD_NAME", "validate-b")
    second = RunnerThread(StageRunner(EchoStage(s), s))
    a, b = first.__enter__(), second.__enter__()

    def inputs(runner: StageRunner) -> set[int]:
        return {p for t, p in runner.assigned if t == runner.input_topic}

    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (inputs(a) and inputs(b)):
            time.sleep(0.1)
        assert inputs(a) and inputs(b), "the two workers did not split the input"
        second.stop()  # scale down (SIGTERM): a static member would not leave the group
        deadline = time.monotonic() + 3 * s.kafka.session_timeout_ms / 1000
        while time.monotonic() < deadline and inputs(a) != {0, 1, 2, 3}:
            time.sleep(0.1)
        assert inputs(a) == {0, 1, 2, 3}, f"partitions left with the stopped worker: the first has {sorted(a.assigned)}"
        publish(s, [ev(i) for i in range(20)])
        out = read_topic(s, "preprocessed", 20, timeout_s=20)
    finally:
        first.stop()
    assert sorted(Counter(r["key"] for r in out).values()) == [1] * 20


def test_sigterm_drains_in_flight_work_and_commits(broker, unique, tmp_path):
    s = make_settings(broker, f"term{unique}", runner={"concurrency": 4, "max_in_flight": 16})
    provision(s)
    n = 12
    publish(s, [ev(i, slow_ms=400) for i in range(n)])
    proc = start_worker(s, "tests.stages:EchoStage", tmp_path / "w.log")
    try:
        read_topic(s, "preprocessed", 2, timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = read_to_end(s, "preprocessed")
    done = {r["key"] for r in out}
    offsets = committed(s, s.groups.name("echo"), "raw")
    # the started records (0.4 s each) fit in the drain timeout: they finished, were delivered and committed;
    # those not started yet were left uncommitted to the next owner, so the commit covers exactly the outputs
    assert len(out) == len(done) >= 2
    assert sum(offsets.values()) == len(done)
    assert "draining" in (tmp_path / "w.log").read_text()


def test_exactly_once_mode_commits_outputs_and_offsets_in_one_transaction(broker, unique):
    s = make_settings(broker, f"eos{unique}", runner={"transactional": True})
    provision(s)
    publish(s, [ev(i) for i in range(5)] + [ev(9, fail="permanent")])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        out = read_topic(s, "preprocessed", 5)
        dead = read_topic(s, "dead_letter", 1)
        wait_committed(s, runner.group_id, "raw", 6, timeout_s=15)
    assert sorted(r["key"] for r in out) == [f"asset-{i:04d}" for i in range(5)]
    assert [d["key"] for d in dead] == ["asset-0009"]
    assert sum(committed(s, s.groups.name("echo"), "raw").values()) == 6


def test_an_oversize_record_is_dead_lettered_truncated_and_the_worker_keeps_going(broker, unique):
    """A ~1 MB poison record: its dead letter (original bytes + context) exceeds the producer's limit and no
    dead_letters.store is configured, so the runner cuts the original value down (keeping the first reason
    and the whole value's size) rather than crash or drop the dead letter."""
    s = make_settings(broker, f"huge{unique}")
    provision(s)
    p = Producer({"bootstrap.servers": broker, "message.max.bytes": 2_000_000})
    p.produce(s.topics.name("raw"), key=b"asset-huge", value=b"\x01" * 999_000)
    p.flush(10)
    publish(s, [ev(1)])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        out = read_topic(s, "preprocessed", 1)
        dead = read_topic(s, "dead_letter", 1)
        wait_committed(s, runner.group_id, "raw", 2, timeout_s=10)
    assert [r["key"] for r in out] == ["asset-0001"]
    letter = dead[0]["value"]
    assert dead[0]["key"] == "asset-huge" and letter["error_class"] == "poison"
    assert letter["details"]["reason"] == "deserialize"  # the first failure, not the letter's own size
    assert "999000" in letter["details"]["original_value_cut"] and len(letter["original_value"]) == 1024
    assert letter["original_value_size"] == 999_000 and letter["original_value_ref"] is None
    assert sum(committed(s, s.groups.name("echo"), "raw").values()) == 2


def test_shutdown_with_abandoned_work_waits_the_drain_timeout_once(broker, unique):
    # in-place retries on purpose: the record is mid-backoff in its worker thread when the worker stops
    s = make_settings(broker, f"aband{unique}", runner={"retry_mode": "inplace", "drain_timeout_s": 3,
                                                       "retry_max_attempts": 1000, "retry_base_delay_s": 0.2,
                                                       "retry_max_delay_s": 0.2})
    provision(s)
    publish(s, [ev(1, fail="transient:100000")])
    thread = RunnerThread(StageRunner(EchoStage(s), s))
    runner = thread.__enter__()
    deadline = time.monotonic() + 30
    while runner.tracker.in_flight() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    thread.stop()
    assert time.monotonic() - started < 3 + 2.5, "shutdown waited the drain timeout more than once"
    assert sum(committed(s, s.groups.name("echo"), "raw").values()) == 0  # abandoned: left uncommitted


def test_a_partition_revoked_while_paused_is_resumed_when_it_comes_back(broker, unique):
    """librdkafka remembers a pause across revoke and re-assign: the runner must resume it."""
    from tests.stages import HoldableEchoStage

    s = make_settings(broker, f"repause{unique}")
    provision(s)
    a = RunnerThread(StageRunner(HoldableEchoStage(s), s))
    runner_a = a.__enter__()
    b = RunnerThread(StageRunner(HoldableEchoStage(s), s))
    try:
        deadline = time.monotonic() + 30
        while len(runner_a.assigned) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        runner_a.stage.hold = True  # a pauses everything it owns
        time.sleep(0.5)
        runner_b = b.__enter__()
        while not runner_b.assigned and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        moved = set(runner_b.assigned)
        assert moved, "no partition moved to the second worker"
        runner_a.stage.hold = False  # a resumes what it still owns
        time.sleep(0.5)
        b.stop()  # the moved partitions come back to a
        while len(runner_a.assigned) < 3 and time.monotonic() < deadline + 60:
            time.sleep(0.1)
        publish(s, [ev(i) for i in range(30)])
        out = read_topic(s, "preprocessed", 30, timeout_s=30)
    finally:
        a.stop()
    partitions_served = {r["partition"] for r in out}
    assert {p for _, p in moved} <= partitions_served, "a partition that came back stayed paused"
    assert len({r["key"] for r in out}) == 30


def test_at_the_in_flight_limit_the_worker_takes_nothing_more_and_pauses_on_a_stall(broker, unique):
    from streams import metrics

    s = make_settings(broker, f"limit{unique}", runner={"concurrency": 1, "max_in_flight": 4, "pause_after_s": 0.5})
    provision(s)
    publish(s, [ev(i, slow_ms=700) for i in range(12)])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not runner.tracker.in_flight():
            time.sleep(0.05)
        peak, paused = 0, 0.0
        for _ in range(20):  # 2 s of a stage slower than the limit allows
            peak = max(peak, runner.tracker.in_flight())
            paused = max(paused, metrics.PAUSED.labels("echo", "backpressure")._value.get())
            time.sleep(0.1)
        out = read_topic(s, "preprocessed", 12, timeout_s=60)
    assert peak <= 4, f"{peak} records taken with max_in_flight=4"
    assert paused == 1.0, "a stall at the limit did not pause the partitions"
    assert sorted(r["key"] for r in out) == [f"asset-{i:04d}" for i in range(12)]



def _backlog(s, n: int) -> None:
    """n records on one partition, every 4th slow (0.5 s), the others fast: with two threads, fast records finish
    while an earlier slow one of their partition is still running (what a busy worker's in-flight records look
    like); n=24 is 1.7 s of work, more than the drain timeout."""
    provision(s)
    publish(s, [ev(i, slow_ms=500 if i % 4 == 0 else 20) for i in range(n)])


def _drain_settings(broker, prefix: str):
    return make_settings(broker, prefix, topics={"partitions": 1},
                         runner={"concurrency": 2, "max_in_flight": 40, "drain_timeout_s": 1.0})


def _each_once(s, n: int, out: list[dict]) -> None:
    by_key = Counter(r["key"] for r in out)
    assert set(by_key) == {f"asset-{i:04d}" for i in range(n)}
    assert sorted(k for k, c in by_key.items() if c > 1) == [], "records output by both workers"


def test_a_stop_with_records_in_flight_outputs_each_once_across_a_restart(broker, unique):
    """SIGTERM with far more records taken than the drain timeout allows (trial 17, finding 5): the records not
    started are left to the next owner at once; the started ones finish within the drain timeout; the commit
    then covers every record output, so the worker after the restart outputs none of them again."""
    s, n = _drain_settings(broker, f"drain1st{unique}"), 24
    _backlog(s, n)
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        deadline = time.monotonic() + 30
        while runner.tracker.in_flight() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    assert 0 < len(read_to_end(s, "preprocessed")) < n, "the drain was meant to leave records to the next owner"
    with RunnerThread(StageRunner(EchoStage(s), s)):
        read_topic(s, "preprocessed", n, timeout_s=30, distinct_keys=True)
    _each_once(s, n, read_to_end(s, "preprocessed"))


def test_a_worker_joining_while_records_are_in_flight_outputs_each_once(broker, unique):
    """Scale-up during a backlog (trial 17, finding 5): the first worker gives its partition up in the rebalance
    with many records taken; those not started are left to the partition's next owner (either worker), never
    output by the first."""
    s, n = _drain_settings(broker, f"drainjoin{unique}"), 24
    _backlog(s, n)
    first, second = RunnerThread(StageRunner(EchoStage(s), s)), RunnerThread(StageRunner(EchoStage(s), s))
    a = first.__enter__()
    try:
        deadline = time.monotonic() + 30
        while a.tracker.in_flight() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        second.__enter__()
        read_topic(s, "preprocessed", n, timeout_s=30, distinct_keys=True)
    finally:
        second.stop() if second.thread.is_alive() else None
        first.stop()
    _each_once(s, n, read_to_end(s, "preprocessed"))



def test_a_record_outliving_the_drain_is_not_output_when_its_partition_comes_back(broker, unique):
    """A rebalance takes the partition away and gives it back to the same worker (range: every member gives
    everything up) while a record is still running past the drain timeout: its copy taken again from the
    committed offset is output, the old one is not (when it finishes at last)."""
    import threading

    from confluent_kafka import Consumer

    gate, calls = threading.Event(), []

    class FirstCallWaits(EchoStage):
        def process(self, value, ctx):
            calls.append(ctx.offset)
            if len(calls) == 1:
                gate.wait(30)  # a record far slower than the drain timeout
            return super().process(value, ctx)

    s = make_settings(broker, f"comeback{unique}", topics={"partitions": 1},
                      runner={"concurrency": 2, "drain_timeout_s": 0.5})
    provision(s)
    publish(s, [ev(0)])
    done = threading.Event()

    def other_member() -> None:  # same group, another topic: a rebalance that gives the worker all it had
        c = Consumer({**s.kafka.client_config(), "group.id": s.groups.name("echo"),
                      "session.timeout.ms": s.kafka.session_timeout_ms,
                      "heartbeat.interval.ms": s.kafka.heartbeat_interval_ms})
        c.subscribe([s.topics.name("preprocessed")])
        while not done.is_set():
            c.poll(0.1)
        c.close()

    other = threading.Thread(target=other_member, daemon=True)
    try:
        with RunnerThread(StageRunner(FirstCallWaits(s), s)):
            deadline = time.monotonic() + 30
            while not calls and time.monotonic() < deadline:
                time.sleep(0.05)
            other.start()
            read_topic(s, "preprocessed", 1, timeout_s=30)  # the copy taken again after the rebalance
            gate.set()  # the old copy finishes now
            time.sleep(0.3)
    finally:
        gate.set()
        done.set()
    other.join(10)
    assert calls == [0, 0]
    assert [r["key"] for r in read_to_end(s, "preprocessed")] == ["asset-0000"]
