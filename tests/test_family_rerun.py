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
from tests.store_support import index_all, settings_for
from tests.test_enrich_stage import KEY, ctx, preprocessed, script_ok

pytestmark = pytest.mark.timeout(300)

CUP = (Path(__file__).parent / "data" / "quality" / "images" / "cup_on_white.jpg").read_bytes()
FIELDS = ("family_id", "family_size", "family_canonical", "duplicate_of", "duplicate_distance")


def pre(aid: str, version: int, data: bytes = CUP, phash: str = "c3a5f00f0ff0a53c") -> dict:
    v = preprocessed(aid, data=data, ocr="", phash=phash)
    v["asset"]["version"] = version
    v["asset"]["event_time"] += version
    return v


def run(settings, ids: list[str], version: int, *, together: bool, workers: int = 1,
        values: list[dict] | None = None) -> list[dict]:
    """One pass of `assetstream run`: fresh enrich workers (empty LRU; with several, the records are dealt out
    to them), validate, one index batch. Returns the enriched records."""
    values = values or [pre(aid, version) for aid in ids]

    async def enrich() -> list:
        stages = [EnrichStage(settings) for _ in range(workers)]
        try:
            calls = [stages[i % workers].aprocess(v, ctx(v["asset"]["asset_id"])) for i, v in enumerate(values)]
            if together:  # in flight at the same time: every lookup before any answer is remembered
                return await asyncio.gather(*calls)
            return [await c for c in calls]
        finally:
            for stage in stages:
                await stage.aclose()

    enriched = [out.value for out in asyncio.run(enrich())]
    index_all(settings, [ValidateStage(settings).process(e).value for e in enriched])
    return enriched


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


def test_copies_enriched_together_on_two_workers_are_one_family(store):
    """Neither worker sees the other's copy (nothing indexed yet): both pay, the index links them."""
    with ReplayServer() as srv:
        script_ok(srv)
        settings = enrich_settings(store, srv)
        enriched = run(settings, ["mug_copy", "mug"], 1, together=True, workers=2)
        assert [e["duplicate_of"] for e in enriched] == [None, None]
        assert families(documents(settings)) == ONE_FAMILY


