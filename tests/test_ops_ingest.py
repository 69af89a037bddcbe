"""The DAM webhook on a real broker: auth, replay window, validation, 202 only after the ack, nothing published
for a rejected request."""
from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from typer.testing import CliRunner

from app.ops.settings import OpsSettings
from app.ops import cli as ops_cli
from app.ops.ingest import SIGNATURE_HEADER, TIMESTAMP_HEADER, IngestServer, sign
from tests.kafka_support import env_for, make_settings, provision, read_topic

SECRET = "correct-horse-battery-staple-7731"


def post(client: httpx.Client, body: bytes, *, secret: str | None = SECRET, ts: int | None = None,
         signature: str | None = None) -> httpx.Response:
    ts = int(time.time()) if ts is None else ts
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(ts)}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    elif secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, ts, body)
    return client.post("/v1/assets", content=body, headers=headers)


def test_webhook_rejects_bad_requests_and_publishes_good_ones(broker, unique, caplog):
    caplog.set_level(logging.DEBUG)
    s = make_settings(broker, f"hook{unique}")
    provision(s)
    ops = OpsSettings(webhook_secret=SECRET, webhook_port=0, webhook_tolerance_s=300)
    good = {"asset_id": "sku-1-front", "source_uri": "https://cdn.example.com/a/1.jpg", "event_type": "created",
            "version": 7, "uploader": "alice@example.com", "notes": "front shot", "license": "CC-BY-4.0",
            "tenant": "acme", "product": {"sku": "SKU-1", "category": "shoes"},
            "human_fields": {"title": "Trail runner", "keywords": ["shoe"]}, "event_id": "evt-1"}
    with IngestServer(s, ops=ops) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        body = json.dumps({**good, "asset_id": "rejected-1"}).encode()

        r = post(client, body, secret="wrong-secret")
        assert r.status_code == 401 and "signature" in r.json()["reason"]
        r = post(client, body, secret=None)
        assert r.status_code == 401 and SIGNATURE_HEADER in r.json()["reason"]
        stale = int(time.time()) - 3600  # correctly signed, but an hour old: a replayed capture
        r = post(client, body, ts=stale)
        assert r.status_code == 401 and "window" in r.json()["reason"]
        r = post(client, body.replace(b"rejected-1", b"rejected-2"), signature=sign(SECRET, int(time.time()), body))
        assert r.status_code == 401  # body changed after signing

        r = post(client, b'{"asset_id": "rejected-3", ')
        assert r.status_code == 400 and r.json()["error"] == "body is not valid JSON"
        r = post(client, b"[" * 100_000)  # signed, but nested deeper than any decoder goes: still a JSON answer
        assert r.status_code == 400 and r.json()["problems"][0]["message"] == "nested too deeply"
        for scalar in (b"5", b"null", b'"x"', b"[1]"):
            r = post(client, scalar)
            assert r.status_code == 400 and r.json()["error"].startswith("the body must be a JSON object"), scalar
        bad = {"asset_id": "rejected-4", "source_uri": "ftp://x/y.jpg", "version": -1, "colour": "red",
               "product": {"sku": 5}}
        r = post(client, json.dumps(bad).encode())
        assert r.status_code == 422
        paths = {p["path"] for p in r.json()["problems"]}
        assert {"$", "$.source_uri", "$.version", "$.product.sku"} <= paths, r.json()
        assert any("colour" in p["message"] for p in r.json()["problems"])
        r = post(client, json.dumps({"asset_id": "rejected-5"}).encode())  # no location
        assert r.status_code == 422 and "source_uri" in r.json()["problems"][0]["message"]
        r = post(client, json.dumps([good, {"url": "https://cdn.example.com/x.png", "version": "2"}]).encode())
        assert r.status_code == 422 and r.json()["problems"][0]["index"] == 1  # one bad item rejects the batch

        r = post(client, json.dumps(good).encode())
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 1 and r.json()["assets"][0]["asset_id"] == "sku-1-front"
        batch = [{"url": "https://cdn.example.com/b/2.png", "event_type": "updated"},
                 {"asset_id": "sku-1-front", "event_type": "deleted", "version": 8}]
        r = post(client, json.dumps(batch).encode())
        assert r.status_code == 202, r.text
        derived = r.json()["assets"][0]["asset_id"]
        assert derived.startswith("2-")  # derived from the URL, like `assetstream publish`

    recs = read_topic(s, "raw", 3)
    # keyed by the tenant-scoped id: acme's sku-1-front is not the default tenant's (the deletion's)
    assert sorted(r["key"] for r in recs) == sorted(["acme::sku-1-front", "sku-1-front", derived])  # nothing else
    created = next(r["value"] for r in recs if r["value"]["event_type"] == "created")
    assert created["event_id"] == "evt-1" and created["version"] == 7 and created["tenant"] == "acme"
    assert created["declared_license"] == "CC-BY-4.0" and created["uploader_notes"] == "front shot"
    assert created["product_context"]["sku"] == "SKU-1" and created["human_fields"]["title"] == "Trail runner"
    assert created["source_uri"] == "https://cdn.example.com/a/1.jpg"
    assert {r["value"]["event_type"] for r in recs} == {"created", "updated", "deleted"}
    assert SECRET not in caplog.text


def test_refuses_to_start_without_a_secret(broker, unique):
    s = make_settings(broker, f"nosecret{unique}")
    with pytest.raises(ValueError, match="ASSETSTREAM_OPS__WEBHOOK_SECRET"):
        IngestServer(s, ops=OpsSettings(webhook_port=0))

    app = ops_cli.app  # the CLI answers with exit code 2 and what to do
    env = {k: v for k, v in env_for(s).items() if k.startswith("ASSETSTREAM_")}
    result = CliRunner().invoke(app, ["ingest-server", "--port", "0"], env={**env, "ASSETSTREAM_OPS__WEBHOOK_SECRET": ""})
    assert result.exit_code == 2
    assert "--insecure-no-auth" in result.output


def test_503_when_the_broker_does_not_ack(unique):
    s = make_settings("127.0.0.1:9", f"down{unique}")  # nothing listens there
    ops = OpsSettings(webhook_secret=SECRET, webhook_port=0, webhook_ack_timeout_s=1.5)
    with IngestServer(s, ops=ops) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        r = post(client, json.dumps({"url": "https://cdn.example.com/x.jpg"}).encode())
    assert r.status_code == 503 and "retry" in r.json()
