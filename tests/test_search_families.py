"""Duplicate families at the index sink: every document gets family_id / family_size / family_canonical; the
canonical member is the highest-quality one whatever the arrival order (a late original re-points the family);
search can collapse families and filter by one. Real osmem-server, documents written by the real IndexSink."""
from __future__ import annotations

import itertools

import httpx
import pytest

from app.review.server import ReviewServer
from consumers.index.sink import IndexSink
from domain.store.api import SearchRequest, run_search
from domain.store.management import read_alias
from tests.store_support import as_items, settings_for, validated_asset

pytestmark = pytest.mark.timeout(300)

#: asset id -> (width, height, byte size): the original, a web copy, a thumbnail-sized copy
QUALITY = {"orig": (4000, 3000, 5_400_000), "web": (1600, 1200, 410_000), "small": (640, 480, 60_000)}


def _record(aid: str, duplicate_of: str | None, version: int = 1, title: str = "Harbour at dusk") -> dict:
    v = validated_asset(aid, version, title=title, alt_text="boats in a harbour at dusk", ocr_text="",
                        tags=[("subject", "water")])
    w, h, size = QUALITY.get(aid.split("-")[-1], (1600, 1200, 400_000))
    v["enriched"]["pre"]["image"].update(width=w, height=h, byte_size=size)
    v["enriched"]["duplicate_of"] = duplicate_of
    v["enriched"]["duplicate_distance"] = 2 if duplicate_of else None
    return v


def _families(sink) -> dict[str, tuple]:
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    hits = sink.client.search(index=read_alias(sink.cfg), size=100, query={"match_all": {}},
                              source_includes=["family_id", "family_size", "family_canonical"])["hits"]["hits"]
    return {h["_id"]: (h["_source"].get("family_id"), h["_source"].get("family_size"),
                       h["_source"].get("family_canonical")) for h in hits}


@pytest.mark.parametrize("order", list(itertools.permutations(["f-orig", "f-web", "f-small"])))
def test_the_canonical_member_is_the_best_whatever_the_order(store, order):
    """Each arrival links to the first member already there (as enrich's dedupe would); one batch per arrival."""
    sink = IndexSink(settings_for(store.url))
    try:
        for i, aid in enumerate(order):
            sink.process_batch(as_items([_record(aid, order[0] if i else None)]))
            sink.client.indices.refresh(index=read_alias(sink.cfg))
        sink.process_batch(as_items([_record("f-alone", None, title="Mountain lake")]))
        fams = _families(sink)
    finally:
        sink.close()
    assert fams == {"f-orig": ("f-orig", 3, True), "f-web": ("f-orig", 3, False), "f-small": ("f-orig", 3, False),
                    "f-alone": ("f-alone", 1, True)}, order


def test_repointing_keeps_each_members_version_and_record(store):
    sink = IndexSink(settings_for(store.url))
    try:
        sink.process_batch(as_items([_record("r-small", None, version=4)]))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        before = sink.client.get(index=read_alias(sink.cfg), id="r-small")
        sink.process_batch(as_items([_record("r-orig", "r-small", version=1)]))  # the late original
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        after = sink.client.get(index=read_alias(sink.cfg), id="r-small")
        assert after["_version"] == before["_version"] == 4
        assert after["_source"]["family_id"] == "r-orig" and after["_source"]["family_canonical"] is False
        assert after["_source"]["duplicate_of"] == "r-orig"  # the link re-points to the canonical member too
        assert {k: v for k, v in after["_source"].items() if not k.startswith(("family_", "duplicate_", "reasons"))} \
            == {k: v for k, v in before["_source"].items() if not k.startswith(("family_", "duplicate_", "reasons"))}
        # its review reasons name the new link (the review queue's "near-duplicate" filter finds it)
        assert after["_source"]["reasons"][:-1] == before["_source"]["reasons"]
        assert after["_source"]["reasons"][-1].startswith("near-duplicate of r-orig (pHash distance ")
        # a newer version of the copy later still belongs to the family
        sink.process_batch(as_items([_record("r-small", "r-orig", version=5)]))
        assert _families(sink)["r-small"] == ("r-orig", 2, False)
    finally:
        sink.close()


