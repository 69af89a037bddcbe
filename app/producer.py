"""The producer SDK: build valid AssetEvents and publish them to `raw`, waiting for the broker's ack.

    from app.producer import AssetPublisher
    with AssetPublisher(settings) as pub:
        pub.publish_asset("sku-123-front", "https://cdn.example.com/a.jpg", product_context={"sku": "123"})
"""
from __future__ import annotations

import hashlib
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable

from confluent_kafka import KafkaError, Producer

from domain.events import REPROCESSED_AT, EventError, check_event
from domain.records import document_id
from streams.avro import Serde
from streams.records import now_ms
from streams.clientlog import client_logging
from app.settings import Settings

EVENT_TYPES = ("created", "updated", "deleted", "reprocess")


class PublishError(RuntimeError):
    pass


__all__ = ["AssetPublisher", "EventError", "PublishError", "asset_id_for", "build_event", "publish_asset",
           "source_uri_for"]


def source_uri_for(path_or_uri: str | Path) -> str:
    """The source URI an event carries: a URI (anything with '://') as given; a local path as the file:// URI
    of its absolute path with symlinks resolved (the same file always gets the same URI)."""
    text = str(path_or_uri)
    if "://" in text:
        return text
    return Path(text).expanduser().resolve().as_uri()


def asset_id_for(path_or_uri: str | Path) -> str:
    """The asset id of a source when the caller has none: readable stem + 10 hex digits of the SHA-1 of its
    source URI (`source_uri_for`). The one derivation `assetstream run`, `publish`, `backfill` and the webhook
    use, so the same file is the same document in the index whichever way it entered."""
    uri = source_uri_for(path_or_uri)
    stem = Path(uri.split("?")[0].rstrip("/")).stem or "asset"
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)[:48]
    return f"{safe}-{hashlib.sha1(uri.encode()).hexdigest()[:10]}"


def build_event(asset_id: str, source_uri: str | None, *, event_type: str = "created", version: int | None = None,
                content_type: str | None = None, uploader: str | None = None, uploader_notes: str | None = None,
                declared_license: str | None = None, product_context: dict[str, Any] | None = None,
                tenant: str = "default", human_fields: dict[str, Any] | None = None,
                attributes: dict[str, str] | None = None, event_time_ms: int | None = None,
                event_id: str | None = None) -> dict[str, Any]:
    """A valid AssetEvent dict. `version` defaults to the event time in ms (monotonic enough per asset
    for most DAMs; pass your DAM's own revision counter when it has one).

    `event_time_ms` is when the asset was uploaded (default now). A `reprocess` given an earlier one keeps that
    upload time (the review queue's "uploaded", its order and date filter, the time to publish) and says when it
    was sent in the `reprocessed_at` attribute (domain.events.sent_ms); its version defaults to now.

    Raises ValueError, or its subclass domain.events.EventError (with `.problems`) for an event the pipeline
    cannot process: an unsupported URL scheme, an asset id with spaces, an over-long text field, ... (the entry
    rules in domain/events.py, the same the webhook applies)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"event_type must be one of {EVENT_TYPES}, not {event_type!r}")
    if not asset_id:
        raise ValueError("asset_id is required")
    if event_type != "deleted" and not source_uri:
        raise ValueError("source_uri is required unless the event is a deletion")
    now = now_ms()
    t = event_time_ms or now
    attributes = dict(attributes or {})
    if event_type == "reprocess" and t < now:  # the upload time kept: when this event was sent, said apart
        attributes.setdefault(REPROCESSED_AT, str(now))
        t_version = now
    else:
        t_version = t
    pc = None
    if product_context:
        pc = {k: product_context.get(k) for k in ("sku", "category", "name", "brand")}
    hf = None
    if human_fields:
        hf = {"title": None, "alt_text": None, "caption": None, "description": None, "keywords": [],
              "creator": None, "credit_line": None, "copyright": None, **human_fields}
    return check_event({
        "asset_id": asset_id, "event_id": event_id or uuid.uuid4().hex, "event_type": event_type,
        "source_uri": source_uri, "content_type": content_type, "uploader": uploader,
        "uploader_notes": uploader_notes, "declared_license": declared_license, "product_context": pc,
        "tenant": tenant, "event_time": t, "version": version if version is not None else t_version,
        "human_fields": hf, "attributes": attributes})


class AssetPublisher:
    """Publishes AssetEvents (or other pipeline records) with an idempotent, acks=all producer."""

    def __init__(self, settings: Settings, producer: Producer | None = None):
        self.settings = settings
        self.serde = Serde.for_settings(settings)
        self.producer = producer or Producer({**settings.kafka.client_config(), **client_logging("publish"),
                                              "enable.idempotence": True, "acks": "all", "linger.ms": 5})
        self._errors: list[str] = []
        self._lock = threading.Lock()

    def _cb(self, err: KafkaError | None, msg) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(f"{msg.topic()} key={msg.key()!r}: {err.str()}")

    def send(self, logical_topic: str, key: str, value: dict[str, Any], headers: dict[str, str] | None = None,
             raw_value: bytes | None = None) -> None:
        """Enqueue one record; call flush() to wait for acknowledgements."""
        data = raw_value if raw_value is not None else self.serde.serialize(logical_topic, value)
        hdrs = [("trace-id", uuid.uuid4().hex.encode())] + [(k, v.encode()) for k, v in (headers or {}).items()]
        while True:
            try:
                self.producer.produce(self.serde.topic_names[logical_topic], key=key.encode(), value=data,
                                      headers=hdrs, on_delivery=self._cb)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def publish_asset(self, asset_id: str, source_uri: str | None, *, wait: bool = True, **fields: Any) -> dict:
        event = build_event(asset_id, source_uri, **fields)
        self.send("raw", document_id(event), event)
        if wait:
            self.flush()
        return event

    def publish_events(self, events: Iterable[dict[str, Any]]) -> int:
        n = 0
        for event in events:
            self.send("raw", document_id(event), event)
            n += 1
        self.flush()
        return n

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self.producer.flush(timeout_s)
        with self._lock:
            errors, self._errors = self._errors, []
        if remaining:
            raise PublishError(f"{remaining} record(s) not acknowledged by the broker within {timeout_s}s")
        if errors:
            raise PublishError("broker rejected records: " + "; ".join(errors[:5]))

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "AssetPublisher":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


def publish_asset(settings: Settings, asset_id: str, source_uri: str | None, **fields: Any) -> dict[str, Any]:
    """One-shot convenience: publish one AssetEvent and wait for the broker's ack."""
    with AssetPublisher(settings) as pub:
        return pub.publish_asset(asset_id, source_uri, **fields)
