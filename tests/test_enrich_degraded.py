"""Issue 21 for cloud provider calls: a Claude/Gemini call that still fails transiently (5xx, 429, timeout, no
connection) on the record's last attempt no longer dead-letters the record. The task goes on without an answer,
marked `degraded` with the reason; validate sends the asset to review, the index shows it degraded with the task's
fields empty, and neither the result cache nor dedupe reuses it. Permanent failures stay dead letters.

Real EnrichStage with the real Claude and Gemini SDKs against the loopback replay server (recorded responses in
each API's wire format), real ValidateStage, the index document builder and Avro contracts."""
from __future__ import annotations

import asyncio
import copy
import socket

import pytest

from app.kpis.compute import audit_for_validated
from app.settings import Settings
from consumers.enrich.replay import AnthropicBatches, ReplayServer, gemini_route
from consumers.enrich.stage import EnrichStage
from consumers.index.document import document_from_validated
from consumers.validate.stage import ValidateStage
from streams import metrics
from streams.avro import validate as avro_validate
from streams.errors import PermanentError, TransientError
from streams.stage import RecordContext
from tests.test_enrich_stage import make_settings, preprocessed, rec, script_ok

LAST = Settings().runner.retry_max_attempts


def ctx(asset_id: str, attempt: int) -> RecordContext:
    return RecordContext(topic="preprocessed", partition=0, offset=0, key=asset_id, headers={}, timestamp_ms=None,
                         attempt=attempt)


def attempts(stage: EnrichStage, *runs: tuple[dict, int], close: bool = False) -> list:
    """stage.aprocess over (record, attempt number) in order, on one event loop; each outcome (the output value or
    the exception raised), then the providers closed (`close`: the whole stage, its batcher too)."""
    async def go():
        out: list = []
        try:
            for value, attempt in runs:
                try:
                    res = await stage.aprocess(value, ctx(value["asset"]["asset_id"], attempt))
                    out.append(res.value)
                except (TransientError, PermanentError) as e:
                    out.append(e)
        finally:
            if close:
                await stage.aclose()
            else:
                for p in stage.providers.values():
                    await p.aclose()
        return out
    return asyncio.run(go())


def degraded_count(part: str, reason: str) -> float:
    return metrics.DEGRADED.labels("enrich", part, reason)._value.get()


def test_claude_5xx_on_the_last_attempt_goes_to_review_degraded_never_cached_or_deduped():
    why = f"claude server error (529) after {LAST} attempts"
    with ReplayServer() as srv:
        srv.script("record_tags", rec("claude/tagging_ok.json"))
        srv.script("record_rights", rec("claude/rights_ok.json"))
        srv.script("record_alt_text", rec("claude/529.json"))  # overloaded on every request
        s = make_settings(srv.url, max_attempts=2, result_cache="memory")
        stage = EnrichStage(s)
        v = preprocessed("d1")
        twin = {**copy.deepcopy(v), "asset": {**v["asset"], "asset_id": "d1-copy", "event_id": "ev-copy"}}
        before = degraded_count("alt_text", why)
        first, last = attempts(stage, (v, 1), (v, LAST))
        assert isinstance(first, TransientError)  # an earlier attempt is retried, as before
        assert srv.count("record_tags") == 1 and srv.count("record_rights") == 1  # finished tasks kept for the retry
        assert srv.count("record_alt_text") == 4  # 2 requests on each attempt
        srv.script("record_alt_text", rec("claude/alt_text_ok.json"))  # Claude is back
        (copy_out,) = attempts(stage, (twin, 1))
    out = last
    avro_validate("EnrichedAsset", out)
    assert out["degraded"] == {"alt_text": why}
    assert degraded_count("alt_text", why) == before + 1
    e = out["enrichment"]
    # the failed task wrote nothing: its fields are empty, not invented; the others are the model's answers
    assert (e["alt_text"], e["caption"], e["title"], e["summary"], e["visible_text"]) == (None,) * 5
    assert set(e["raw_outputs"]) == {"tagging", "rights"}
    assert e["tags"][0]["tag"] == "product:sneaker" and e["licensing"] == "CC BY 4.0"
    prov = {p["task"]: p for p in out["provenance"]}
    assert prov["alt_text"]["degraded"] == why and prov["alt_text"]["request_id"] is None
    assert prov["tagging"]["degraded"] is None and prov["rights"]["degraded"] is None
    # the byte-identical copy is not a duplicate of the degraded asset, and alt_text was asked again
    assert copy_out["duplicate_of"] is None and copy_out["degraded"] == {}
    assert copy_out["enrichment"]["alt_text"].startswith("Red canvas sneaker")
    cached = {entry["task"] for entry in stage.results._entries.values()}
    assert cached == {"tagging", "rights", "alt_text"}  # alt_text only from the copy's complete answer
    assert sum(1 for entry in stage.results._entries.values() if entry["task"] == "alt_text") == 1

    validated = ValidateStage(s).process(out).value
    avro_validate("ValidatedAsset", validated)
    assert validated["status"] == "needs_review"
    assert validated["reasons"][0] == f"degraded: alt_text: {why}"
    assert validated["alt_text"] is None and validated["caption"] is None  # an editor writes them
    _, _, doc = document_from_validated(validated)
    assert doc["completeness"] == "degraded" and doc["degraded"] == {"alt_text": why}
    assert doc["degraded_parts"] == ["alt_text"] and doc.get("alt_text") is None and "product:sneaker" in doc["tags"]
    entry = audit_for_validated(validated, s.kpis)
    avro_validate("AuditEntry", entry)
    assert entry["degraded"] == {"alt_text": why}


