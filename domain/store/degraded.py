"""Which parts of an indexed document are degraded (issue 21): a part that produces metadata (OCR, face detection,
the NSFW check, a model task, the index-time text vector) timed out or failed on every attempt, so the document
holds less than a complete run would have written.

Three fields, written by the index sink (consumers/index/document.py) and kept true by `assetstream index embed`:

* `degraded` — {part: reason}, stored (not indexed): "ocr": "ocr timed out", "text_vector": "text embedder failed
  (RuntimeError)", …
* `degraded_parts` — the part names, a keyword to filter on (`assetstream search --degraded ocr`, the review app's
  "degraded" filter)
* `completeness` — "complete" or "degraded", a keyword
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COMPLETE, DEGRADED = "complete", "degraded"
VECTOR_PART = "text_vector"
"""The part the index sink adds when the MiniLM text vector of a document could not be computed."""

PARTS = ("ocr", "event_text", "metadata", "colours", "faces", "nsfw", "tagging", "alt_text", "rights", "verify",
         VECTOR_PART)
"""Every part a document can be marked degraded for: preprocess's OCR, over-long event text, embedded metadata not
read (a PNG whose metadata chunks inflate past Pillow's limits) and signals (consumers/preprocess), enrich's model
tasks (consumers/enrich: tagging, alt_text, rights and the verifier), the index sink's text vector. `search
--degraded` takes one of them or "any" (tests/test_search_validation.py keeps this list in step with the consumers)."""

METADATA_SKIPPED = "metadata skipped"
"""How the `metadata` part's note starts (domain/vision/decode.py: a PNG decoded without its metadata chunks; validate's
review reason is "degraded: " and the note). Unlike the others it is the file's doing, not the load's: a redo gives
the same record, so `backfill --only-stale` does not count it as stale."""


def degraded_fields(parts: Mapping[str, str] | None) -> dict[str, Any]:
    """The three document fields for {part: reason} (empty: complete)."""
    parts = dict(sorted((parts or {}).items()))
    return {"degraded": parts, "degraded_parts": list(parts), "completeness": DEGRADED if parts else COMPLETE}


def mark(body: dict[str, Any], part: str, why: str) -> None:
    """Mark one more part of a document body degraded."""
    body.update(degraded_fields({**(body.get("degraded") or {}), part: why}))


def clear(body: dict[str, Any], part: str) -> None:
    """The part is complete now (e.g. the document got its text vector): drop its mark."""
    parts = dict(body.get("degraded") or {})
    if part in parts:
        del parts[part]
        body.update(degraded_fields(parts))


def query(part: str = "") -> dict[str, Any]:
    """The filter for degraded documents: any part ("" or "any"), or one part."""
    if part and part != "any":
        return {"term": {"degraded_parts": part}}
    return {"term": {"completeness": DEGRADED}}
