"""Dedupe across workers through the real search store: an in-memory OpenSearch-API server (osmem) with the
index helper's real mapping and document shape; a second EnrichStage (fresh process-local LRU, as on another
replica) finds copies there and skips the provider."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from consumers.enrich.dedupe import ElasticsearchDedupeIndex, InMemoryDedupeIndex, hamming, phash_bands
from consumers.enrich.replay import ReplayServer
from consumers.enrich.stage import EnrichStage
from streams import metrics
from streams.avro import validate
from app.settings import Settings

from tests.test_enrich_stage import KEY, ctx, jpeg, preprocessed, script_ok

pytest.importorskip("osmem_server")


@pytest.fixture
def store(osmem_clone):
    from domain.store.client import make_client
    from domain.store.management import ensure_index
    idx = {"url": osmem_clone.url, "server_mode": "serverless", "number_of_replicas": 0,
           "index": f"enrich-dedupe-{uuid.uuid4().hex[:6]}"}
    s = Settings().with_overrides(index=idx)
    client = make_client(s)
    ensure_index(client, s)
    yield idx, client
    client.close()


def settings_for(url: str, idx: dict) -> Settings:
    return Settings().with_overrides(
        index=idx, enrich={"provider": "claude", "anthropic_api_key": KEY, "anthropic_base_url": url,
                           "dedupe": "elasticsearch", "max_attempts": 1, "request_timeout_s": 5.0})


def index_enriched(client, idx: dict, enriched: dict) -> None:
    """What the index sink stores for a validated asset (its own document builder)."""
    from consumers.index.document import document_from_validated
    validated = {"enriched": enriched, "status": "auto_applied", "usage_flag": "ok", "tags": [],
                 "stamp": {"stage": "validate", "version": "t", "worker": "w", "at": 1763780001000}}
    doc_id, version, body = document_from_validated(validated)
    client.index(index=f"{idx['index']}-write", id=doc_id, document=body, version=version,
                 version_type="external", refresh=True)


def run(stage: EnrichStage, *values):
    async def go():
        try:
            return [await stage.aprocess(v, ctx(v["asset"]["asset_id"])) for v in values]
        finally:
            await stage.aclose()
    return asyncio.run(go())


def test_copies_found_in_the_store_skip_the_provider(store):
    idx, client = store
    with ReplayServer() as srv:
        script_ok(srv)
        worker_a = EnrichStage(settings_for(srv.url, idx))
        (orig,) = run(worker_a, preprocessed("orig", phash="c3a5f00f0ff0a53c"))
        assert srv.count() == 3
        index_enriched(client, idx, orig.value)

        worker_b = EnrichStage(settings_for(srv.url, idx))  # another replica: empty LRU
        assert len(worker_b.dedupe.lru) == 0
        exact, near = run(worker_b, preprocessed("copy-exact", phash="c3a5f00f0ff0a53c"),
                          preprocessed("copy-near", data=jpeg(5), phash="c2a4f10e0ff0a53c"))
        assert srv.count() == 4  # no call for the exact copy; the near copy's own rights answer only
        assert exact.value["duplicate_of"] == "orig" and exact.value["duplicate_distance"] == 0
        assert near.value["duplicate_of"] == "orig" and near.value["duplicate_distance"] == hamming(
            "c3a5f00f0ff0a53c", "c2a4f10e0ff0a53c") == 4
        assert near.value["enrichment"]["tags"] == orig.value["enrichment"]["tags"]
        assert near.value["enrichment"]["alt_text"] == orig.value["enrichment"]["alt_text"]
        # provenance came back from the stored document in Avro shape (timestamps as millis)
        validate("EnrichedAsset", near.value)
        reused = [p for p in near.value["provenance"][:-1] if p["task"] != "rights"]
        first = [p for p in orig.value["provenance"] if p["task"] != "rights"]
        assert [p["request_id"] for p in reused] == [p["request_id"] for p in first]
        assert all(p["timestamp"] == q["timestamp"] for p, q in zip(reused, first))

        worker_c = EnrichStage(settings_for(srv.url, idx))
        far, again = run(worker_c, preprocessed("far", data=jpeg(9), phash="3c5a0ff0f00f5ac3"),
                         preprocessed("orig", phash="c3a5f00f0ff0a53c", event_type="updated"))
        assert far.value["duplicate_of"] is None
        assert again.value["duplicate_of"] is None  # never a duplicate of itself
        # "far" is paid for; the update of "orig" asks the same questions (same image, model, prompts and
        # context): answered from the result cache, with the original call's provenance
        assert srv.count() == 7
        assert {p["reused_from"] for p in again.value["provenance"]} == {"orig"}
        assert again.value["cost_usd"] == 0.0


def test_a_larger_copy_found_in_the_store_is_linked_but_enriched_on_its_own(store):
    """Issue 15 item 4: the web copy (96x96) was enriched and indexed first; the 4000x3000 original, on another
    worker, finds it in the store, links to it (the index sink makes the original canonical) and pays for its own
    answer; a second small copy arriving after reuses as before."""
    idx, client = store
    with ReplayServer() as srv:
        script_ok(srv)
        settings = settings_for(srv.url, idx).with_overrides(enrich={"result_cache": "off"})
        (web,) = run(EnrichStage(settings), preprocessed("web", phash="c3a5f00f0ff0a53c"))
        index_enriched(client, idx, web.value)
        orig = preprocessed("orig", data=jpeg(5), phash="c2a4f10e0ff0a53c")
        orig["image"].update(width=4000, height=3000)
        small = preprocessed("small", data=jpeg(7), phash="c3a5f00f0ff0a53d")
        small["image"].update(width=48, height=48)
        big, copy = run(EnrichStage(settings), orig, small)  # another replica: empty LRU
        assert srv.count() == 7  # the web copy's and the original's own; the small copy reused (but its rights)
        assert big.value["duplicate_of"] == "web" and big.value["duplicate_distance"] == 4
        assert "dedupe" not in {p["task"] for p in big.value["provenance"]}
        assert copy.value["provenance"][-1]["task"] == "dedupe"


def test_a_copy_sent_with_other_text_is_linked_but_enriched_on_its_own(store):
    """Trial 18 finding 4: the prompts read each upload's own text (embedded title, uploader notes, product context;
    the declared licence for rights), so an answer made from other text is no copy's. Found in the store by another
    worker: a web copy without the XMP title and the same bytes sent with other notes pay for their own answer (still
    linked); the same bytes with another licence reuse the description but ask rights; a web copy sent with the same
    text reuses as before (its rights aside), even with the other-text copies in this worker's LRU."""
    idx, client = store
    with ReplayServer() as srv:
        script_ok(srv)
        settings = settings_for(srv.url, idx).with_overrides(enrich={"result_cache": "off"})

        def upload(asset_id: str, data: bytes | None = None, phash: str = "c3a5f00f0ff0a53c", **asset) -> dict:
            v = preprocessed(asset_id, data=data, phash=phash)
            v["embedded"]["title"] = "Runfast 2 spring launch"
            v["asset"].update(asset)
            return v

        (orig,) = run(EnrichStage(settings), upload("orig"))
        index_enriched(client, idx, orig.value)
        bare = upload("bare", jpeg(5), "c2a4f10e0ff0a53c")
        bare["embedded"]["title"] = None
        copies = [bare, upload("notes", uploader_notes="Rejected shot, do not use"),
                  upload("licence", declared_license="CC0 1.0"), upload("web", jpeg(5), "c2a4f10e0ff0a53c")]
        stage, paid = EnrichStage(settings), []  # another replica: empty LRU

        async def go():
            try:
                for v in copies:
                    before = srv.count()
                    out = (await stage.aprocess(v, ctx(v["asset"]["asset_id"]))).value
                    paid.append((srv.count() - before, out["duplicate_of"], out["provenance"][-1]["task"]))
            finally:
                await stage.aclose()
        asyncio.run(go())
        assert paid == [(3, "orig", "rights"), (3, "orig", "rights"), (1, "orig", "dedupe"), (1, "orig", "dedupe")]


