"""What people decided about an asset, and how it outranks model output. Pure functions, shared by the review
consumer group (EditorDecision -> HumanReview), validate (human edits win) and the index sink (again, at the
single writer).

A HumanReview (ValidatedAsset.review) accumulates every EditorDecision of an asset: per field the latest person's
action with the concrete value it set or confirmed, and the latest verdict (approved | rejected). `apply_review`
puts it on any later ValidatedAsset, so a reprocess, a model or prompt change, a backfill or a DLQ replay never
overwrites what a person set. Per field the newest human action wins: a review made after the event's time beats
the event's own `human_fields` (set in the DAM before), a DAM edit made after the review beats the review.

Provenance stays honest: only a value a person wrote (`edited`) or cleared (`rejected`) becomes `field_sources`
`human`. A field the person `accepted` (one by one, or every field they did not touch when they approve the asset)
keeps the source of the value they approved (`model`, `embedded`, `rule`, `propagated`, or `human` for a value a
person set before); the review's field entry (`action: accepted`, `source`, `editor`, `at`) says a person approved
it. The approved value is pinned like an edit: a reprocess that brings another model value keeps the approved one
and offers the new one in `model_suggestions`; the pinned value is then the person's (`human`; `propagated` for a
value from the family), never credited to the run that did not produce it. Accepting one's own earlier edit or
rejection keeps it an edit or a rejection.

An approval covers the values it saw: if a later record brings a different model value for a field the person did
not decide on, the asset goes back to review ("changed since approval").

A non-decorative image is never approved without alt text (WCAG): a person's *empty* alt text marks the image
decorative, but a *rejected* one says only that the text is wrong, so an approval with no alt text left (or a
rejection of the alt text of an auto-applied asset) keeps the asset in review ("no alt text for a non-decorative
image after <editor>'s review: write one, or mark the image decorative").

A verdict is of *that image*: the review records the SHA-256 of the bytes it was given on (`content_sha256`: the
one the review app showed, else the record's). A later record of other bytes (an `updated` event with a new file)
goes back to review ("the image changed since <editor> approved it on <date>: check the values"); the person's
values stay as they are (never overwritten) and the model's new ones wait in `model_suggestions`. A re-run of the
same bytes keeps the verdict. Only the exact hash counts: a re-encode (same pHash, other bytes) counts as changed,
because a pHash does not see a product's colour or a label's text (docs/review.md). A verdict recorded before the
hash was kept has none and holds here; the index sink dates it to the image it indexed (consumers/index/sink.py).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any, Callable, Iterable

from domain.confidence import (CALIBRATED, FIELDS_BELOW, TAGS_BELOW, UNCALIBRATED, ConfidencePolicy, below_reason,
                               flat, model_judged, not_judged, threshold_reason, weakest_reason)
from domain.records import asset_of, content_sha256
from streams.records import to_ms

#: the fields a person decides on, as they appear on ValidatedAsset
FIELDS = ("title", "alt_text", "caption", "summary", "credit_text", "licensing", "tags")
ACTIONS = ("accepted", "edited", "rejected")
VERDICTS = ("approved", "rejected")
MAX_DECISION_IDS = 200
MAX_APPLIED = 50
"""decisions a review lists in `applied` (who, verdict, fields changed): what a decision's base is checked against"""
#: the reasons `apply_review` gives, written only through `review_reason`
REJECTED = "rejected by {editor}"
APPROVED = "approved by {editor}"
UNAPPROVED = "changed since the approval by {editor}: {fields}"  # model output the approval never saw
IMAGE_CHANGED = "the image changed since {editor} {status} it on {when}: check the values"
#: a non-decorative image a person left without alt text (rejected it, or approved none): never published so
NO_ALT_TEXT = ("no alt text for a non-decorative image after {editor}'s review: write one, or mark the image "
               "decorative (an empty alt text)")
#: an asset in review whose low-confidence fields a person decided, without a verdict yet: the model's confidence
#: no longer holds it, the missing verdict does
NO_VERDICT = "no verdict yet: {fields} decided by {editor}: approve or reject the asset"
REVIEW_REASON_TEMPLATES = (REJECTED, APPROVED, UNAPPROVED, IMAGE_CHANGED, NO_ALT_TEXT, NO_VERDICT)


