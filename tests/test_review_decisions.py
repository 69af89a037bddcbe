"""From the asset form to an EditorDecision (app/review/decisions.py), with the bundled vocabulary."""
from __future__ import annotations

import pytest

from app.review.decisions import DecisionError, from_form
from app.settings import Settings
from domain.review import tags_value
from domain.taxonomy import taxonomy_from_settings

TAX = taxonomy_from_settings(Settings())


def doc(**extra):
    return {"asset_id": "a1", "version": 3, "tenant": "acme", "title": "Red mug", "alt_text": "A red mug",
            "tags": ["product:cup", "keyword:from-the-dam"], "hashes": {"sha256": "ab" * 32}, **extra}


def test_untouched_fields_send_nothing_and_a_verdict_alone_is_an_approval():
    form = {"value.title": "Red mug", "value.alt_text": "A red mug\r\n", "value.tags": "product:cup, keyword:from-the-dam",
            "verdict": "approve", "shown_version": "3"}
    # the verdict names the image the editor was shown (the index document's sha256)
    assert from_form(doc(), form, "erin", TAX) == {"asset_id": "a1", "editor": "erin", "fields": [],
                                                   "status": "approved", "tenant": "acme",
                                                   "content_sha256": "ab" * 32,
                                                   "base_decision_id": None}  # a form without shown_decision


def test_edits_accepts_rejects_and_tags_through_the_vocabulary():
    form = {"value.title": "Red mug", "action.title": "accepted", "value.alt_text": "A red enamel mug",
            "action.caption": "rejected", "value.tags": "product:cup, keyword:from-the-dam, color:grey, studio",
            "verdict": "save"}
    d = from_form(doc(), form, "erin", TAX)
    assert d["status"] is None
    assert d["fields"] == [
        {"field": "title", "action": "accepted", "value": "Red mug"},
        {"field": "alt_text", "action": "edited", "value": "A red enamel mug"},
        {"field": "caption", "action": "rejected", "value": None},
        # deprecated color:grey -> color:gray; a label -> its id; the asset's own DAM keyword is kept
        {"field": "tags", "action": "edited",
         "value": tags_value(["product:cup", "keyword:from-the-dam", "color:gray", "setting:studio"])}]


def test_unknown_tags_stale_pages_and_empty_decisions_are_refused():
    with pytest.raises(DecisionError, match="not in the vocabulary"):
        from_form(doc(), {"value.tags": "product:cup, made-up:thing", "verdict": "save"}, "erin", TAX)
    with pytest.raises(DecisionError, match="changed while you were looking"):
        from_form(doc(), {"shown_version": "2", "verdict": "approve"}, "erin", TAX)
    with pytest.raises(DecisionError, match="nothing to send"):
        from_form(doc(), {"value.title": "Red mug", "verdict": "save"}, "erin", TAX)


def test_a_stale_verdict_and_a_new_version_are_refused_only_when_they_conflict():
    """Trial 34 F2: a verdict of a page drawn before another decision is refused, values changed or not. F3: a new
    version with the image and the values shown is no conflict; a new image, or a changed value decided on, is."""
    shown = {"shown.title": "Red mug", "shown.alt_text": "A red mug", "shown.caption": "", "shown.summary": "",
             "shown.credit_text": "", "shown.licensing": "", "shown.tags": tags_value(["product:cup",
                                                                                      "keyword:from-the-dam"]),
             "shown_version": "3", "shown_sha256": "ab" * 32, "shown_decision": ""}
    decided = doc(review={"decision_ids": ["d-alice"], "status": "approved", "editor": "alice"})
    with pytest.raises(DecisionError, match="this asset was approved by alice while you were looking at it"):
        from_form(decided, {**shown, "verdict": "reject"}, "bob", TAX)
    assert from_form(decided, {**shown, "action.caption": "rejected"}, "bob", TAX)["fields"] == [
        {"field": "caption", "action": "rejected", "value": None}]  # a field decision on an unchanged field
    reprocessed = doc(version=4)
    assert from_form(reprocessed, {**shown, "verdict": "approve"}, "bob", TAX)["status"] == "approved"
    with pytest.raises(DecisionError, match="the image changed while you were looking at it"):
        from_form(doc(version=4, hashes={"sha256": "cd" * 32}), {**shown, "verdict": "approve"}, "bob", TAX)
    with pytest.raises(DecisionError, match="title changed while you were looking at it .the asset was processed"):
        from_form(doc(version=4, title="Mug"), {**shown, "value.title": "Red enamel mug"}, "bob", TAX)
    pending = [{"editor": "alice", "status": None, "fields": ["title"]}]
    with pytest.raises(DecisionError, match="alice decided the title a moment ago"):
        from_form(doc(), {**shown, "value.title": "Red enamel mug"}, "bob", TAX, pending)
    assert from_form(doc(), {**shown, "value.alt_text": "A red enamel mug"}, "bob", TAX, pending)["fields"] == [
        {"field": "alt_text", "action": "edited", "value": "A red enamel mug"}]  # another field: sent
