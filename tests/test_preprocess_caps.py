"""Preprocess caps what it carries forward (issue 22): an event that did not come through the SDK or the webhook
(no entry caps) with 1 MiB of notes used to make the `preprocessed` output exceed the broker's limit and be
dead-lettered; it is now processed with its text cut to the entry limits (domain/events.py), marked `degraded`
(validate sends it to review saying so), and the input record itself stays as read."""
from __future__ import annotations

import copy
from pathlib import Path

from confluent_kafka import Producer

from domain.events import MAX_KEYWORDS, MAX_LONG_TEXT, MAX_TEXT
from streams.avro import Serde
from tests.preprocess_support import event, stage

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
POSTER = SAMPLES / "poster_farmers_market.jpg"


def oversize(asset_id: str = "poster") -> dict:
    value = event(POSTER.as_uri(), asset_id=asset_id)
    value["uploader_notes"] = "n" * (1024 * 1024)
    value["uploader"] = "u" * 10_000
    value["human_fields"] = {"title": "T" * 9000, "alt_text": None, "caption": None, "description": None,
                             "keywords": ["kw"] * 500, "creator": None, "credit_line": None, "copyright": None}
    return value


def test_over_long_event_text_is_cut_to_the_entry_limits_and_marked():
    st = stage(file_roots=[str(SAMPLES)], ocr_enabled=False)
    value = oversize()
    before = copy.deepcopy(value)
    rec = st.process(value, None).value
    assert value == before  # the input as read is never changed
    asset = rec["asset"]
    assert asset["uploader_notes"] == "n" * MAX_LONG_TEXT and asset["uploader"] == "u" * MAX_TEXT
    assert asset["human_fields"]["title"] == "T" * MAX_TEXT
    assert asset["human_fields"]["keywords"] == ["kw"] * MAX_KEYWORDS
    assert rec["degraded"] == {"event_text": "over-long text cut to the entry limits: human_fields.keywords, "
                                             "human_fields.title, uploader, uploader_notes"}
    assert rec["image"]["width"] > 0  # and the image was processed as usual


def test_an_event_within_the_limits_is_carried_forward_as_read():
    st = stage(file_roots=[str(SAMPLES)], ocr_enabled=False)
    value = event(POSTER.as_uri())
    value["uploader_notes"] = "n" * MAX_LONG_TEXT
    rec = st.process(value, None).value
    assert rec["asset"] is value and "event_text" not in rec["degraded"]


def test_a_1_mib_notes_event_is_preprocessed_not_dead_lettered(broker, unique):
    from consumers.preprocess.stage import PreprocessStage
    from streams.runner import StageRunner
    from tests.kafka_support import RunnerThread, make_settings, provision, read_to_end, read_topic

    s = make_settings(broker, f"caps{unique}", runner={"concurrency": 1},
                      preprocess={"file_roots": [str(SAMPLES)], "ocr_enabled": False})
    provision(s)
    p = Producer({"bootstrap.servers": broker, "message.max.bytes": 4_000_000})  # a producer without the caps
    p.produce(s.topics.name("raw"), key=b"poster", value=Serde.for_settings(s).serialize("raw", oversize()))
    assert p.flush(10) == 0
    with RunnerThread(StageRunner(PreprocessStage(s), s)):
        (out,) = read_topic(s, "preprocessed", 1, timeout_s=60)
    assert out["key"] == "poster" and len(out["value"]["asset"]["uploader_notes"]) == MAX_LONG_TEXT
    assert "uploader_notes" in out["value"]["degraded"]["event_text"]
    assert read_to_end(s, "dead_letter") == []
