"""Test and demo support: build schema-valid ValidatedAsset records and put records on the pipeline topics
with the fleet's client (confluent-kafka Producer + Serde), and read KpiSnapshots back."""
from __future__ import annotations

import time
import uuid
from typing import Any, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streams import PIPELINE_VERSION, avro
from streams.avro import Serde
from app.settings import Settings


def provenance(task: str, prompt_id: str, prompt_version: str, model: str, at_ms: int,
               cost_usd: float = 0.0, provider: str = "local") -> dict[str, Any]:
    return {"task": task, "provider": provider, "model": model, "model_version": None, "prompt_id": prompt_id,
            "prompt_version": prompt_version, "prompt_hash": f"sha256:{prompt_id}-{prompt_version}",
            "request_id": uuid.uuid4().hex, "timestamp": at_ms, "input_tokens": 100, "output_tokens": 20,
            "latency_ms": 12.5, "cost_usd": cost_usd}


def validated_record(asset_id: str, version: int, *, event_time_ms: int, published_ms: int,
                     status: str = "auto_applied", title: str | None = None, alt_text: str | None = None,
                     tags: Iterable[str] = (), decorative: bool = False, cost_usd: float = 0.0,
                     provenance_list: list[dict[str, Any]] | None = None,
                     field_sources: dict[str, str] | None = None) -> dict[str, Any]:
    """A complete ValidatedAsset record (checked against the schema)."""
    stamp = lambda stage, at: {"stage": stage, "version": PIPELINE_VERSION, "worker": f"{stage}-0", "at": at}  # noqa: E731
    asset = {"asset_id": asset_id, "event_id": f"{asset_id}-v{version}-{uuid.uuid4().hex[:6]}",
             "event_type": "deleted" if status == "deleted" else ("created" if version == 1 else "updated"),
             "source_uri": f"s3://assets/{asset_id}.jpg", "content_type": "image/jpeg", "uploader": "test",
             "uploader_notes": None, "declared_license": None, "product_context": None, "tenant": "default",
             "event_time": event_time_ms, "version": version, "human_fields": None, "attributes": {}}
    pre = {"asset": asset, "image": None, "thumbnail": None, "exif": None, "place": None, "embedded": None,
           "ocr": None, "hashes": None, "signals": None, "stamp": stamp("preprocess", event_time_ms + 1)}
    enriched = {"pre": pre, "enrichment": None, "provenance": provenance_list or [], "cost_usd": cost_usd,
                "duplicate_of": None, "duplicate_distance": None, "stamp": stamp("enrich", published_ms - 1)}
    record = {"enriched": enriched, "status": status, "reasons": [], "usage_flag": "ok", "title": title,
              "alt_text": alt_text, "decorative": decorative, "caption": None, "summary": None, "visible_text": None,
              "tags": [{"tag": t, "facet": t.split(":", 1)[0], "label": t.split(":", 1)[-1], "score": 0.9,
                        "source": "model"} for t in tags],
              "suggested_tags": [], "credit_text": None, "licensing": None,
              "field_sources": field_sources or {}, "model_suggestions": {}, "taxonomy_version": "test-1",
              "stamp": stamp("validate", published_ms)}
    avro.validate("ValidatedAsset", record)
    return record


def serde_for(settings: Settings) -> Serde:
    return Serde.for_settings(settings)


def produce(settings: Settings, logical: str, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Produce (key, record) pairs as Avro to a pipeline topic; wait for every acknowledgement."""
    serde = serde_for(settings)
    producer = Producer({**settings.kafka.client_config(), "acks": "all"})
    errors: list[Any] = []
    for key, record in records:
        producer.produce(settings.topics.name(logical), key=key.encode(), value=serde.serialize(logical, record),
                         on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0, "records not acknowledged"
    assert not errors, errors


def read_all(settings: Settings, logical: str, timeout_s: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
    """Every record on a topic (all partitions, to their high watermarks): (key, decoded value) in log order
    per partition."""
    serde = serde_for(settings)
    topic = settings.topics.name(logical)
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        done: set[int] = set()
        out: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout_s
        while len(done) < len(parts) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == -191:  # partition EOF
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, msg.partition()), cached=True)
                    if msg.offset() >= high:
                        done.add(msg.partition())
                continue
            out.append((msg.key().decode() if msg.key() else None, serde.deserialize(logical, msg.value())))
        return out
    finally:
        consumer.close()


class RunningApp:
    """The KPI app as a subprocess (`python -m app.kpis.app`) with ASSETSTREAM_* env; stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], web_port: int, log_path: str):
        self.env, self.web_port, self.log_path = env, web_port, log_path
        self.proc: Any = None

    def start(self, timeout_s: float = 60.0) -> "RunningApp":
        import os
        import subprocess
        import sys

        from streams import REPO_ROOT

        self.proc = subprocess.Popen([sys.executable, "-m", "app.kpis.app"], cwd=str(REPO_ROOT),
                                     env={**os.environ, **self.env}, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kpis app exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if self.view().get("ready"):
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"kpis app not ready within {timeout_s}s; see {self.log_path}")

    def view(self, path: str = "/kpis") -> Any:
        import json
        import urllib.request

        token = self.env.get("ASSETSTREAM_KPIS__WEB_TOKEN")  # kpis.web_token: the views need it
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}",
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if path in ("/kpis", "/flow") else body.decode()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        from streams.embedded import stop_process

        code, self.proc = stop_process(self.proc, timeout_s), None
        return code

    def __enter__(self) -> "RunningApp":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.3, what: str = "condition") -> Any:
    """Poll until predicate() returns a truthy value; return it."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except OSError:
            last = None
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached within {timeout_s}s")
