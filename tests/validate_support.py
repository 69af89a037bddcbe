"""Realistic EnrichedAsset records for the validate tests. Every builder returns a dict that passes the
EnrichedAsset Avro schema (checked in the builder, so a broken fixture fails loudly)."""
from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

from streams.avro import validate as avro_validate

T0 = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.timezone.utc)


def _stamp(stage: str) -> dict[str, Any]:
    return {"stage": stage, "version": "2026.11.1", "worker": "test-worker", "at": T0}


def asset_event(asset_id: str = "asset-0001", *, event_type: str = "created", declared_license: str | None = None,
                human_fields: dict[str, Any] | None = None, tenant: str = "default") -> dict[str, Any]:
    return {
        "asset_id": asset_id, "event_id": f"evt-{asset_id}", "event_type": event_type,
        "source_uri": f"s3://acme-dam/uploads/{asset_id}.jpg", "content_type": "image/jpeg",
        "uploader": "maria.lopez@acme.example", "uploader_notes": "Spring campaign, hero shot",
        "declared_license": declared_license,
        "product_context": {"sku": "SNK-RED-42", "category": "Footwear", "name": "Trail Runner 2", "brand": "Acme"},
        "tenant": tenant, "event_time": T0, "version": 3,
        "human_fields": None if human_fields is None else {
            "title": None, "alt_text": None, "caption": None, "description": None, "keywords": [], "creator": None,
            "credit_line": None, "copyright": None, **human_fields},
        "attributes": {"campaign": "spring-26"},
    }


def embedded(**fields: Any) -> dict[str, Any]:
    base = {"creator": None, "copyright": None, "credit_line": None, "usage_terms": None, "title": None,
            "description": None, "keywords": [], "alt_text": None, "ext_description": None, "license_url": None,
            "instructions": None, "rights_marked": None}
    base.update(fields)
    return base


def enrichment(**fields: Any) -> dict[str, Any]:
    base = {
        "tags": [{"tag": "product:sneaker", "score": 0.96}, {"tag": "color:red", "score": 0.91},
                 {"tag": "setting:studio", "score": 0.88}, {"tag": "white background", "score": 0.7}],
        "alt_text": "Red running sneaker with a white sole, side view on a white background",
        "decorative": False,
        "caption": "The Trail Runner 2 sneaker in red, photographed in the studio.",
        "title": "Red Trail Runner 2 sneaker",
        "summary": "Studio product shot of a red running sneaker with a white midsole and black laces.",
        "visible_text": None,
        "licensing": "Owned by Acme (work for hire)",
        "must_display_credit": False,
        "credit_text": None,
        "confidence": 0.92,
        "raw_outputs": {},
    }
    base.update(fields)
    base["raw_outputs"] = base["raw_outputs"] or {
        "tagging": json.dumps({"tags": base["tags"]}),
        "alt_text": json.dumps({k: ("" if base[k] is None else base[k])
                                for k in ("alt_text", "decorative", "caption", "title", "summary", "visible_text")}),
        "rights": json.dumps({"licensing": base["licensing"] or "unknown",
                              "must_display_credit": base["must_display_credit"], "credit_text": base["credit_text"]}),
    }
    return base


def provenance(task: str, prompt_version: str = "v1") -> dict[str, Any]:
    return {"task": task, "provider": "local", "model": "local-clip", "model_version": "1", "prompt_id": task,
            "prompt_version": prompt_version, "prompt_hash": "ab" * 32, "request_id": None, "timestamp": T0,
            "input_tokens": 0, "output_tokens": 0, "latency_ms": 12.5, "cost_usd": 0.0}


