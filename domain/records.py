"""Reading the pipeline's records: every record (raw AssetEvent, PreprocessedAsset, EnrichedAsset,
ValidatedAsset) embeds the one before it, so the asset event is always inside."""
from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from domain.events import DEFAULT_TENANT, scoped_id, sent_ms
from streams.records import to_ms
from streams.schemas import parsed_schema
from streams.stage import OutputFacts


def asset_of(value: dict[str, Any]) -> dict[str, Any]:
    """The AssetEvent inside any pipeline record (raw, preprocessed, enriched, validated)."""
    if "asset_id" in value:
        return value
    if "asset" in value:
        return value["asset"]
    if "pre" in value:
        return value["pre"]["asset"]
    if "enriched" in value:
        return value["enriched"]["pre"]["asset"]
    raise KeyError("not a pipeline record")


def tenant_of(value: dict[str, Any]) -> str:
    """The tenant of any pipeline record's asset (the default tenant when it names none)."""
    return asset_of(value).get("tenant") or DEFAULT_TENANT


def degraded_of(value: dict[str, Any]) -> dict[str, str]:
    """{part: reason} of every part of an enriched or validated record that timed out or failed on every attempt
    (preprocess's `pre.degraded` and enrich's `degraded`, issue 21); empty = complete."""
    enriched = value.get("enriched", value)
    return {**((enriched.get("pre") or {}).get("degraded") or {}), **(enriched.get("degraded") or {})}


def document_id(value: dict[str, Any]) -> str:
    """The tenant-scoped id of the asset of any pipeline record: its key and its index document id."""
    asset = asset_of(value)
    return scoped_id(asset["asset_id"], asset.get("tenant"))


def content_sha256(value: dict[str, Any] | None) -> str | None:
    """The SHA-256 of the image bytes inside any pipeline record (preprocess's `hashes.sha256`), or None."""
    content, node = None, value
    while isinstance(node, dict) and content is None:  # validated -> enriched -> pre -> hashes
        content = (node.get("hashes") or {}).get("sha256")
        node = node.get("pre") or node.get("enriched")
    return content


def quality_rank(doc: dict[str, Any]) -> tuple[int, int, str]:
    """Sort key of near-duplicate copies, best first: most pixels, then most bytes, then the smallest asset id.
    A family's canonical member is the first (consumers/index/families.py); enrich reuses an enrichment only
    toward a copy that does not rank before its match (consumers/enrich/dedupe.py), so the canonical member's
    enrichment is its own whatever the arrival order. `doc`: width, height, byte_size, asset_id (an index
    document, or the same keys from a record's `image`)."""
    pixels = int(doc.get("width") or 0) * int(doc.get("height") or 0)
    return (-pixels, -int(doc.get("byte_size") or 0), str(doc.get("asset_id")))


def is_deleted(value: dict[str, Any]) -> bool:
    return asset_of(value)["event_type"] == "deleted"


