"""The DAM upload webhook: `POST /v1/assets` -> validated, authenticated, published to `raw`, 202 after the ack.

Request checks, in this order (nothing is published unless all pass):

    413  body larger than ops.webhook_max_body_bytes
    401  missing/bad X-Assetstream-Signature, missing/stale X-Assetstream-Timestamp
    400  body is not JSON (or not an object / a list of objects)
    422  body does not match WEBHOOK_SCHEMA: {"error": ..., "problems": [{"index", "path", "message"}]}
    503  the broker did not acknowledge within ops.webhook_ack_timeout_s (safe to retry: same event_id)
    202  {"accepted": n, "assets": [{"asset_id", "event_id", "partition", "offset"}]}

Signature: hex HMAC-SHA256 with the shared secret over `<timestamp>.` + raw body bytes, where timestamp is the
X-Assetstream-Timestamp header (unix seconds); sent as `X-Assetstream-Signature: sha256=<hex>`.
See docs/operations.md for the body and signing examples.
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
from confluent_kafka import KafkaError, Producer

from domain import events as ev
from domain.records import document_id
from domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign  # noqa: F401  (re-exported: tests, SDK)
from streams.avro import Serde, topic_names
from streams.clientlog import client_logging
from app.console import loopback_only
from app.ops.settings import OpsSettings, ops_settings
from app.producer import asset_id_for, build_event
from app.settings import Settings

log = logging.getLogger("assetstream.ingest")

PATH = "/v1/assets"

_STR = {"type": "string", "maxLength": ev.MAX_TEXT}
_NSTR = {"type": ["string", "null"], "maxLength": ev.MAX_TEXT}
_LONG = {"type": ["string", "null"], "maxLength": ev.MAX_LONG_TEXT}
_URI = {"type": "string", "minLength": 1, "maxLength": ev.MAX_URI, "pattern": ev.URI_PATTERN}
# the shape of the webhook's JSON; the limits are domain/events.py's (build_event applies the same rules again)
WEBHOOK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "assetstream DAM upload webhook event",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "asset_id": {"type": "string", "minLength": 1, "maxLength": ev.MAX_ASSET_ID, "pattern": ev.ID_PATTERN},
        "event_id": {"type": "string", "minLength": 1, "maxLength": ev.MAX_EVENT_ID, "pattern": ev.ID_PATTERN},
        "source_uri": _URI,
        "url": _URI,
        "event_type": {"enum": ["created", "updated", "deleted", "reprocess"]},
        "version": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "content_type": _NSTR,
        "uploader": _NSTR,
        "notes": _LONG,
        "license": _NSTR,
        "tenant": {"type": "string", "minLength": 1, "maxLength": ev.MAX_TENANT, "pattern": ev.ID_PATTERN},
        "product": {
            "type": ["object", "null"], "additionalProperties": False,
            "properties": {k: _NSTR for k in ("sku", "category", "name", "brand")},
        },
        "human_fields": {
            "type": ["object", "null"], "additionalProperties": False,
            "properties": {**{k: _NSTR for k in ("title", "alt_text", "caption", "creator", "credit_line",
                                                  "copyright")},
                           "description": _LONG,
                           "keywords": {"type": "array", "items": _STR, "maxItems": ev.MAX_KEYWORDS}},
        },
        "attributes": {"type": "object", "additionalProperties": _STR, "maxProperties": ev.MAX_ATTRIBUTES},
    },
    "allOf": [
        # a deletion needs the asset id (nothing to derive it from); everything else needs the image location
        {"if": {"properties": {"event_type": {"const": "deleted"}}, "required": ["event_type"]},
         "then": {"required": ["asset_id"]},
         "else": {"anyOf": [{"required": ["source_uri"]}, {"required": ["url"]}]}},
        {"not": {"required": ["source_uri", "url"]}},
    ],
}
_VALIDATOR = jsonschema.Draft202012Validator(WEBHOOK_SCHEMA)


def check_signature(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, *,
                    tolerance_s: int, now: float | None = None) -> str | None:
    """None when the request is authentic and fresh, else a reason (safe to show the caller)."""
    if not signature:
        return f"missing {SIGNATURE_HEADER} header"
    if not timestamp:
        return f"missing {TIMESTAMP_HEADER} header"
    try:
        ts = int(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} must be unix seconds"
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        return f"{TIMESTAMP_HEADER} outside the {tolerance_s}s window (stale or replayed request, or clock skew)"
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("ascii", "replace")):
        return "signature does not match (sign '<timestamp>.' + the raw body with the shared secret)"
    return None


def problems(doc: Any) -> list[dict[str, Any]]:
    """Schema problems of one event object: [{"path": "$.product.sku", "message": ...}] (empty = valid)."""
    out = []
    for err in sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        msg = err.message
        if err.validator in ("anyOf", "not") and not err.absolute_path:
            msg = ("give exactly one of source_uri / url (required unless event_type is 'deleted')"
                   if err.validator == "anyOf" else "give source_uri or url, not both")
        out.append({"path": path, "message": msg})
    return out


_WEBHOOK_NAMES = {"uploader_notes": "notes", "declared_license": "license", "product_context": "product"}


def _webhook_path(path: str, doc: dict[str, Any]) -> str:
    """An AssetEvent field path ($.uploader_notes) as the webhook body names it ($.notes)."""
    head, _, rest = path[2:].partition(".")
    if head == "source_uri":
        head = "url" if "url" in doc else "source_uri"
    head = _WEBHOOK_NAMES.get(head, head)
    return "$." + head + (f".{rest}" if rest else "")


def event_from_webhook(doc: dict[str, Any]) -> dict[str, Any]:
    """A valid AssetEvent from one schema-valid webhook object."""
    uri = doc.get("source_uri") or doc.get("url")
    asset_id = doc.get("asset_id") or asset_id_for(uri)
    attributes = dict(doc.get("attributes") or {})
    attributes.setdefault("ingest", "webhook")
    human = {k: v for k, v in (doc.get("human_fields") or {}).items() if v is not None} or None
    product = doc.get("product") or None
    return build_event(asset_id, uri, event_type=doc.get("event_type", "created"), version=doc.get("version"),
                       content_type=doc.get("content_type"), uploader=doc.get("uploader"),
                       uploader_notes=doc.get("notes"), declared_license=doc.get("license"),
                       product_context=product, tenant=doc.get("tenant") or "default", human_fields=human,
                       attributes=attributes, event_id=doc.get("event_id"))


class AckingPublisher:
    """Produces to `raw` and lets each caller wait for the acks of its own records only (a poll thread serves
    delivery callbacks), so concurrent requests never wait for, or inherit errors from, each other."""

    def __init__(self, settings: Settings, producer: Producer | None = None):
        self.names = topic_names(settings)
        self.serde = Serde.for_settings(settings)
        self.producer = producer or Producer({**settings.kafka.client_config(), **client_logging("ingest"),
                                              "enable.idempotence": True, "acks": "all", "linger.ms": 2})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="ingest-acks", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def publish(self, events: list[dict[str, Any]], timeout_s: float,
                headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Produce and wait for every ack. Raises TimeoutError (not all acked in time) or RuntimeError."""
        done = threading.Event()
        results: list[dict[str, Any] | None] = [None] * len(events)
        errors: list[str] = []
        left = [len(events)]
        lock = threading.Lock()

        def cb_for(i: int):
            def cb(err: KafkaError | None, msg) -> None:
                with lock:
                    if err is not None:
                        errors.append(err.str())
                    else:
                        results[i] = {"asset_id": events[i]["asset_id"], "event_id": events[i]["event_id"],
                                      "partition": msg.partition(), "offset": msg.offset()}
                    left[0] -= 1
                    if left[0] == 0:
                        done.set()
            return cb

        deadline = time.monotonic() + timeout_s
        hdrs = [(k, v.encode()) for k, v in (headers or {}).items()]
        for i, event in enumerate(events):
            data = self.serde.serialize("raw", event)
            while True:
                try:
                    self.producer.produce(self.names["raw"], key=document_id(event).encode(), value=data,
                                          headers=[("trace-id", uuid.uuid4().hex.encode()), *hdrs],
                                          on_delivery=cb_for(i))
                    break
                except BufferError:
                    if time.monotonic() > deadline:
                        raise TimeoutError("local producer queue full") from None
                    time.sleep(0.02)
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"broker did not acknowledge within {timeout_s}s")
        if errors:
            raise RuntimeError("broker rejected: " + "; ".join(errors[:3]))
        return [r for r in results if r is not None]

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(2)
        self.producer.flush(timeout_s)