#: an event's value -> the review field it sets (validate's precedence: a person's value given with the upload)
EVENT_FIELDS = {"title": "title", "alt_text": "alt_text", "caption": "caption", "description": "summary",
                "credit_line": "credit_text", "keywords": "tags", "declared_license": "licensing"}


def event_gave(validated: dict[str, Any], field: str) -> bool:
    """Whether the record's own event gave review field `field` a person's value (its human_fields, its declared
    licence): a `human` source that came from the DAM, not from a review applied to the record before."""
    asset = asset_of(validated) or {}
    human = asset.get("human_fields") or {}
    for key, name in EVENT_FIELDS.items():
        if name == field:
            value = asset.get(key) if key == "declared_license" else human.get(key)
            return value not in (None, "", [])
    return False


def review_reason(template: str, **values: str) -> str:
    """One of the review's own reasons (`template` one of REVIEW_REASON_TEMPLATES) with its values filled in."""
    return template.format(**values)


def reason_prefix(template: str) -> str:
    """The fixed words a review reason begins with (everything before its first value)."""
    return template.split("{", 1)[0]


#: how the reasons `apply_review` gives begin: a record it already applied a review to (the review group's output,
#: which the index sink applies the merged review to again) drops them before they are added once more
REVIEW_REASONS = tuple(reason_prefix(t) for t in REVIEW_REASON_TEMPLATES)


def tags_value(tag_ids: Iterable[str]) -> str:
    """A tags decision's value: the JSON list of the canonical tag ids a person kept or set."""
    return json.dumps(sorted(dict.fromkeys(str(t) for t in tag_ids)))


def parse_tags_value(value: str | None) -> list[str]:
    if not value:
        return []
    try:
        data = json.loads(value)
    except ValueError:
        data = [t for t in value.replace(";", ",").split(",")]
    if isinstance(data, str):
        data = [data]
    return [str(t).strip() for t in data if str(t).strip()]


def current_value(validated: dict[str, Any], field: str) -> str | None:
    """A field's value on a ValidatedAsset in the review's string form."""
    if field == "tags":
        return tags_value(t["tag"] for t in validated.get("tags") or [])
    value = validated.get(field)
    return None if value is None else str(value)


def source_of(validated: dict[str, Any], field: str) -> str | None:
    """Who set a field's value on a ValidatedAsset: its `field_sources` entry; a value without one is the model's
    (as the review app shows it), an empty field has none."""
    source = (validated.get("field_sources") or {}).get(field)
    return source or ("model" if current_value(validated, field) not in (None, "", "[]") else None)


def has_decision(review: dict[str, Any] | None) -> bool:
    """Whether a HumanReview holds a decision (a verdict, or a field decided)."""
    return bool(review and (review.get("status") or review.get("fields")))


def propagated_applied(doc: dict[str, Any]) -> dict[str, Any]:
    """The values the asset's duplicate family gave an index document (`propagated.applied`: field -> value)."""
    return (doc.get("propagated") or {}).get("applied") or {}


def propagated_fields(doc: dict[str, Any]) -> list[str]:
    """The reviewable fields of an index document holding a value propagated from the asset's duplicate family
    (the index sink's consumers/index/propagate.py): index-only, not in the asset's record."""
    applied = propagated_applied(doc)
    return [name for name in ("alt_text", "tags") if applied.get(name)]


def propagated_shown(doc: dict[str, Any], rename: Callable[[list[str]], list[str]] | None = None
                     ) -> dict[str, tuple[str, str | None]]:
    """What a person saw of the index document's values the duplicate family gave it: field -> (`propagated`, the
    value in the review's string form), for `merge_decision`'s `shown`. `rename` brings the tag ids onto the
    names the decision uses (`renamed_tags`)."""
    out: dict[str, tuple[str, str | None]] = {}
    for name in propagated_fields(doc):
        if name == "tags":
            ids = [str(t) for t in doc.get("tags") or []]
            out[name] = ("propagated", tags_value(rename(ids) if rename else ids))
        else:
            out[name] = ("propagated", None if doc.get(name) is None else str(doc[name]))
    return out


def renamed_tags(tag_ids: Iterable[str], current_name: Callable[[str], str | None],
                 keep: Iterable[str] = (), given: Iterable[str] = ()) -> list[str]:
    """`tag_ids` with each renamed (deprecated) id replaced by its current name (`current_name`: the taxonomy's
    `Taxonomy.current_name`, None for a removed tag). An id in `keep` (on the asset's record) stays as it is; a
    removed id the duplicate family gave the document (`given`) is dropped (it cannot be published), any other
    removed id stays (and is refused as not in the vocabulary)."""
    keep, given = set(keep), set(given)
    out = []
    for tag in tag_ids:
        new = tag if tag in keep else current_name(tag)
        if new is None and tag in given:
            continue
        out.append(new or tag)
    return list(dict.fromkeys(out))


