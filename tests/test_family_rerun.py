"""The trial's repros through the real stages (issues 15 item 4, 17 item 4): byte copies of one photo
(tests/data/quality/images/cup_on_white.jpg) go through the real EnrichStage (its store-backed dedupe on a real
osmem-server, Claude answers replayed at the HTTP layer), the real ValidateStage and the real IndexSink, as
`assetstream run DIR` does:
- copies enriched at the same moment (neither finds the other) end in one family;
- a rerun (newer versions, fresh workers: each copy finds the other, already indexed) makes no duplicate_of loop
  and changes no family, in either order;
- the canonical member's review reasons do not call it a duplicate of its own copy."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consumers.enrich.replay import ReplayServer
from consumers.enrich.stage import EnrichStage
from consumers.index.sink import IndexSink
from consumers.validate.stage import ValidateStage
from domain.store.management import read_alias
from tests.store_support import as_items, settings_for
from tests.test_enrich_stage import KEY, ctx, preprocessed, script_ok

pytestmark = pytest.mark.timeout(300)

CUP = (Path(__file__).parent / "data" / "quality" / "images" / "cup_on_white.jpg").read_bytes()
FIELDS = ("family_id", "family_size", "family_canonical", "duplicate_of", "duplicate_distance")


def pre(aid: str, version: int) -> dict:
    v = preprocessed(aid, data=CUP, ocr="")
    v["asset"]["version"] = version
    v["asset"]["event_time"] += version
    return v


def run(settings, ids: list[str], version: int, *, together: bool) -> None:
    """One pass of `assetstream run`: a fresh enrich worker (empty LRU), validate, one index batch."""
    async def enrich() -> list:
        stage = EnrichStage(settings)
        try:
            values = [pre(aid, version) for aid in ids]
            if together:  # in flight at the same time: both lookups before either answer is remembered
                return await asyncio.gather(*(stage.aprocess(v, ctx(v["asset"]["asset_id"])) for v in values))
            return [await stage.aprocess(v, ctx(v["asset"]["asset_id"])) for v in values]
        finally:
            await stage.aclose()

    validated = [ValidateStage(settings).process(out.value).value for out in asyncio.run(enrich())]
    sink = IndexSink(settings)
    try:
        sink.process_batch(as_items(validated))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
    finally:
        sink.close()


def documents(settings) -> dict[str, dict]:
    sink = IndexSink(settings)
    try:
        hits = sink.client.search(index=read_alias(sink.cfg), size=10, query={"match_all": {}},
                                  source_includes=[*FIELDS, "reasons"])["hits"]["hits"]
    finally:
        sink.close()
    return {h["_id"]: h["_source"] for h in hits}


def enrich_settings(store, srv):
    return settings_for(store.url).with_overrides(enrich={
        "provider": "claude", "anthropic_api_key": KEY, "anthropic_base_url": srv.url, "dedupe": "elasticsearch",
        "max_attempts": 1, "request_timeout_s": 5.0})


def families(docs: dict[str, dict]) -> dict[str, dict]:
    return {i: {k: d.get(k) for k in FIELDS} for i, d in docs.items()}


ONE_FAMILY = {
    "mug": {"family_id": "mug", "family_size": 2, "family_canonical": True, "duplicate_of": None,
            "duplicate_distance": None},
    "mug_copy": {"family_id": "mug", "family_size": 2, "family_canonical": False, "duplicate_of": "mug",
                 "duplicate_distance": 0}}


def test_copies_enriched_together_are_one_family(store):
    with ReplayServer() as srv:
        script_ok(srv)
        settings = enrich_settings(store, srv)
        run(settings, ["mug_copy", "mug"], 1, together=True)
        assert families(documents(settings)) == ONE_FAMILY


@pytest.mark.parametrize("first_order", [["mug", "mug_copy"], ["mug_copy", "mug"]])
def test_reruns_make_no_loop_and_change_nothing(store, first_order):
    with ReplayServer() as srv:
        script_ok(srv)
        settings = enrich_settings(store, srv)
        run(settings, first_order, 1, together=False)  # the second copy finds the first in this worker's LRU
        assert families(documents(settings)) == ONE_FAMILY
        for version, ids in ((2, ["mug", "mug_copy"]), (3, ["mug_copy", "mug"])):
            run(settings, ids, version, together=False)  # each copy finds the other, already indexed
            again = documents(settings)
            assert families(again) == ONE_FAMILY, ids
            # the canonical member is nobody's duplicate, in its review reasons either
            assert not [r for r in again["mug"].get("reasons") or [] if "duplicate of" in r], ids
