"""One enrich plan for the stage and `backfill --only-stale`: right after a default (local provider) run nothing is
stale, and a prompt change re-runs exactly the task whose prompt changed, keeping the asset's other results."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from app.ops import cli as ops_cli
from consumers.index.sink import IndexSink
from consumers.validate.stage import ValidateStage
from domain import PROMPTS_DIR
from domain.store.management import read_alias
from streams import metrics
from tests.kafka_support import env_for, make_settings, provision, read_topic
from tests.store_support import as_items, settings_for
from tests.test_enrich_stage import enrich_values, jpeg, preprocessed

pytest.importorskip("consumers.enrich.providers.local")

IDS = ("plan-a", "plan-b")


def _requests(task: str) -> float:
    return sum(s.value for m in metrics.LLM_REQUESTS.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("task") == task)


def _only_stale(env: dict, manifest, state, *extra: str) -> dict:
    r = CliRunner().invoke(ops_cli.app, ["backfill", str(manifest), "--only-stale", "--json", "--rate", "100",
                                         "--state", str(state), *extra], env=env)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_default_run_is_current_and_a_prompt_change_reruns_only_that_task(broker, unique, store, tmp_path):  # noqa: F811
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, prompts)
    s = make_settings(broker, f"plan{unique}")
    provision(s)
    idx = settings_for(store.url)
    s = s.with_overrides(index=idx.index.model_dump(mode="json"),
                         enrich={"provider": "local", "dedupe": "elasticsearch", "prompts_dir": str(prompts)})

    # a default run: the local provider enriches, validate decides, the sink indexes
    pre = [preprocessed(a, data=jpeg(i * 7, size=(224, 224)), phash=("c3a5f00f0ff0a53c", "1f2e3d4c5b6a7988")[i])
           for i, a in enumerate(IDS)]
    enriched = enrich_values(s, *pre)
    validate = ValidateStage(s)
    sink = IndexSink(s)
    try:
        assert sink.process_batch(as_items([validate.process(e).value for e in enriched])) == [None, None]
        sink.client.indices.refresh(index=read_alias(sink.cfg))
    finally:
        sink.close()

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"uri": f"https://cdn.example.com/{a}.jpg", "asset_id": a}) + "\n" for a in IDS))
    env = {**env_for(s), "ASSETSTREAM_INDEX__URL": store.url, "ASSETSTREAM_INDEX__INDEX": idx.index.index,
           "ASSETSTREAM_INDEX__SERVER_MODE": "serverless", "ASSETSTREAM_ENRICH__PROVIDER": "local",
           "ASSETSTREAM_ENRICH__PROMPTS_DIR": str(prompts)}
    summary = _only_stale(env, manifest, tmp_path / "state1", "--dry-run")
    assert summary["stale"] == {} and summary["skipped_current"] == 2 and summary["planned_ids"] == []

    # the editor of the prompts publishes alt_text v2: only alt_text is stale, and only it is re-run
    v1 = (prompts / "alt_text" / "v1.md").read_text()
    (prompts / "alt_text" / "v2.md").write_text(
        v1.replace("version: v1", "version: v2").replace("<!-- system -->\n", "<!-- system -->\nUse plain words.\n"))
    shutil.copy(prompts / "alt_text" / "v1.schema.json", prompts / "alt_text" / "v2.schema.json")
    summary = _only_stale({**env, "ASSETSTREAM_ENRICH__PROMPT_VERSIONS": '{"alt_text": "v2"}'}, manifest,
                          tmp_path / "state2")
    assert sorted(summary["published_ids"]) == sorted(IDS)
    assert all(len(r) == 1 and r[0].startswith("alt_text: prompt") for r in summary["stale"].values()), summary

    events = {r["key"]: r["value"] for r in read_topic(s, "raw", 2)}
    assert {e["event_type"] for e in events.values()} == {"reprocess"}

    s2 = s.with_overrides(enrich={"prompt_versions": {"alt_text": "v2"}})
    before = {t: _requests(t) for t in ("tagging", "alt_text", "rights")}
    # the reprocess events through preprocess again: the same image and metadata, a new event id and version
    again = enrich_values(s2, *[{**p, "asset": {**p["asset"], **{k: events[p["asset"]["asset_id"]][k]
                                                          for k in ("event_id", "event_type", "version")}}}
                         for p in pre])
    spent = {t: _requests(t) - before[t] for t in before}
    assert spent == {"tagging": 0, "alt_text": 2, "rights": 0}
    for old, new in zip(enriched, again):
        old_prov = {p["task"]: p for p in old["provenance"]}
        new_prov = {p["task"]: p for p in new["provenance"]}
        assert new_prov["alt_text"]["prompt_version"] == "v2"
        for task in ("tagging", "rights"):  # the cached answers, with the provenance of the call that paid for them
            assert new_prov[task]["prompt_hash"] == old_prov[task]["prompt_hash"]
            assert new_prov[task]["timestamp"] == old_prov[task]["timestamp"]
            assert new_prov[task]["reused_from"] == old["pre"]["asset"]["asset_id"] and new_prov[task]["cost_usd"] == 0
        assert new["enrichment"]["tags"] == old["enrichment"]["tags"]
        assert new["enrichment"]["licensing"] == old["enrichment"]["licensing"]
