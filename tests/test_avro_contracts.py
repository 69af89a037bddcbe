"""The Avro contracts: every topic schema loads, round-trips, and reads data written by every released
version (fastavro schema resolution), so evolving a schema never breaks a running fleet."""
from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import fastavro
from fastavro.read import SchemaResolutionError
import pytest
from fastavro.schema import load_schema
from fastavro.utils import generate_many

from streams import AVRO_DIR
from streams.avro import TOPIC_RECORDS, Serde, parsed_schema, schema_json, schema_path

HISTORY = sorted((AVRO_DIR / "history").iterdir(), key=lambda p: int(p.name.lstrip("v")))  # v2 before v10
RECORDS = sorted({p.name.split(".")[-2] for p in AVRO_DIR.glob("io.assetstream.*.avsc")})


def write_read(writer: dict, reader: dict, records: list[dict]) -> list[dict]:
    out = []
    for rec in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, rec)
        buf.seek(0)
        out.append(fastavro.schemaless_reader(buf, writer, reader))
    return out


def test_every_topic_has_a_schema():
    for logical, record in TOPIC_RECORDS.items():
        assert schema_path(record).exists(), f"topic {logical} has no schema {record}"


def released(version_dir: Path, record: str) -> dict:
    old_path = version_dir / f"io.assetstream.{record}.avsc"
    if not old_path.exists():
        pytest.skip(f"{record} did not exist in {version_dir.name}")
    return load_schema(str(old_path), _write_hint=False)


KNOWN_FORWARD_BREAKS = {
    ("v1", "AuditEntry"): "AuditKind writeback_conflict (377fb2f) is a symbol v1 does not know and v1's enum has "
                          "no default: a v1 reader cannot read such an audit entry",
}
"""Released versions that cannot read what the current schema writes; a new entry needs a reason, and never for
the latest snapshot (test_a_change_the_latest_release_cannot_read_is_caught)."""


def assert_reads(writer: dict, reader: dict, record: str) -> None:
    """25 random records written with `writer` read with `reader` (fastavro schema resolution), and the
    top-level fields both have come out as written; an enum symbol the reader does not know comes out as the
    reader's enum default (Avro's rule: ValidatedAsset.status `approved` is `needs_review` to a v1 reader)."""
    data = list(generate_many(writer, 25))
    read = write_read(writer, reader, data)
    assert len(read) == 25
    readers = {f["name"]: f["type"] for f in reader["fields"]}
    for before, after in zip(data, read):
        for name in {f["name"] for f in writer["fields"]} & readers.keys():
            a, b = comparable(before[name]), comparable(after[name])
            kind = readers[name]
            if isinstance(kind, dict) and kind.get("type") == "enum" and a not in kind["symbols"]:
                a = kind["default"]
            if a is not SKIP:
                assert a == b, (record, name)


@pytest.mark.parametrize("version_dir", HISTORY, ids=lambda p: p.name)
@pytest.mark.parametrize("record", RECORDS)
def test_current_schema_reads_data_written_by_released_version(version_dir: Path, record: str):
    """BACKWARD: upgraded consumers read what the old release's producers wrote (in the topics at the switch)."""
    assert_reads(released(version_dir, record), parsed_schema(record), record)


@pytest.mark.parametrize("version_dir", HISTORY, ids=lambda p: p.name)
@pytest.mark.parametrize("record", RECORDS)
def test_released_version_reads_data_written_by_current_schema(version_dir: Path, record: str):
    """FORWARD: after a rollback the old release's consumers read what the new producers wrote; and a consumer
    not upgraded yet reads a new producer's records."""
    if (version_dir.name, record) in KNOWN_FORWARD_BREAKS:
        pytest.xfail(KNOWN_FORWARD_BREAKS[version_dir.name, record])
    assert_reads(parsed_schema(record), fastavro.parse_schema(released(version_dir, record)), record)


