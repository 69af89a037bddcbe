"""runner.processes: a CPU stage worked in child processes, on the real broker, with the runner's guarantees."""
from __future__ import annotations

import os
import time
from pathlib import Path

from confluent_kafka import Producer

from consumers.preprocess.stage import PreprocessStage
from streams import metrics
from app.producer import build_event
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, committed, make_settings, provision, read_to_end, read_topic, wait_committed
from tests.stages import EchoStage
from tests.test_runner import ev, publish

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def failed_count(stage: str, error_class: str) -> float:
    return metrics.RECORDS_FAILED.labels(stage, error_class)._value.get()


def test_child_processes_deliver_dead_letter_retry_and_commit(broker, unique):
    # in place: the transient record's retries run in the child too (topic mode: tests/test_retry_topics.py)
    s = make_settings(broker, f"procs{unique}", runner={"processes": 2, "max_in_flight": 200,
                                                         "retry_max_attempts": 4, "retry_mode": "inplace"})
    provision(s)
    p = Producer({"bootstrap.servers": broker})
    p.produce(s.topics.name("raw"), key=b"asset-poison", value=b"\x00not-avro", headers=[("x", b"1")])
    p.flush(10)
    events = [ev(i) for i in range(40)] + [ev(40, fail="permanent"), ev(41, fail="transient:2")]
    publish(s, events)
    transient_before = failed_count("echo", "transient")
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        out = read_topic(s, "preprocessed", 41)
        dead = read_topic(s, "dead_letter", 2)
        wait_committed(s, runner.group_id, "raw", 43, timeout_s=15)
    keys = sorted(r["key"] for r in out)
    assert keys == [f"asset-{i:04d}" for i in range(40)] + ["asset-0041"], "each good record exactly once"
    pids = {r["headers"]["pid"].decode() for r in out}
    assert str(os.getpid()) not in pids, "the stage ran in the runner's own process"
    for r in out:
        for header in ("trace-id", "idempotency-key", "stage", "source", "echo"):
            assert header in r["headers"], header
        assert r["value"]["asset"]["asset_id"] == r["key"]
    by_key = {d["key"]: d["value"] for d in dead}
    assert by_key["asset-poison"]["error_class"] == "poison"
    assert by_key["asset-poison"]["original_value"] == b"\x00not-avro"
    assert by_key["asset-0040"]["error_class"] == "permanent"
    assert by_key["asset-0040"]["details"]["reason"] == "test_permanent"
    assert "PermanentError" in by_key["asset-0040"]["stack"]
    # two failed attempts of asset-0041 happened in a child and are counted in the runner's metrics
    assert failed_count("echo", "transient") - transient_before == 2
    assert sum(committed(s, s.groups.name("echo"), "raw").values()) == 43


def test_a_child_process_that_dies_stops_the_worker_and_nothing_is_lost(broker, unique):
    s = make_settings(broker, f"procdie{unique}", runner={"processes": 1, "max_in_flight": 50})
    provision(s)
    publish(s, [ev(i) for i in range(10)])
    thread = RunnerThread(StageRunner(EchoStage(s), s))
    with thread as runner:
        first = read_topic(s, "preprocessed", 10)
        wait_committed(s, runner.group_id, "raw", 10, timeout_s=10)
        publish(s, [ev(10, exit_child=1)] + [ev(i) for i in range(11, 20)])  # the child exits mid-record
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not runner.stopping:
            time.sleep(0.1)
        assert runner.stopping, "the runner kept going without its child"
        assert runner.fatal_error and "child process" in runner.fatal_error
        thread.thread.join(s.runner.drain_timeout_s / 2)
        assert not thread.thread.is_alive(), "the drain waited for records a dead child can never finish"
    # nothing is committed past the lost record in its partition; what another partition committed was output
    # (records are chunked per partition: a chunk of another partition may finish before the stop)
    raw = {r["key"]: (r["partition"], r["offset"]) for r in read_topic(s, "raw", 20, decode=False)}
    done = committed(s, s.groups.name("echo"), "raw")
    lost_p, lost_o = raw["asset-0010"]
    assert done.get(lost_p, 0) <= lost_o, "committed past the lost record"
    output = {r["key"] for r in read_topic(s, "preprocessed", 20, timeout_s=2)}
    assert {k for k, (p, o) in raw.items() if o < done.get(p, 0)} <= output, "committed a record never output"
    assert len(first) == 10
    # the orchestrator restarts the worker (here: in threads, where exit_child does nothing): all arrive
    with RunnerThread(StageRunner(EchoStage(s), s.with_overrides(runner={"processes": 0}))):
        out = read_topic(s, "preprocessed", 20, distinct_keys=True)
    assert {r["key"] for r in out} == {f"asset-{i:04d}" for i in range(20)}


def test_a_stage_that_cannot_be_built_in_a_child_fails_the_worker_at_start(broker, unique):
    import pytest

    from tests.stages import UnbuildableInChildStage

    s = make_settings(broker, f"procbad{unique}", runner={"processes": 1})
    provision(s)
    publish(s, [ev(1)])
    runner = StageRunner(UnbuildableInChildStage(s), s)
    with pytest.raises(RuntimeError, match="could not be started in a child process"):
        runner.run()
    assert not runner.assigned, "joined the group with a stage that cannot work"
    assert sum(committed(s, s.groups.name("echo"), "raw").values()) == 0


def test_the_preprocess_stage_runs_in_child_processes(broker, unique, tmp_path):
    """The real stage, rebuilt in each child from the settings (models, fetch policy and all)."""
    s = make_settings(broker, f"procpre{unique}", runner={"processes": 2, "max_in_flight": 20},
                      preprocess={"file_roots": [str(SAMPLES)]})
    provision(s)
    images = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    publish(s, [build_event(f"img-{i}", p.resolve().as_uri(), version=1) for i, p in enumerate(images)])
    with RunnerThread(StageRunner(PreprocessStage(s), s)):
        out = read_topic(s, "preprocessed", len(images))
    assert len(out) == len(images)
    for r in out:
        v = r["value"]
        assert v["image"]["width"] > 0 and v["hashes"]["sha256"], r["key"]
        assert v["thumbnail"] is not None and v["stamp"]["stage"] == "preprocess"
    assert len(out) == len({r["key"] for r in out})


def test_stopping_cuts_a_childs_retries_short_and_leaves_the_record_uncommitted(broker, unique):
    # in place: the child is mid-backoff when the worker stops
    s = make_settings(broker, f"procstop{unique}", runner={"retry_mode": "inplace", "processes": 1, "max_in_flight": 50,
                                                            "retry_base_delay_s": 4, "retry_max_delay_s": 4,
                                                            "retry_max_attempts": 10})
    provision(s)
    publish(s, [ev(1, fail="transient:99")])
    before = failed_count("echo", "transient")
    thread = RunnerThread(StageRunner(EchoStage(s), s))
    with thread as runner:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not runner.tracker.in_flight():
            time.sleep(0.05)
        time.sleep(1.5)  # the child failed its first attempt and sleeps in a 4 s backoff now
        started = time.monotonic()
        runner.stop()
        thread.thread.join(30)
        took = time.monotonic() - started
    assert took < 3, f"stop waited {took:.1f}s for a child's retries"
    assert failed_count("echo", "transient") > before, "the record was never attempted"
    assert sum(committed(s, s.groups.name("echo"), "raw").values()) == 0, "an unfinished record was committed"
    assert read_to_end(s, "dead_letter") == [], "abandoned on stop, not dead-lettered"