def test_gemini_timeouts_on_every_task_still_reach_review_with_empty_generated_fields():
    """All tasks degraded: the asset still goes to review (its file facts, OCR and colours are complete; an editor
    writes the fields, or a backfill redoes it) rather than to the dead-letter topic."""
    why = f"gemini timed out after {LAST} attempts"
    with ReplayServer(route=gemini_route) as g:
        for key, name in (("tagging output", "tagging_ok"), ("alt_text output", "alt_text_ok"),
                          ("rights output", "rights_ok")):
            g.script(key, rec(f"gemini/{name}.json", delay_s=2.0))
        s = Settings().with_overrides(enrich={
            "provider": "gemini", "gemini_api_key": "AIza-degraded-SECRET", "gemini_base_url": g.url,
            "dedupe": "memory", "result_cache": "memory", "max_attempts": 1, "request_timeout_s": 0.3,
            "prompt_caching": False})
        stage = EnrichStage(s)
        (out,) = attempts(stage, (preprocessed("g1"), LAST))
        assert g.count() == 3
    avro_validate("EnrichedAsset", out)
    assert out["degraded"] == {"tagging": why, "alt_text": why, "rights": why}
    e = out["enrichment"]
    assert e["tags"] == [] and e["raw_outputs"] == {} and e["confidence"] == 0.0
    assert (e["alt_text"], e["caption"], e["licensing"], e["credit_text"]) == (None,) * 4
    assert out["cost_usd"] == 0.0 and stage.results._entries == {}
    validated = ValidateStage(s).process(out).value
    avro_validate("ValidatedAsset", validated)
    assert validated["status"] == "needs_review"
    assert validated["reasons"][:3] == [f"degraded: {t}: {why}" for t in ("alt_text", "rights", "tagging")]
    assert not [t for t in validated["tags"] if t.get("source") == "model"]
    assert validated["field_sources"].get("alt_text") != "model"
    _, _, doc = document_from_validated(validated)
    assert doc["degraded_parts"] == ["alt_text", "rights", "tagging"] and doc["completeness"] == "degraded"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_claude_unreachable_on_the_last_attempt_is_degraded_connection_failed():
    url = f"http://127.0.0.1:{_closed_port()}"
    stage = EnrichStage(make_settings(url, tasks=["tagging"], max_attempts=1))
    first, last = attempts(stage, (preprocessed("c1"), 1), (preprocessed("c1"), LAST))
    assert isinstance(first, TransientError) and first.reason == "connection"
    assert last["degraded"] == {"tagging": f"claude connection failed after {LAST} attempts"}
    assert last["enrichment"]["tags"] == []


@pytest.mark.parametrize("name,reason", [("claude/400.json", "http_400"), ("claude/refusal.json", "refused")])
def test_permanent_failures_on_the_last_attempt_stay_dead_letters(name, reason):
    with ReplayServer() as srv:
        srv.script("record_tags", rec("claude/tagging_ok.json"))
        srv.script("record_rights", rec("claude/rights_ok.json"))
        srv.script("record_alt_text", rec(name))
        (out,) = attempts(EnrichStage(make_settings(srv.url)), (preprocessed("p1"), LAST))
    assert isinstance(out, PermanentError) and out.reason == reason