@dataclass
class _Config:
    secret: bytes | None
    tolerance_s: int
    max_body: int
    max_batch: int
    ack_timeout_s: float


NOT_AN_OBJECT = "the body must be a JSON object (or a list of them, a batch)"


class _Handler(BaseHTTPRequestHandler):
    server_version = "assetstream-ingest/1"
    protocol_version = "HTTP/1.1"
    # set on the subclass built per server
    cfg: _Config
    publisher: AckingPublisher

    def log_message(self, fmt: str, *args: Any) -> None:  # access log without headers (no signatures)
        log.info("%s %s", self.address_string(), fmt % args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'HMAC-SHA256 header="X-Assetstream-Signature"')
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?")[0] == "/healthz":
            self._reply(200, {"status": "ok"})
        else:
            self._reply(404, {"error": "not found", "hint": f"POST {PATH}, GET /healthz"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0] != PATH:
            self._reply(404, {"error": "not found", "hint": f"POST {PATH}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or "-1")
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._reply(411, {"error": "Content-Length required"})
            return
        if length > self.cfg.max_body:
            self.close_connection = True
            self._reply(413, {"error": f"body larger than {self.cfg.max_body} bytes"})
            return
        body = self.rfile.read(length)
        if self.cfg.secret is not None:
            reason = check_signature(self.cfg.secret, self.headers.get(TIMESTAMP_HEADER),
                                     self.headers.get(SIGNATURE_HEADER), body, tolerance_s=self.cfg.tolerance_s)
            if reason:
                log.warning("rejected unauthenticated request from %s: %s", self.address_string(), reason)
                self._reply(401, {"error": "unauthorized", "reason": reason})
                return
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply(400, {"error": "body is not valid JSON", "problems": [{"path": "$", "message": str(exc)}]})
            return
        except RecursionError:  # e.g. 100,000 nested `[`: the decoder gives up; still a JSON answer
            self._reply(400, {"error": "body is not valid JSON",
                              "problems": [{"path": "$", "message": "nested too deeply"}]})
            return
        batch = isinstance(doc, list)
        docs = doc if batch else [doc]
        shapes = [{"index": i, "path": "$", "message": NOT_AN_OBJECT} if batch else
                  {"path": "$", "message": NOT_AN_OBJECT} for i, d in enumerate(docs) if not isinstance(d, dict)]
        if shapes:
            self._reply(400, {"error": NOT_AN_OBJECT, "problems": shapes})
            return
        if batch and not docs:
            self._reply(422, {"error": "empty batch", "problems": [{"path": "$", "message": "list is empty"}]})
            return
        if batch and len(docs) > self.cfg.max_batch:
            self._reply(413, {"error": f"batch larger than {self.cfg.max_batch} events"})
            return
        found = []
        for i, d in enumerate(docs):
            for p in problems(d):
                found.append({"index": i, **p} if batch else p)
        if found:
            self._reply(422, {"error": "invalid event" + ("s" if batch else ""), "problems": found})
            return
        events = []
        for i, d in enumerate(docs):  # the entry rules every producer shares (domain/events.py)
            try:
                events.append(event_from_webhook(d))
            except ev.EventError as exc:
                named = [{**p, "path": _webhook_path(p["path"], d)} for p in exc.problems]
                found += [{"index": i, **p} if batch else p for p in named]
            except ValueError as exc:
                found.append({"index": i, "path": "$", "message": str(exc)} if batch
                             else {"path": "$", "message": str(exc)})
        if found:
            self._reply(422, {"error": "invalid event" + ("s" if batch else ""), "problems": found})
            return
        try:
            acked = self.publisher.publish(events, self.cfg.ack_timeout_s, headers={"ingest": "webhook"})
        except (TimeoutError, RuntimeError) as exc:
            log.error("publish failed: %s", exc)
            self._reply(503, {"error": "not published: the broker did not acknowledge in time",
                              "detail": str(exc), "retry": "safe to retry with the same event_id"})
            return
        log.info("accepted %d event(s): %s", len(acked), ", ".join(a["asset_id"] for a in acked[:10]))
        self._reply(202, {"accepted": len(acked), "assets": acked})


class IngestServer:
    """The webhook HTTP server (threaded). `start()` serves in a background thread; `serve_forever()` blocks."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None,
                 insecure_no_auth: bool = False, ops: OpsSettings | None = None):
        ops = ops or ops_settings(settings)
        bind = host or ops.webhook_host
        if ops.webhook_secret is None or not ops.webhook_secret.get_secret_value():
            if not insecure_no_auth:
                raise ValueError("no webhook secret: set ASSETSTREAM_OPS__WEBHOOK_SECRET (or ops.webhook_secret "
                                 "in the config file), or pass --insecure-no-auth for a local test only")
            if not loopback_only(bind):  # unsigned events name file:// sources: this machine's files, to anyone
                raise ValueError(f"--insecure-no-auth listens on loopback only, not {bind}: set "
                                 "ASSETSTREAM_OPS__WEBHOOK_SECRET to accept signed requests from other hosts")
            secret = None
        else:
            secret = ops.webhook_secret.get_secret_value().encode()
        self.cfg = _Config(secret, ops.webhook_tolerance_s, ops.webhook_max_body_bytes, ops.webhook_max_batch,
                           ops.webhook_ack_timeout_s)
        handler = type("IngestHandler", (_Handler,), {"cfg": self.cfg})
        self.httpd = ThreadingHTTPServer((bind, ops.webhook_port if port is None else port),
                                         handler)  # bind first: a busy port fails before a producer exists
        self.httpd.daemon_threads = True
        self.publisher = AckingPublisher(settings)
        handler.publisher = self.publisher
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "IngestServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="ingest-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(5)
        self.publisher.close(self.cfg.ack_timeout_s)

    def __enter__(self) -> "IngestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
