"""Propagation of tags and alt text within a duplicate family (issue 17 item 4), at the index sink.

A family's **source** is its member a person approved (confidence 1.0), else its auto-applied member with the
highest confidence (`enrichment.confidence`; a tie: the better quality member, `domain.records.quality_rank`). Every
other member is offered the source's alt text and tags at confidence = source confidence (per tag: its score, 1.0
when a person set or approved it) × `index.family_decay`:

- at or above the threshold (`index.family_apply_threshold`, default `validate.auto_apply_threshold`) the value is
  **applied**: the alt text replaces the member's (`field_sources.alt_text = "propagated"`), a tag joins `tags` /
  `tag_labels` / `facets` with `tag_details.source = "propagated"`;
- below it the value is a **suggestion**: the tag joins `tag_suggestions` (held for an editor, as weak model tags
  are), the alt text waits in `propagated.suggested.alt_text`;
- a field a person set (`field_sources[field] == "human"`) or decided on in review (accepted, edited, rejected: an
  accepted model value keeps its `model` source) is never changed (its tags may still get suggestions), and a
  member a person approved or rejected gets nothing.

What came from where is kept in the member's `propagated` (stored, not indexed): `{from, confidence, decay,
applied: {alt_text?, tags}, suggested: {alt_text?, tags}, replaced_alt_text?}`. `strip` undoes it exactly, so the
sink recomputes propagation from the members' own values at every write of the family: the same input gives the
same documents (replays write nothing new), and a member whose source changes or leaves the family loses what it
was given.
"""
from __future__ import annotations

from typing import Any

from domain.records import quality_rank

SOURCE_STATUSES = ("approved", "auto_applied")
DECIDED = ("approved", "rejected")  # a person decided the whole asset: propagation leaves it alone


def strip(doc: dict[str, Any]) -> None:
    """Undo what propagation gave `doc` (in place), back to the member's own values."""
    prop = doc.pop("propagated", None)
    if not prop:
        return
    applied, suggested = prop.get("applied") or {}, prop.get("suggested") or {}
    given = set(applied.get("tags") or [])
    if given:
        details = [t for t in doc.get("tag_details") or [] if t.get("tag") not in given]
        doc["tag_details"] = details
        doc["tags"] = [t["tag"] for t in details]
        doc["tag_labels"] = [t.get("label") for t in details]
        facets: dict[str, list[str]] = {}
        for t in details:
            facets.setdefault(t.get("facet"), []).append(t.get("label"))
        doc["facets"] = facets
    if suggested.get("tags"):
        doc["tag_suggestions"] = [t for t in doc.get("tag_suggestions") or [] if t not in set(suggested["tags"])]
    if "alt_text" in applied:
        sources = dict(doc.get("field_sources") or {})
        if prop.get("replaced_alt_text") is None:
            doc.pop("alt_text", None)
        else:
            doc["alt_text"] = prop["replaced_alt_text"]
        if "replaced_alt_text_source" in prop:
            sources["alt_text"] = prop["replaced_alt_text_source"]
        else:
            sources.pop("alt_text", None)
        doc["field_sources"] = sources


def source_confidence(doc: dict[str, Any]) -> float | None:
    if doc.get("status") == "approved":
        return 1.0
    if doc.get("status") == "auto_applied":
        c = (doc.get("enrichment") or {}).get("confidence")
        return float(c) if isinstance(c, (int, float)) else None
    return None


def pick_source(docs: dict[str, dict[str, Any]]) -> str | None:
    ranked = [(c, d) for d in docs.values() if (c := source_confidence(d)) is not None]
    if not ranked:
        return None
    return min(ranked, key=lambda cd: (-cd[0], quality_rank(cd[1])))[1]["asset_id_doc"]


def _tag_confidence(src: dict[str, Any], tag: dict[str, Any], src_conf: float) -> float:
    if src.get("status") == "approved" or (src.get("field_sources") or {}).get("tags") == "human" \
            or tag.get("source") == "human":
        return 1.0
    score = tag.get("score")
    return float(score) if isinstance(score, (int, float)) else src_conf


def give(member: dict[str, Any], src_id: str, src: dict[str, Any], decay: float, threshold: float) -> None:
    """Offer `src`'s alt text and tags to `member` (in place; `member` holds only its own values)."""
    if member.get("status") in DECIDED:
        return
    src_conf = source_confidence(src)
    if src_conf is None:
        return
    sources = dict(member.get("field_sources") or {})
    decided = {f.get("field") for f in (member.get("review") or {}).get("fields") or []}
    conf = round(src_conf * decay, 4)
    applied: dict[str, Any] = {"tags": []}
    suggested: dict[str, Any] = {"tags": []}
    prop: dict[str, Any] = {"from": src_id, "confidence": conf, "decay": decay}

    alt = src.get("alt_text")
    if alt and alt != member.get("alt_text") and sources.get("alt_text") != "human" and "alt_text" not in decided:
        if conf >= threshold:
            prop["replaced_alt_text"] = member.get("alt_text")
            if "alt_text" in sources:
                prop["replaced_alt_text_source"] = sources["alt_text"]
            member["alt_text"] = alt
            sources["alt_text"] = "propagated"
            member["field_sources"] = sources
            applied["alt_text"] = alt
        else:
            suggested["alt_text"] = alt

    have = set(member.get("tags") or [])
    waiting = set(member.get("tag_suggestions") or [])
    person_tags = sources.get("tags") == "human" or "tags" in decided
    for t in src.get("tag_details") or []:
        tag = t.get("tag")
        if not tag or tag in have:
            continue
        tconf = round(_tag_confidence(src, t, src_conf) * decay, 4)
        if tconf >= threshold and not person_tags:
            member.setdefault("tag_details", []).append({**{k: t.get(k) for k in ("tag", "facet", "label")},
                                                         "score": tconf, "source": "propagated"})
            member["tags"] = [*(member.get("tags") or []), tag]
            member["tag_labels"] = [*(member.get("tag_labels") or []), t.get("label")]
            member.setdefault("facets", {}).setdefault(t.get("facet"), []).append(t.get("label"))
            applied["tags"].append(tag)
            have.add(tag)
        elif tag not in waiting:
            member["tag_suggestions"] = [*(member.get("tag_suggestions") or []), tag]
            suggested["tags"].append(tag)
            waiting.add(tag)
    if applied.get("alt_text") or applied["tags"] or suggested.get("alt_text") or suggested["tags"]:
        member["propagated"] = {**prop, "applied": applied, "suggested": suggested}


def family(docs: dict[str, dict[str, Any]], decay: float, threshold: float) -> None:
    """Recompute propagation over one family's documents (document id -> full body, changed in place)."""
    for d in docs.values():
        strip(d)
    if len(docs) < 2:
        return
    keyed = {i: {**d, "asset_id_doc": i} for i, d in docs.items()}
    src_id = pick_source(keyed)
    if src_id is None:
        return
    src = docs[src_id]
    for i, d in docs.items():
        if i != src_id:
            give(d, str(src.get("asset_id") or src_id), src, decay, threshold)