def _accepted_source(validated: dict[str, Any] | None, name: str, value: str | None,
                     shown: dict[str, tuple[str, str | None]]) -> str:
    """The source of the value a person accepted: the record's when it is the record's value, else the source of
    the value the person was shown when it is that value (one propagated from the family), else `human` (a
    person named a value of their own). An empty field nobody filled has no source (None): approving it confirms
    it stays empty, but nobody wrote it."""
    if validated is not None and value == current_value(validated, name):
        return source_of(validated, name) or (None if value in (None, "", "[]") else "human")
    source, seen = shown.get(name) or (None, None)
    return source if source and value == seen else "human"


def empty_review() -> dict[str, Any]:
    return {"status": None, "editor": None, "decided_at": None, "decision_ids": [], "fields": [],
            "content_sha256": None, "applied": []}


def changed_fields(decision: dict[str, Any]) -> list[str]:
    """The fields a decision changes: those it edits or rejects (an accept confirms the value shown)."""
    return [f["field"] for f in decision.get("fields") or [] if f.get("action") in ("edited", "rejected")]


def stale(review: dict[str, Any] | None, decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The decisions of other editors that make `decision` stale: applied after its `base_decision_id` (the newest
    decision the editor's page knew of; "" = none) and changing a field it decides on, or, for a verdict, any (the
    review app's own rule, app/review/decisions.py conflict: a field decision is refused when a field it decides on
    changed meanwhile, a verdict when anyone else decided meanwhile). Empty (not stale) when the decision does not
    say its base (null: an older app, `assetstream feedback`, the SDK), when it was applied already (a redelivery),
    when the base is not among the review's decision ids (older than its window, or never applied), and for what a
    review recorded before `applied` does not list. The same editor's later decisions never count (their own, from
    this or another page: the app tells those apart)."""
    base = decision.get("base_decision_id")
    rv = review or {}
    ids = rv.get("decision_ids") or []
    if base is None or decision["decision_id"] in ids or (base and base not in ids):
        return []
    since = set(ids[ids.index(base) + 1:] if base else ids)
    later = [a for a in rv.get("applied") or [] if a["decision_id"] in since and a["editor"] != decision["editor"]]
    if decision.get("status"):
        return later
    decided = {f["field"] for f in decision.get("fields") or []}
    return [a for a in later if decided & set(a.get("changed") or ())]


def said_applied(applied: list[dict[str, Any]]) -> str:
    """What decisions did, in words: "alice approved the asset at 2026-12-03 21:03:10 UTC; bob changed the alt text
    at …" (the refusal of a stale decision names them)."""
    out = []
    for a in applied:
        what = [f"{a['status']} the asset"] if a.get("status") else []
        if a.get("changed"):
            what.append("changed the " + ", ".join(n.replace("_", " ") for n in a["changed"]))
        when = dt.datetime.fromtimestamp(to_ms(a["decided_at"]) / 1000, dt.timezone.utc).strftime(
            " at %Y-%m-%d %H:%M:%S UTC") if a.get("decided_at") is not None else ""
        out.append(f"{a['editor']} {' and '.join(what) or 'decided on it'}{when}")
    return "; ".join(out)