def test_store_down_degrades_to_a_miss():
    s = Settings().with_overrides(index={"url": "http://127.0.0.1:9", "server_mode": "serverless",
                                         "request_timeout_s": 1.0})
    d = ElasticsearchDedupeIndex(s)
    calls = []
    real = d._search
    d._search = lambda *a: calls.append(a) or real(*a)
    before = metrics.DEDUPE.labels("error")._value.get()
    assert asyncio.run(d.lookup("ab" * 32, "c3a5f00f0ff0a53c", None)) is None
    assert metrics.DEDUPE.labels("error")._value.get() == before + 1
    # for the next down_backoff_s the store is not asked again; the LRU still answers
    d.lru.remember_sync("x", "cd" * 32, "0000000000000000", None, {"tags": []}, [])
    assert asyncio.run(d.lookup("ab" * 32, "c3a5f00f0ff0a53c", None)) is None
    assert asyncio.run(d.lookup("cd" * 32, None, None)).asset_id == "x"
    assert len(calls) == 1


def test_in_memory_index_bands_and_eviction():
    d = InMemoryDedupeIndex(max_distance=6, max_size=2)
    d.remember_sync("a", "s1", "ffffffff00000000", None, {"tags": []}, [])  # pHashes of structured images: 32 bits
    d.remember_sync("b", "s2", "00000000ffffffff", None, {"tags": []}, [])
    m = d.lookup_sync("zz", "00000000ffffff00", None)  # 8 bits away: too far
    assert m is None
    m = d.lookup_sync("zz", "00000000ffffffc0", phash_bands("00000000ffffffc0"))
    assert m is not None and (m.asset_id, m.kind, m.distance) == ("b", "near", 6)
    d.remember_sync("c", "s3", "1234123412341234", None, {"tags": []}, [])  # evicts the least recent ("a")
    assert d.lookup_sync("s1", None, None) is None and len(d) == 2
    assert d.lookup_sync("s3", None, None).kind == "exact"
    d.remember_sync("flat", "s4", "8000000000000000", None, {"tags": []}, [])  # a plain field's pHash (1 bit)
    assert d.lookup_sync("zz", "9100000000000000", None) is None  # a two-tone field's, 2 bits away: no structure


