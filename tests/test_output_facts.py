"""What the runtime learns from a stage instead of reading record shapes (Stage.output_facts, content_id):
the idempotency-key header and the event time are exactly what the runner computed from the records before."""
from __future__ import annotations

import hashlib
from typing import Any

import pytest

from consumers.enrich.stage import EnrichStage
from consumers.index.sink import IndexSink
from consumers.preprocess.stage import PreprocessStage
from consumers.validate.stage import ValidateStage
from streams import PIPELINE_VERSION
from domain.records import PipelineFacts, asset_of
from streams.records import to_ms
from app.settings import Settings
from streams.stage import Output, OutputFacts, Stage
from streams.work import Record, RecordWork
from tests.store_support import deleted_asset, validated_asset


def legacy_idempotency_key(key: str, out_value: dict[str, Any] | None, in_value: dict[str, Any]) -> str:
    """The header as the runner computed it before stages supplied the facts (walking pipeline records)."""
    try:
        asset = asset_of(in_value)
    except (KeyError, TypeError):
        asset = {}
    content, node = None, out_value
    while isinstance(node, dict) and content is None:
        content = (node.get("hashes") or {}).get("sha256")
        node = node.get("pre") or node.get("enriched")
    version = asset.get("version") if asset else None
    return hashlib.sha256(f"{key}|{content or '-'}|{PIPELINE_VERSION}|{version}".encode()).hexdigest()[:32]


def settings() -> Settings:
    return Settings.model_validate({"registry": {"url": "mock://output-facts-tests"}})


def hop(stage_cls: type, input_topic: str, output_topic: str | None) -> Stage:
    """A stage on one hop of the pipeline with the hooks of `stage_cls` (building the shipped stages needs
    models, providers or a store; the hooks need none of that)."""
    cls = type(f"{stage_cls.__name__}Hop", (Stage,), {
        "name": "facts", "input_topic": input_topic, "output_topic": output_topic,
        "output_facts": stage_cls.output_facts, "content_id": stage_cls.content_id})
    return cls(settings())


def worked(stage: Stage, in_value: dict[str, Any], out_value: dict[str, Any] | None, key: str = "asset-1"):
    rec = Record("in", 0, 7, key.encode(), b"", [], None)
    outputs = Output(value=out_value) if out_value is not None else None
    return RecordWork(stage, settings()).success(rec, in_value, outputs, "trace")


@pytest.mark.parametrize("stage_cls", [PreprocessStage, EnrichStage, ValidateStage, IndexSink])
def test_every_shipped_stage_supplies_the_pipeline_facts(stage_cls):
    assert issubclass(stage_cls, PipelineFacts)
    assert stage_cls.output_facts is PipelineFacts.output_facts
    assert stage_cls.content_id is PipelineFacts.content_id


@pytest.mark.parametrize("make", [validated_asset, deleted_asset], ids=["created", "deleted"])
def test_headers_and_event_time_are_byte_for_byte_what_the_runner_computed(make):
    v = make("asset-1", 3)
    enriched, pre = v["enriched"], v["enriched"]["pre"]
    raw = pre["asset"]
    hops = [(PreprocessStage, "raw", "preprocessed", raw, pre), (EnrichStage, "preprocessed", "enriched", pre, enriched),
            (ValidateStage, "enriched", "validated", enriched, v)]
    for stage_cls, src, dst, in_value, out_value in hops:
        res = worked(hop(stage_cls, src, dst), in_value, out_value)
        headers = dict(res.outputs[0][3])
        assert headers["idempotency-key"] == legacy_idempotency_key("asset-1", out_value, in_value).encode(), src
        assert res.event_time_ms == to_ms(raw["event_time"]) and res.event_time_ms > 0, src
    sink = worked(hop(IndexSink, "validated", None), v, None)
    assert sink.outputs == [] and sink.event_time_ms == to_ms(raw["event_time"])


def test_the_content_hash_is_found_at_every_depth_and_the_version_changes_the_key():
    v = validated_asset("asset-9", 2)
    sha = v["enriched"]["pre"]["hashes"]["sha256"]
    facts = PipelineFacts()
    assert [facts.content_id(x) for x in (v["enriched"]["pre"], v["enriched"], v)] == [sha, sha, sha]
    assert facts.content_id(None) is None and facts.content_id({"asset": {}}) is None
    assert facts.output_facts(v) == OutputFacts(to_ms(v["enriched"]["pre"]["asset"]["event_time"]), 2)
    assert facts.output_facts({"not": "a pipeline record"}) == OutputFacts(None, None)
    stage = hop(ValidateStage, "enriched", "validated")
    newer = validated_asset("asset-9", 3)
    keys = {dict(worked(stage, x["enriched"], x).outputs[0][3])["idempotency-key"] for x in (v, newer)}
    assert len(keys) == 2


def test_a_stage_without_the_hooks_gets_neutral_facts_and_stable_keys():
    stage = Stage(settings())
    stage.input_topic, stage.output_topic = "raw", "preprocessed"
    pre = validated_asset("asset-2")["enriched"]["pre"]
    first = worked(stage, pre["asset"], pre, key="asset-2")
    again = worked(stage, pre["asset"], pre, key="asset-2")
    key = dict(first.outputs[0][3])["idempotency-key"]
    assert key == dict(again.outputs[0][3])["idempotency-key"]
    assert key == hashlib.sha256(f"asset-2|-|{PIPELINE_VERSION}|None".encode()).hexdigest()[:32].encode()
    assert first.event_time_ms is None