def merge_decision(review: dict[str, Any] | None, decision: dict[str, Any],
                   validated: dict[str, Any] | None,
                   shown: dict[str, tuple[str, str | None]] | None = None) -> dict[str, Any]:
    """The review after one more EditorDecision. `validated` is the asset's current record: an 'accepted' field
    records the value the person saw and its source (`shown`: field -> (source, value) of a value the person saw
    that is not the record's, e.g. `propagated`; see `propagated_shown`). Idempotent (a decision applied twice
    changes nothing) and order-free per field (the newest `at` wins). An accept of the value a person set before
    (an edit) or of a field they rejected keeps their edit or rejection: writeback sends only edits."""
    out = copy.deepcopy(review) if review else empty_review()
    if decision["decision_id"] in out["decision_ids"]:
        return out
    shown = shown or {}
    at = to_ms(decision["decided_at"])
    fields = {f["field"]: f for f in out["fields"]}
    named = set()
    for fd in decision.get("fields") or []:
        name, action = fd["field"], fd["action"]
        if name not in FIELDS:
            raise ValueError(f"field {name!r} cannot be reviewed (one of {', '.join(FIELDS)})")
        if action not in ACTIONS:
            raise ValueError(f"field {name}: action must be one of {', '.join(ACTIONS)}, not {action!r}")
        named.add(name)
        source = None
        if action == "edited":
            value = tags_value(parse_tags_value(fd.get("value"))) if name == "tags" else fd.get("value")
        elif action == "accepted":
            value = fd.get("value") if fd.get("value") is not None else (
                current_value(validated, name) if validated is not None else None)
            source = _accepted_source(validated, name, value, shown)
        else:
            value = None
        old = fields.get(name)
        if action == "accepted" and _own_earlier(old, value):
            continue  # accepting the person's own edit (or rejection) as shown: it stays theirs
        if old is None or to_ms(old["at"]) <= at:
            fields[name] = {"field": name, "action": action, "value": value, "editor": decision["editor"], "at": at,
                            "source": source}
    verdict = decision.get("status")
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"status must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if verdict == "approved" and validated is not None:  # an approval confirms every value the person saw
        for name in FIELDS:
            if name in named or (name in fields and to_ms(fields[name]["at"]) >= at):
                continue
            value = current_value(validated, name)
            if _own_earlier(fields.get(name), value):
                continue  # the person's own earlier edit (or rejection), shown and approved: it stays theirs
            fields[name] = {"field": name, "action": "accepted", "value": value, "editor": decision["editor"],
                            "at": at, "source": _accepted_source(validated, name, value, shown)}
    out["fields"] = [fields[f] for f in FIELDS if f in fields]
    if verdict is not None:
        if out["decided_at"] is None or to_ms(out["decided_at"]) <= at:
            # the image the verdict is of: the one the person was shown, else the record's
            seen = decision.get("content_sha256") or (content_sha256(validated) if validated is not None else None)
            out.update(status=verdict, editor=decision["editor"], decided_at=at, content_sha256=seen)
    out["decision_ids"] = [*out["decision_ids"], decision["decision_id"]][-MAX_DECISION_IDS:]
    out["applied"] = [*(out.get("applied") or []), {
        "decision_id": decision["decision_id"], "editor": decision["editor"], "status": verdict,
        "changed": changed_fields(decision), "decided_at": at}][-MAX_APPLIED:]
    return out


def _own_earlier(old: dict[str, Any] | None, value: str | None) -> bool:
    """Whether `value`, accepted now, is what a person's earlier edit set or their rejection left (an empty field)."""
    if old is None or old["action"] == "accepted":
        return False
    if old["action"] == "rejected":
        return value in (None, "", "[]")
    return old["value"] == value


