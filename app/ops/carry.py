"""A reprocess event keeps what a person gave with the upload (trial 18, finding 7).

A `reprocess` event that `assetstream publish --event-type reprocess` or `assetstream backfill --only-stale`
builds replaces the indexed asset's event: whatever it does not carry is gone (a title or alt text set in the
DAM, the declared licence, the product context, the uploader's notes). So both tools read the indexed asset's
own event (the stored record's `asset` block: the event as it came in, never a reviewer's values) and carry
forward every value the command line / manifest row does not give; a given value wins, field by field.

The event also keeps the asset's upload time (`event_time_ms`, the indexed event's `event_time`): a reprocess is
our doing, not an upload, so the review queue's "uploaded" column, its oldest-first order and date filter, and the
time to publish still refer to the upload (trial 26, F4). `build_event` then says when the reprocess was sent
(attribute `reprocessed_at`) for the clocks that measure the pipeline. A DAM's own `created` / `updated` event is
the DAM saying something happened now: it carries nothing forward and its time is its own.

The event's attributes are carried too (a DAM's media id, thumbnail or licence page: write-back finds the DAM's
record by them; trial 26: after a reprocess WordPress write-back fell back to a file-name lookup), except the
previous reprocess's `reprocessed_at` and the `ingest` tool name, which the new event sets anew.

A field a person's review decided on after that event is not carried: the pipeline re-applies the review
anyway, and the same value in a newer event would count as a DAM edit made after the review and beat it
(domain/review.py `apply_review`).
"""
from __future__ import annotations

from typing import Any

from domain.events import MAX_ATTRIBUTES, REPROCESSED_AT
from domain.review import EVENT_FIELDS
from streams.records import to_ms

SOURCE = ["record.enriched.pre.asset", "review.fields"]
"""What an index lookup needs of a document for `indexed_values`."""

REVIEWED_AS = EVENT_FIELDS
"""An event value -> the field of a review it sets (validate's precedence, consumers/validate/stage.py)."""

SINGLE = ("declared_license", "uploader", "uploader_notes")

OURS = (REPROCESSED_AT, "ingest")
"""Attributes a reprocess sets anew (when it was sent, which tool sent it): not carried."""


def _given(value: Any) -> bool:
    return value is not None and value != []


def indexed_values(doc: dict[str, Any] | None) -> dict[str, Any]:
    """The values the indexed asset's own event gave, as `build_event` takes them (human_fields,
    product_context, declared_license, uploader, uploader_notes), without those a later review decided on; and its
    upload time (`event_time_ms`)."""
    doc = doc or {}
    asset = ((((doc.get("record") or {}).get("enriched") or {}).get("pre") or {}).get("asset")) or {}
    event_ms = to_ms(asset.get("event_time")) or 0
    reviewed = {f.get("field") for f in (doc.get("review") or {}).get("fields") or []
                if (to_ms(f.get("at")) or 0) >= event_ms}
    out: dict[str, Any] = {}
    human = {k: v for k, v in (asset.get("human_fields") or {}).items()
             if _given(v) and REVIEWED_AS.get(k) not in reviewed}
    if human:
        out["human_fields"] = human
    product = {k: v for k, v in (asset.get("product_context") or {}).items() if _given(v)}
    if product:
        out["product_context"] = product
    for k in SINGLE:
        if _given(asset.get(k)) and REVIEWED_AS.get(k) not in reviewed:
            out[k] = asset[k]
    attributes = {k: v for k, v in (asset.get("attributes") or {}).items() if k not in OURS}
    if attributes:
        out["attributes"] = attributes
    if event_ms:
        out["event_time_ms"] = event_ms
    return out


def carry_forward(given: dict[str, Any], indexed: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(`given` build_event keyword arguments with the indexed values it lacks added, the names carried:
    `title`, `declared_license`, `product_context.sku`, `attributes.media_id`, ...). A given value always wins.
    The upload time is kept too (not named: no person gave it)."""
    out = dict(given)
    carried: list[str] = []
    for group in ("human_fields", "product_context"):
        mine = dict(given.get(group) or {})
        add = {k: v for k, v in (indexed.get(group) or {}).items() if not _given(mine.get(k))}
        if add:
            out[group] = {**mine, **add}
            carried += [k if group == "human_fields" else f"{group}.{k}" for k in add]
    for k in SINGLE:
        if not _given(given.get(k)) and k in indexed:
            out[k] = indexed[k]
            carried.append(k)
    mine = dict(given.get("attributes") or {})
    # room for the attributes the reprocess sets itself (ingest, reprocessed_at): past MAX_ATTRIBUTES the event would
    # be refused and the asset could not be reprocessed at all; the first ones (the DAM's order) are kept
    room = MAX_ATTRIBUTES - len(mine) - len(OURS)
    add = dict(list((k, v) for k, v in (indexed.get("attributes") or {}).items() if k not in mine)[:max(0, room)])
    if add:
        out["attributes"] = {**add, **mine}
        carried += [f"attributes.{k}" for k in add]
    if indexed.get("event_time_ms") and not given.get("event_time_ms"):
        out["event_time_ms"] = indexed["event_time_ms"]
    return out, carried


def with_attributes(fields: dict[str, Any], **own: str) -> dict[str, Any]:
    """build_event keyword arguments: `fields` with `own` attributes set over any carried ones."""
    return {**fields, "attributes": {**(fields.get("attributes") or {}), **own}}
