"""ValidatedAsset -> the search document (flattened for search; see management.MAPPINGS)."""
from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from domain.events import scoped_id
from domain.store.degraded import degraded_fields
from domain.records import asset_of, content_sha256, degraded_of, thumbnail_of, to_plain, without_thumbnail
from domain.sources import sniffed_media_type
from domain.vision.thumbnail import index_preview
from streams.records import now_ms, to_ms


def _iso(value: Any) -> str | None:
    ms = to_ms(value)
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")


def first_upload(indexed: dict[str, Any] | None, record: dict[str, Any]) -> str | None:
    """When the record's image bytes were first uploaded (the document's `uploaded_at`): the indexed document's
    own `uploaded_at` (else its `event_time`) when it holds the same bytes (sha256) and that is earlier, else the
    record's `event_time`. A DAM that sends the same file again (a `created` or `updated` event, a re-run) moves
    `event_time`, not this (trial 34 F7: the desk's time to publish left those approvals out)."""
    own = to_ms(asset_of(record).get("event_time"))
    same = indexed and content_sha256(indexed) and content_sha256(indexed) == content_sha256(record)
    earlier = (indexed or {}).get("uploaded_at") or (indexed or {}).get("event_time") if same else None
    if earlier:
        then = dt.datetime.fromisoformat(str(earlier).replace("Z", "+00:00"))
        then_ms = to_ms(then if then.tzinfo else then.replace(tzinfo=dt.timezone.utc))
        if own is None or then_ms < own:
            return _iso(then_ms)
    return _iso(own)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _provenance(p: dict[str, Any]) -> dict[str, Any]:
    return _drop_none({**p, "timestamp": _iso(p.get("timestamp"))})


def document_from_validated(v: dict[str, Any], indexed_at_ms: int | None = None,
                            synonyms_of: Callable[[str], Sequence[str]] | None = None
                            ) -> tuple[str, int, dict[str, Any] | None]:
    """(doc _id = asset id, external version = the asset event's version, body or None for a delete).

    A ValidatedAsset with status 'deleted' (or an asset event_type 'deleted') is a delete. `synonyms_of(tag)`:
    the vocabulary's synonyms of a canonical tag, indexed as `tag_synonyms` (searchable, and embedded)."""
    enriched = v["enriched"]
    pre = enriched["pre"]
    asset = pre["asset"]
    doc_id, version = scoped_id(asset["asset_id"], asset.get("tenant")), int(asset["version"])
    if v.get("status") == "deleted" or asset.get("event_type") == "deleted":
        return doc_id, version, None

    image = pre.get("image") or {}
    exif = pre.get("exif") or {}
    embedded = pre.get("embedded") or {}
    ocr = pre.get("ocr") or {}
    signals = pre.get("signals") or {}
    product = asset.get("product_context") or {}
    tags = v.get("tags") or []
    facets: dict[str, list[str]] = {}
    for t in tags:
        facets.setdefault(t["facet"], []).append(t["label"])
    location = None
    if exif.get("gps_lat") is not None and exif.get("gps_lon") is not None:
        location = {"lat": exif["gps_lat"], "lon": exif["gps_lon"]}
    stamp = v.get("stamp") or {}
    review = v.get("review")

    body: dict[str, Any] = {
        "asset_id": asset["asset_id"],
        "event_id": asset.get("event_id"),
        "event_type": asset.get("event_type"),
        "version": version,
        "tenant": asset.get("tenant"),
        "source_uri": asset.get("source_uri"),
        # the media type of the bytes as preprocess sniffed them; the type the uploader or DAM claimed (which may be
        # a guess from the file name) is kept apart, as claimed (in _source, not indexed)
        "content_type": sniffed_media_type(pre),
        "declared_content_type": asset.get("content_type"),
        "uploader": asset.get("uploader"),
        "declared_license": asset.get("declared_license"),
        "event_time": _iso(asset.get("event_time")),
        "indexed_at": _iso(indexed_at_ms if indexed_at_ms is not None else now_ms()),
        "validated_at": _iso(stamp.get("at")),
        "pipeline_version": stamp.get("version"),
        "product": _drop_none(product) or None,
        "status": v.get("status"),
        "usage_flag": v.get("usage_flag"),
        "reasons": v.get("reasons") or [],
        # the parts preprocess or enrich could not complete (the sink adds text_vector when embedding fails)
        **degraded_fields(degraded_of(v)),
        "decorative": bool(v.get("decorative", False)),
        "title": v.get("title"),
        "alt_text": v.get("alt_text"),
        "caption": v.get("caption"),
        "summary": v.get("summary"),
        "visible_text": v.get("visible_text"),
        "ocr_text": ocr.get("text") or None,
        "ocr_language": ocr.get("language") if ocr.get("text") else None,
        "ocr_confidence": ocr.get("mean_confidence"),
        "credit_text": v.get("credit_text"),
        "licensing": v.get("licensing"),
        "creator": embedded.get("creator"),
        "copyright": embedded.get("copyright"),
        "usage_terms": embedded.get("usage_terms"),
        "license_url": embedded.get("license_url"),
        "embedded_keywords": embedded.get("keywords") or None,
        "tags": [t["tag"] for t in tags],
        "tag_labels": [t["label"] for t in tags],
        "tag_synonyms": list(dict.fromkeys(x for t in tags for x in (synonyms_of(t["tag"]) if synonyms_of
                                                                     else ()))) or None,
        "facets": facets,
        "tag_details": [dict(t) for t in tags],
        "suggested_tags": v.get("suggested_tags") or [],
        # weak model tags held for an editor: searchable as suggestions only, never in tags/facets
        "tag_suggestions": [t["tag"] for t in v.get("tag_suggestions") or []],
        # every other tag the model proposed (below the hold threshold: neither published nor held), as weak
        # evidence for search only (a low-weight leg of hybrid search, domain/store/search.py)
        "model_tags": _model_tags(enriched, tags, v.get("tag_suggestions")),
        "taxonomy_version": v.get("taxonomy_version"),
        "field_sources": dict(v.get("field_sources") or {}),
        "model_suggestions": dict(v.get("model_suggestions") or {}),
        "width": image.get("width"),
        "height": image.get("height"),
        "format": image.get("format"),
        "color_mode": image.get("mode"),
        "byte_size": image.get("byte_size"),
        "has_alpha": image.get("has_alpha"),
        "orientation": image.get("orientation"),
        # frames (animated GIF/WebP/PNG) or pages (TIFF), only the first looked at: stored, not mapped (no mapping
        # version or migration for a fact shown to a reviewer, never searched; docs/index.md)
        "frames": image.get("frames"),
        "exif": _drop_none({k: exif.get(k) for k in ("make", "model", "lens", "capture_time", "exposure_time",
                                                      "f_number", "iso", "focal_length", "gps_alt")}) or None,
        "location": location,
        "place": _drop_none(pre.get("place") or {}) or None,
        **_video_fields(pre),
        "face_count": signals.get("face_count"),
        "nsfw_score": signals.get("nsfw_score"),
        "colors": [c["name"] for c in signals.get("colors") or []] or None,
        "hashes": dict(pre["hashes"]) if pre.get("hashes") else None,
        "duplicate_of": enriched.get("duplicate_of"),
        "duplicate_distance": enriched.get("duplicate_distance"),
        "provenance": [_provenance(p) for p in enriched.get("provenance") or []],
        "cost_usd": enriched.get("cost_usd", 0.0),
        "enrichment": enriched.get("enrichment"),
        # what people decided (human edits win: the sink keeps it on every later version of the asset)
        "review": to_plain(review) if review else None,
        "reviewed_by": (review or {}).get("editor"),
        "reviewed_at": _iso((review or {}).get("decided_at")),
        # for the review app: the preprocess thumbnail (never the original URL), and the whole record as
        # validated (stored, not indexed) so a decision can be applied to exactly what is published
        "thumbnail": _thumbnail(v),
        "record": to_plain(without_thumbnail(v)),
    }
    return doc_id, version, _drop_none(body)