@pytest.mark.parametrize("first", ["cup_orig", "cup_web"])
def test_near_copies_in_flight_in_one_worker_reuse_only_toward_the_smaller(store, first):
    """A web copy (other bytes, pHash 4 bits away) and the 4000x3000 original in flight in the same worker: the
    web copy waits for the original's answer instead of paying, but the original never waits for the web copy's
    (issue 15 item 4: the canonical member's enrichment is its own); both end in one family, the original
    canonical."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(CUP)).convert("RGB").save(buf, "JPEG", quality=60)
    values = {"cup_web": pre("cup_web", 1, data=buf.getvalue(), phash="c2a4f10e0ff0a53c"),
              "cup_orig": pre("cup_orig", 1)}
    values["cup_orig"]["image"].update(width=4000, height=3000)
    second = next(i for i in values if i != first)
    with ReplayServer(delay_s=0.3) as srv:  # the first copy's answer takes a while: the second finds its claim
        script_ok(srv)
        settings = enrich_settings(store, srv).with_overrides(enrich={"result_cache": "off"})

        async def go() -> dict[str, dict]:
            stage = EnrichStage(settings)
            try:
                task = asyncio.ensure_future(stage.aprocess(values[first], ctx(first)))
                while not len(stage.in_flight):
                    await asyncio.sleep(0.01)
                late = await stage.aprocess(values[second], ctx(second))
                return {first: (await task).value, second: late.value}
            finally:
                await stage.aclose()

        enriched = asyncio.run(go())
        orig, web = enriched["cup_orig"], enriched["cup_web"]
        assert "dedupe" not in {p["task"] for p in orig["provenance"]}  # the original always paid for its own
        if first == "cup_orig":
            # the web copy reused the answer, but for its rights, which are its own (one call)
            assert srv.count() == 4 and web["duplicate_of"] == "cup_orig"
            assert web["provenance"][-1]["task"] == "dedupe"
        else:
            assert srv.count() == 6 and orig["duplicate_of"] == "cup_web"  # linked, not reused
            assert web["duplicate_of"] is None
        index_all(settings, [ValidateStage(settings).process(e).value for e in enriched.values()])
        assert families(documents(settings)) == {
            "cup_orig": {"family_id": "cup_orig", "family_size": 2, "family_canonical": True, "duplicate_of": None,
                         "duplicate_distance": None},
            "cup_web": {"family_id": "cup_orig", "family_size": 2, "family_canonical": False,
                        "duplicate_of": "cup_orig", "duplicate_distance": 4}}


@pytest.mark.parametrize("first_order", [["mug", "mug_copy"], ["mug_copy", "mug"]])
def test_reruns_make_no_loop_and_change_nothing(store, first_order):
    with ReplayServer() as srv:
        script_ok(srv)
        settings = enrich_settings(store, srv)
        run(settings, first_order, 1, together=False)  # the second copy finds the first in this worker's LRU
        assert srv.count() == 3  # byte copies: the second reuses the first's answer, in either order
        assert families(documents(settings)) == ONE_FAMILY
        for version, ids in ((2, ["mug", "mug_copy"]), (3, ["mug_copy", "mug"])):
            run(settings, ids, version, together=False)  # each copy finds the other, already indexed
            again = documents(settings)
            assert families(again) == ONE_FAMILY, ids
            # the canonical member is nobody's duplicate, in its review reasons either
            assert not [r for r in again["mug"].get("reasons") or [] if "duplicate of" in r], ids


def test_a_claim_that_ends_without_an_answer_lets_the_copy_ask_on_its_own():
    """The first copy's call failed (or was degraded): the copy waiting for it is released with nothing."""
    from consumers.enrich.dedupe import InFlight, Look

    async def go():
        flight = InFlight()
        look = Look(colors=("red",))
        key = flight.claim("a", "sha-1", "c3a5f00f0ff0a53c", None, look=look)
        assert flight.claim("a", "sha-1", "c3a5f00f0ff0a53c", None, look=look) is None  # already in flight
        waiting = asyncio.ensure_future(flight.wait("sha-1", "c3a5f00f0ff0a53c", None, exclude_asset_id="b",
                                                    look=look))
        await asyncio.sleep(0)
        assert not waiting.done() and len(flight) == 1
        flight.resolve(key)  # no answer
        assert await waiting is None and len(flight) == 0
        # an answer is kept for a copy that comes a moment later
        key = flight.claim("a", "sha-1", "c3a5f00f0ff0a53c", None, look=look)
        flight.resolve(key, {"alt_text": "a red mug"}, [])
        late = await flight.wait("sha-1", None, None, exclude_asset_id="c", look=look)
        assert late is not None and late.asset_id == "a" and late.enrichment == {"alt_text": "a red mug"}
        assert await flight.wait("sha-2", None, None, exclude_asset_id="c", look=look) is None

    asyncio.run(go())


def test_a_deleted_asset_is_no_copys_original_in_the_workers_memory(store):
    """The worker that enriched an asset remembers its answer (its LRU, and the answers of copies it had in
    flight). Once the asset is deleted, a byte copy uploaded later is enriched on its own: not linked to the
    deleted asset, not given its answer (the result cache, off here, may still answer the same question again:
    that is paying once for the same bytes and prompt, not a family link)."""
    with ReplayServer() as srv:
        script_ok(srv)
        settings = enrich_settings(store, srv).with_overrides(enrich={"result_cache": "off"})

        async def go() -> dict:
            stage = EnrichStage(settings)
            try:
                await stage.aprocess(pre("gone", 1), ctx("gone"))
                deleted = pre("gone", 2)
                deleted["asset"]["event_type"] = "deleted"
                await stage.aprocess(deleted, ctx("gone"))
                return (await stage.aprocess(pre("later", 1), ctx("later"))).value
            finally:
                await stage.aclose()

        later = asyncio.run(go())
        assert later["duplicate_of"] is None
        assert {p["reused_from"] for p in later["provenance"]} == {None} and srv.count() == 6


def test_a_tenants_copy_links_by_asset_id_with_its_distance(store):
    """A tenant's documents have scoped ids (acme::mug) and so do their family ids; the copy enrich links finds
    its original through the store, and its link names the asset (mug) with its distance, as the default
    tenant's do."""
    with ReplayServer() as srv:
        script_ok(srv)
        settings = enrich_settings(store, srv)
        orig, near = pre("mug", 1), pre("mug_web", 1, phash="c3a5f00f0ff0a53d")
        for v in (orig, near):
            v["asset"]["tenant"] = "acme"
        run(settings, [], 1, together=False, values=[orig])
        (copy_,) = run(settings, [], 1, together=False, values=[near])
    assert copy_["duplicate_of"] == "mug" and copy_["duplicate_distance"] == 0  # the same bytes
