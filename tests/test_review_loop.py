"""The review loop on a real broker and store: an editor's decision becomes the published record, and no later
pipeline event overwrites what a person set (at validate, and again at the sink, even when they race)."""
from __future__ import annotations

import asyncio
import copy
import io
import json
import time

from PIL import Image
from typer.testing import CliRunner

from app import cli
from app.kpis import cli as kpis_cli
from app.kpis.compute import audit_for_validated
from app.kpis.feedback import publish_decision
from app.settings import Settings
from consumers.enrich.stage import EnrichStage
from consumers.index.sink import IndexSink
from consumers.review.stage import ReviewStage
from consumers.validate.stage import ValidateStage
from domain.events import scoped_id
from domain.review import apply_review, merge_decision, tags_value
from domain.store.management import read_alias
from streams.avro import roundtrip, validate
from streams.runner import StageRunner
from tests.kafka_support import (
    RunnerThread,
    env_for,
    make_settings,
    provision,
    read_topic,
)
from tests.store_support import as_items, settings_for, validated_asset
from tests.test_enrich_stage import ctx, jpeg, preprocessed


def _jpeg(size=(800, 600)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (180, 40, 40)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _asset(asset_id: str, version: int, **kw) -> dict:
    v = validated_asset(asset_id, version, tenant="acme", **kw)
    v["enriched"]["pre"]["thumbnail"] = {"data": _jpeg(), "media_type": "image/jpeg", "width": 800, "height": 600}
    v["status"], v["reasons"] = "needs_review", ["confidence 0.55 < 0.85"]
    v["field_sources"] = {"title": "model", "alt_text": "model", "caption": "model", "summary": "model",
                          "tags": "model", "credit_text": "embedded", "licensing": "human"}
    # as validate writes them: per-field keys with dots (a store that filters _source by path may hand them back
    # nested; the review worker read them so and dead-lettered every decision), and an uploader's dotted attribute
    v["field_confidence"] = {"tags.product:shoe": 0.62, "tags.color:red": 0.91, "alt_text": 0.41}
    v["field_evidence"] = {"tags.product:shoe": "tag:product|classifier", "alt_text": "alt:tag|classifier"}
    v["enriched"]["pre"]["asset"]["attributes"] = {"dc.rights": "CC-BY-4.0"}
    return v


def _settings(broker: str, unique: str, store_url: str) -> Settings:
    s = make_settings(broker, f"rev{unique}")
    idx = settings_for(store_url)
    return s.with_overrides(index=idx.index.model_dump(mode="json") | {"refresh": "true"})


def _doc(sink: IndexSink, asset_id: str) -> dict:
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    res = sink.client.search(index=read_alias(sink.cfg), query={"ids": {"values": [scoped_id(asset_id, "acme")]}},
                             source_excludes=["record"])
    hits = res["hits"]["hits"]
    return hits[0]["_source"] if hits else {}


def _wait_doc(sink: IndexSink, asset_id: str, ok, timeout_s: float = 40.0) -> dict:
    deadline = time.monotonic() + timeout_s
    doc = {}
    while time.monotonic() < deadline:
        doc = _doc(sink, asset_id)
        if doc and ok(doc):
            return doc
        time.sleep(0.3)
    raise AssertionError(f"document never got there: {doc}")


def _provision_with(s: Settings, record: dict) -> None:
    """Topics, and the record indexed through the real sink."""
    provision(s)
    sink = IndexSink(s)
    try:
        assert sink.process_batch(as_items([record])) == [None]
    finally:
        sink.close()


DECISION = {"asset_id": "rv-1", "editor": "maria", "status": "approved", "tenant": "acme",
            "fields": [{"field": "alt_text", "action": "edited", "value": "Red trail running shoe, side view"},
                       {"field": "tags", "action": "edited", "value": tags_value(["product:shoe", "color:white"])},
                       {"field": "title", "action": "accepted"}]}


def test_a_decision_is_published_and_survives_reprocessing(broker, unique, store):  # noqa: F811
    s = _settings(broker, unique, store.url)
    provision(s)
    sink = IndexSink(s)
    try:
        assert sink.process_batch(as_items([_asset("rv-1", 3)])) == [None]
        before = _doc(sink, "rv-1")
        assert before["status"] == "needs_review" and before["thumbnail"]["width"] == 384  # the reviewer's preview

        publish_decision(s, copy.deepcopy(DECISION))
        with RunnerThread(StageRunner(ReviewStage(s), s)), RunnerThread(StageRunner(IndexSink(s), s)):
            doc = _wait_doc(sink, "rv-1", lambda d: d["status"] == "approved")
        assert doc["alt_text"] == "Red trail running shoe, side view"
        assert doc["title"] == "Red running shoe on a white background"  # accepted: the value the editor saw
        assert sorted(doc["tags"]) == ["color:white", "product:shoe"]
        # only what the person wrote is `human`; what they accepted or approved untouched keeps the model's source
        assert {f: doc["field_sources"][f] for f in ("alt_text", "tags", "title", "caption")} == \
            {"alt_text": "human", "tags": "human", "title": "model", "caption": "model"}
        assert doc["reviewed_by"] == "maria" and doc["version"] == 3
        assert doc["model_suggestions"]["alt_text"] == "red running shoe on a white background, side view"
        assert doc["thumbnail"]["data"] == before["thumbnail"]["data"]  # the preview survives the decision

        # what a user sees: `assetstream search` shows the approved values, set by a person
        found = CliRunner().invoke(cli.app, ["search", "trail running shoe", "--mode", "keyword"], env=env_for(s))
        assert found.exit_code == 0, found.output
        assert "Red trail running shoe" in found.output and "approved" in found.output
        assert "alt_text=human" in found.output and "maria" in found.output

        # what went to `validated` is a valid record; the audit credits each field to the person who set it
        (published,) = [r["value"] for r in read_topic(s, "validated", 1)]
        validate("ValidatedAsset", published)
        audit = {f["field"]: f for f in audit_for_validated(published, s.kpis)["fields"]}
        assert audit["alt_text"]["source"] == "human" and audit["alt_text"]["editor"] == "maria"
        assert audit["tags"]["source"] == "human" and audit["tags"]["prompt_id"] is None
        assert (audit["title"]["source"], audit["title"]["action"], audit["title"]["editor"]) == \
            ("model", "accepted", "maria")

        # a reprocess brings new model text and omits every human field: the index keeps the person's values
        newer = _asset("rv-1", 4, title="Tea cup", alt_text="A cup of tea")
        assert sink.process_batch(as_items([newer])) == [None]
        doc = _doc(sink, "rv-1")
        assert doc["version"] == 4 and doc["status"] == "approved"
        assert doc["title"] == "Red running shoe on a white background" and doc["model_suggestions"]["title"] == "Tea cup"
        assert doc["alt_text"] == "Red trail running shoe, side view"

        # enrich reads the review from the index, so validate applies it and `validated` tells the truth
        stage = EnrichStage(s.with_overrides(enrich={"provider": "local", "dedupe": "elasticsearch"}))
        try:
            event = preprocessed("rv-1", tenant="acme", data=jpeg(3, size=(224, 224)))
            event["asset"]["version"] = 4  # a reprocess of the indexed version (an older one is skipped as stale)
            out = asyncio.run(stage.aprocess(event, ctx("rv-1"))).value
        finally:
            asyncio.run(stage.aclose())
        assert out["review"]["status"] == "approved" and out["review"]["editor"] == "maria"
        final = ValidateStage(s).process(roundtrip("EnrichedAsset", out)).value
        assert final["alt_text"] == "Red trail running shoe, side view" and final["field_sources"]["alt_text"] == "human"
    finally:
        sink.close()


def test_a_decision_racing_a_newer_pipeline_version_is_not_lost(broker, unique, store):  # noqa: F811
    """The review group emitted the approved record for version 3, but version 4 reached the index first."""
    s = _settings(broker, unique, store.url)
    sink = IndexSink(s)
    try:
        v3 = _asset("rv-2", 3)
        assert sink.process_batch(as_items([v3])) == [None]
        decision = {**copy.deepcopy(DECISION), "asset_id": "rv-2", "decision_id": "d-race",
                    "decided_at": 1_800_000_000_000}
        review = merge_decision(None, decision, v3)
        approved_v3 = {**apply_review(v3, review), "review": review}
        v4 = _asset("rv-2", 4, title="Tea cup")
        assert sink.process_batch(as_items([v4])) == [None]
        assert sink.process_batch(as_items([approved_v3])) == [None]
        doc = _doc(sink, "rv-2")
        assert doc["version"] == 4 and doc["status"] == "approved"
        assert doc["alt_text"] == "Red trail running shoe, side view" and doc["field_sources"]["alt_text"] == "human"
    finally:
        sink.close()


def test_validate_applies_the_review_enrich_read(broker, unique, store):  # noqa: F811
    s = _settings(broker, unique, store.url)
    v = _asset("rv-4", 2)
    review = merge_decision(None, {**copy.deepcopy(DECISION), "asset_id": "rv-4", "decision_id": "d1",
                                   "decided_at": 1_800_000_000_000}, v)
    enriched = {**v["enriched"], "review": review}
    enriched["enrichment"] = {**enriched["enrichment"], "alt_text": "A cup of tea", "title": "Tea cup"}
    out = ValidateStage(s).process(roundtrip("EnrichedAsset", enriched)).value
    validate("ValidatedAsset", out)
    assert out["status"] == "approved" and out["alt_text"] == "Red trail running shoe, side view"
    assert out["field_sources"]["alt_text"] == "human" and out["model_suggestions"]["alt_text"].startswith("A cup of tea")


def test_unknown_asset_and_another_tenants_decision_dead_letter_with_reasons(broker, unique, store):  # noqa: F811
    s = _settings(broker, unique, store.url).with_overrides(runner={"retry_max_attempts": 2,
                                                                    "retry_base_delay_s": 0.01})
    _provision_with(s, _asset("rv-5", 1))
    sent = CliRunner().invoke(kpis_cli.app, ["feedback", "nobody", "--approve", "--editor", "maria", "--json", "--no-check"],
                              env=env_for(s))
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout)[0]["status"] == "approved"
    publish_decision(s, {"asset_id": "rv-5", "editor": "maria", "tenant": "other", "status": "approved",
                         "fields": []})
    with RunnerThread(StageRunner(ReviewStage(s), s)):
        letters = {r["value"]["asset_id"]: r["value"] for r in read_topic(s, "dead_letter", 2)}
    assert letters["nobody"]["details"]["reason"] == "asset_not_indexed"
    assert letters["nobody"]["error_class"] == "transient_exhausted"
    # tenant "other" has no asset rv-5: its decision never reaches acme's rv-5 (ids are namespaced by tenant)
    assert letters["other::rv-5"]["details"]["reason"] == "asset_not_indexed"
    sink = IndexSink(s)
    try:
        assert _doc(sink, "rv-5")["status"] == "needs_review"
    finally:
        sink.close()