def _harbour(sink, small: str, web: str, orig: str, other: str) -> None:
    """A family of three indexed small copy first (the original, arriving later, becomes its canonical member), and
    one other asset of the same alt text."""
    sink.process_batch(as_items([_record(small, None)]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    sink.process_batch(as_items([_record(orig, small), _record(web, small),
                                 _record(other, None, title="Harbour cranes at dawn")]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))


def test_search_collapses_and_filters_families(store):
    settings = settings_for(store.url)
    sink = IndexSink(settings)
    try:
        _harbour(sink, "c-small", "c-web", "c-orig", "c-other")
        for mode in ("keyword", "semantic", "hybrid"):
            flat = run_search(sink.client, settings, SearchRequest(query="harbour", mode=mode))
            assert len(flat["hits"]) == 4, mode
            one = run_search(sink.client, settings, SearchRequest(query="harbour", mode=mode, collapse=True))
            assert sorted(h["family_id"] for h in one["hits"]) == ["c-orig", "c-other"], mode
            # any member names the family
            fam = run_search(sink.client, settings, SearchRequest(query="harbour", mode=mode, family="c-small"))
            assert {h["asset_id"] for h in fam["hits"]} == {"c-orig", "c-web", "c-small"}, mode
        with ReviewServer(settings, port=0, token="fam-token") as srv:
            r = httpx.get(srv.url + "/v1/search", params={"query": "harbour", "collapse": "true"},
                          headers={"Authorization": "Bearer fam-token"})
            assert r.status_code == 200 and len(r.json()["hits"]) == 2
            # the total counts families like the hits (it said 4: the documents), the documents are `matches`
            assert (r.json()["total"], r.json()["total_relation"], r.json()["matches"]) == (2, "eq", 4)
            assert {h["family_size"] for h in r.json()["hits"]} == {3, 1}
    finally:
        sink.close()


def test_a_collapsed_family_is_shown_by_its_canonical_member_when_its_copies_score_the_same(store):
    """Trial 29: copies say what the canonical member says, so they tie with it, and the tie went to whichever sorted
    first (here the thumbnail-sized copy: the same date, and its id sorts first). The family is shown by its
    canonical member in every mode, and in hybrid it is the first of the family in the ranking too."""
    settings = settings_for(store.url)
    sink = IndexSink(settings)
    try:
        _harbour(sink, "k1-small", "k2-web", "k3-orig", "k4-other")
        assert _families(sink)["k1-small"] == ("k3-orig", 3, False)  # the original is the canonical member
        for mode in ("keyword", "semantic", "hybrid"):
            got = run_search(sink.client, settings, SearchRequest(query="harbour at dusk", mode=mode, collapse=True))
            shown = {h["family_id"]: h["asset_id"] for h in got["hits"]}
            assert shown == {"k3-orig": "k3-orig", "k4-other": "k4-other"}, (mode, shown)
            assert next(h for h in got["hits"] if h["family_id"] == "k3-orig")["duplicate_of"] is None, mode
        flat = run_search(sink.client, settings, SearchRequest(query="harbour at dusk", mode="hybrid"))
        assert [h["asset_id"] for h in flat["hits"]][0] == "k3-orig", flat["hits"]
    finally:
        sink.close()


def test_more_like_this_collapsed_leaves_the_assets_own_family_out(store):
    """Trial 29: `/v1/assets/<red sneaker>/similar?collapse=true` gave the asset's own quality-40 copy as the first
    "similar" hit (0.997). Collapsed, "more like this" leaves out the asset's whole family (its canonical member and
    copies, whichever member is asked about) and says which family (`excluded_family`); not collapsed, the copies are
    still the nearest, as a "find the copies" answer."""
    from domain.store.api import run_similar

    settings = settings_for(store.url)
    sink = IndexSink(settings)
    try:
        _harbour(sink, "m-small", "m-web", "m-orig", "m-other")
        sink.process_batch(as_items([_record("m-lake", None, title="Mountain lake")]))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        for asked in ("m-orig", "m-small"):
            one = run_similar(sink.client, settings, asked, SearchRequest(collapse=True))
            ids = [h["asset_id"] for h in one["hits"]]
            assert ids and not {"m-orig", "m-web", "m-small"} & set(ids), (asked, ids)
            assert ids[0] == "m-other" and one["excluded_family"] == "m-orig"
            flat = run_similar(sink.client, settings, asked, SearchRequest())
            assert {h["asset_id"] for h in flat["hits"][:2]} == {"m-orig", "m-web", "m-small"} - {asked}, flat["hits"]
            assert flat["excluded_family"] is None
            assert one["total"] == len(ids) and one["matches"] == len(ids)  # the family is not counted either
        with ReviewServer(settings, port=0, token="fam-token") as srv:
            r = httpx.get(srv.url + "/v1/assets/m-web/similar", params={"collapse": "true"},
                          headers={"Authorization": "Bearer fam-token"})
            assert r.status_code == 200 and r.json()["excluded_family"] == "m-orig"
            assert r.json()["hits"][0]["asset_id"] == "m-other"
    finally:
        sink.close()


def test_a_collapsed_total_counts_families_and_says_when_it_is_a_lower_bound(store):
    """`search --collapse` said "2 hit(s) of 8" for 6 families: the total is the families' count, exact when
    every match was ranked, else a lower bound ("≥ N", total_relation gte), in the API and the CLI alike."""
    from typer.testing import CliRunner

    from app.cli import app

    settings = settings_for(store.url, rrf_window=1)  # collapse ranks rrf_window * 5 hits, whatever the page
    sink = IndexSink(settings)
    try:
        sink.process_batch(as_items([_record("g-small", None)]))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        sink.process_batch(as_items([_record("g-orig", "g-small"), _record("g-web", "g-small"),
                                     *(_record(f"g-single{i}", None, title=f"Harbour scene {i}")
                                       for i in range(5))]))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        wider = settings.with_overrides(index={"rrf_window": 2})
        whole = run_search(sink.client, wider, SearchRequest(query="harbour", mode="keyword", collapse=True,
                                                              size=2))  # 10 ranked: all 8 matches
        assert (whole["total"], whole["total_relation"], whole["matches"]) == (6, "eq", 8)
        part = run_search(sink.client, settings, SearchRequest(query="harbour", mode="keyword", collapse=True,
                                                                size=1))  # 5 ranked of 8 matches
        assert run_search(sink.client, settings, SearchRequest(query="harbour", mode="keyword", collapse=True,
                                                               size=1, page=2))["total"] == part["total"]
        assert part["total_relation"] == "gte" and part["matches"] == 8
        assert 3 <= part["total"] <= 6 and len(part["hits"]) == 1
        flat = run_search(sink.client, settings, SearchRequest(query="harbour", mode="keyword"))
        assert (flat["total"], flat["total_relation"], "matches" not in flat) == (8, "eq", True)
        for mode in ("semantic", "hybrid"):
            got = run_search(sink.client, settings, SearchRequest(query="harbour", mode=mode, collapse=True))
            assert got["total"] == len({h["family_id"] for h in got["hits"]}) <= 6, mode
        env = {"ASSETSTREAM_INDEX__INDEX": settings.index.index, "ASSETSTREAM_INDEX__SERVER_MODE": "serverless",
               "COLUMNS": "200"}
        cli = CliRunner()
        for window, size, says in (("2", "2", "2 hit(s) of 6 families (8 matching assets)"),
                                   ("1", "1", f"1 hit(s) of ≥ {part['total']} families (8 matching assets)")):
            got = cli.invoke(app, ["search", "harbour", "--mode", "keyword", "--collapse", "--size", size,
                                   "--es-url", store.url], env={**env, "ASSETSTREAM_INDEX__RRF_WINDOW": window})
            assert got.exit_code == 0 and says in got.output, got.output
    finally:
        sink.close()
