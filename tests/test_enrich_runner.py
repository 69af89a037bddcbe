"""The enrich stage under the real runner on a real broker, with the real Claude adapter against a
loopback server speaking the Anthropic wire format: the budget cap pauses consumption — records past the
cap are neither enriched, dropped nor committed — and the provider is called once per asset."""
from __future__ import annotations

import time

from consumers.enrich.replay import ReplayServer
from consumers.enrich.stage import EnrichStage
from streams import metrics
from app.producer import AssetPublisher
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, committed, make_settings, provision, read_to_end, read_topic
from tests.test_enrich_stage import KEY, jpeg, preprocessed, script_ok


def test_budget_cap_pauses_consumption_without_dropping_records(broker, unique):
    with ReplayServer() as srv:
        script_ok(srv)
        s = make_settings(broker, f"budget{unique}", runner={"concurrency": 1, "max_in_flight": 1},
                          enrich={"provider": "claude", "anthropic_api_key": KEY, "anthropic_base_url": srv.url,
                                  "dedupe": "memory", "budget_usd": 0.02, "request_timeout_s": 5.0})
        provision(s)
        phashes = ["0000000000000000", "ffffffffffffffff", "0f0f0f0f0f0f0f0f", "f0f0f0f0f0f0f0f0"]
        with AssetPublisher(s) as pub:
            for i, ph in enumerate(phashes):
                pub.send("preprocessed", f"b{i}", preprocessed(f"b{i}", data=jpeg(i + 1), phash=ph))
        runner = StageRunner(EnrichStage(s), s)
        with RunnerThread(runner):
            out = read_topic(s, "enriched", 2, timeout_s=60)
            time.sleep(3)  # would process the rest now if it were not paused
            paused = metrics.PAUSED.labels("enrich", "budget")._value.get()
            group = runner.group_id
            done = sum(committed(s, group, "preprocessed").values())
            late = read_topic(s, "enriched", 4, timeout_s=2)
        requests = len(srv.requests)
    assert len(out) == 2 and len(late) == 2, "consumption went on past the budget"
    assert paused == 1.0
    assert done == 2, "records past the budget must stay uncommitted (not dropped)"
    assert all(r["value"]["cost_usd"] > 0 for r in out)
    assert read_to_end(s, "dead_letter") == []
    assert requests == 6  # three tasks per asset, two assets: nothing called past the budget
