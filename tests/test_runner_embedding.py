"""Stage.embeds_input: the runner copies the input record's Avro bytes into the output instead of encoding that
part again. On the real broker: outputs are exact, an older writer schema is never copied, and a stage that
breaks its promise still gets correct output."""
from __future__ import annotations

import io
import json
import logging

import fastavro
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema

from streams.avro import Serde, schema_json
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic
from tests.stages import EchoStage
from tests.test_runner import ev, publish


class ChangesItsInput(EchoStage):
    """Breaks the embeds_input promise: edits the input in place, then embeds it."""

    name = "changer"

    def process(self, value, ctx):
        value["uploader"] = "edited-in-place"
        value["attributes"]["seen"] = "yes"
        return super().process(value, ctx)


def test_outputs_built_around_the_input_bytes_are_exact(broker, unique):
    s = make_settings(broker, f"embed{unique}")
    provision(s)
    events = [ev(i, note="x" * i) for i in range(20)]
    events[3]["product_context"] = {"sku": "SKU-3", "category": "mugs", "name": "Red mug", "brand": None}
    events[4]["human_fields"] = {"title": "T", "alt_text": "A", "caption": None, "description": None,
                                 "keywords": ["k1", "k2"], "creator": "C", "credit_line": None, "copyright": None}
    events[5]["uploader_notes"] = "ünïcødé notes ✓"
    publish(s, events)
    with RunnerThread(StageRunner(EchoStage(s), s)):
        raw_out = read_topic(s, "preprocessed", 20, decode=False)
    serde = Serde.for_settings(s)
    by_key = {e["asset_id"]: e for e in events}
    assert len(raw_out) == 20
    for r in raw_out:
        value = serde.deserialize("preprocessed", r["value"])
        # byte for byte what encoding the whole record would give
        assert serde.serialize("preprocessed", value) == r["value"], r["key"]
        sent = by_key[r["key"]]
        got = value["asset"]
        for field in ("event_id", "source_uri", "product_context", "human_fields", "uploader_notes", "attributes",
                      "version"):
            assert got[field] == sent[field], (r["key"], field)
        assert value["stamp"]["stage"] == "echo"


def test_a_record_written_with_an_older_schema_is_encoded_not_copied(broker, unique):
    s = make_settings(broker, f"embedold{unique}")
    provision(s)
    raw_topic = s.topics.name("raw")
    older = json.loads(schema_json("AssetEvent"))
    older["fields"] = [f for f in older["fields"] if f["name"] not in ("attributes", "human_fields")]
    serde = Serde.for_settings(s)
    older_id = serde.client.register_schema(f"{raw_topic}-value", Schema(json.dumps(older), "AVRO"))
    event = ev(7)
    buf = io.BytesIO()
    buf.write(b"\x00" + older_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(older), event)
    p = Producer({"bootstrap.servers": broker})
    p.produce(raw_topic, key=event["asset_id"].encode(), value=buf.getvalue())
    p.flush(10)
    with RunnerThread(StageRunner(EchoStage(s), s)):
        out = read_topic(s, "preprocessed", 1)
    asset = out[0]["value"]["asset"]
    assert asset["event_id"] == event["event_id"] and asset["version"] == event["version"]
    assert asset["attributes"] == {} and asset["human_fields"] is None  # the reader's defaults, resolved
    assert out[0]["value"]["stamp"]["stage"] == "echo"


def test_a_stage_that_changes_its_input_still_gets_correct_output(broker, unique, caplog):
    s = make_settings(broker, f"embedbad{unique}", runner={"concurrency": 1})
    provision(s)
    publish(s, [ev(i) for i in range(5)])
    with caplog.at_level(logging.ERROR, logger="assetstream.runner"):
        with RunnerThread(StageRunner(ChangesItsInput(s), s)):
            out = read_topic(s, "preprocessed", 5)
    assert len(out) == 5
    for r in out:
        assert r["value"]["asset"]["uploader"] == "edited-in-place", r["key"]
        assert r["value"]["asset"]["attributes"] == {"seen": "yes"}, r["key"]
    assert any("differs from the input as read" in rec.getMessage() for rec in caplog.records)
