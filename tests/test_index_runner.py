"""The index sink under the real runner on a real broker: store outages pause the sink without losing
or committing anything early; poison and malformed documents are dead-lettered while the rest flows."""
from __future__ import annotations

import time

from domain.store.client import make_client
from domain.store.management import ensure_index, read_alias
from consumers.index.sink import IndexSink
from app.producer import AssetPublisher
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, committed, make_settings, provision, read_to_end, read_topic
from tests.store_support import validated_asset


def sink_settings(broker, prefix, url):
    return make_settings(broker, prefix, index={"url": url, "server_mode": "serverless", "number_of_replicas": 0,
                                                "index": f"{prefix}-assets", "health_check_interval_s": 0.2,
                                                "request_timeout_s": 2.0},
                         runner={"batch_max_wait_s": 0.2, "retry_max_delay_s": 0.5})


def publish_validated(s, values):
    with AssetPublisher(s) as pub:
        for v in values:
            pub.send("validated", v["enriched"]["pre"]["asset"]["asset_id"], v)
        pub.flush()


def indexed_ids(s) -> set[str]:
    es = make_client(s)
    es.indices.refresh(index=read_alias(s))
    hits = es.search(index=read_alias(s), query={"match_all": {}}, size=100)["hits"]["hits"]
    return {h["_id"] for h in hits}


def wait_for(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_store_outage_pauses_the_sink_then_everything_is_indexed(broker, unique, own_store):
    s = sink_settings(broker, f"idx{unique}", own_store.url)
    provision(s)
    ensure_index(make_client(s), s)
    group = s.groups.name("index")
    publish_validated(s, [validated_asset(f"asset-{i}") for i in range(5)])
    runner = StageRunner(IndexSink(s), s)
    with RunnerThread(runner):
        assert wait_for(lambda: len(indexed_ids(s)) == 5)
        assert wait_for(lambda: sum(committed(s, group, "validated").values()) == 5)
        own_store.stop()
        publish_validated(s, [validated_asset(f"late-{i}") for i in range(4)])
        time.sleep(4)  # the sink keeps trying while the store is down
        assert sum(committed(s, group, "validated").values()) == 5, "committed past un-indexed records"
        assert runner.stage.should_pause() is not None and not runner.stage.ready()
        own_store.start()  # in-memory store: comes back empty, so the index is created again
        ensure_index(make_client(s), s)
        assert wait_for(lambda: {f"late-{i}" for i in range(4)} <= indexed_ids(s), 40)
        assert wait_for(lambda: sum(committed(s, group, "validated").values()) == 9)
    assert read_to_end(s, "dead_letter") == []  # an outage dead-letters nothing


def test_malformed_document_is_dead_lettered_and_batch_mates_indexed(broker, unique, own_store):
    s = sink_settings(broker, f"idxbad{unique}", own_store.url)
    provision(s)
    ensure_index(make_client(s), s)
    good = [validated_asset(f"ok-{i}") for i in range(3)]
    bad = validated_asset("bad-gps", gps=(123.0, 2.0))  # latitude out of range: the store rejects it
    publish_validated(s, good[:1] + [bad] + good[1:])
    with RunnerThread(StageRunner(IndexSink(s), s)):
        assert wait_for(lambda: indexed_ids(s) == {"ok-0", "ok-1", "ok-2"})
        dead = read_topic(s, "dead_letter", 1)
    assert [d["key"] for d in dead] == ["bad-gps"]
    assert dead[0]["value"]["error_class"] == "permanent" and dead[0]["value"]["stage"] == "index"
    assert "mapper_parsing_exception" in str(dead[0]["value"]["details"]) + dead[0]["value"]["message"]