def enriched_asset(*, asset_id: str = "asset-0001", declared_license: str | None = "Owned by Acme (work for hire)",
                   human_fields: dict[str, Any] | None = None, embedded_meta: dict[str, Any] | None = None,
                   enrich: dict[str, Any] | None = None, no_enrichment: bool = False, face_count: int = 0,
                   nsfw_score: float | None = 0.01, ocr_text: str = "", ocr_confidence: float | None = None,
                   gps: tuple[float, float] | None = None, event_type: str = "created",
                   duplicate_of: str | None = None, with_provenance: bool = True) -> dict[str, Any]:
    """A red-sneaker studio shot by default: confident model, owned licence, no faces -> auto_applied."""
    asset = asset_event(asset_id, event_type=event_type, declared_license=declared_license, human_fields=human_fields)
    if event_type == "deleted":
        pre = {"asset": asset, "image": None, "thumbnail": None, "exif": None, "place": None, "embedded": None,
               "ocr": None, "hashes": None, "signals": None, "stamp": _stamp("preprocess")}
        value = {"pre": pre, "enrichment": None, "provenance": [], "cost_usd": 0.0, "duplicate_of": None,
                 "duplicate_distance": None, "stamp": _stamp("enrich")}
        avro_validate("EnrichedAsset", value)
        return value
    words = [{"text": w, "confidence": 91.0, "left": 10 + 40 * i, "top": 20, "width": 36, "height": 14}
             for i, w in enumerate(ocr_text.split())]
    pre = {
        "asset": asset,
        "image": {"width": 2400, "height": 1600, "format": "JPEG", "mode": "RGB", "byte_size": 812_345,
                  "content_sha256": "9f" * 32, "orientation": 1, "has_alpha": False},
        "thumbnail": None,
        "exif": {"make": "Canon", "model": "EOS R5", "lens": "RF24-70mm F2.8 L IS USM", "exposure_time": 0.008,
                 "f_number": 8.0, "iso": 100, "focal_length": 50.0, "capture_time": "2026:11:18 14:02:11",
                 "gps_lat": gps[0] if gps else None, "gps_lon": gps[1] if gps else None, "gps_alt": None},
        "place": {"city": "Lisbon", "region": "Lisboa", "country": "Portugal", "country_code": "PT"} if gps else None,
        "embedded": embedded(**(embedded_meta or {})),
        "ocr": {"text": ocr_text, "words": words,
                "mean_confidence": ocr_confidence if ocr_confidence is not None else (91.0 if ocr_text else None),
                "language": "eng", "skipped": False, "skip_reason": None},
        "hashes": {"sha256": "9f" * 32, "phash": "c3a1f0e01f3c7e81", "dhash": "0f1e3c78f0e1c387",
                   "phash_bands": ["0:c3a1", "1:f0e0", "2:1f3c", "3:7e81"]},
        "signals": {"face_count": face_count, "nsfw_score": nsfw_score,
                    "colors": [{"hex": "#c8102e", "name": "red", "share": 0.41},
                               {"hex": "#f5f5f5", "name": "white", "share": 0.38}]},
        "stamp": _stamp("preprocess"),
    }
    value = {
        "pre": pre,
        "enrichment": None if no_enrichment else enrichment(**(enrich or {})),
        "provenance": [provenance(t) for t in ("tagging", "alt_text", "rights")] if with_provenance else [],
        "cost_usd": 0.0, "duplicate_of": duplicate_of, "duplicate_distance": 3 if duplicate_of else None,
        "stamp": _stamp("enrich"),
    }
    avro_validate("EnrichedAsset", value)
    return value


def clone(value: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(value)


def local_enricher():
    """name -> the EnrichedAsset dict of one quality-set image (or of any image file, given its Path), made by the
    real PreprocessStage and EnrichStage (offline local provider, no dedupe), each image once; every asset declares
    CC0 so rights never hold it back (confidence alone decides). Callers must not change what it returns (copy
    first)."""
    import asyncio

    from app.settings import Settings
    from consumers.enrich.stage import EnrichStage
    from streams.stage import RecordContext
    from tests.preprocess_support import preprocessed_file, preprocessed_quality

    stage = EnrichStage(Settings().with_overrides(enrich={"provider": "local", "dedupe": "off"}))
    done: dict[str, dict] = {}

    def get(name: str | Path) -> dict:
        key = str(name)
        if key not in done:
            value = copy.deepcopy(preprocessed_quality(name) if isinstance(name, str) else preprocessed_file(name))
            value["asset"]["declared_license"] = "CC0 1.0"
            ctx = RecordContext("preprocessed", 0, 0, value["asset"]["asset_id"], {}, None)
            done[key] = asyncio.run(stage.aprocess(value, ctx)).value
        return done[key]
    return get
