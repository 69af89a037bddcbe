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
from streams.avro import TOPIC_RECORDS, Serde, parsed_schema, schema_path

HISTORY = sorted((AVRO_DIR / "history").iterdir())
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


@pytest.mark.parametrize("version_dir", HISTORY, ids=lambda p: p.name)
@pytest.mark.parametrize("record", RECORDS)
def test_current_schema_reads_data_written_by_released_version(version_dir: Path, record: str):
    old_path = version_dir / f"io.assetstream.{record}.avsc"
    if not old_path.exists():
        pytest.skip(f"{record} did not exist in {version_dir.name}")
    old = load_schema(str(old_path), _write_hint=False)
    new = parsed_schema(record)
    data = list(generate_many(old, 25))
    read = write_read(old, new, data)
    assert len(read) == 25
    top_fields = {f["name"] for f in json.loads(old_path.read_text())["fields"]}
    for before, after in zip(data, read):
        for name in top_fields & {f["name"] for f in new["fields"]}:
            a, b = comparable(before[name]), comparable(after[name])
            if a is not SKIP:
                assert a == b, (record, name)


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
    """The check above can fail: a new required field without a default cannot read old data."""
    old = parsed_schema("AssetEvent")
    broken = copy.deepcopy(old)
    broken["fields"].append({"name": "new_required", "type": "string"})
    data = list(generate_many(old, 3))
    with pytest.raises(SchemaResolutionError):
        write_read(old, fastavro.parse_schema(broken), data)


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
    assert ours.startswith("assetstream ") and re.search(r", contracts [0-9a-f]{8}\)$", ours), ours
    assert ours != theirs and ours.split(", contracts ")[0] == theirs.split(", contracts ")[0]
    review.write_text((AVRO_DIR / review.name).read_text())
    assert version(changed) == ours  # the same texts elsewhere (another install): the same digest
