"""The writeback files target with an S3 API on both sides (SeaweedFS on loopback, started by the test): originals
read from s3:// under the configured prefix only, copies written as objects, every field read back with ExifTool;
a reprocess uploads nothing; an original outside the roots or missing is a dead letter with its reason."""
from __future__ import annotations

import pytest

from consumers.writeback.sink import WritebackSink
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic
from tests.store_support import validated_asset
from tests.test_writeback_files import SAMPLES, exif
from tests.writeback_support import run_until

boto3 = pytest.importorskip("boto3")


def record(asset_id: str, uri: str, **kw):
    v = validated_asset(asset_id, status="approved", **kw)
    v["enriched"]["pre"]["asset"]["source_uri"] = uri
    return v


def test_s3_originals_to_s3_copies(s3, monkeypatch, broker, unique, store, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    originals, export = f"orig{unique}", f"export{unique}"
    client.create_bucket(Bucket=originals)
    client.create_bucket(Bucket=export)
    mug = (SAMPLES / "product_red_mug.jpg").read_bytes()
    client.put_object(Bucket=originals, Key="library/red mug.jpg", Body=mug)
    client.put_object(Bucket=originals, Key="private/secret.jpg", Body=mug)
    s = make_settings(
        broker, f"wbs{unique}",
        index={"url": store.url, "server_mode": "serverless", "number_of_replicas": 0, "index": f"wbs{unique}"},
        writeback={"state_index": f"wbs{unique}-writeback",
                   "targets": [{"name": "files", "type": "files", "out_dir": f"s3://{export}/enriched",
                                "source_roots": [f"s3://{originals}/library"], "s3_endpoint_url": s3.endpoint,
                                "s3_region": "us-east-1"}]},
        runner={"batch_max_wait_s": 0.2})
    provision(s)
    good = record("mug-1", f"s3://{originals}/library/red%20mug.jpg", caption="A red mug on a white table",
                  title="Red mug")
    outside = record("secret-1", f"s3://{originals}/private/secret.jpg")
    escape = record("escape-1", f"s3://{originals}/library/../private/secret.jpg")
    missing = record("missing-1", f"s3://{originals}/library/gone.jpg")
    with RunnerThread(StageRunner(WritebackSink(s), s)):
        run_until(s, [good, outside, escape, missing], 4)
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=export).get("Contents", [])]
        assert len(keys) == 1 and keys[0].startswith("enriched/mug-1-") and keys[0].endswith(".jpg"), keys
        copy = tmp_path / "copy.jpg"
        copy.write_bytes(client.get_object(Bucket=export, Key=keys[0])["Body"].read())
        tags = exif(copy, "-XMP:all", "-IPTC:all")
        assert tags["XMP-dc:Description"] == tags["IPTC:Caption-Abstract"] == "A red mug on a white table"
        assert tags["XMP-iptcCore:AltTextAccessibility"] == good["alt_text"]
        assert tags["XMP-assetstream:AssetId"] == "mug-1"
        assert client.get_object(Bucket=export, Key=keys[0])["ContentType"] == "image/jpeg"
        assert client.get_object(Bucket=originals, Key="library/red mug.jpg")["Body"].read() == mug  # untouched

        # a reprocess uploads nothing; a new caption updates the same object
        etag = client.head_object(Bucket=export, Key=keys[0])["ETag"]
        run_until(s, [good], 5)
        assert client.head_object(Bucket=export, Key=keys[0])["ETag"] == etag
        run_until(s, [record("mug-1", good["enriched"]["pre"]["asset"]["source_uri"], caption="A mug, red",
                             title="Red mug")], 6)
        copy.write_bytes(client.get_object(Bucket=export, Key=keys[0])["Body"].read())
        assert exif(copy, "-XMP-dc:Description")["XMP-dc:Description"] == "A mug, red"

    dead = {d["key"]: d["value"] for d in read_topic(s, "dead_letter", 3)}
    assert set(dead) == {"secret-1", "escape-1", "missing-1"}
    assert {k: v["details"]["reason"] for k, v in dead.items()} == {
        "secret-1": "forbidden_source", "escape-1": "forbidden_source", "missing-1": "source_missing"}
    assert s3.secret_key not in str(dead)