def test_dhash_confirms_a_farther_phash_match():
    d = InMemoryDedupeIndex(max_distance=6, confirm_distance=10)
    d.remember_sync("a", "s1", "c3a5f00f0ff0a53c", None, {"tags": []}, [], dhash="0f0f0f0f0f0f0f0f")
    crop_p = "c2a4f10e0ff0a5c3"  # 12 bits away: too far even with dHash
    assert d.lookup_sync("x", crop_p, None, dhash_hex="0f0f0f0f0f0f0f0f") is None
    p9 = "c2a4f10e0ff0a533"  # 8 bits away
    assert hamming(p9, "c3a5f00f0ff0a53c") == 8
    assert d.lookup_sync("x", p9, None, dhash_hex="ffff0f0f0f0f0f0f") is None  # dHash disagrees (16 bits)
    m = d.lookup_sync("x", p9, None, dhash_hex="0f0f0f0f0f0f0f0e")  # dHash agrees (1 bit)
    assert m is not None and (m.kind, m.distance) == ("near", 8)
    strict = InMemoryDedupeIndex(max_distance=6, confirm_distance=6)
    strict.remember_sync("a", "s1", "c3a5f00f0ff0a53c", None, {"tags": []}, [], dhash="0f0f0f0f0f0f0f0f")
    assert strict.lookup_sync("x", p9, None, dhash_hex="0f0f0f0f0f0f0f0e") is None


def test_token_bucket_limits_requests_and_tokens():
    from consumers.enrich.ratelimit import TokenBucket
    now = [0.0]
    b = TokenBucket(60, burst_seconds=0.0, capacity=2.0, clock=lambda: now[0])  # 1 request/s
    assert b.wait_time(1) == 0
    b.take(1)
    assert b.wait_time(1) == pytest.approx(1.0)
    now[0] = 10.0  # idle: refills to the capacity only
    assert b.tokens <= 2 and b.wait_time(1) == 0
    b.take(1)
    b.take(1)
    assert b.wait_time(1) == pytest.approx(1.0)
    t = TokenBucket(60_000, burst_seconds=60.0, initial=None, clock=lambda: now[0])  # 1000 tokens/s, full
    t.take(60_000)
    assert t.wait_time(5_000) == pytest.approx(5.0)
    t.adjust(-2_000)  # the answer used 2000 tokens fewer than estimated
    assert t.wait_time(5_000) == pytest.approx(3.0)


def test_an_event_older_than_the_indexed_version_is_not_enriched(store):
    """A late event (version 3 arriving after version 5 was indexed) costs no model call: it produces nothing (no
    output, no dead letter: the index would refuse it anyway) and is counted; the same or a newer version is
    enriched."""
    idx, client = store
    with ReplayServer() as srv:
        script_ok(srv)
        newer = preprocessed("late")
        newer["asset"]["version"] = 5
        (indexed,) = run(EnrichStage(settings_for(srv.url, idx)), newer)
        index_enriched(client, idx, indexed.value)
        calls = srv.count()

        stale = preprocessed("late", data=jpeg(3), phash="0f0f0f0f0f0f0f0f")  # other bytes: would cost 3 calls
        stale["asset"].update(version=3, event_id="ev-late-3", event_type="updated")
        before = metrics.STALE_EVENTS.labels("enrich")._value.get()
        worker = EnrichStage(settings_for(srv.url, idx))
        assert run(worker, stale) == [None]  # nothing to publish, nothing dead-lettered
        assert srv.count() == calls  # no model call
        assert metrics.STALE_EVENTS.labels("enrich")._value.get() == before + 1

        # the indexed version again (a replay, a reprocess) and a newer one are enriched as usual
        for version in (5, 6):
            event = preprocessed("late", data=jpeg(3), phash="0f0f0f0f0f0f0f0f")
            event["asset"].update(version=version, event_id=f"ev-late-{version}", event_type="updated")
            (out,) = run(EnrichStage(settings_for(srv.url, idx)), event)
            assert out.value["pre"]["asset"]["version"] == version and out.value["enrichment"]["tags"]
        assert srv.count() > calls
        assert metrics.STALE_EVENTS.labels("enrich")._value.get() == before + 1
