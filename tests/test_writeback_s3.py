"""The writeback files target with an S3 API on both sides (SeaweedFS on loopback, started by the test): originals
read from s3:// under the configured prefix only, copies written as objects, every field read back with ExifTool;
a JPEG named .png is written and stored as the JPEG it is; a reprocess uploads nothing; an original outside the
roots or missing is a dead letter with its reason."""
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
    client.put_object(Bucket=originals, Key="library/mug.png", Body=mug)  # a JPEG named .png
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
    misnamed = record("png-1", f"s3://{originals}/library/mug.png",  # preprocess sniffed JPEG (the record's format)
                      caption="A mug named as a PNG")
    with RunnerThread(StageRunner(WritebackSink(s), s)):
        run_until(s, [good, outside, escape, missing, misnamed], 5)
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=export).get("Contents", []))
        assert len(keys) == 2 and keys[0].startswith("enriched/mug-1-") and keys[0].endswith(".jpg"), keys
        # the copy keeps the original's name; its Content-Type is what the bytes are, not what the name says
        assert keys[1].startswith("enriched/png-1-") and keys[1].endswith(".png"), keys
        assert client.head_object(Bucket=export, Key=keys[1])["ContentType"] == "image/jpeg"
        copy = tmp_path / "misnamed.jpg"
        copy.write_bytes(client.get_object(Bucket=export, Key=keys[1])["Body"].read())
        assert exif(copy, "-IPTC:Caption-Abstract")["IPTC:Caption-Abstract"] == "A mug named as a PNG"  # a JPEG's IIM
        copy = tmp_path / "copy.jpg"
        copy.write_bytes(client.get_object(Bucket=export, Key=keys[0])["Body"].read())
        tags = exif(copy, "-XMP:all", "-IPTC:all")
        assert tags["XMP-dc:Description"] == tags["IPTC:Caption-Abstract"] == "A red mug on a white table"
        assert tags["XMP-iptcCore:AltTextAccessibility"] == good["alt_text"]
        assert tags["XMP-assetstream:AssetId"] == "mug-1"
        assert client.get_object(Bucket=export, Key=keys[0])["ContentType"] == "image/jpeg"
        assert client.get_object(Bucket=originals, Key="library/red mug.jpg")["Body"].read() == mug  # untouched

        # a JPEG named .png is written and stored as the JPEG it is; a reprocess uploads nothing; a new caption updates the same object
        etag = client.head_object(Bucket=export, Key=keys[0])["ETag"]
        run_until(s, [good], 6)
        assert client.head_object(Bucket=export, Key=keys[0])["ETag"] == etag
        run_until(s, [record("mug-1", good["enriched"]["pre"]["asset"]["source_uri"], caption="A mug, red",
                             title="Red mug")], 7)
        copy.write_bytes(client.get_object(Bucket=export, Key=keys[0])["Body"].read())
        assert exif(copy, "-XMP-dc:Description")["XMP-dc:Description"] == "A mug, red"

    dead = {d["key"]: d["value"] for d in read_topic(s, "dead_letter", 3)}
    assert set(dead) == {"secret-1", "escape-1", "missing-1"}
    assert {k: v["details"]["reason"] for k, v in dead.items()} == {
        "secret-1": "forbidden_source", "escape-1": "forbidden_source", "missing-1": "source_missing"}
    assert s3.secret_key not in str(dead)


def test_a_changed_record_downloads_each_object_once(s3, monkeypatch, broker, unique, store, tmp_path):
    """The object read() downloaded (to compare the copy's fields) is the one write() updates: the S3 server answers
    one GET per changed record, not two; and no download is left on disk after a write, a record with nothing to
    write, or a dead letter."""
    import subprocess
    import tempfile

    from tests.preprocess_support import s3_requests

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    scratch = tmp_path / "scratch"  # the writeback's temporary folders, in-process: nothing may stay here
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    originals, export = f"once{unique}", f"copies{unique}"
    client.create_bucket(Bucket=originals)
    client.create_bucket(Bucket=export)
    client.put_object(Bucket=originals, Key="library/mug.jpg", Body=(SAMPLES / "product_red_mug.jpg").read_bytes())
    s = make_settings(
        broker, f"wbo{unique}",
        index={"url": store.url, "server_mode": "serverless", "number_of_replicas": 0, "index": f"wbo{unique}"},
        writeback={"state_index": f"wbo{unique}-writeback",
                   "targets": [{"name": "files", "type": "files", "out_dir": f"s3://{export}/enriched",
                                "source_roots": [f"s3://{originals}/library", f"s3://absent{unique}/library"],
                                "s3_endpoint_url": s3.endpoint, "s3_region": "us-east-1"}]},
        runner={"batch_max_wait_s": 0.2})
    provision(s)
    uri = f"s3://{originals}/library/mug.jpg"

    def counts() -> tuple[int, int, int]:
        return s3_requests(s3, originals), s3_requests(s3, export), s3_requests(s3, export, "PUT")

    def delta(before: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(before, counts()))

    with RunnerThread(StageRunner(WritebackSink(s), s)):
        # first write: the copy is not there yet (one GET, 404), the original is read once and becomes the copy
        before = counts()
        run_until(s, [record("mug-1", uri, caption="A red mug", title="Red mug")], 1)
        assert delta(before) == (1, 1, 1)
        key = client.list_objects_v2(Bucket=export)["Contents"][0]["Key"]

        # a changed caption: the copy is read once (before: twice) and updated; the original is not read
        before = counts()
        run_until(s, [record("mug-1", uri, caption="A mug, red", title="Red mug")], 2)
        assert delta(before) == (0, 1, 1)
        copy = tmp_path / "copy.jpg"
        copy.write_bytes(client.get_object(Bucket=export, Key=key)["Body"].read())
        assert exif(copy, "-XMP-dc:Description")["XMP-dc:Description"] == "A mug, red"

        # a person already put the next caption into the copy: read once, nothing to write, no upload
        subprocess.run(["exiftool", "-overwrite_original", "-XMP-dc:Description=Mug (edited)",
                        "-IPTC:Caption-Abstract=Mug (edited)", str(copy)], check=True, capture_output=True)
        client.put_object(Bucket=export, Key=key, Body=copy.read_bytes())
        etag = client.head_object(Bucket=export, Key=key)["ETag"]
        before = counts()
        run_until(s, [record("mug-1", uri, caption="Mug (edited)", title="Red mug")], 3)
        assert delta(before) == (0, 1, 0)
        assert client.head_object(Bucket=export, Key=key)["ETag"] == etag

        # an original that is not there, or whose bucket is not: dead letters, and their download folders are gone
        run_until(s, [record("gone-1", f"s3://{originals}/library/gone.jpg"),
                      record("nobucket-1", f"s3://absent{unique}/library/a.jpg")], 5)
        assert list(scratch.iterdir()) == []

    dead = read_topic(s, "dead_letter", 2)
    assert sorted((d["key"], d["value"]["details"]["reason"]) for d in dead) == [
        ("gone-1", "source_missing"), ("nobucket-1", "no_bucket")]