def _without_docs(node):
    if isinstance(node, dict):
        return {k: _without_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [_without_docs(v) for v in node]
    return node


def test_the_current_contracts_are_snapshotted_in_history():
    """Every contract change comes with its history/vN (avro/README.md), so the two tests above check it
    against every earlier one in both directions; doc lines aside, the latest snapshot is the current
    contracts. Trial 21: history held only v1 while ten contract changes had landed since."""
    latest = HISTORY[-1]
    snapshot = {p.name: _without_docs(json.loads(p.read_text())) for p in latest.glob("*.avsc")}
    current = {p.name: _without_docs(json.loads(p.read_text())) for p in AVRO_DIR.glob("*.avsc")}
    differ = sorted(n for n in snapshot.keys() | current.keys() if snapshot.get(n) != current.get(n))
    nxt = f"v{int(latest.name.lstrip('v')) + 1}"
    assert not differ, (f"contracts changed since history/{latest.name}: {differ}; snapshot them: "
                        f"cd avro && mkdir history/{nxt} && cp *.avsc history/{nxt}/")


SKIP = object()


def comparable(value):
    """Primitive values as written; floats (float32 rounding) and containers are not compared."""
    import datetime as dt

    from streams.records import to_ms
    if isinstance(value, dt.datetime):
        return to_ms(value)
    if isinstance(value, (float, dict, list)):
        return SKIP
    return value


def test_an_incompatible_change_is_caught():
    """The BACKWARD check can fail: a new required field without a default cannot read old data."""
    old = parsed_schema("AssetEvent")
    broken = copy.deepcopy(old)
    broken["fields"].append({"name": "new_required", "type": "string"})
    with pytest.raises(SchemaResolutionError):
        assert_reads(old, fastavro.parse_schema(broken), "AssetEvent")


def test_a_change_the_latest_release_cannot_read_is_caught():
    """The FORWARD check can fail: a required field removed (the old reader has no default for it) or an int
    widened to long is fine for the new schema reading old data, but the latest snapshot cannot read it."""
    snapshot = released(HISTORY[-1], "DeadLetter")
    for field, change in (("message", None), ("original_partition", "long")):
        new = json.loads(schema_json("DeadLetter"))
        new["fields"] = [dict(f, type=change) if f["name"] == field else f
                         for f in new["fields"] if change or f["name"] != field]
        writer = fastavro.parse_schema(new)
        assert_reads(snapshot, writer, "DeadLetter")  # BACKWARD still holds
        with pytest.raises(SchemaResolutionError):
            assert_reads(writer, fastavro.parse_schema(snapshot), "DeadLetter")


def test_records_roundtrip_in_the_confluent_wire_format():
    names = {logical: f"contract.{logical}" for logical in TOPIC_RECORDS}
    serde = Serde({"url": "mock://contracts"}, names)
    for logical, record in TOPIC_RECORDS.items():
        for value in generate_many(parsed_schema(record), 5):
            data = serde.serialize(logical, value)
            assert data[0] == 0  # magic byte, then a 4-byte schema id
            assert serde.deserialize(logical, data) is not None


def test_wire_format_interoperates_with_confluent_kafka_serde():
    """What assetstream writes, confluent-kafka's AvroDeserializer reads, and the other way round."""
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from streams.avro import schema_json
    from app.producer import build_event

    names = {logical: f"interop.{logical}" for logical in TOPIC_RECORDS}
    serde = Serde({"url": "mock://interop"}, names)
    ctx = SerializationContext(names["raw"], MessageField.VALUE)
    event = build_event("asset-1", "https://cdn.example.com/a.jpg", version=7, declared_license="CC-BY-4.0",
                        product_context={"sku": "SKU-9", "category": "shoes"})
    theirs = AvroDeserializer(serde.client, schema_json("AssetEvent"))(serde.serialize("raw", event), ctx)
    assert theirs["asset_id"] == "asset-1" and theirs["product_context"]["sku"] == "SKU-9"
    written = AvroSerializer(serde.client, schema_json("AssetEvent"))(event, ctx)
    ours = serde.deserialize("raw", written)
    assert ours["version"] == 7 and ours["declared_license"] == "CC-BY-4.0"
    assert written[:5] == serde.serialize("raw", event)[:5]  # the same registered schema id



def test_version_names_the_contracts_so_two_releases_can_be_told_apart(tmp_path):
    """Trial 21: two releases with different contracts both printed `assetstream 0.1.0 (pipeline 2026.11.1)`.
    `--version` names a digest of the contract texts: a doc line changed is another digest."""
    import os
    import shutil
    import subprocess
    import sys

    def version(avro_dir: Path) -> str:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
               "ASSETSTREAM_AVRO_DIR": str(avro_dir)}
        done = subprocess.run([sys.executable, "-m", "app.cli", "--version"], capture_output=True, text=True,
                              env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    changed = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, changed, ignore=shutil.ignore_patterns("history"))
    review = changed / "io.assetstream.HumanReview.avsc"
    review.write_text(review.read_text().replace('"doc": "', '"doc": "Edited. ', 1))
    ours, theirs = version(AVRO_DIR), version(changed)
    assert ours.startswith("assetstream ") and re.search(r", contracts [0-9a-f]{8}, ", ours), ours
    assert ours != theirs and ours.split(", contracts ")[0] == theirs.split(", contracts ")[0]
    review.write_text((AVRO_DIR / review.name).read_text())
    assert version(changed) == ours  # the same texts elsewhere (another install): the same digest
