"""One set of entry rules for an asset event (domain/events.py), applied by the SDK, `assetstream publish`,
`backfill` and the webhook: what the pipeline cannot process is refused up front with a clear error, and
nothing is published for it."""
from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.ops.backfill import read_manifest
from app.ops.ingest import IngestServer
from app.ops.settings import OpsSettings
from app.producer import AssetPublisher, EventError
from tests.kafka_support import env_for, make_settings, provision, read_topic
from tests.test_ops_ingest import SECRET, post

MIB = "x" * (1 << 20)
GOOD_URL = "https://cdn.example.com/dam/a.jpg"
REFUSED = [  # (fields, path named in the error, words the message must contain)
    ({"source_uri": "gs://bucket/a.jpg"}, "$.source_uri", "gs:// scheme is not supported"),
    ({"source_uri": "ftp://files.example.com/a.jpg"}, "$.source_uri", "ftp:// scheme is not supported"),
    ({"source_uri": "cdn.example.com/a.jpg"}, "$.source_uri", "not a URL"),
    ({"asset_id": "sku 123 front"}, "$.asset_id", "spaces or control characters"),
    ({"asset_id": "sku-123\x00"}, "$.asset_id", "spaces or control characters"),
    ({"uploader_notes": MIB}, "$.uploader_notes", "1,048,576 characters long; at most 20,000"),
    ({"human_fields": {"title": "t" * 5000}}, "$.human_fields.title", "at most 4,096"),
    ({"tenant": "acme corp"}, "$.tenant", "spaces"),
]


@pytest.mark.parametrize("fields,path,words", REFUSED, ids=[r[1] + ":" + r[2][:12] for r in REFUSED])
def test_the_sdk_refuses_what_the_pipeline_cannot_process(broker, unique, fields, path, words):
    s = make_settings(broker, f"ev{unique}")
    provision(s)
    asset_id = fields.pop("asset_id", "sku-123-front")
    uri = fields.pop("source_uri", GOOD_URL)
    with AssetPublisher(s) as pub:
        with pytest.raises(EventError) as caught:
            pub.publish_asset(asset_id, uri, **fields)
        assert [p["path"] for p in caught.value.problems] == [path]
        assert words in str(caught.value)
        pub.publish_asset("the-good-one", GOOD_URL, uploader_notes="n" * 20_000)  # at the limit: fine
    assert [r["key"] for r in read_topic(s, "raw", 1)] == ["the-good-one"]  # nothing else was published


def test_publish_cli_refuses_an_unsupported_scheme_and_a_huge_note(broker, unique):
    s = make_settings(broker, f"evc{unique}")
    provision(s)
    env = env_for(s)
    r = CliRunner().invoke(cli_app, ["publish", "gs://bucket/a.jpg"], env=env)
    assert r.exit_code == 2 and "gs:// scheme is not supported" in r.output
    r = CliRunner().invoke(cli_app, ["publish", GOOD_URL, "--asset-id", "a b"], env=env)
    assert r.exit_code == 2 and "$.asset_id" in r.output
    r = CliRunner().invoke(cli_app, ["publish", GOOD_URL, "--notes", "y" * 30_000], env=env)
    assert r.exit_code == 2 and "$.uploader_notes" in r.output and "at most 20,000" in r.output
    r = CliRunner().invoke(cli_app, ["publish", GOOD_URL, "--asset-id", "ok-1", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert [x["key"] for x in read_topic(s, "raw", 1)] == ["ok-1"]


def test_backfill_manifest_rows_breaking_the_rules_are_problems_not_events(tmp_path):
    manifest = tmp_path / "m.jsonl"
    rows = [{"uri": GOOD_URL, "asset_id": "fine-1"},
            {"uri": "gs://bucket/b.jpg", "asset_id": "gcs-1"},
            {"uri": "ftp://x.example.com/c.jpg"},
            {"uri": GOOD_URL, "asset_id": "has space"},
            {"uri": GOOD_URL, "asset_id": "long-notes", "notes": MIB}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items, problems = read_manifest(manifest)
    assert [it.asset_id for it in items] == ["fine-1"]
    assert len(problems) == 4
    assert problems[0].startswith("m.jsonl:2:") and "gs:// scheme is not supported" in problems[0]
    assert problems[1].startswith("m.jsonl:3:") and "ftp://" in problems[1]
    assert problems[2].startswith("m.jsonl:4:") and "$.asset_id" in problems[2]
    assert problems[3].startswith("m.jsonl:5:") and "$.uploader_notes" in problems[3]


def test_the_webhook_applies_the_same_rules(broker, unique):
    s = make_settings(broker, f"evw{unique}")
    provision(s)
    ops = OpsSettings(webhook_secret=SECRET, webhook_port=0)
    with IngestServer(s, ops=ops) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        r = post(client, json.dumps({"asset_id": "gcs-1", "url": "gs://bucket/a.jpg"}).encode())
        assert r.status_code == 422 and r.json()["problems"][0]["path"] == "$.url"
        r = post(client, json.dumps({"asset_id": "tab\there", "url": GOOD_URL}).encode())
        assert r.status_code == 422 and r.json()["problems"][0]["path"] == "$.asset_id"
        r = post(client, json.dumps({"asset_id": "nul", "url": GOOD_URL, "notes": "a\x00b"}).encode())
        assert r.status_code == 422 and r.json()["problems"] == [{"path": "$.notes",
                                                                  "message": "contains control characters"}]
        r = post(client, json.dumps({"asset_id": "ok-hook", "url": GOOD_URL, "notes": "fine"}).encode())
        assert r.status_code == 202, r.text
    assert [x["key"] for x in read_topic(s, "raw", 1)] == ["ok-hook"]
