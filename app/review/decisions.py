"""From what an editor saw and submitted to EditorDecisions (domain/review.py is the contract), and the asset
view's parts: every reviewable field with its provenance, the tag chips, the rendered prompts and raw answers."""
from __future__ import annotations

import json
import re
import time
from typing import Any

from domain import review
from domain.records import content_sha256
from domain.taxonomy import Taxonomy
from streams.records import to_ms

LABELS = {"title": "Title", "alt_text": "Alt text", "caption": "Caption", "summary": "Summary",
          "credit_text": "Credit", "licensing": "Licensing", "tags": "Tags"}
MULTILINE = {"alt_text", "caption", "summary"}
VERDICTS = {"approve": "approved", "reject": "rejected", "save": None}


class DecisionError(ValueError):
    pass


VIDEO_NOT_DECORATIVE = ("nothing was sent: a video is never decorative: an empty alt text would publish it with no "
                        "text alternative, which screen readers skip (WCAG 1.1.1). Say what the video shows, or "
                        "reject the alt text to keep it in review")
"""trial 36 N3: an editor could mark a video decorative (the *decorative* choice, or the alt text cleared); the model
and validate never do, and the page no longer offers it for a video"""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def vocabulary(tax: Taxonomy) -> dict[str, Any]:
    """Tags for the autocomplete: canonical ones with label and synonyms, deprecated ones with their current name
    (following renames; None when removed)."""
    tags = [{"tag": e["tag"], "label": e["label"], "synonyms": e["synonyms"]} for e in tax.vocabulary()]
    deprecated = {old: tax.current_name(old) for old in tax.deprecated}
    return {"version": tax.version, "tags": tags, "deprecated": deprecated}


def canonical_tags(raw: str, tax: Taxonomy, keep: set[str] = frozenset()) -> list[str]:
    """The tag ids an editor submitted (comma-separated or a JSON list), deprecated ones replaced; an id that is
    not in the vocabulary is an error, unless the asset already had it (`keep`: e.g. a DAM keyword a person set)."""
    items = review.parse_tags_value(raw)
    out, unknown = [], []
    for item in items:
        tag = item.strip()
        if tag in keep or (tag in tax.entries and tag not in tax.deprecated):  # not renamed
            out.append(tag)
            continue
        res = tax.resolve(tag)
        if res.outcome == "mapped" and res.mapped:  # an id, label or synonym; a deprecated id -> its replacement
            out.append(res.mapped.tag)
        else:
            unknown.append(tag)
    if unknown:
        raise DecisionError(f"not in the vocabulary ({tax.version}): {', '.join(unknown)}")
    return list(dict.fromkeys(out))


def doc_value(doc: dict[str, Any], field: str) -> str:
    if field == "tags":
        return review.tags_value(doc.get("tags") or [])
    return _text(doc.get(field))


def shown_value(form: Any, name: str, current: str) -> str:
    """The value of field `name` the page showed the editor (`shown.<f>`, written with the form); `current` for a
    form without it (an older page, a script)."""
    if f"shown.{name}" not in form:
        return current
    value = str(form.get(f"shown.{name}") or "")
    return review.tags_value(review.parse_tags_value(value)) if name == "tags" else value.replace("\r\n", "\n")


MINE_MAX = 20
"""own decision ids a page carries (`mine`): the decisions this page sent while the editor stayed on it"""


