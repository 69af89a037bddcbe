"""Non-blocking retries end to end (issue 16.16) with the defaults a user gets: the real preprocess, enrich,
validate and index workers on the real broker and store, all assets on one partition. An origin that hangs
(slow-loris) does not hold back the good assets published after it: they are indexed, and the preprocess group
commits past it, while it is still failing; once the origin recovers the asset is indexed too. An origin that
never recovers ends on the dead-letter topic with its reason after the last attempt."""
from __future__ import annotations

import threading
import time

from prometheus_client import REGISTRY

from app.producer import AssetPublisher, build_event
from consumers.enrich.stage import EnrichStage
from consumers.index.sink import IndexSink
from consumers.preprocess.stage import PreprocessStage
from consumers.validate.stage import ValidateStage
from domain.store.client import make_client
from domain.store.management import ensure_index, read_alias
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, committed, make_settings, provision, read_topic
from tests.preprocess_support import LocalServer, hanging_until, jpeg, scene

ATTEMPTS = 8


def indexed(s) -> set[str]:
    es = make_client(s)
    try:
        es.indices.refresh(index=read_alias(s))
        hits = es.search(index=read_alias(s), query={"match_all": {}}, size=100)["hits"]["hits"]
    finally:
        es.close()
    return {h["_id"] for h in hits}


def held(stage: str) -> float:
    return REGISTRY.get_sample_value("assetstream_retry_held", {"stage": stage}) or 0.0


def test_a_hanging_origin_holds_back_no_good_asset_and_is_indexed_once_it_recovers(broker, unique, store):
    s = make_settings(
        broker, f"rte2e{unique}", topics={"partitions": 1},
        runner={"retry_topic_delays_s": [1.0, 2.0], "retry_max_attempts": ATTEMPTS, "batch_max_wait_s": 0.2},
        preprocess={"allow_private_networks": True, "fetch_timeout_s": 1.0, "ocr_enabled": False,
                    "faces_enabled": False, "nsfw_enabled": False},
        index={"url": store.url, "server_mode": "serverless", "number_of_replicas": 0,
               "index": f"rte2e{unique}-assets", "refresh": "true"})
    provision(s)  # `topics create`: the retry topics too, so the workers retry through them (runner.retry_mode=auto)
    ensure_index(make_client(s), s)
    origin = LocalServer()
    recovered, never = threading.Event(), threading.Event()
    origin.routes["/flaky.jpg"] = hanging_until(recovered, jpeg(scene(1)))
    origin.routes["/gone.jpg"] = hanging_until(never, jpeg(scene(2)))
    good = {f"good-{i}": origin.image(f"/good-{i}.jpg", jpeg(scene(10 + i))) for i in range(6)}
    # the hanging ones first on the one partition: in place, everything after them would wait for their retries
    events = [build_event("flaky", origin.url("/flaky.jpg"), version=1),
              build_event("gone", origin.url("/gone.jpg"), version=1)]
    events += [build_event(k, url, version=1) for k, url in good.items()]
    stages = [PreprocessStage(s), EnrichStage(s), ValidateStage(s), IndexSink(s)]
    runners = [StageRunner(stage, s) for stage in stages]
    assert runners[0].retry_topic == s.topics.retry_name("raw"), "retry topics are the default where they exist"
    threads = [RunnerThread(r) for r in runners]
    try:
        for t in threads:
            t.__enter__()
        with AssetPublisher(s) as pub:
            pub.publish_events(events)
        deadline, seen_held = time.monotonic() + 90, 0.0
        while not set(good) <= indexed(s) and time.monotonic() < deadline:
            seen_held = max(seen_held, held("preprocess"))
            time.sleep(0.1)
        # the good assets are searchable, and preprocess committed past the hanging ones, while both still fail
        assert set(good) <= indexed(s), f"good assets not indexed: {set(good) - indexed(s)}"
        assert "flaky" not in indexed(s) and "gone" not in indexed(s)
        # (the commit follows the outputs' acks on the runner's commit interval: give it that long under load,
        # while both origins still hang)
        commit_deadline = time.monotonic() + 20
        while committed(s, runners[0].group_id, "raw") != {0: len(events)} and time.monotonic() < commit_deadline:
            time.sleep(0.5)
        assert committed(s, runners[0].group_id, "raw") == {0: len(events)}, "a hanging fetch held the partition"
        while seen_held == 0 and time.monotonic() < deadline:  # waiting for its next attempt, in memory
            seen_held = max(seen_held, held("preprocess"))
            time.sleep(0.05)
        assert seen_held >= 1, "assetstream_retry_held never showed the retry records waiting"

        recovered.set()
        deadline = time.monotonic() + 60
        while "flaky" not in indexed(s) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "flaky" in indexed(s), "the asset was not indexed after its origin recovered"

        letters = read_topic(s, "dead_letter", 1, timeout_s=90)
    finally:
        never.set()
        for t in reversed(threads):
            t.__exit__(None, None, None)
        origin.close()
    letter = letters[0]["value"]
    assert letters[0]["key"] == "gone"
    assert (letter["stage"], letter["error_class"], letter["attempts"]) == ("preprocess", "transient_exhausted",
                                                                             ATTEMPTS)
    assert letter["details"]["first_reason"] in ("timeout", "too_slow")
    assert letter["details"]["last_reason"] in ("timeout", "too_slow")
    # named where it first came from, not the retry topic
    assert (letter["original_topic"], letter["original_partition"], letter["original_offset"]) == (
        s.topics.name("raw"), 0, 1)
    assert "gone" not in indexed(s)
