"""Non-blocking retries (runner.retry_mode=topic, issue 16.16) on the real broker: a transiently failing record
goes to the input's retry topic and comes back after its delay, without holding the records behind it; after
the last attempt it is dead-lettered with its first and last reason; an older retried event reaching the index
after a newer one does not win."""
from __future__ import annotations

import logging
import subprocess
import sys
import time

from confluent_kafka.admin import AdminClient

from app.producer import AssetPublisher, build_event
from consumers.index.sink import IndexSink
from domain.store.management import read_alias
from streams.runner import StageRunner
from streams.topics import topic_specs, wait_for_topics
from tests.kafka_support import (RunnerThread, committed, env_for, make_settings, provision, read_topic,
                                 wait_committed)
from tests.stages import AsyncEchoStage, EchoStage
from tests.store_support import as_items, settings_for, validated_asset


def ev(i: int, version: int | None = None, **attrs) -> dict:
    return build_event(f"asset-{i:04d}", f"file:///library/{i}.jpg", version=version or i + 1,
                       attributes={k: str(v) for k, v in attrs.items()})


def topic_mode(broker: str, prefix: str, **runner) -> object:
    """One partition, so every record of the test queues behind the first; inline, so in place retries would
    hold the partition for sure."""
    return make_settings(broker, prefix, topics={"partitions": 1},
                         runner={"retry_mode": "topic", "inline": True, **runner})


def publish(settings, events) -> float:
    with AssetPublisher(settings) as pub:
        pub.publish_events(events)
    return time.monotonic()


def test_transient_twice_then_success_is_delivered_once_and_holds_nothing_behind_it(broker, unique):
    # a 3 s delay: the six behind the failing one are out well before it under a loaded CI machine (1.5 s was not)
    s = topic_mode(broker, f"rtok{unique}", retry_topic_delays_s=[3.0], retry_max_attempts=4)
    provision(s)
    retry_topic = s.topics.retry_name("raw")
    publish(s, [ev(1, fail="transient:2")] + [ev(i) for i in range(2, 8)])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        out = read_topic(s, "preprocessed", 7)
        wait_committed(s, runner.group_id, "raw", 7)
        wait_committed(s, runner.group_id, retry_topic, 2)
        dead = read_topic(s, "dead_letter", 1, timeout_s=1)
    keys = [r["key"] for r in sorted(out, key=lambda r: r["offset"])]
    # every asset exactly once; the six queued behind the failing one were not held: they came first (in place
    # and inline, asset-0001 would have been first), all before its first retry was even due
    assert sorted(keys) == [f"asset-{i:04d}" for i in range(1, 8)]
    assert keys[-1] == "asset-0001"
    copies = read_topic(s, retry_topic, 2, decode=False)
    first_failure = int(copies[0]["headers"]["retry-first-failure"])
    assert max(r["timestamp_ms"] for r in out if r["key"] != "asset-0001") < first_failure + 3000
    assert dead == []
    # the retry topic holds its two copies, each saying how many attempts were made and where it came from
    assert [c["headers"]["retry-attempts"] for c in copies] == [b"1", b"2"]
    assert {c["headers"]["retry-origin"] for c in copies} == {f"{s.topics.name('raw')}/0/0".encode()}
    assert {c["headers"]["retry-first-reason"] for c in copies} == {b"test_transient"}
    gap = int(copies[1]["headers"]["retry-not-before"]) - int(copies[0]["headers"]["retry-not-before"])
    assert gap >= 3000  # the second copy was made when the first came due and failed again
    # input and retry topic committed: a restart redoes nothing
    assert sum(committed(s, runner.group_id, "raw").values()) == 7
    assert sum(committed(s, runner.group_id, retry_topic).values()) == 2


def test_always_failing_record_is_dead_lettered_after_n_attempts_with_first_and_last_reason(broker, unique):
    s = topic_mode(broker, f"rtdl{unique}", retry_topic_delays_s=[0.2, 0.4], retry_max_attempts=3)
    provision(s)
    publish(s, [ev(1, fail="transient:99"), ev(2)])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        dead = read_topic(s, "dead_letter", 1)
        out = read_topic(s, "preprocessed", 1)
        wait_committed(s, runner.group_id, s.topics.retry_name("raw"), 2)
    assert [r["key"] for r in out] == ["asset-0002"]
    assert len(dead) == 1
    letter = dead[0]["value"]
    assert letter["error_class"] == "transient_exhausted" and letter["attempts"] == 3
    assert letter["details"]["reason"] == "test_transient"
    assert letter["details"]["first_reason"] == "test_transient" == letter["details"]["last_reason"]
    assert letter["message"] == "transient failure 3"
    # it names where it first came from, so `dlq replay` sends it back to the input with no retry state
    assert (letter["original_topic"], letter["original_partition"], letter["original_offset"]) == (
        s.topics.name("raw"), 0, 0)
    assert not [h for h in letter["original_headers"] if h["key"].startswith("retry-")]
    waited = letter["last_failure_time"] - letter["first_failure_time"]
    assert waited.total_seconds() >= 0.6  # both delays were waited
    assert sum(committed(s, runner.group_id, s.topics.retry_name("raw")).values()) == 2