def own_decisions(value: Any) -> list[str]:
    """The decision ids a page says it sent itself (`mine`: comma-separated, as the app wrote them)."""
    ids = [x for x in str(value or "").split(",") if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", x)]
    return ids[-MINE_MAX:]


def others_decided(doc: dict[str, Any], form: Any) -> bool:
    """Whether a decision this page did not send was applied to the asset since the page was shown: the decisions
    after `shown_decision` (the newest one the page's record had) that are not among the page's own (`mine`). A
    page's own decision the review group applied after a redirect (a Save, then Approve all on the page that still
    shows the value before it) is no conflict; another tab's or editor's is. True when it cannot be told (a form
    without `shown_decision`, or a shown decision no longer in the record's window)."""
    if "shown_decision" not in form:
        return True
    ids = (doc.get("review") or {}).get("decision_ids") or []
    last = str(form.get("shown_decision") or "")
    if last and last not in ids:
        return True
    since = ids[ids.index(last) + 1:] if last else ids
    mine = set(own_decisions(form.get("mine")))
    return any(d not in mine for d in since)


def from_form(doc: dict[str, Any], form: Any, editor: str, tax: Taxonomy,
              pending: list[dict[str, Any]] | tuple = ()) -> dict[str, Any]:
    """An EditorDecision from the asset form. Per field: `action.<f>` = accepted | rejected | "" (and for the alt
    text `decorative`: sent as the empty alt text that marks the image decorative, also when the field already
    shows none, e.g. after a rejection) and `value.<f>`;
    a value that differs from what the editor was shown (`shown.<f>`) is an edit. The verdict comes from the button
    pressed (`verdict` = approve | reject | save).

    A stale page is refused, not merged (`conflict`): when a field the editor decides on (or, for a verdict, any
    field) holds another value than the page showed because another tab or editor decided meanwhile
    (`others_decided`; a decision does not change `version`) or the asset was processed again (a newer `version`),
    sending would undo that decision or approve values nobody saw (trial 11: a second tab reverted an approved edit
    to the model's text); a verdict is refused when anyone else decided on the asset meanwhile, its values changed
    or not (trial 34 F2: a stale page's Reject reversed another editor's approval); a new version whose image or
    shown values did not change is no conflict (trial 34 F3: every reprocess refused every open page). `pending`:
    the decisions other editors sent through this app that the index does not show yet (each `fields` and
    `status`): a decision on a field one of them decides, or a verdict while any is pending, is refused too (trial 34 F1: two
    saves 100 ms apart were both sent, one lost). The page's own earlier decisions are not a conflict."""
    verdict = VERDICTS.get(str(form.get("verdict") or "save"), None)
    moved = bool(form.get("shown_version")) and str(doc.get("version")) != str(form.get("shown_version"))
    if moved and not all(k in form for k in ("shown_sha256", *(f"shown.{n}" for n in review.FIELDS))):
        # a form that does not say what it showed (an older page, a script): any new version refuses it
        raise DecisionError("the asset changed while you were looking at it: reload and decide again")
    if moved and str(form.get("shown_sha256")) != str(content_sha256(doc) or ""):
        raise DecisionError("nothing was sent: the image changed while you were looking at it (a new file was "
                            "processed): check the new image and decide again")
    out_fields, changed = [], []
    for name in review.FIELDS:
        current = doc_value(doc, name)
        seen = shown_value(form, name, current)
        action = str(form.get(f"action.{name}") or "")
        if f"value.{name}" not in form and not action:
            if verdict and seen != current:
                changed.append(name)
            continue
        if name == "tags":
            had = set(review.parse_tags_value(current)) | set(review.parse_tags_value(seen))
            submitted = review.tags_value(canonical_tags(str(form.get("value.tags") or ""), tax, had)) \
                if "value.tags" in form else seen
        else:
            submitted = str(form.get(f"value.{name}", seen)).replace("\r\n", "\n").strip()
        if seen != current and (verdict or action or submitted != seen):
            changed.append(name)
        if action == "rejected":
            out_fields.append({"field": name, "action": "rejected", "value": None})
        elif action == "decorative" and name == "alt_text":  # the image is decorative: the empty alt text says so
            out_fields.append({"field": name, "action": "edited", "value": ""})
        elif submitted != seen:
            out_fields.append({"field": name, "action": "edited", "value": submitted})
        elif action == "accepted":
            out_fields.append({"field": name, "action": "accepted", "value": current})
    refusal = conflict(doc, form, verdict, changed, moved, {x["field"] for x in out_fields}, pending, editor)
    if refusal:
        raise DecisionError(refusal)
    if doc.get("media_type") == "video" and any(x["field"] == "alt_text" and x["action"] == "edited"
                                                and not (x["value"] or "").strip() for x in out_fields):
        raise DecisionError(VIDEO_NOT_DECORATIVE)
    if verdict == "approved":  # a value the family gave it is what the person approved: pin it (see approval)
        named = {x["field"] for x in out_fields}
        out_fields += [accepted for accepted in propagated_acceptances(doc, tax) if accepted["field"] not in named]
    if not out_fields and verdict is None:
        raise DecisionError("nothing to send: accept, edit or reject a field, or approve / reject the asset")
    # the image the editor was shown: the verdict is of these bytes (a replaced image goes back to review); the
    # newest decision the page knew of: the review group refuses this one if another editor's came between
    return {"asset_id": doc["asset_id"], "editor": editor, "fields": out_fields, "status": verdict,
            "tenant": doc.get("tenant"), "content_sha256": content_sha256(doc), "base_decision_id": base_of(doc, form)}


def base_of(doc: dict[str, Any], form: Any) -> str | None:
    """The decision a decision from this form is based on (`base_decision_id`): the newest applied one the page knew
    of, of the one its record showed (`shown_decision`) and those it sent itself (`mine`); "" when it knew of none;
    None for a form that does not say (an older page, a script: the review group does not check it). Its own
    decisions not applied yet need not be named: the review group never counts the same editor's decisions against
    them (and one it refused would be a base it does not know, which it does not check)."""
    if "shown_decision" not in form:
        return None
    ids = (doc.get("review") or {}).get("decision_ids") or []
    mine = own_decisions(form.get("mine"))
    known = [i for i in (str(form.get("shown_decision") or ""), *mine) if i in ids]
    return max(known, key=ids.index) if known else str(form.get("shown_decision") or "")


def _labels(names: Any) -> str:
    return ", ".join(LABELS[n].lower() for n in review.FIELDS if n in set(names))


def decided_by(review: dict[str, Any] | None, me: str | None = None) -> str:
    """Who decided on an asset last, in words, for a refusal or a bulk approval's left-out row: "approved by alice",
    "decided on by bob" (field decisions only: the newest one's editor), "rejected by erin (you, on another page or
    tab)" when it is the editor being told (code review 18 F8: their own earlier decision was "someone else's"), or
    "decided on by another tab or editor" when the review does not say who."""
    rv = review or {}
    if rv.get("status"):
        what, who = rv["status"], rv.get("editor")
    else:
        newest = max(rv.get("fields") or [], key=lambda f: to_ms(f["at"]) if f.get("at") is not None else 0,
                     default=None)
        what, who = "decided on", (newest or {}).get("editor")
    if not who:
        return f"{what} by another tab or editor"
    return f"{what} by {who}" + (" (you, on another page or tab)" if me and who == me else "")


def conflict(doc: dict[str, Any], form: Any, verdict: str | None, changed: list[str], moved: bool,
             decided: set[str], pending: Any, editor: str | None = None) -> str | None:
    """Why a decision from this form must not be sent (from_form), or None. `changed`: the fields it decides on (for
    a verdict: every field) whose value is no longer the one shown; `moved`: the asset was processed again since;
    `decided`: the fields it decides on; `pending`: other editors' decisions sent and not applied yet; `editor`: who
    is deciding (named as "you" when the decision meanwhile was theirs)."""
    others = others_decided(doc, form)
    if changed and (others or moved):
        why = "another tab or editor decided meanwhile" if others else "the asset was processed again meanwhile"
        return (f"nothing was sent: {_labels(changed)} changed while you were looking at it ({why}): check the "
                "values and decide again")
    if verdict and "shown_decision" in form and others:  # a verdict of a page drawn before another person's
        return (f"nothing was sent: this asset was {decided_by(doc.get('review'), editor)} while you were looking at "
                "it: check it and decide again")
    pending = list(pending or ())
    clash = pending if verdict else [p for p in pending if decided & set(p.get("fields") or ())]
    if clash:
        who = ", ".join(dict.fromkeys(str(p.get("editor") or "someone") for p in clash))
        what = "on this asset" if verdict else \
            "the " + _labels(decided & {f for p in clash for f in p.get("fields") or ()})
        first = min((p["sent_at"] for p in clash if p.get("sent_at")), default=None)
        when = "a moment ago" if first is None else \
            f"at {time.strftime('%H:%M:%S', time.localtime(first))} ({max(0, round(time.time() - first))} s ago)"
        return (f"nothing was sent: {who} decided {what} {when} and the review worker has not applied it yet: "
                "reload in a moment, check it and decide again")
    return None


def approval(asset_id: str, editor: str, tenant: str | None = None,
             doc: dict[str, Any] | None = None, tax: Taxonomy | None = None,
             base: str | None = None) -> dict[str, Any]:
    """'Approve all': the verdict (the merge pins every value of the asset's record, each keeping its source), and
    the values its duplicate family gave it (`propagated`, index-only: not in the record) accepted as the person
    saw them (the review group records them as `propagated`). `base`: the newest decision the queue row showed
    (its `seen.<id>`; None when the form does not say)."""
    return {"asset_id": asset_id, "editor": editor, "fields": propagated_acceptances(doc or {}, tax),
            "status": "approved", "tenant": tenant, "base_decision_id": base}


def propagated_acceptances(doc: dict[str, Any], tax: Taxonomy | None = None) -> list[dict[str, Any]]:
    """The family's values on `doc`, accepted as shown. With the taxonomy, a tag the family gave under a name that
    was since renamed (a source indexed before the rename: `color:grey`) is accepted under its current name
    (`color:gray`), one since removed is left out; the review group does the same for decisions sent without."""
    out = []
    for name in review.propagated_fields(doc):
        value = doc_value(doc, name)
        if name == "tags" and tax is not None:
            given = review.propagated_applied(doc).get("tags") or []
            own = set(review.parse_tags_value(value)) - set(given)
            value = review.tags_value(review.renamed_tags(review.parse_tags_value(value), tax.current_name, own, given))
        out.append({"field": name, "action": "accepted", "value": value})
    return out


# --- the asset view ------------------------------------------------------------------------------------------
def field_rows(doc: dict[str, Any], field_tasks: dict[str, str]) -> list[dict[str, Any]]:
    """Every reviewable field: value, source, the provenance of the task that wrote it, the model's suggestion
    when a person's value replaced it, and the last human decision."""
    prov = {}
    for p in doc.get("provenance") or []:
        prov.setdefault(p.get("task"), p)
    sources = doc.get("field_sources") or {}
    suggestions = doc.get("model_suggestions") or {}
    decided = {f["field"]: f for f in (doc.get("review") or {}).get("fields") or []}
    prop = doc.get("propagated") or {}
    given = set(review.propagated_fields(doc))
    rows = []
    for name in review.FIELDS:
        source = sources.get(name) or ("model" if doc.get(name) else None)
        if name == "tags":
            details = doc.get("tag_details") or []
            source = sources.get("tags") or ("model" if details else None)  # per tag: each chip's own source
        rows.append({"name": name, "label": LABELS[name], "value": doc_value(doc, name) if name != "tags" else "",
                     "shown": doc_value(doc, name),  # sent back with the form: what this page showed (from_form)
                     "source": source, "provenance": prov.get(field_tasks.get(name)) if source == "model" else None,
                     "suggestion": suggestions.get(name), "decided": decided.get(name),
                     "multiline": name in MULTILINE,
                     # from the duplicate family: applied here, or offered (index.family_propagation)
                     "propagated": {"from": prop.get("from"), "confidence": prop.get("confidence")}
                     if name in given else None,
                     "family_suggestion": ((prop.get("suggested") or {}).get(name) or None) if prop else None})
    return rows


def tag_chips(doc: dict[str, Any], tax: Taxonomy) -> list[dict[str, Any]]:
    chips = []
    for t in doc.get("tag_details") or [{"tag": t} for t in doc.get("tags") or []]:
        tag = t["tag"]
        chips.append({"tag": tag, "label": t.get("label") or (tax.label(tag) if tag in tax.entries else tag),
                      "score": t.get("score"), "source": t.get("source"),
                      "replacement": tax.current_name(tag) if tag in tax.deprecated else None})
    return chips


def restored_chips(chips: list[dict[str, Any]], raw: str, tax: Taxonomy) -> list[dict[str, Any]]:
    """The tag chips of an asset page drawn with a form carried back (a rights check's Cancel: `raw`, the form's
    `value.tags`): the document's chips, those the form left out marked `removed`, then the tags the form adds marked
    `added`, as the page's script marks them while editing, so the chips show what the form sends (code review 17
    F4: they showed the document's tags, and a chip's click rebuilt the tags from them, dropping the edit)."""
    kept = []
    for tag in review.parse_tags_value(raw):
        res = None if tag in tax.entries and tag not in tax.deprecated else tax.resolve(tag)
        kept.append(res.mapped.tag if res is not None and res.outcome == "mapped" and res.mapped else tag)
    have = {c["tag"] for c in chips}
    return [*({**c, "state": None if c["tag"] in kept else "removed"} for c in chips),
            *({"tag": t, "label": tax.label(t) if t in tax.entries else t, "score": None, "source": "human",
               "replacement": None, "state": "added"} for t in dict.fromkeys(kept) if t not in have)]


def prompts(doc: dict[str, Any], settings: Any) -> list[dict[str, Any]]:
    """Per model task: the prompt the model got, rendered again from the validated record with the prompt version
    its provenance names, and the model's raw answer."""
    from consumers.enrich.plan import EnrichPlan

    record = doc.get("record") or {}
    pre = ((record.get("enriched") or {}).get("pre")) or {}
    raw = ((doc.get("enrichment") or {}).get("raw_outputs")) or {}
    out = []
    seen = set()
    for p in doc.get("provenance") or []:
        task = p.get("task")
        if task in seen or task in (None, "dedupe"):
            continue
        seen.add(task)
        item: dict[str, Any] = {"task": task, "provenance": p, "raw": _pretty(raw.get(task)), "system": None,
                                "user": None, "error": None, "hash_matches": None}
        try:
            version = p.get("prompt_version")
            enrich = settings.enrich.model_copy(update={"prompt_versions": {
                **settings.enrich.prompt_versions, p.get("prompt_id") or task: version}} if version else {})
            plan = EnrichPlan(enrich, settings.validate_.taxonomy_path)
            planned = plan.tasks.get(task) or plan.tasks.get(p.get("prompt_id") or "")
            if planned is None:
                raise LookupError(f"task {task!r} is not in this deployment's enrich plan")
            rendered = plan.render(planned, pre)
            item.update(system=rendered.system, user=rendered.user_text,
                        hash_matches=rendered.hash == p.get("prompt_hash"))
        except Exception as exc:  # an old prompt version that is gone, a changed plan: say so, show the rest
            item["error"] = f"{type(exc).__name__}: {exc}"
        out.append(item)
    return out


def _pretty(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
