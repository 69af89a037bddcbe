"""Backfill through Claude Message Batches (enrich.batch = "backfill"): the real stage and the real Claude adapter
(anthropic SDK, client.messages.batches) against a loopback server answering in the API's wire format from
recordings — create, retrieve (in progress, then ended), the results JSONL. Live records stay synchronous; each
backfill request is billed at half the synchronous price; an expired entry is asked again in the next batch, an
errored one dead-letters its record; under the real runner on a real broker, offsets are committed only after the
batch results were collected and the outputs acknowledged, and the poll loop never waits for a batch."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from app.producer import AssetPublisher
from consumers.enrich.replay import AnthropicBatches, ReplayServer
from consumers.enrich.stage import EnrichStage
from streams import metrics
from streams.errors import PermanentError, TransientError
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, committed, make_settings, provision, read_to_end, read_topic
from tests.test_enrich_stage import KEY, ctx, jpeg, make_settings as enrich_settings, preprocessed, rec, script_ok

BATCH = {"batch": "backfill", "batch_max_requests": 6, "batch_max_wait_s": 0.3, "batch_poll_interval_s": 0.05,
         "dedupe": "off", "result_cache": "off"}


def backfill(asset_id: str, seed: int) -> dict:
    v = preprocessed(asset_id, data=jpeg(seed))
    v["asset"]["attributes"] = {"ingest": "backfill"}
    return v


def serve_batches(srv: ReplayServer, polls_in_progress: int = 1) -> AnthropicBatches:
    script_ok(srv)
    srv.script("batch_create", rec("claude/batch_create.json"))
    srv.script("batch_retrieve", *[rec("claude/batch_in_progress.json")] * polls_in_progress,
               rec("claude/batch_ended.json"))
    srv.script("batch_results", rec("claude/batch_results.json"))
    return AnthropicBatches(srv)


def process(stage: EnrichStage, *values: dict) -> list:
    async def go():
        try:
            return await asyncio.gather(*(stage.aprocess(v, ctx(v["asset"]["asset_id"])) for v in values),
                                        return_exceptions=True)
        finally:
            await stage.aclose()
    return asyncio.run(go())


def test_backfill_goes_through_one_message_batch_at_half_price_and_live_traffic_stays_synchronous():
    with ReplayServer() as srv:
        batches = serve_batches(srv, polls_in_progress=2)
        stage = EnrichStage(enrich_settings(srv.url, **BATCH))
        live, b1, b2 = process(stage, preprocessed("live"), backfill("bf-1", 1), backfill("bf-2", 2))
        sync_calls = [r for r in srv.requests if r.path == "/v1/messages"]
        creates = [r for r in srv.requests if r.path == "/v1/messages/batches"]
        polls = [r for r in srv.requests if r.method == "GET" and not r.path.endswith("/results")]
        results = [r for r in srv.requests if r.path.endswith("/results")]

    assert len(sync_calls) == 3  # the live record's three tasks, synchronously
    assert len(creates) == 1 and batches.entries == 6  # both backfill records' six tasks in one batch
    assert len(polls) >= 3 and len(results) == 1  # in progress twice, then ended; results fetched once
    assert all(r.had_api_key for r in srv.requests)

    # a batch entry carries exactly the parameters of the synchronous call (system with cache_control, the forced
    # output tool, the image), under a custom_id of the API's alphabet
    sent = {r["params"]["tool_choice"]["name"]: r for r in creates[0].body["requests"]}
    sync = {r.body["tool_choice"]["name"]: r.body for r in sync_calls}
    for tool, entry in sent.items():
        assert set(entry["params"]) == set(sync[tool]) - {"timeout"}
        assert entry["params"]["system"] == sync[tool]["system"] and entry["params"]["tools"] == sync[tool]["tools"]
        assert len(entry["custom_id"]) <= 64 and entry["custom_id"].isalnum()

    # same answers and tokens as the synchronous path; each task's cost is exactly half; request id names the entry
    live_prov = {p["task"]: p for p in live.value["provenance"]}
    for out in (b1, b2):
        assert out.value["enrichment"]["alt_text"] == live.value["enrichment"]["alt_text"]
        assert out.value["enrichment"]["tags"] == live.value["enrichment"]["tags"]
        for p in out.value["provenance"]:
            assert p["input_tokens"] == live_prov[p["task"]]["input_tokens"]
            assert p["cost_usd"] == pytest.approx(live_prov[p["task"]]["cost_usd"] / 2, rel=1e-12)
            assert p["request_id"].startswith("msgbatch_") and "/" in p["request_id"]
        assert out.value["cost_usd"] == pytest.approx(live.value["cost_usd"] / 2, rel=1e-12)


def test_a_copy_waiting_in_the_same_batch_is_not_asked_twice():
    with ReplayServer() as srv:
        batches = serve_batches(srv)
        original, copy_ = backfill("orig", 1), backfill("copy", 1)  # the same bytes and text under another id
        copy_["asset"]["source_uri"] = "file:///x/copy.jpg"
        a, b = process(EnrichStage(enrich_settings(srv.url, **BATCH)), original, copy_)
    assert batches.entries == 3
    assert a.value["cost_usd"] > 0 and b.value["cost_usd"] == 0.0
    assert b.value["enrichment"] == a.value["enrichment"]
    assert [p["request_id"] for p in b.value["provenance"]] == [p["request_id"] for p in a.value["provenance"]]


def test_a_worker_restarted_during_a_batch_waits_for_that_batch_instead_of_paying_again(store):
    """The batch journal in the real search store: worker A sends the batch and stops before it ends (its records
    stay uncommitted); worker B, given the same records, finds their entries and collects that batch's answers."""
    with ReplayServer() as srv:
        serve_batches(srv, polls_in_progress=10_000)  # never ends while A runs
        s = enrich_settings(srv.url, **{**BATCH, "result_cache": "store"}).with_overrides(
            index={"url": store.url, "server_mode": "serverless", "number_of_replicas": 0,
                   "index": f"batchjournal-{uuid.uuid4().hex[:6]}"})
        records = [backfill("rs-1", 1), backfill("rs-2", 2)]
        worker_a = EnrichStage(s)

        async def stopped_while_waiting():
            tasks = [asyncio.ensure_future(worker_a.aprocess(v, ctx(v["asset"]["asset_id"]))) for v in records]
            deadline = time.monotonic() + 20
            while metrics.LLM_BATCHES.labels("claude", "submitted")._value.get() == sent_before or \
                    sum(1 for r in srv.requests if r.method == "GET") < 3:
                assert time.monotonic() < deadline, "the batch was never sent"
                await asyncio.sleep(0.05)
            await worker_a.aclose()  # the worker stops: the records fail transiently, nothing is produced
            return await asyncio.gather(*tasks, return_exceptions=True)
        sent_before = metrics.LLM_BATCHES.labels("claude", "submitted")._value.get()
        stopped = asyncio.run(stopped_while_waiting())
        assert all(isinstance(r, TransientError) for r in stopped)
        (create,) = [r for r in srv.requests if r.path == "/v1/messages/batches"]

        srv.rescript("batch_retrieve", rec("claude/batch_ended.json"))  # the batch ends meanwhile
        outs = process(EnrichStage(s), *records)  # worker B: the same records, redelivered
        creates = [r for r in srv.requests if r.path == "/v1/messages/batches"]
    assert creates == [create]  # no second batch: nothing paid twice
    assert all(o.value["enrichment"]["alt_text"] for o in outs)
    batch_id = outs[0].value["provenance"][0]["request_id"].split("/")[0]
    sent_ids = {r["custom_id"] for r in create.body["requests"]}
    for o in outs:
        assert o.value["cost_usd"] > 0  # paid once, by the batch A sent, and accounted by B who collected it
        for p in o.value["provenance"]:
            assert p["request_id"].split("/") [0] == batch_id and p["request_id"].split("/")[1] in sent_ids


