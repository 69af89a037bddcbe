"""The review's own reasons ("approved by erin", "the image changed since erin approved it on ...") are written
from one template each, and everything that recognises them (apply_review dropping the ones it gave before, the
queue's "changed since approval" filter) reads the words from the same templates: a reworded reason cannot drift
from its matcher."""
from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from app.review.queries import REASON_GROUPS
from domain.review import (APPROVED, IMAGE_CHANGED, NO_ALT_TEXT, REJECTED, REVIEW_REASON_TEMPLATES,
                           REVIEW_REASONS, UNAPPROVED, apply_review, merge_decision, review_reason)
from tests.store_support import validated_asset

VALUES = {"editor": "erin", "status": "approved", "when": "2027-01-15 08:00 UTC", "fields": "caption, tags"}


@pytest.mark.parametrize("template", REVIEW_REASON_TEMPLATES)
def test_each_written_reason_begins_with_the_prefix_that_recognises_it(template):
    reason = review_reason(template, **VALUES)
    matched = [p for p in REVIEW_REASONS if reason.startswith(p)]
    assert matched == [REVIEW_REASONS[REVIEW_REASON_TEMPLATES.index(template)]], reason
    assert "erin" in reason and "{" not in reason


@pytest.mark.parametrize("template", [UNAPPROVED, IMAGE_CHANGED])
def test_the_queue_files_a_changed_asset_under_changed_since_approval(template):
    reason = review_reason(template, **VALUES)
    assert any(fnmatchcase(reason, p) for p in REASON_GROUPS["changed since approval"]), reason
    assert not any(fnmatchcase(review_reason(t, **VALUES), p) for t in (APPROVED, REJECTED)
                   for p in REASON_GROUPS["changed since approval"])


def test_the_queue_files_an_approval_left_without_alt_text_under_alt_text():
    """An approval that left a non-decorative image without alt text keeps it in review (trial 11): the queue's
    "alt text" filter and count include it."""
    reason = review_reason(NO_ALT_TEXT, **VALUES)
    assert any(fnmatchcase(reason, p) for p in REASON_GROUPS["alt text"]), reason


def _reviewed(status, *, content=None, unseen=False):
    """A verdict of erin's, and the record it is applied to: of other bytes (`content`), or with model output the
    approval never saw (`unseen`: the verdict was recorded without the record, so it confirms no field)."""
    record = validated_asset("mug", title="Red mug", alt_text="A red mug", status="needs_review")
    review = merge_decision(None, {"decision_id": "d1", "asset_id": "mug", "editor": "erin", "status": status,
                                   "decided_at": 1_800_000_000_000, "fields": []}, None if unseen else record)
    return validated_asset("mug", title="Red mug", alt_text="A red mug", status="needs_review", content=content), review


@pytest.mark.parametrize("status, kw, begins", [
    ("approved", {}, "approved by erin"),
    ("rejected", {}, "rejected by erin"),
    ("approved", {"content": "another picture"}, "the image changed since erin approved it on "),
    ("approved", {"unseen": True}, "changed since the approval by erin: "),
])
def test_a_review_applied_again_gives_its_reason_once(status, kw, begins):
    """The index sink applies the merged review to the review group's output again: the reason is not doubled."""
    record, review = _reviewed(status, **kw)
    once = apply_review(record, review)
    twice = apply_review(once, review)
    ours = [r for r in twice["reasons"] if r.startswith(REVIEW_REASONS)]
    assert len(ours) == 1 and ours[0].startswith(begins), twice["reasons"]
    assert twice["reasons"] == once["reasons"]
