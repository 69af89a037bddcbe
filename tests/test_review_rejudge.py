"""Trial 18 (finding 2): after a review, reasons and confidence were still computed from the model values a person
replaced. Approved assets whose alt text the librarian wrote were listed with "calibrated confidence (weakest field
alt_text …) 0.08 < 0.70" (the score of a model suggestion nobody published), counted under "low confidence", and
the tags a person removed were still named. A field a person decided is judged by the person, as validate leaves
out a field a person set at upload (human_fields): the confidence reasons and the figure cover the other fields."""
from __future__ import annotations

import re

import httpx
import pytest

from app.review.queries import decision_confidence
from app.review.server import ReviewServer
from app.settings import Settings
from domain.confidence import ConfidencePolicy
from domain.review import NO_VERDICT, apply_review, merge_decision, reason_prefix
from tests.store_support import index_all, settings_for, validated_asset

pytestmark = pytest.mark.timeout(60)

V = Settings().validate_  # auto-apply 0.85, review 0.70, tags published from 0.50
POLICY = ConfidencePolicy.of(V)
WEAK_ALT = "calibrated confidence (weakest field alt_text, calibration cal-1) 0.08 < 0.70: below the review threshold"
BELOW = "fields below the auto-apply threshold: alt_text 0.08"
DRINK = "tags below the auto-apply threshold: subject:drink 0.80"
WRITTEN = "A red mug with a white handle"


def _mug(asset_id: str = "mug") -> dict:
    """A needs_review record as validate writes it with a calibration: the model's alt text (0.08) is its weakest
    judged field; subject:drink (0.80) is a pending tag the editor is asked to confirm."""
    v = validated_asset(asset_id, title="Red mug", alt_text="A simple graphic in red", status="needs_review",
                        tags=[("color", "red"), ("product", "cup"), ("subject", "drink")])
    v["field_sources"] = {**v["field_sources"], "alt_text": "model", "decorative": "model"}
    v.update(calibration="cal-1", tag_suggestions=[], reasons=[WEAK_ALT, BELOW, DRINK, "taxonomy v2"],
             field_confidence={"alt_text": 0.08, "tags.color:red": 0.95, "tags.product:cup": 0.9,
                               "tags.subject:drink": 0.8})
    return v


def _decide(record: dict, fields: list[dict], status: str | None = "approved", review: dict | None = None) -> dict:
    decision = {"decision_id": f"d{len(fields)}{status}", "asset_id": "mug", "editor": "librarian",
                "decided_at": 1_800_000_000_000, "status": status, "fields": fields}
    return merge_decision(review, decision, record)


def _confidence(out: dict):
    """The figure the queue shows for the record as the index holds it."""
    doc = {"record": out, "review": out["review"], "enrichment": out["enriched"]["enrichment"]}
    return decision_confidence(doc, V.auto_apply_threshold, V.tag_publish_min)


def test_an_edited_alt_text_is_not_judged_by_the_models_confidence():
    """coffee: the librarian saved an alt text and gave no verdict; the reason was the model's text's 0.08. The
    asset is judged by the fields still the model's (the tags), and waits for the verdict."""
    record = _mug()
    review = _decide(record, [{"field": "alt_text", "action": "edited", "value": WRITTEN}], status=None)
    out = apply_review(record, review, policy=POLICY)
    assert out["status"] == "needs_review" and out["alt_text"] == WRITTEN
    assert out["reasons"] == [
        "no verdict yet: alt_text decided by librarian: approve or reject the asset",
        "calibrated confidence (weakest field tags.product:cup, calibration cal-1) 0.90 >= 0.85",
        DRINK, "taxonomy v2"]
    assert out["reasons"][0].startswith(reason_prefix(NO_VERDICT))
    c = _confidence(out)
    assert (c.field, c.value) == ("tags.product:cup", 0.9)
    assert apply_review(out, review, policy=POLICY)["reasons"] == out["reasons"]  # the index sink applies it again