def test_a_decision_with_tags_outside_the_vocabulary_is_dead_lettered_not_published(broker, unique, store):  # noqa: F811
    """Trial 2: `assetstream feedback A --field "tags=edited:color:purplish, madeup" --approve` (or the SDK) put both
    made-up ids into the index as the asset's approved tags: the review app checks the vocabulary, the review group
    did not. Now such a decision is dead-lettered (`invalid_decision`, naming each tag and the id it probably means)
    and the published record is left as it was; a decision with vocabulary ids goes through."""
    s = _settings(broker, unique, store.url)
    _provision_with(s, _asset("rv-6", 1))
    bad = {"asset_id": "rv-6", "editor": "maria", "status": "approved", "tenant": "acme", "decision_id": "bad-1",
           "fields": [{"field": "tags", "action": "edited", "value": "color:purplish, madeup, red"}]}
    publish_decision(s, bad)
    publish_decision(s, {**bad, "decision_id": "good-1",
                         "fields": [{"field": "tags", "action": "edited", "value": "product:shoe, color:white"}]})
    sink = IndexSink(s)
    try:
        with RunnerThread(StageRunner(ReviewStage(s), s)), RunnerThread(StageRunner(IndexSink(s), s)):
            letter = read_topic(s, "dead_letter", 1)[0]["value"]
            doc = _wait_doc(sink, "rv-6", lambda d: d.get("status") == "approved")
    finally:
        sink.close()
    assert letter["details"]["reason"] == "invalid_decision" and letter["error_class"] == "permanent"
    assert "'color:purplish' is not in the vocabulary" in letter["message"]
    assert "'madeup' is not in the vocabulary" in letter["message"]
    assert "'red' is not in the vocabulary" in letter["message"] and "did you mean color:red?" in letter["message"]
    assert sorted(doc["tags"]) == ["color:white", "product:shoe"]  # the good decision, none of the bad one's


