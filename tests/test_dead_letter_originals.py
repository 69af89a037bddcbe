"""A dead letter always keeps its original value (issue 22): an event whose output is too large for the broker
(1 MiB of uploader notes) is dead-lettered with its first reason, its original value kept in the sidecar
store (S3 API on SeaweedFS, or a folder), and `assetstream dlq replay` restores it byte-identical on the real
broker. A letter whose original was cut (no store) or changed in the store is refused with exit 1."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from app.ops import cli as ops_cli
from app.producer import build_event
from streams.avro import Serde
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, env_for, make_settings, provision, read_topic
from tests.stages import EchoStage

NOTES = "n" * (1024 * 1024)  # 1 MiB: the raw event fits (producer limit raised), its preprocessed output does not


def _publish_oversize(settings, broker: str, asset_id: str) -> bytes:
    """A valid AssetEvent with 1 MiB of notes, produced as a non-SDK producer would (no entry caps)."""
    event = build_event(asset_id, "file:///library/big.jpg", version=1)
    event["uploader_notes"] = NOTES
    value = Serde.for_settings(settings).serialize("raw", event)
    p = Producer({"bootstrap.servers": broker, "message.max.bytes": 4_000_000})
    p.produce(settings.topics.name("raw"), key=asset_id.encode(), value=value, headers=[("origin", b"bulk-import")])
    assert p.flush(10) == 0
    return value


def _dead_letter_and_keep_going(settings, asset_id: str) -> dict:
    """Run the stage until the oversize record is dead-lettered and a small one after it went through."""
    from app.producer import AssetPublisher

    with AssetPublisher(settings) as pub:
        pub.publish_events([build_event("asset-small", "file:///library/small.jpg", version=1)])
    with RunnerThread(StageRunner(EchoStage(settings), settings)):
        out = read_topic(settings, "preprocessed", 1)
        dead = read_topic(settings, "dead_letter", 1)
    assert [r["key"] for r in out] == ["asset-small"]
    assert [d["key"] for d in dead] == [asset_id]
    return dead[0]["value"]


def _cli(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(ops_cli.app, args, env=env)


def _replayed(settings, asset_id: str, raw_records: int = 3) -> list[dict]:
    raw = read_topic(settings, "raw", raw_records, decode=False)
    return [r for r in raw if r["key"] == asset_id and "replayed-from" in r["headers"]]


def test_oversize_original_kept_in_s3_and_replayed_byte_identical(broker, unique, s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    s = make_settings(broker, f"dlqs3{unique}", dead_letters={
        "store": f"s3://dead-letters-{unique}/originals", "s3_endpoint_url": s3.endpoint, "s3_region": "us-east-1"})
    provision(s)
    original = _publish_oversize(s, broker, "asset-huge")

    letter = _dead_letter_and_keep_going(s, "asset-huge")
    assert letter["details"]["reason"] == "output_rejected"  # the first failure, not the letter's own size
    assert letter["original_value"] is None and "original_value_cut" not in letter["details"]
    assert letter["original_value_ref"].startswith(f"s3://dead-letters-{unique}/originals/")
    assert letter["original_value_size"] == len(original)

    env = {**env_for(s), "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    shown = _cli(["dlq", "show", "asset-huge", "--json"], env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout[shown.stdout.find("["):])[0]["original_value_bytes"] == len(original)

    result = _cli(["dlq", "replay", "--asset", "asset-huge"], env)
    assert result.exit_code == 0, result.output
    replayed = _replayed(s, "asset-huge")
    assert len(replayed) == 1
    assert replayed[0]["value"] == original  # byte-identical, 1 MiB of notes and all
    assert replayed[0]["headers"]["origin"] == b"bulk-import"


def test_letter_too_large_for_the_broker_keeps_its_original_in_a_folder(broker, unique, tmp_path):
    """The embedded run's kind of store. The letter is built inline (inline limit above the value) and refused
    by the producer; the runner then moves the original to the folder and keeps the first reason. An object
    changed in the store afterwards is refused at replay."""
    store = tmp_path / "originals"
    s = make_settings(broker, f"dlqdir{unique}", dead_letters={"store": str(store), "inline_max_bytes": 8_000_000})
    provision(s)
    original = _publish_oversize(s, broker, "asset-huge")

    letter = _dead_letter_and_keep_going(s, "asset-huge")
    assert letter["details"]["reason"] == "output_rejected"
    assert letter["original_value"] is None
    kept = Path(letter["original_value_ref"].removeprefix("file://"))
    assert kept.is_relative_to(store.resolve()) and kept.read_bytes() == original

    env = env_for(s)
    result = _cli(["dlq", "replay", "--asset", "asset-huge", "--json"], env)
    assert result.exit_code == 0, result.output
    assert _replayed(s, "asset-huge")[0]["value"] == original

    kept.write_bytes(original[:-1] + b"x")  # someone changed the kept object
    refused = _cli(["dlq", "replay", "--ref", "asset-huge"], env)
    assert refused.exit_code == 1
    said = " ".join(refused.stdout.split())  # the console wraps long lines
    assert "REFUSED" in said and "does not match the SHA-256" in said
    assert len(_replayed(s, "asset-huge")) == 1  # nothing more was sent


def test_without_a_store_the_cut_letter_keeps_its_reason_and_replay_refuses_it(broker, unique):
    s = make_settings(broker, f"dlqcut{unique}")
    provision(s)
    original = _publish_oversize(s, broker, "asset-huge")

    letter = _dead_letter_and_keep_going(s, "asset-huge")
    assert letter["details"]["reason"] == "output_rejected"
    assert len(letter["original_value"]) == 1024 and letter["original_value_size"] == len(original)
    assert "configure dead_letters.store" in letter["details"]["original_value_cut"]

    result = _cli(["dlq", "replay", "--asset", "asset-huge"], env_for(s))
    assert result.exit_code == 1
    said = " ".join(result.stdout.split())
    assert "REFUSED" in said and f"cut to 1024 of {len(original)} bytes" in said
    assert _replayed(s, "asset-huge", raw_records=2) == []


def test_a_store_that_cannot_take_the_original_holds_the_letter_until_it_can(broker, unique, tmp_path):
    """Nothing is cut while the store is down: the letter waits (its input uncommitted, the rest of the stream
    going on) and goes out whole, with its first reason, once the store takes the original."""
    from app.producer import AssetPublisher
    from tests.kafka_support import committed, wait_committed

    blocker = tmp_path / "originals"
    blocker.write_text("a file where the store's folder should be")  # the store cannot create its folder
    s = make_settings(broker, f"dlqdown{unique}", dead_letters={"store": str(blocker / "kept")})
    provision(s)
    original = _publish_oversize(s, broker, "asset-huge")
    with AssetPublisher(s) as pub:
        pub.publish_events([build_event("asset-small", "file:///library/small.jpg", version=1)])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        assert [r["key"] for r in read_topic(s, "preprocessed", 1)] == ["asset-small"]
        assert read_topic(s, "dead_letter", 1, timeout_s=4) == []  # held, not cut
        assert sum(committed(s, runner.group_id, "raw").values()) < 2
        blocker.unlink()  # the store is back
        dead = read_topic(s, "dead_letter", 1, timeout_s=30)
        assert wait_committed(s, runner.group_id, "raw", 2, timeout_s=20) == 2
    letter = dead[0]["value"]
    assert [d["key"] for d in dead] == ["asset-huge"] and letter["details"]["reason"] == "output_rejected"
    assert letter["original_value"] is None and letter["original_value_size"] == len(original)
    assert Path(letter["original_value_ref"].removeprefix("file://")).read_bytes() == original


def test_the_embedded_run_keeps_large_originals_in_its_output_folder(tmp_path):
    """`assetstream run` gives its workers a folder store next to its other output, unless one is configured."""
    import shutil as sh

    from app.embedded_run import EmbeddedRun
    from app.settings import Settings

    image = tmp_path / "a.jpg"
    for base, expected in ((None, str((tmp_path / "out" / "dead-letter-originals").resolve())),
                           (Settings().with_overrides(dead_letters={"store": "s3://kept/originals"}),
                            "s3://kept/originals")):
        run = EmbeddedRun([str(image)], out_dir=tmp_path / "out", bootstrap="127.0.0.1:9", es_url="http://127.0.0.1:9",
                          settings=base)
        try:
            assert run.configure([image]).dead_letters.store == expected
        finally:
            sh.rmtree(run.workdir, ignore_errors=True)


def test_s3_store_reads_back_only_its_own_objects(s3, unique, monkeypatch):
    """The S3 store on SeaweedFS: what it put comes back; a reference outside its bucket and prefix (another
    bucket, a sibling prefix, a `..` segment) is refused before any request; a missing object says its S3 code,
    never the credentials."""
    from streams.config.deadletters import DeadLetterSettings
    from streams.originals import OriginalUnavailable, open_store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    bucket = f"letters-{unique}"
    store = open_store(DeadLetterSettings(store=f"s3://{bucket}/kept/", s3_endpoint_url=s3.endpoint,
                                          s3_region="us-east-1"))
    assert store.uri == f"s3://{bucket}/kept"
    ref = store.put("dead_letter/raw/0/7-abc", b"\x00original bytes")
    assert ref == f"s3://{bucket}/kept/dead_letter/raw/0/7-abc" and store.get(ref) == b"\x00original bytes"
    for forged in (f"s3://other-{unique}/kept/dead_letter/raw/0/7-abc", f"s3://{bucket}/kept-too/x",
                   f"s3://{bucket}/kept/../secret", f"s3://{bucket}/kept", "file:///etc/passwd"):
        with pytest.raises(OriginalUnavailable, match="is not in the configured dead-letter store"):
            store.get(forged)
    with pytest.raises(OriginalUnavailable) as ei:
        store.get(f"s3://{bucket}/kept/dead_letter/raw/0/8-gone")
    assert "NoSuchKey (HTTP 404)" in str(ei.value) and s3.secret_key not in str(ei.value)
