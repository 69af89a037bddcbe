"""The validate consumer group on the real broker: enriched records in, decisions on `validated`, schema
violations on the dead-letter topic with their failing paths (schema_violation=dead_letter)."""
from __future__ import annotations

import json

from confluent_kafka import Producer

from consumers.validate.stage import ValidateStage
from streams.avro import Serde
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic
from tests.validate_support import enriched_asset


def test_validate_group_end_to_end(broker, unique):
    s = make_settings(broker, f"val{unique}", validate={"schema_violation": "dead_letter"})
    provision(s)
    serde = Serde.for_settings(s)
    records = {
        "asset-auto": enriched_asset(asset_id="asset-auto"),
        "asset-faces": enriched_asset(asset_id="asset-faces", face_count=3),
        "asset-human": enriched_asset(asset_id="asset-human", human_fields={"alt_text": "Set by the DAM team"}),
        "asset-gone": enriched_asset(asset_id="asset-gone", event_type="deleted"),
        "asset-bad": enriched_asset(asset_id="asset-bad", enrich={"tags": [{"tag": "color:red", "score": 3.0}]}),
    }
    p = Producer({"bootstrap.servers": broker})
    for key, value in records.items():
        p.produce(s.topics.name("enriched"), key=key.encode(), value=serde.serialize("enriched", value))
    p.flush(10)

    with RunnerThread(StageRunner(ValidateStage(s), s)):
        out = read_topic(s, "validated", 4)
        dead = read_topic(s, "dead_letter", 1)

    by_key = {r["key"]: r["value"] for r in out}
    assert set(by_key) == {"asset-auto", "asset-faces", "asset-human", "asset-gone"}
    assert by_key["asset-auto"]["status"] == "auto_applied"
    assert by_key["asset-auto"]["reasons"][0] == "confidence 0.92 >= 0.85"
    assert by_key["asset-faces"]["status"] == "needs_review"
    assert by_key["asset-faces"]["reasons"][0] == "3 faces detected: people in image need consent review"
    assert by_key["asset-human"]["alt_text"] == "Set by the DAM team"
    assert by_key["asset-human"]["field_sources"]["alt_text"] == "human"
    assert by_key["asset-gone"]["status"] == "deleted"
    assert all(v["taxonomy_version"] == "v2" for v in by_key.values())
    status_header = {r["key"]: r["headers"].get("assetstream-status") for r in out}
    assert status_header["asset-faces"] == b"needs_review"

    assert [d["key"] for d in dead] == ["asset-bad"]
    letter = dead[0]["value"]
    assert letter["stage"] == "validate" and letter["error_class"] == "permanent"
    assert "$.tags[0].score" in letter["details"]["failing_paths"]
    assert "maximum" in json.dumps(letter["details"])