def test_an_expired_entry_is_asked_again_in_the_next_batch_and_an_errored_one_dead_letters_its_record():
    with ReplayServer() as srv:
        batches = serve_batches(srv)
        srv.script("batch_create", rec("claude/batch_create.json"))
        srv.script("batch_results", rec("claude/batch_results.json"))
        batches.script_entry("record_alt_text", rec("claude/batch_entry_expired.json"))
        stage = EnrichStage(enrich_settings(srv.url, **{**BATCH, "batch_max_requests": 3}))
        (ok,) = process(stage, backfill("exp-1", 1))
        assert ok.value["enrichment"]["alt_text"]  # the expired alt_text came back from the second batch
        assert len([r for r in srv.requests if r.path == "/v1/messages/batches"]) == 2 and batches.entries == 4

        batches.script_entry("record_rights", rec("claude/batch_entry_errored.json"))
        (bad,) = process(EnrichStage(enrich_settings(srv.url, **{**BATCH, "batch_max_requests": 3})),
                         backfill("err-1", 2))
    assert isinstance(bad, PermanentError) and bad.reason == "batch_invalid_request_error"
    assert "/" in bad.details["request_id"]


def test_under_the_runner_offsets_wait_for_the_batch_and_polling_goes_on(broker, unique):
    with ReplayServer() as srv:
        serve_batches(srv, polls_in_progress=40)  # the batch runs ~2 s (40 polls, 50 ms apart)
        s = make_settings(broker, f"batch{unique}", runner={"concurrency": 8, "max_in_flight": 8},
                          enrich={"provider": "claude", "anthropic_api_key": KEY, "anthropic_base_url": srv.url,
                                  "request_timeout_s": 5.0, **BATCH})
        provision(s)
        with AssetPublisher(s) as pub:
            pub.send("preprocessed", "bf-1", backfill("bf-1", 1))
            pub.send("preprocessed", "bf-2", backfill("bf-2", 2))
        runner = StageRunner(EnrichStage(s), s)
        submitted = metrics.LLM_BATCHES.labels("claude", "submitted")._value.get()
        with RunnerThread(runner):
            deadline = time.monotonic() + 30
            while metrics.LLM_BATCHES.labels("claude", "submitted")._value.get() == submitted:
                assert time.monotonic() < deadline, "the batch was never sent"
                time.sleep(0.05)
            # the batch is in progress: nothing produced, nothing committed, the poll loop ticks on
            assert read_topic(s, "enriched", 1, timeout_s=0.5) == []
            assert sum(committed(s, runner.group_id, "preprocessed").values()) == 0
            assert runner.health.alive()
            out = read_topic(s, "enriched", 2, timeout_s=30)
            deadline = time.monotonic() + 15
            while sum(committed(s, runner.group_id, "preprocessed").values()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            done = sum(committed(s, runner.group_id, "preprocessed").values())
    assert sorted(r["key"] for r in out) == ["bf-1", "bf-2"]
    assert all(r["value"]["cost_usd"] > 0 for r in out)
    assert done == 2
    assert read_to_end(s, "dead_letter") == []


def test_gemini_backfill_goes_through_batch_mode_one_job_per_model_at_half_price():
    from consumers.enrich.replay import GeminiBatches, gemini_route
    with ReplayServer(route=gemini_route) as srv:
        for task in ("tagging", "alt_text", "rights"):
            srv.script(f"{task} output", rec(f"gemini/{task}_ok.json"))
        srv.script("batch_create", rec("gemini/batch_create.json"))
        srv.script("batch_retrieve", rec("gemini/batch_running.json"), rec("gemini/batch_succeeded.json"))
        batches = GeminiBatches(srv)
        s = enrich_settings(srv.url, provider="gemini", gemini_api_key=KEY, gemini_base_url=srv.url, **BATCH)
        live, b1, b2 = process(EnrichStage(s), preprocessed("live"), backfill("bf-1", 1), backfill("bf-2", 2))
        creates = [r for r in srv.requests if r.path.endswith(":batchGenerateContent")]
        sync_calls = [r for r in srv.requests if r.path.endswith(":generateContent")]
    assert len(sync_calls) == 3 and batches.entries == 6
    # one job per model: tagging on flash-lite, alt_text and rights on flash
    assert sorted(r.path.rsplit("/", 1)[-1] for r in creates) == ["gemini-2.5-flash-lite:batchGenerateContent",
                                                                   "gemini-2.5-flash:batchGenerateContent"]
    sync = {r.body["generationConfig"]["responseJsonSchema"]["title"]: r.body for r in sync_calls}
    for create in creates:
        for item in create.body["batch"]["inputConfig"]["requests"]["requests"]:
            title = item["request"]["generationConfig"]["responseJsonSchema"]["title"]
            assert item["request"]["systemInstruction"] == sync[title]["systemInstruction"]
            assert item["request"]["generationConfig"] == sync[title]["generationConfig"]
            parts = item["request"]["contents"][0]["parts"]
            assert parts[0]["inlineData"]["mime_type"] == "image/jpeg" and "untrusted_data" in parts[-1]["text"]
            assert set(item["metadata"]) == {"key"}
    live_prov = {p["task"]: p for p in live.value["provenance"]}
    for out in (b1, b2):
        assert out.value["enrichment"]["alt_text"] == live.value["enrichment"]["alt_text"]
        for p in out.value["provenance"]:
            assert p["cost_usd"] == pytest.approx(live_prov[p["task"]]["cost_usd"] / 2, rel=1e-12)
            assert p["request_id"].startswith("batches/")


def test_a_gemini_batch_entry_error_dead_letters_its_record():
    from consumers.enrich.replay import GeminiBatches, gemini_route
    with ReplayServer(route=gemini_route) as srv:
        for task in ("tagging", "alt_text", "rights"):
            srv.script(f"{task} output", rec(f"gemini/{task}_ok.json"))
        srv.script("batch_create", rec("gemini/batch_create.json"))
        srv.script("batch_retrieve", rec("gemini/batch_succeeded.json"))
        GeminiBatches(srv).script_entry("rights output", rec("gemini/batch_entry_error.json"))
        s = enrich_settings(srv.url, provider="gemini", gemini_api_key=KEY, gemini_base_url=srv.url, **BATCH)
        (bad,) = process(EnrichStage(s), backfill("bf-err", 3))
    assert isinstance(bad, PermanentError) and bad.reason == "batch_rpc_3"