def to_plain(value: Any) -> Any:
    """A record as JSON-ready data: timestamp-millis values (datetimes after decoding) become epoch ms, bytes are
    left out (the thumbnail is stored on its own). fastavro encodes the result again unchanged."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items() if not isinstance(v, (bytes, bytearray))}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return to_ms(value)
    return value


def without_thumbnail(validated: dict[str, Any]) -> dict[str, Any]:
    """A ValidatedAsset with its embedded thumbnail set to None (a shallow copy down the chain)."""
    enriched = validated.get("enriched") or {}
    pre = enriched.get("pre") or {}
    if not pre.get("thumbnail"):
        return validated
    return {**validated, "enriched": {**enriched, "pre": {**pre, "thumbnail": None}}}


DUPLICATE_REASON = "near-duplicate of "
MAX_RIGHTS_TEXT = 8000
"""A file's rights texts (copyright notice, usage terms, special instructions) are kept up to this many characters
(other file text: 2000): a legal notice is read whole. A longer one is cut and ends in CUT_MARK, and validate
says so in a note."""
CUT_MARK = "…"


MAX_FILE_TEXT = 2000
"""Any other text read from a file (title, caption, …) is kept up to this many characters; a longer one is cut and
ends in CUT_MARK, and validate says so in a note for the caption and summary (trial 24b: a 1 MB description)."""


def rights_text_cut(text: str | None, limit: int = MAX_RIGHTS_TEXT) -> bool:
    """Whether a file's text was cut at `limit` by preprocess (rights texts: MAX_RIGHTS_TEXT; others:
    MAX_FILE_TEXT)."""
    return bool(text) and len(text) == limit and text.endswith(CUT_MARK)


def duplicate_reason(duplicate_of: str, distance: int | None = None, *, clip: bool = False) -> str:
    """The review reason that names an asset's near-duplicate link (validate writes it; the index's duplicate
    families and `assetstream run` rewrite it when the family points the link elsewhere: `relinked_reasons`).
    `clip`: a video linked by the same-clip match of its keyframes (not the same bytes): that is what the reason
    says, not a pHash distance (its poster may be far from the other's: a trimmed copy starts elsewhere)."""
    if clip:
        return f"{DUPLICATE_REASON}{duplicate_of} (same clip: its keyframes match)"
    return f"{DUPLICATE_REASON}{duplicate_of}" + (f" (pHash distance {distance})" if distance is not None else "")


def relinked_reasons(reasons: list[str], duplicate_of: str | None, distance: int | None, *,
                     clip: bool = False) -> list[str]:
    """`reasons` with the near-duplicate reason naming this link (in the place of the one it replaces), or none
    when there is no link: the reasons never contradict the link."""
    at = next((n for n, r in enumerate(reasons) if r.startswith(DUPLICATE_REASON)), len(reasons))
    out = [r for r in reasons if not r.startswith(DUPLICATE_REASON)]
    if duplicate_of:
        out.insert(min(at, len(out)), duplicate_reason(duplicate_of, distance, clip=clip))
    return out


FAMILY_FIELDS = ("duplicate_of", "duplicate_distance", "family_id", "family_size", "family_canonical")
"""what the index's duplicate families (consumers/index/families.py) set on each document"""


def with_family(validated: dict[str, Any], family: dict[str, Any]) -> dict[str, Any]:
    """A copy of the validated record saying what the index says about its duplicate family (`family`: the
    document's FAMILY_FIELDS): the enriched link and distance are the index's (none on the canonical member), the
    reason naming the enrich link is replaced by one naming the index's link (or dropped), and the family id,
    size and canonical flag are added under `family`. The record itself is not changed."""
    out = dict(validated)
    link = family.get("duplicate_of")
    distance = family.get("duplicate_distance") if link else None
    out["enriched"] = {**out["enriched"], "duplicate_of": link, "duplicate_distance": distance}
    out["reasons"] = relinked_reasons(list(out.get("reasons") or []), link, distance,
                                      clip=media_type_of(validated) == "video" and distance != 0)  # 0: same bytes
    out["family"] = {k: family.get(k) for k in ("family_id", "family_size", "family_canonical")}
    return out


def media_type_of(value: dict[str, Any]) -> str:
    """'image' or 'video', from any pipeline record after preprocess."""
    for path in ((), ("pre",), ("enriched", "pre")):
        node: Any = value
        for key in path:
            node = (node or {}).get(key)
        if node and node.get("media_type"):
            return str(node["media_type"])
    return "image"


def thumbnail_of(value: dict[str, Any]) -> dict[str, Any] | None:
    """The preprocess thumbnail inside any pipeline record after preprocess, or None."""
    for path in (("thumbnail",), ("pre", "thumbnail"), ("enriched", "pre", "thumbnail")):
        node: Any = value
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node:
            return node
    return None


def record_from_doc(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The ValidatedAsset an index document was written from (its stored `record`), with the document's preview
    put back as the thumbnail, or None for a document written before records were stored."""
    record = doc.get("record")
    if not record:
        return None
    record = _maps_restored(record, parsed_schema("ValidatedAsset"), {})
    thumb = doc.get("thumbnail")
    if thumb and thumb.get("data"):
        enriched = record["enriched"]
        pre = {**enriched["pre"], "thumbnail": {"data": base64.b64decode(thumb["data"]),
                                                "media_type": thumb.get("media_type") or "image/jpeg",
                                                "width": int(thumb.get("width") or 0),
                                                "height": int(thumb.get("height") or 0)}}
        record = {**record, "enriched": {**enriched, "pre": pre}}
    return record


def _maps_restored(value: Any, schema: Any, named: dict[str, Any]) -> Any:
    """The value with every Avro map of plain values flat again. Map keys may hold dots (field_confidence's
    "tags.subject:cat", an uploader's attribute "dc.rights"), and a store that filters `_source` by path may
    hand such a key back as nested objects ({"tags": {"subject:cat": 0.2}}): the review worker and the index
    sink read records with `_source` filtering, and the nested shape failed Avro serialization."""
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    if isinstance(schema, list):  # a union: the branch that fits
        if value is None:
            return None
        branches = [b for b in schema if b != "null"]
        return _maps_restored(value, branches[0], named) if len(branches) == 1 else value
    if not isinstance(schema, dict):
        return value
    kind = schema.get("type")
    if kind == "record":
        named[schema["name"]] = schema
        if not isinstance(value, dict):
            return value
        out = dict(value)
        for field in schema["fields"]:
            if field["name"] in out:
                out[field["name"]] = _maps_restored(out[field["name"]], field["type"], named)
        return out
    if kind == "array":
        return [_maps_restored(v, schema["items"], named) for v in value] if isinstance(value, list) else value
    if kind == "map" and isinstance(value, dict):
        if isinstance(schema["values"], str) and schema["values"] not in named:  # plain values
            return _flat(value)
        return {k: _maps_restored(v, schema["values"], named) for k, v in value.items()}
    return value


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


class PipelineFacts:
    """The Stage hooks a stage of this pipeline mixes in (`class MyStage(PipelineFacts, Stage)`), so the runner
    learns what it needs about pipeline records without knowing their shape: the event time and version of
    the asset inside the input (Stage.output_facts) and the image hash inside an output (Stage.content_id)."""

    def output_facts(self, value: dict[str, Any]) -> OutputFacts:
        try:
            asset = asset_of(value)
        except (KeyError, TypeError):
            return OutputFacts()
        if not asset:
            return OutputFacts()
        return OutputFacts(sent_ms(asset), asset.get("version"))  # a reprocess's age: since it was sent

    def content_id(self, value: dict[str, Any] | None) -> str | None:
        return content_sha256(value)