def merge_reviews(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two reviews of the same asset (e.g. the index's and a record's) as one: per field and for the verdict the
    newest wins; decision ids are united."""
    if not a or not b:
        return copy.deepcopy(a or b)
    fields: dict[str, dict[str, Any]] = {}
    for f in [*a["fields"], *b["fields"]]:
        old = fields.get(f["field"])
        if old is None or to_ms(old["at"]) <= to_ms(f["at"]):
            fields[f["field"]] = dict(f)
    out = copy.deepcopy(a)
    out["fields"] = [fields[f] for f in FIELDS if f in fields]
    if b.get("decided_at") is not None and (a.get("decided_at") is None
                                            or to_ms(a["decided_at"]) <= to_ms(b["decided_at"])):
        out.update(status=b["status"], editor=b["editor"], decided_at=b["decided_at"],
                   content_sha256=b.get("content_sha256"))
    out["decision_ids"] = list(dict.fromkeys([*a["decision_ids"], *b["decision_ids"]]))[-MAX_DECISION_IDS:]
    applied = {x["decision_id"]: x for x in [*(a.get("applied") or []), *(b.get("applied") or [])]}
    out["applied"] = [applied[i] for i in out["decision_ids"] if i in applied][-MAX_APPLIED:]  # in the order applied
    return out


def same_review(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    def norm(r):
        if not r:
            return None
        return ({f["field"]: (f["action"], f["value"], to_ms(f["at"])) for f in r["fields"]}, r.get("status"),
                to_ms(r.get("decided_at")))
    return norm(a) == norm(b)


def _tag(tag_id: str, label_of, source: str = "human") -> dict[str, Any]:
    """A tag a person added (or one pinned from a family), as the record lists it."""
    facet, _, rest = tag_id.partition(":")
    label = (label_of(tag_id) if label_of else None) or rest or tag_id
    return {"tag": tag_id, "facet": facet if rest else "keyword", "label": label, "score": 1.0, "source": source}


def image_changed(validated: dict[str, Any], review: dict[str, Any]) -> str | None:
    """Why the review's verdict no longer holds for `validated`: the reason when the record's image (SHA-256)
    differs from the one the verdict was given on, else None (no verdict, the same bytes, or a hash unknown)."""
    status, seen, now = review.get("status"), review.get("content_sha256"), content_sha256(validated)
    if status not in VERDICTS or not seen or not now or seen == now:
        return None
    when = dt.datetime.fromtimestamp(to_ms(review["decided_at"]) / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return review_reason(IMAGE_CHANGED, editor=review["editor"], status=status, when=when)


def described(validated: dict[str, Any]) -> bool:
    """Whether a record's image has a text alternative: alt text, or marked decorative (screen readers skip it)."""
    return bool(validated.get("decorative") or (validated.get("alt_text") or "").strip())


def decided_fields(review: dict[str, Any] | None) -> set[str]:
    """The fields a person decided in a review (edited, rejected or accepted)."""
    return {f["field"] for f in (review or {}).get("fields") or []}


def model_fields(validated: dict[str, Any]) -> set[str]:
    """The reviewable fields of a record holding a model's (or a rule's) value."""
    sources = validated.get("field_sources") or {}
    out = {name for name in FIELDS if name != "tags" and sources.get(name) in ("model", "rule")}
    return out | ({"tags"} if any(t.get("source") == "model" for t in validated.get("tags") or []) else set())


def rejudge(validated: dict[str, Any], reasons: list[str], decided: set[str],
            policy: ConfidencePolicy) -> tuple[list[str], bool, bool]:
    """Validate's confidence reasons again, over the fields still the model's: a field a person decided is judged
    by the person, as validate leaves out a field a person set (human_fields). Returns (the reasons, whether a
    decided field was one the model's confidence judged, whether a confidence reason still sends the asset to
    review). The words are validate's own (domain/confidence.py)."""
    conf, calibration = flat(validated.get("field_confidence") or {}), validated.get("calibration")
    if not calibration or not conf:  # the model's own figure covers every model field: gone when none is left
        enrichment = (validated.get("enriched") or {}).get("enrichment") or {}
        if enrichment.get("confidence") is None or not decided or model_fields(validated) - decided:
            return reasons, False, False
        own = threshold_reason(float(enrichment["confidence"]), UNCALIBRATED, policy)[1]
        return [r for r in reasons if r != own], True, False
    skip = not_judged(validated, policy.auto_apply, policy.tag_publish_min)
    every = {k: c for k, c in conf.items() if k not in skip}
    left = model_judged(every, decided)
    if len(left) == len(every):
        return reasons, False, False
    weakest_prefix = CALIBRATED.split("{", 1)[0]
    had_below = any(r.startswith(FIELDS_BELOW) for r in reasons)
    gone = (weakest_prefix, FIELDS_BELOW, TAGS_BELOW) if "tags" in decided else (weakest_prefix, FIELDS_BELOW)
    at = next((i for i, r in enumerate(reasons) if r.startswith(gone)), 0)  # where validate's stood
    out = [r for r in reasons if not r.startswith(gone)]
    weakest, below = weakest_reason(left, str(calibration), policy), below_reason(left, policy)
    at = min(at, len(out))
    out[at:at] = [r for r in (weakest and weakest[1], below if had_below else None) if r]
    return out, True, bool(weakest and weakest[0])


def apply_review(validated: dict[str, Any], review: dict[str, Any] | None, *, label_of=None,
                 policy: ConfidencePolicy | None = None) -> dict[str, Any]:
    """`validated` with the people's decisions on top (a new dict; the input is not changed). `label_of(tag_id)`
    names tags a person added (the taxonomy's label); unknown ids keep their own text. With `policy` (validate's
    thresholds) the confidence reasons are judged again over the fields a person did not decide (`rejudge`);
    without it they stay as validate gave them."""
    if not review or validated.get("status") == "deleted":
        return validated
    out = dict(validated)
    out["review"] = copy.deepcopy(review)
    sources = dict(validated.get("field_sources") or {})
    suggestions = dict(validated.get("model_suggestions") or {})
    # the review's own reasons are a function of the review: never kept from a record it was applied to before
    reasons = [r for r in validated.get("reasons") or [] if not str(r).startswith(REVIEW_REASONS)]
    event_ms = to_ms(asset_of(validated).get("event_time")) or 0
    decided: set[str] = set()
    for f in review["fields"]:
        name, at = f["field"], to_ms(f["at"])
        if sources.get(name) == "human" and event_ms > at and event_gave(validated, name):
            continue  # the DAM's own human value is newer than the review (not this review's, applied before)
        decided.add(name)
        model_value = current_value(validated, name)
        # who set the value now shown: a person for an edit or a rejection. An accepted value that is still the
        # record's keeps the record's source; one the record no longer holds (a reprocess brought other output)
        # is pinned by the person: `human` (never the current run's model or prompt, which did not make it), or
        # `propagated` for a value the family gave (never the record's own)
        accepted = f["action"] == "accepted"
        if accepted and f["value"] == model_value:
            continue
        source = "propagated" if accepted and f.get("source") == "propagated" else "human"
        if name == "tags":
            existing = {t["tag"]: t for t in validated.get("tags") or []}
            ids = parse_tags_value(f["value"]) if f["action"] != "rejected" else []
            # a tag the record already has keeps its own source and score (kept in an edit is not written by the
            # person: "only what a person wrote is human"); the ones the person added are theirs
            out["tags"] = [existing[t] if t in existing else _tag(t, label_of, source) for t in ids]
        else:
            out[name] = f["value"] if f["action"] != "rejected" else None
            if name == "alt_text" and f["action"] != "rejected":
                out["decorative"] = f["value"] == ""
                sources["decorative"] = source
        # the value replaced is offered as the model's suggestion, unless a person had set it (an earlier edit
        # of theirs applied to this record): the model's own suggestion stays (trial 15)
        if model_value != current_value(out, name) and model_value not in (None, "[]") and \
                (validated.get("field_sources") or {}).get(name) != "human":
            suggestions[name] = model_value
        sources[name] = source
    out["field_sources"], out["model_suggestions"] = sources, suggestions
    status = review.get("status")
    judged_decided, still_low = False, False
    if policy is not None:
        reasons, judged_decided, still_low = rejudge(validated, reasons, decided, policy)
    # the person who rejected the alt text (a rejection the review applied), else ""
    alt_rejected = next((f["editor"] for f in review["fields"] if f["field"] == "alt_text"
                         and f["action"] == "rejected" and "alt_text" in decided), "")
    changed = image_changed(validated, review)
    if changed:
        out["status"] = "needs_review"
        reasons.insert(0, changed)  # why it is back in review comes first (the queue's rows show three reasons)
    elif status == "rejected":
        out["status"] = "rejected"
        reasons.append(review_reason(REJECTED, editor=review["editor"]))
    elif (status == "approved" or alt_rejected) and not described(out):
        # WCAG: a non-decorative image is never published without alt text; "reject" says the text is wrong, not
        # that the image is decorative (an empty alt text, or the review app's "decorative", says that)
        out["status"] = "needs_review"
        reasons.insert(0, review_reason(NO_ALT_TEXT, editor=review["editor"] if status else alt_rejected))
    elif status == "approved":
        undecided = [name for name in FIELDS if name not in decided and sources.get(name) == "model"
                     and current_value(out, name) not in (None, "[]")]
        if undecided:  # model output the approval never saw
            out["status"] = "needs_review"
            reasons.insert(0, review_reason(UNAPPROVED, editor=review["editor"], fields=", ".join(undecided)))
        else:
            out["status"] = "approved"
            reasons.append(review_reason(APPROVED, editor=review["editor"]))
    elif status is None and judged_decided and not still_low and out.get("status") == "needs_review":
        # the person decided the fields the model's confidence held in review: what holds it now is the verdict
        mine = [f for f in review["fields"] if f["field"] in decided]
        reasons.insert(0, review_reason(NO_VERDICT, fields=", ".join(f["field"] for f in mine),
                                        editor=max(mine, key=lambda f: to_ms(f["at"]))["editor"]))
    out["reasons"] = reasons
    return out