def test_save_then_approve_at_once_keeps_the_edit_and_the_models_suggestion(broker, unique, store):  # noqa: F811
    """Trial 15: Save (an alt text edit), then Approve all a moment later: the approval was worked before the index
    showed the save and pinned the model's text over the edit, reported as approved. Two saves in a row also put the
    person's first text in `model_suggestions`, losing the model's."""
    s = _settings(broker, unique, store.url)
    provision(s)
    sink = IndexSink(s)
    try:
        assert sink.process_batch(as_items([_asset("rv-fast", 3)])) == [None]
        model_alt = _doc(sink, "rv-fast")["alt_text"]
        base = {"asset_id": "rv-fast", "editor": "maria", "tenant": "acme"}
        for status, fields in ((None, [{"field": "alt_text", "action": "edited", "value": "A first try"}]),
                               (None, [{"field": "alt_text", "action": "edited", "value": "A red trail shoe"}]),
                               ("approved", [])):
            publish_decision(s, {**base, "status": status, "fields": fields})  # all three before any is applied
        with RunnerThread(StageRunner(ReviewStage(s), s)), RunnerThread(StageRunner(IndexSink(s), s)):
            doc = _wait_doc(sink, "rv-fast", lambda d: d["status"] == "approved")
        assert doc["alt_text"] == "A red trail shoe" and doc["field_sources"]["alt_text"] == "human"
        assert doc["model_suggestions"]["alt_text"] == model_alt
    finally:
        sink.close()
