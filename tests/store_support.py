"""Search-store test support: realistic ValidatedAsset records and settings for a real osmem-server. The fixtures
`store`, `own_store` and `es` are in tests/conftest.py (every test module has them)."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from streams.avro import validate
from app.settings import Settings
from streams.stage import RecordContext

__all__ = ["settings_for", "validated_asset", "deleted_asset", "ctx_for", "as_items", "index_all"]

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def _stamp(stage: str, at: dt.datetime) -> dict[str, Any]:
    return {"stage": stage, "version": "0.1.0", "worker": "test-worker", "at": at}


def _tag(facet: str, label: str, score: float = 0.9, source: str = "model") -> dict[str, Any]:
    return {"tag": f"{facet}:{label}", "facet": facet, "label": label, "score": score, "source": source}


def validated_asset(asset_id: str, version: int = 1, *, title: str = "Red running shoe on a white background",
                    alt_text: str | None = None, caption: str | None = None,
                    tags: list[tuple[str, str]] | None = None, status: str = "auto_applied",
                    usage_flag: str = "ok", ocr_text: str = "SALE 50%", gps: tuple[float, float] | None = (
                        48.8584, 2.2945), tenant: str = "default", content: str | None = None) -> dict[str, Any]:
    """A complete ValidatedAsset as the validate stage emits it (validated against the Avro contract). Every
    version of an asset is of the same image bytes (a reprocess), unless `content` names other bytes (a replaced
    file: another sha256 and pHash)."""
    at = T0 + dt.timedelta(minutes=version)
    seed = f"{asset_id}/{content or ''}".encode()
    sha = hashlib.sha256(seed).hexdigest()
    phash = hashlib.md5(seed).hexdigest()[:16]
    tags = tags if tags is not None else [("color", "red"), ("product", "shoe"), ("style", "studio")]
    alt_text = alt_text if alt_text is not None else f"{title.lower()}, side view"
    asset = {
        "asset_id": asset_id, "event_id": str(uuid.uuid4()), "event_type": "created" if version == 1 else "updated",
        "source_uri": f"s3://dam-assets/{tenant}/{asset_id}.jpg", "content_type": "image/jpeg",
        "uploader": "alice@example.com", "uploader_notes": None, "declared_license": "CC-BY-4.0",
        "product_context": {"sku": f"SKU-{asset_id[-4:]}", "category": "footwear", "name": "Trail Runner 2",
                            "brand": "Acme"},
        "tenant": tenant, "event_time": at, "version": version, "human_fields": None, "attributes": {},
    }
    pre = {
        "asset": asset,
        "image": {"width": 1600, "height": 1200, "format": "JPEG", "mode": "RGB", "byte_size": 412_345,
                  "content_sha256": sha, "orientation": 1, "has_alpha": False},
        "thumbnail": None,
        "exif": {"make": "Canon", "model": "EOS R6", "lens": "RF24-105mm F4 L IS USM", "exposure_time": 0.004,
                 "f_number": 8.0, "iso": 200, "focal_length": 50.0, "capture_time": "2026:02:28 10:11:12",
                 "gps_lat": gps[0] if gps else None, "gps_lon": gps[1] if gps else None, "gps_alt": 35.0},
        "place": {"city": "Paris", "region": "Ile-de-France", "country": "France", "country_code": "FR"},
        "embedded": {"creator": "Jane Photographer", "copyright": "(c) 2026 Acme Corp", "credit_line": "Acme",
                     "usage_terms": "Editorial and commercial use", "title": None, "description": None,
                     "keywords": ["shoe", "running"], "alt_text": None, "ext_description": None,
                     "license_url": "https://creativecommons.org/licenses/by/4.0/"},
        "ocr": {"text": ocr_text, "words": [], "mean_confidence": 91.5, "language": "eng", "skipped": False,
                "skip_reason": None},
        "hashes": {"sha256": sha, "phash": phash, "dhash": phash[::-1],
                   "phash_bands": [f"{i}:{phash[i * 4:i * 4 + 4]}" for i in range(4)]},
        "signals": {"face_count": 0, "nsfw_score": 0.01,
                    "colors": [{"hex": "#d62828", "name": "red", "share": 0.4},
                               {"hex": "#ffffff", "name": "white", "share": 0.5}]},
        "stamp": _stamp("preprocess", at),
    }
    enriched = {
        "pre": pre,
        "enrichment": {"tags": [{"tag": f"{f}:{lab}", "score": 0.9} for f, lab in tags], "alt_text": alt_text,
                       "decorative": False, "caption": caption, "title": title, "summary": f"Studio photo: {title}",
                       "visible_text": ocr_text, "licensing": "CC-BY-4.0", "must_display_credit": True,
                       "credit_text": "Photo: Jane Photographer / Acme", "confidence": 0.87,
                       "raw_outputs": {"tagging": '{"tags": ["red", "shoe"]}'}},
        "provenance": [{"task": "tagging", "provider": "local", "model": "clip-vit-b32", "model_version": "1",
                        "prompt_id": "tagging", "prompt_version": "3", "prompt_hash": "ab12cd34",
                        "request_id": None, "timestamp": at, "input_tokens": 812, "output_tokens": 64,
                        "latency_ms": 120.5, "cost_usd": 0.00042}],
        "cost_usd": 0.00042, "duplicate_of": None, "duplicate_distance": None, "stamp": _stamp("enrich", at),
    }
    v = {
        "enriched": enriched, "status": status, "reasons": ["confidence>=0.8"], "usage_flag": usage_flag,
        "title": title, "alt_text": alt_text, "decorative": False, "caption": caption,
        "summary": f"Studio photo: {title}", "visible_text": ocr_text,
        "tags": [_tag(f, lab) for f, lab in tags], "suggested_tags": ["sneaker"],
        "credit_text": "Photo: Jane Photographer / Acme", "licensing": "CC-BY-4.0",
        "field_sources": {"title": "model", "credit_text": "embedded"}, "model_suggestions": {},
        "taxonomy_version": "2026.02", "stamp": _stamp("validate", at),
    }
    validate("ValidatedAsset", v)
    return v


def deleted_asset(asset_id: str, version: int, tenant: str = "default") -> dict[str, Any]:
    """A delete as it arrives on `validated`: status 'deleted', only the asset fields set."""
    at = T0 + dt.timedelta(minutes=version)
    asset = {"asset_id": asset_id, "event_id": str(uuid.uuid4()), "event_type": "deleted", "source_uri": None,
             "content_type": None, "uploader": None, "uploader_notes": None, "declared_license": None,
             "product_context": None, "tenant": tenant, "event_time": at, "version": version,
             "human_fields": None, "attributes": {}}
    pre = {"asset": asset, "image": None, "thumbnail": None, "exif": None, "place": None, "embedded": None,
           "ocr": None, "hashes": None, "signals": None, "stamp": _stamp("preprocess", at)}
    v = {"enriched": {"pre": pre, "enrichment": None, "provenance": [], "cost_usd": 0.0, "duplicate_of": None,
                      "duplicate_distance": None, "stamp": _stamp("enrich", at)},
         "status": "deleted", "reasons": [], "usage_flag": "unknown", "title": None, "alt_text": None,
         "decorative": False, "caption": None, "summary": None, "visible_text": None, "tags": [],
         "suggested_tags": [], "credit_text": None, "licensing": None, "field_sources": {},
         "model_suggestions": {}, "taxonomy_version": "2026.02", "stamp": _stamp("validate", at)}
    validate("ValidatedAsset", v)
    return v


def ctx_for(v: dict[str, Any], offset: int = 0) -> RecordContext:
    return RecordContext(topic="assetstream.validated", partition=0, offset=offset,
                         key=v["enriched"]["pre"]["asset"]["asset_id"], headers={}, timestamp_ms=None)


def as_items(values: list[dict[str, Any]]) -> list[tuple[dict[str, Any], RecordContext]]:
    return [(v, ctx_for(v, i)) for i, v in enumerate(values)]


def settings_for(url: str, base: str | None = None, **index: Any) -> Settings:
    """Settings pointing the index section at an osmem store, with a unique base index name."""
    return Settings().with_overrides(index={"url": url, "server_mode": "serverless", "number_of_replicas": 0,
                                            "index": base or f"test-{uuid.uuid4().hex[:8]}",
                                            "health_check_interval_s": 0.2, "request_timeout_s": 5.0,
                                            **index})


def index_all(settings: Settings, records: list[dict[str, Any]]) -> Settings:
    """Write the records through the real IndexSink (one batch), refresh the read alias; returns the settings."""
    from consumers.index.sink import IndexSink
    from domain.store.management import read_alias

    sink = IndexSink(settings)
    try:
        sink.process_batch(as_items(records))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
    finally:
        sink.close()
    return settings


def send_es_json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    """Answer a request the way Elasticsearch does: JSON, with the product header the official client checks."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("X-Elastic-Product", "Elasticsearch")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextlib.contextmanager
def answering(status: int, error_type: str = "cluster_block_exception", *, only: str = "",
              upstream: str = "") -> Iterator[str]:
    """A loopback HTTP server that answers as Elasticsearch does when it refuses work (a red cluster, a 503 from a
    proxy in front of it, a 429, a 400 for a bad request): the status and an error body. With `upstream` (a real
    store's URL), only requests whose path contains `only` are refused and the rest are passed through to it.
    Yields its URL."""

    class Refusing(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if upstream and only not in self.path:
                return self._forward(body)
            send_es_json(self, status, {"error": {"type": error_type, "reason": "refused"}, "status": status})

        def _forward(self, body: bytes) -> None:
            req = urllib.request.Request(upstream + self.path, data=body if self.command not in ("GET", "HEAD") or
                                         body else None, method=self.command,
                                         headers={"Content-Type": self.headers.get("Content-Type") or
                                                  "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    code, headers, data = r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                code, headers, data = e.code, e.headers, e.read()
            self.send_response(code)
            for k in ("Content-Type", "X-Elastic-Product"):
                if headers.get(k):
                    self.send_header(k, headers[k])
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def index_row(settings: Settings, index: str) -> dict[str, Any]:
    """The store's `_cat/indices` row of one index (health, rep, docs.count, ...), as an operator reads it."""
    from domain.store.client import make_client

    client = make_client(settings)
    try:
        (row,) = client.cat.indices(index=index, format="json").body
    finally:
        client.close()
    return row