def _model_tags(enriched: dict[str, Any], published: list[dict[str, Any]],
                held: list[dict[str, Any]] | None) -> list[str] | None:
    """The model's own tags ('facet:value') that validate neither published nor held, most confident first."""
    known = {t["tag"] for t in published} | {t["tag"] for t in held or []}
    proposed = sorted(((enriched.get("enrichment") or {}).get("tags") or []), key=lambda t: -(t.get("score") or 0))
    out = [t["tag"] for t in proposed if ":" in str(t.get("tag") or "") and t["tag"] not in known]
    return list(dict.fromkeys(out)) or None


def _video_fields(pre: dict[str, Any]) -> dict[str, Any]:
    """media_type for every asset; for a video its duration, container facts and keyframes (time, text,
    hash; their small JPEGs stay out of the index), and the transcript (empty until a speech-to-text stage)."""
    video = pre.get("video")
    if not video:
        return {"media_type": pre.get("media_type") or "image"}
    frames = [{"offset_s": k["offset_s"], "reason": k.get("reason"), "ocr_text": k.get("ocr_text") or None,
               "phash": k.get("phash") or None} for k in video.get("keyframes") or []]
    return {"media_type": "video", "duration_s": video.get("duration_s"), "transcript": video.get("transcript"),
            "video": _drop_none({"container": video.get("container"), "codec": video.get("codec"),
                                 "fps": video.get("fps"), "frame_count": video.get("frame_count"),
                                 "rotation": video.get("rotation"), "poster_offset_s": video.get("poster_offset_s"),
                                 "truncated_by": video.get("truncated_by"),
                                 "keyframes": [_drop_none(f) for f in frames]})}


def _thumbnail(v: dict[str, Any]) -> dict[str, Any] | None:
    """The preview for reviewers; for a video also each keyframe's small JPEG (`keyframes`, in the order of
    `video.keyframes`, None where preprocess kept none), so an editor sees what the video shows."""
    thumb = thumbnail_of(v)
    if not thumb or not thumb.get("data"):
        return None
    out = _preview(thumb)
    video = ((v.get("enriched") or {}).get("pre") or {}).get("video") or {}
    if video.get("keyframes"):
        out["keyframes"] = [base64.b64encode(k["thumbnail"]).decode("ascii") if k.get("thumbnail") else None
                            for k in video["keyframes"]]
    return out


def _preview(thumb: dict[str, Any]) -> dict[str, Any]:
    data, media_type, width, height = index_preview(thumb["data"], thumb.get("width"), thumb.get("height"),
                                                    thumb.get("media_type") or "image/jpeg")
    return {"media_type": media_type, "width": width, "height": height,
            "data": base64.b64encode(data).decode("ascii")}
