"""Reading the pipeline's records: every record (raw AssetEvent, PreprocessedAsset, EnrichedAsset,
ValidatedAsset) embeds the one before it, so the asset event is always inside."""
from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from domain.events import scoped_id
from streams.records import to_ms
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


def degraded_of(value: dict[str, Any]) -> dict[str, str]:
    """{part: reason} of every part of an enriched or validated record that timed out or failed on every attempt
    (preprocess's `pre.degraded` and enrich's `degraded`, issue 21); empty = complete."""
    enriched = value.get("enriched", value)
    return {**((enriched.get("pre") or {}).get("degraded") or {}), **(enriched.get("degraded") or {})}


def document_id(value: dict[str, Any]) -> str:
    """The tenant-scoped id of the asset of any pipeline record: its key and its index document id."""
    asset = asset_of(value)
    return scoped_id(asset["asset_id"], asset.get("tenant"))


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
    thumb = doc.get("thumbnail")
    if thumb and thumb.get("data"):
        enriched = record["enriched"]
        pre = {**enriched["pre"], "thumbnail": {"data": base64.b64decode(thumb["data"]),
                                                "media_type": thumb.get("media_type") or "image/jpeg",
                                                "width": int(thumb.get("width") or 0),
                                                "height": int(thumb.get("height") or 0)}}
        record = {**record, "enriched": {**enriched, "pre": pre}}
    return record


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
        return OutputFacts(to_ms(asset.get("event_time")), asset.get("version"))

    def content_id(self, value: dict[str, Any] | None) -> str | None:
        content, node = None, value
        while isinstance(node, dict) and content is None:  # validated -> enriched -> pre -> hashes
            content = (node.get("hashes") or {}).get("sha256")
            node = node.get("pre") or node.get("enriched")
        return content
