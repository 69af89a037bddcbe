"""The model-result cache through the real search store and the Claude adapter against recorded responses in the
real wire format: the same question is never paid twice, whatever the event; a changed input re-asks exactly the
tasks that see it; another worker shares the answers; a store that does not answer costs calls, never a stall."""
from __future__ import annotations

import copy
import time
import uuid

from app.settings import Settings
from consumers.enrich.replay import ReplayServer
from tests.store_support import index_row
from tests.test_enrich_stage import KEY, enrich_values, preprocessed, script_ok


def _settings(url: str, store_url: str, index: str, **enrich) -> Settings:
    return Settings().with_overrides(
        index={"url": store_url, "server_mode": "serverless", "number_of_replicas": 0, "index": index,
               "request_timeout_s": 2.0},
        enrich={"provider": "claude", "anthropic_api_key": KEY, "anthropic_base_url": url, "dedupe": "off",
                "result_cache": "store", "max_attempts": 1, "request_timeout_s": 5.0, **enrich})


def _update(value: dict, **asset) -> dict:
    v = copy.deepcopy(value)
    v["asset"].update({"event_type": "updated", "event_id": uuid.uuid4().hex, "version": v["asset"]["version"] + 1,
                       **asset})
    return v


def test_the_same_question_is_paid_once(store):  # noqa: F811
    index = f"cache-{uuid.uuid4().hex[:6]}"
    with ReplayServer() as srv:
        script_ok(srv)
        s = _settings(srv.url, store.url, index)
        original = preprocessed("c1")
        (first,) = enrich_values(s, original)
        assert srv.count() == 3 and first["cost_usd"] > 0
        # trial 26 F6: the cache index has the replica count configured for the assets index (0 here, a one-node
        # store): `_cat/indices` showed it yellow (1 replica that can never be placed) next to green assets indexes
        row = index_row(s, f"{index}-results")
        assert (row["rep"], row["health"]) == ("0", "green"), row

        # another worker (a fresh stage): a metadata-only update that changes no task's input, a replay of the
        # very same event, and a byte-identical copy under another id: no model call at all
        same, replay, copy_ = enrich_values(s, _update(original, uploader="someone-else"), original,
                                   {**copy.deepcopy(original), "asset": {**original["asset"], "asset_id": "c1-copy"}})
        assert srv.count() == 3
        for out in (same, replay, copy_):
            assert out["cost_usd"] == 0.0 and out["enrichment"]["alt_text"] == first["enrichment"]["alt_text"]
            assert {p["reused_from"] for p in out["provenance"]} == {"c1"}
            assert [p["request_id"] for p in out["provenance"]] == [p["request_id"] for p in first["provenance"]]

        # the declared licence is shown to the rights prompt only: exactly one new call
        (relicensed,) = enrich_values(s, _update(original, declared_license="All rights reserved"))
        assert srv.count() == 4
        provs = {p["task"]: p for p in relicensed["provenance"]}
        assert provs["rights"]["reused_from"] is None and provs["rights"]["cost_usd"] > 0
        assert provs["tagging"]["reused_from"] == provs["alt_text"]["reused_from"] == "c1"

        # another model for tagging: only tagging is asked again
        (other_model,) = enrich_values(_settings(srv.url, store.url, index, models={"tagging": "claude:claude-sonnet-4-6"}),
                              original)
        assert srv.count() == 5
        assert {p["task"] for p in other_model["provenance"] if p["reused_from"] is None} == {"tagging"}


def test_a_store_that_does_not_answer_costs_calls_not_a_stall():
    with ReplayServer() as srv:
        script_ok(srv)
        s = _settings(srv.url, "http://127.0.0.1:9", f"cache-{uuid.uuid4().hex[:6]}")
        started = time.monotonic()
        a, b = enrich_values(s, preprocessed("d1"), _update(preprocessed("d1")))
        assert srv.count() == 6 and a["cost_usd"] > 0 and b["cost_usd"] > 0
        assert time.monotonic() - started < 20


def test_local_answers_cached_before_a_rules_change_are_asked_again(store):  # noqa: F811
    """The local provider's answers come from its rules as much as from its models: a worker whose rules answer
    differently (another `answer_revision`, as after an upgrade) asks again instead of serving the old answers
    from the cache; the same rules reuse them. A cloud provider has no revision: its keys do not change."""
    from consumers.enrich.calling import ModelSpec
    from consumers.enrich.providers.local import LocalProvider
    from consumers.enrich.results import result_key
    from consumers.enrich.stage import EnrichStage
    from tests.test_enrich_providers import prompt
    from tests.test_enrich_stage import run_stage

    index = f"cache-local-{uuid.uuid4().hex[:6]}"
    s = Settings().with_overrides(
        index={"url": store.url, "server_mode": "serverless", "number_of_replicas": 0, "index": index},
        enrich={"provider": "local", "dedupe": "off", "result_cache": "store"})
    value = preprocessed("l1")

    def provenance(revision: str | None) -> list[dict]:
        stage = EnrichStage(s)
        if revision is not None:  # what another release of the rules would carry
            stage.providers["local"].answer_revision = revision
        (out,) = run_stage(stage, value)
        return out.value["provenance"]

    first = provenance(None)
    assert {p["reused_from"] for p in first} == {None}
    assert {p["reused_from"] for p in provenance(None)} == {"l1"}  # same rules: from the cache
    assert {p["reused_from"] for p in provenance(LocalProvider.answer_revision + "-next")} == {None}

    pr = prompt("tagging")
    cloud = ModelSpec("claude", "claude-haiku-4-5")
    assert result_key("tagging", cloud, pr, b"img") == result_key("tagging", cloud, pr, b"img", (), "")
    local = ModelSpec("local", "local/efficientnet-lite0+nanodet+minilm")
    assert result_key("tagging", local, pr, b"img", (), "a") != result_key("tagging", local, pr, b"img", (), "b")