def test_older_retried_event_arrives_after_the_newer_one_and_the_index_keeps_the_newer(broker, unique, store):
    s = topic_mode(broker, f"rtord{unique}", retry_topic_delays_s=[0.5], retry_max_attempts=3)
    provision(s)
    publish(s, [ev(1, version=1, fail="transient:1"), ev(1, version=2)])
    with RunnerThread(StageRunner(EchoStage(s), s)):
        out = read_topic(s, "preprocessed", 2)
    versions = [r["value"]["asset"]["version"] for r in sorted(out, key=lambda r: r["offset"])]
    assert versions == [2, 1]  # the newer event overtook the older one being retried
    # what the index does with them in that order: the newer version stays (external versioning, 409 = success)
    sink = IndexSink(settings_for(store.url))
    try:
        for version in versions:
            assert sink.process_batch(as_items([validated_asset(f"ord-{unique}", version, title=f"v{version}")])) \
                == [None]
        doc = sink.client.get(index=read_alias(sink.cfg), id=f"ord-{unique}")
        assert (doc["_version"], doc["_source"]["title"]) == (2, "v2")
    finally:
        sink.close()


def test_io_stage_attempt_over_its_time_bound_is_retried_through_the_topic(broker, unique):
    s = make_settings(broker, f"rtio{unique}", topics={"partitions": 1},
                      runner={"retry_mode": "topic", "retry_topic_delays_s": [0.3], "retry_attempt_timeout_s": 0.5,
                              "concurrency": 1})
    provision(s)
    publish(s, [ev(1, stall_first_ms=30000), ev(2), ev(3)])
    with RunnerThread(StageRunner(AsyncEchoStage(s), s)):
        started = time.monotonic()
        out = read_topic(s, "preprocessed", 3)
        took = time.monotonic() - started
    assert sorted(r["key"] for r in out) == ["asset-0001", "asset-0002", "asset-0003"]
    assert took < 10, took  # not the 30 s the first attempt would have taken
    assert sorted(out, key=lambda r: r["offset"])[-1]["key"] == "asset-0001"


def test_retry_topic_with_child_processes(broker, unique):
    s = make_settings(broker, f"rtproc{unique}", topics={"partitions": 1},
                      runner={"retry_mode": "topic", "retry_topic_delays_s": [0.3], "processes": 1})
    provision(s)
    publish(s, [ev(1, fail="transient:1"), ev(2)])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        out = read_topic(s, "preprocessed", 2)
        wait_committed(s, runner.group_id, s.topics.retry_name("raw"), 1)
    keys = [r["key"] for r in sorted(out, key=lambda r: r["offset"])]
    assert keys == ["asset-0002", "asset-0001"]
    # the first attempt ran in the child; the retry in the worker's retry pool, once
    assert len({r["headers"]["pid"] for r in out}) == 2


def without_retry_topics(s) -> None:
    """Every topic but the retry topics, as a cluster provisioned before retry topics existed has them."""
    admin = AdminClient(s.kafka.client_config())
    specs = [spec for logical, spec in topic_specs(s).items() if not logical.endswith("_retry")]
    for fut in admin.create_topics(specs).values():
        fut.result(30)
    wait_for_topics(admin, [spec.topic for spec in specs], 30)


def test_an_explicit_topic_mode_without_its_retry_topic_refuses_to_start(broker, unique):
    s = make_settings(broker, f"rtmiss{unique}", topics={"partitions": 1}, runner={"retry_mode": "topic"})
    without_retry_topics(s)
    env = env_for(s)
    env["ASSETSTREAM_RUNNER__RETRY_MODE"] = "topic"
    result = subprocess.run([sys.executable, "-m", "app.cli", "worker", "tests.stages:EchoStage"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert f"refusing to start: echo: runner.retry_mode=topic but the retry topic {s.topics.retry_name('raw')} " \
           "does not exist; create it with `assetstream topics create`" in said
    assert "Traceback" not in result.stderr


def test_the_default_mode_without_a_retry_topic_retries_in_place_and_says_so(broker, unique, caplog):
    s = make_settings(broker, f"rtauto{unique}", topics={"partitions": 1}, runner={"inline": True})
    assert s.runner.retry_mode == "auto"
    without_retry_topics(s)
    publish(s, [ev(1, fail="transient:1"), ev(2)])
    with caplog.at_level(logging.WARNING, logger="assetstream.runner"):
        runner = StageRunner(EchoStage(s), s)
    assert runner.retry_topic is None
    assert f"the retry topic {s.topics.retry_name('raw')} does not exist; retrying transient failures in place" \
        in caplog.text
    with RunnerThread(runner):
        out = read_topic(s, "preprocessed", 2)
    # in place and inline: the failing record held the partition, so it still came first
    assert [r["key"] for r in sorted(out, key=lambda r: r["offset"])] == ["asset-0001", "asset-0002"]