def test_a_removed_tag_is_not_named_any_more():
    """The mug listed "tags below the auto-apply threshold: subject:drink 0.80" after the librarian removed it."""
    record = _mug()
    out = apply_review(record, _decide(record, [{"field": "tags", "action": "edited", "value": "color:red, product:cup"}],
                                       status=None), policy=POLICY)
    assert out["reasons"] == [WEAK_ALT, BELOW, "taxonomy v2"]  # the alt text is still the model's, and weak


def test_an_approval_leaves_no_model_confidence():
    """Approved with the alt text the librarian wrote (the tags accepted as shown): every judged field is a
    person's decision, so no confidence reason and no model figure are left (the queue shows "–")."""
    record = _mug()
    out = apply_review(record, _decide(record, [{"field": "alt_text", "action": "edited", "value": WRITTEN}]),
                       policy=POLICY)
    assert out["status"] == "approved"
    assert out["reasons"] == ["taxonomy v2", "approved by librarian"]
    assert _confidence(out) is None


def _saved_then_sent_again() -> dict:
    """Trial 26 F5: the librarian saved an alt text without a verdict, then the asset came through the pipeline
    again with an event newer than that review and without the field (a DAM `updated` event, a reprocess that
    could not keep the upload time): validate's record, with the review applied as validate applies it, on its way
    to the index sink (which applies the review again)."""
    record = _mug("mug-saved")
    record["enriched"]["pre"]["asset"]["event_time"] = 1_800_000_600_000  # ten minutes after the review
    review = _decide(record, [{"field": "alt_text", "action": "edited", "value": WRITTEN}], status=None)
    return apply_review({**record, "review": review}, review, policy=POLICY)


@pytest.fixture(scope="module")
def queue(store):
    """Two assets whose only weak field is the model's alt text (0.08): one approved with the alt text the
    librarian wrote (the review goes through the real index sink, as the review group's output does), one not
    reviewed. The review app reads them over HTTP."""
    approved, waiting = _mug("mug-approved"), _mug("mug-waiting")
    approved["review"] = _decide(approved, [{"field": "alt_text", "action": "edited", "value": WRITTEN}])
    settings = index_all(settings_for(store.url).with_overrides(review={"port": 0, "token_user": "librarian"}),
                         [approved, waiting, _saved_then_sent_again()])
    with ReviewServer(settings) as srv, httpx.Client(base_url=srv.url, follow_redirects=True) as c:
        assert c.get(srv.login_url).status_code == 200
        yield c


def test_the_low_confidence_chip_leaves_out_an_approved_asset_whose_weak_field_a_person_wrote(queue):
    page = queue.get("/", params={"status": "all"}).text
    assert re.search(r'class="reason[^"]*">low confidence <b>1</b>', page), page
    low = queue.get("/", params={"status": "all", "reason": "low confidence"}).text
    assert re.findall(r'<div class="id">([^<]+)</div>', low) == ["mug-waiting"]
    row = next(r for r in page.split("<tr>") if '<div class="id">mug-approved</div>' in r)
    assert re.search(r'<td class="conf"[^>]*>–</td>', row), row  # no model confidence: a person decided every field
    weak = queue.get("/", params={"status": "all", "max_conf": "0.5"}).text
    assert re.findall(r'<div class="id">([^<]+)</div>', weak) == ["mug-waiting"]
    asset = queue.get("/asset/mug-approved").text
    assert ">Why it was held for review</h2>" in asset and "Why it needs review" not in asset


def test_a_saved_review_keeps_its_no_verdict_reason_when_the_asset_comes_through_again(queue):
    """Trial 26 F5: the reasons lost "no verdict yet: alt_text decided by …" after a reprocess: the index sink took the
    alt text the review had set (`human` on validate's record) for a newer DAM value and left the field undecided."""
    page = queue.get("/asset/mug-saved").text
    assert "no verdict yet: alt_text decided by librarian: approve or reject the asset" in page, page
    assert WRITTEN in page