def test_a_backfill_batch_entry_that_keeps_expiring_is_degraded_on_the_last_attempt():
    why = f"claude batch entry expired after {LAST} attempts"
    with ReplayServer() as srv:
        script_ok(srv)
        srv.script("batch_create", rec("claude/batch_create.json"))
        srv.script("batch_retrieve", rec("claude/batch_in_progress.json"), rec("claude/batch_ended.json"))
        srv.script("batch_results", rec("claude/batch_results.json"))
        batches = AnthropicBatches(srv)
        batches.script_entry("record_alt_text", *[rec("claude/batch_entry_expired.json")] * 2)
        s = make_settings(srv.url, batch="backfill", batch_max_requests=3, batch_max_wait_s=0.3,
                          batch_poll_interval_s=0.05, dedupe="off", result_cache="off", max_attempts=2)
        v = preprocessed("bf-1")
        v["asset"]["attributes"] = {"ingest": "backfill"}
        (out,) = attempts(EnrichStage(s), (v, LAST), close=True)
        assert batches.entries == 4  # 3 in the first batch, the expired alt_text again in a second one
    avro_validate("EnrichedAsset", out)
    assert out["degraded"] == {"alt_text": why}
    assert out["enrichment"]["alt_text"] is None and out["enrichment"]["tags"]


def test_runner_retries_a_failing_claude_call_then_publishes_the_record_degraded_not_dead_lettered(broker, unique):
    from app.producer import AssetPublisher
    from streams.runner import StageRunner
    from tests.kafka_support import RunnerThread, make_settings as kafka_settings, provision, read_to_end, read_topic
    from tests.test_enrich_stage import KEY

    with ReplayServer() as srv:
        srv.script("record_tags", rec("claude/tagging_ok.json"))
        srv.script("record_rights", rec("claude/rights_ok.json"))
        srv.script("record_alt_text", rec("claude/500.json"))
        s = kafka_settings(broker, f"provdeg{unique}", runner={"concurrency": 1, "retry_max_attempts": 3},
                           enrich={"provider": "claude", "anthropic_api_key": KEY, "anthropic_base_url": srv.url,
                                   "dedupe": "memory", "max_attempts": 1, "backoff_initial_s": 0.01,
                                   "request_timeout_s": 5.0})
        provision(s)
        retried = metrics.RECORDS_RETRIED.labels("enrich")._value.get()
        with AssetPublisher(s) as pub:
            pub.send("preprocessed", "r1", preprocessed("r1"))
        with RunnerThread(StageRunner(EnrichStage(s), s)):
            (out,) = read_topic(s, "enriched", 1, timeout_s=60)
        assert srv.count("record_alt_text") == 3 and srv.count("record_tags") == 1  # one request per attempt
    why = "claude server error (500) after 3 attempts"
    assert out["value"]["degraded"] == {"alt_text": why}
    assert metrics.RECORDS_RETRIED.labels("enrich")._value.get() == retried + 2  # attempts 1 and 2 retried
    assert read_to_end(s, "dead_letter") == []
    validated = ValidateStage(s).process(out["value"]).value
    assert validated["status"] == "needs_review" and validated["reasons"][0] == f"degraded: alt_text: {why}"


def test_a_verifier_call_failing_on_the_last_attempt_leaves_the_answer_unverified_and_in_review():
    why = f"claude server error (529) after {LAST} attempts"
    with ReplayServer() as srv:
        srv.route = lambda path, body: f"{body['tool_choice']['name']}/{body['model']}"  # verify shares the tool
        srv.script("record_tags/claude-haiku-4-5", rec("claude/tagging_ok.json"))
        srv.script("record_tags/claude-sonnet-4-6", rec("claude/529.json"))
        srv.script("record_alt_text/claude-sonnet-4-6", rec("claude/alt_text_ok.json"))
        srv.script("record_rights/claude-sonnet-4-6", rec("claude/rights_ok.json"))
        s = make_settings(srv.url, verifier="claude:claude-sonnet-4-6")
        (out,) = attempts(EnrichStage(s), (preprocessed("v1"), LAST))
    assert out["degraded"] == {"verify": why}
    e = out["enrichment"]
    # no second opinion: the unverified confidence (discounted self-reported scores), not an agreement of 0
    assert e["confidence"] == pytest.approx(0.8 * sum(t["score"] for t in e["tags"]) / len(e["tags"]), abs=1e-4)
    assert e["alt_text"] and "verify" not in e["raw_outputs"]
    validated = ValidateStage(s).process(out).value
    assert validated["status"] == "needs_review" and validated["reasons"][0] == f"degraded: verify: {why}"
