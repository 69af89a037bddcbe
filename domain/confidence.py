"""The confidence reasons of a record: what validate says about the model's confidence, written in one place so
that the review (domain/review.py `apply_review`) can say it again over the fields that are still the model's.

Validate judges an asset by the weakest calibrated field a model or rule wrote (`field_confidence`: `alt_text`,
`visible_text`, `tags.<id>`), or by the model's own figure without a calibration; a field a person set is not
evidence. After a review the same holds for a field a person decided (edited, rejected or accepted): it is judged
by the person, not by the model's confidence (`model_judged`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

#: how the weakest-field reason names what it judges (validate's and the review's)
CALIBRATED = "calibrated confidence (weakest field {field}, calibration {calibration})"
UNCALIBRATED = "confidence"
FIELDS_BELOW = "fields below the auto-apply threshold: "
TAGS_BELOW = "tags below the auto-apply threshold: "
LISTED = 6  # fields a "below the auto-apply threshold" reason names


@dataclass(frozen=True)
class ConfidencePolicy:
    """Validate's confidence thresholds (consumers/validate/settings.py)."""
    auto_apply: float
    review: float
    between_policy: str = "review"
    tag_publish_min: float | None = None

    @classmethod
    def of(cls, validate_settings: Any) -> "ConfidencePolicy":
        v = validate_settings
        return cls(v.auto_apply_threshold, v.review_threshold, v.between_policy, v.tag_publish_min)


def fmt(x: float) -> str:
    return f"{x:.2f}"


def threshold_reason(c: float, what: str, policy: ConfidencePolicy) -> tuple[bool, str]:
    """(whether it sends the asset to review, the reason) for one confidence value against the thresholds."""
    hi, lo = policy.auto_apply, policy.review
    if c >= hi:
        return False, f"{what} {fmt(c)} >= {fmt(hi)}"
    if c < lo:
        return True, f"{what} {fmt(c)} < {fmt(lo)}: below the review threshold"
    if policy.between_policy == "auto":
        return False, f"{what} {fmt(c)} between {fmt(lo)} and {fmt(hi)}: between_policy=auto"
    return True, f"{what} {fmt(c)} between {fmt(lo)} and {fmt(hi)}: between_policy=review"


def weakest_reason(judged: dict[str, float], calibration: str, policy: ConfidencePolicy) -> tuple[bool, str] | None:
    """The calibrated judgement of the asset: its weakest judged field against the thresholds (None: none)."""
    if not judged:
        return None
    weakest = min(judged, key=lambda f: judged[f])
    return threshold_reason(judged[weakest], CALIBRATED.format(field=weakest, calibration=calibration), policy)


def below_reason(judged: dict[str, float], policy: ConfidencePolicy) -> str | None:
    """"fields below the auto-apply threshold: …" over the judged fields, None when none is."""
    low = sorted((c, f) for f, c in judged.items() if c < policy.auto_apply)
    if not low:
        return None
    return FIELDS_BELOW + ", ".join(f"{f} {fmt(c)}" for c, f in low[:LISTED]) + (" …" if len(low) > LISTED else "")


def tags_below_reason(pending: list[tuple[str, float]]) -> str | None:
    """"tags below the auto-apply threshold: …" over (tag id, confidence) of the pending model tags."""
    if not pending:
        return None
    return TAGS_BELOW + ", ".join(f"{t} {fmt(c)}" for t, c in pending[:LISTED]) + (" …" if len(pending) > LISTED
                                                                                  else "")


def field_of(key: str) -> str:
    """The reviewable field a `field_confidence` key belongs to ("tags.subject:cat" -> "tags")."""
    return "tags" if key.startswith("tags.") else key


def model_judged(field_confidence: dict[str, float], decided: Iterable[str]) -> dict[str, float]:
    """`field_confidence` without the fields a person decided: those are judged by the person, not by the model."""
    decided = set(decided)
    return {k: c for k, c in field_confidence.items() if field_of(k) not in decided}


def flat(value: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """field_confidence as validate wrote it: a store that filters `_source` by path may hand a dotted key
    ("tags.subject:cat") back nested ({"tags": {"subject:cat": 0.2}})."""
    out: dict[str, float] = {}
    for k, v in (value or {}).items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)):
            out[f"{prefix}{k}"] = float(v)
    return out


def not_judged(record: dict[str, Any], auto_apply: float, publish_min: float | None) -> set[str]:
    """The `field_confidence` keys validate left out of the asset's judgement: tags held as suggestions
    (`tag_suggestions`) and model tags pending between `tag_publish_min` and `auto_apply`."""
    conf = flat(record.get("field_confidence") or {})
    held = {f"tags.{t.get('tag')}" for t in record.get("tag_suggestions") or []}
    pending = {k for k, c in conf.items() if k.startswith("tags.") and publish_min is not None
               and publish_min <= c < auto_apply}
    return held | pending
