"""Paging one search (issue 17, user trial 3): `search zebrawood --size 20` said total 52, `--page 3` 61, `--page 4`
68, the facets moving with it, because a deeper page widened the kNN window. The answer is now over one window of
the ranking (index.rrf_window) whatever the page: the same total and facets on every page, pages that split that
ranking, and `total_relation: gte` when the window was filled. Against a real osmem-server, seeded through the real
index sink, with the real MiniLM encoder."""
from __future__ import annotations

import pytest

from domain.store.api import SearchRequest, run_search, run_similar
from domain.store.client import make_client
from tests.store_support import index_all, settings_for, validated_asset

pytestmark = pytest.mark.timeout(300)

WINDOW = 6
SIZE = 2
PAGES = 4  # pages 1..4 of 2: the window of 6 is pages 1..3, page 4 is past it

#: five keyword matches for "wooden furniture", many more near it by meaning only, and some far from it
WOODEN = [f"Wooden furniture catalogue page {i}" for i in range(5)]
NEAR = ["Oak dining table with six chairs", "Walnut bookshelf in a study", "Pine bed frame in a bedroom",
        "Teak garden bench on a lawn", "Maple kitchen cabinets", "Cherry wood dresser with drawers",
        "Birch coffee table by a sofa", "Mahogany writing desk", "Rattan armchair on a porch",
        "Carved chest of drawers", "Bamboo side table", "Antique oak wardrobe"]
FAR = ["Sunset over the ocean", "Kids blowing out birthday candles", "Tax form on an office desk",
       "Snowy mountain peak", "Red running shoe"]


@pytest.fixture(scope="module")
def settings(store):
    records = []
    for i, title in enumerate(WOODEN + NEAR + FAR):
        status = "approved" if i % 3 == 0 else "auto_applied"  # a facet that differs between documents
        records.append(validated_asset(f"p-{i:02d}", 1, title=title, status=status, ocr_text="", gps=None,
                                       tags=[("subject", "document")] if i % 2 else [("product", "sofa")]))
    return index_all(settings_for(store.url, rrf_window=WINDOW), records)


@pytest.fixture(scope="module")
def client(settings):
    c = make_client(settings.index)
    yield c
    c.close()


def _pages(client, settings, **req):
    return [run_search(client, settings, SearchRequest(page=p, size=SIZE, **req)) for p in range(1, PAGES + 1)]


def _ids(answer):
    return [h["asset_id"] for h in answer["hits"]]


def _counts(answer):
    return {name: {b["value"]: b["count"] for b in buckets} for name, buckets in answer["facets"].items()}


@pytest.mark.parametrize("mode", ["hybrid", "semantic"])
def test_every_page_of_one_query_has_the_same_total_and_facets_and_the_pages_split_one_ranking(client, settings,
                                                                                              mode):
    pages = _pages(client, settings, query="wooden furniture", mode=mode)
    first = pages[0]
    for page in pages[1:]:  # total 6, 7, 8 ... as the page deepened (the kNN window was max(6, page * size))
        assert (page["total"], page["total_relation"], _counts(page)) == \
            (first["total"], first["total_relation"], _counts(first)), (mode, page["page"])
    shown = [aid for page in pages for aid in _ids(page)]
    assert len(shown) == len(set(shown)), shown  # no hit on two pages
    whole = run_search(client, settings, SearchRequest(query="wooden furniture", mode=mode, size=SIZE * PAGES))
    assert shown == _ids(whole)  # the pages together are the top of the one ranking, in its order
    # the total is what the pages show together; more documents are near, so the window was filled: a lower bound
    assert first["total"] == len(shown) == WINDOW and first["total_relation"] == "gte"
    assert _ids(pages[-1]) == [] and pages[-1]["window"] == WINDOW  # past the window: an empty page
    # the facets count the same documents as the total
    assert sum(_counts(first)["status"].values()) == first["total"]
    if mode == "hybrid":  # every keyword match (5, in the keyword leg's window of 6) is among them
        assert {f"p-{i:02d}" for i in range(len(WOODEN))} <= set(shown)


def test_a_result_set_smaller_than_the_window_is_exact(client, settings):
    # the filters leave 5 documents with a status approved among the far and near ones: none fills a leg's window
    for mode in ("hybrid", "semantic"):
        pages = _pages(client, settings, query="wooden furniture", mode=mode, status="approved",
                       tags=("product:sofa",))
        shown = [aid for page in pages for aid in _ids(page)]
        assert 0 < len(shown) < WINDOW and len(shown) == len(set(shown)), (mode, shown)
        assert {(p["total"], p["total_relation"]) for p in pages} == {(len(shown), "eq")}, mode


def test_more_like_this_says_its_total_is_a_lower_bound_when_the_window_is_full(client, settings):
    """`--similar-to` always said total 50 (the window), as if exact."""
    answers = [run_similar(client, settings, "p-05", SearchRequest(page=p, size=SIZE, by="text"))
               for p in range(1, PAGES + 1)]
    assert {(a["total"], a["total_relation"]) for a in answers} == {(WINDOW, "gte")}
    shown = [aid for a in answers for aid in _ids(a)]
    assert len(shown) == len(set(shown)) == WINDOW and "p-05" not in shown
    few = run_similar(client, settings, "p-05", SearchRequest(by="text", status="approved", tags=("product:sofa",)))
    assert few["total_relation"] == "eq" and few["total"] == len(few["hits"]) < WINDOW


def test_collapsed_pages_count_families_and_facets_count_documents_the_same_on_every_page(client, settings):
    pages = _pages(client, settings, query="wooden furniture", mode="hybrid", collapse=True)
    assert len({(p["total"], p["total_relation"], p["matches"], str(_counts(p))) for p in pages}) == 1
    first = pages[0]
    assert sum(_counts(first)["status"].values()) == first["matches"]  # facets: the documents (`matches`)
    shown = [aid for page in pages for aid in _ids(page)]
    assert len(shown) == len(set(shown))


def test_the_cli_says_the_same_total_on_every_page_and_where_the_window_ends(store, settings):
    from typer.testing import CliRunner

    from app.cli import app

    env = {"ASSETSTREAM_INDEX__INDEX": settings.index.index, "ASSETSTREAM_INDEX__SERVER_MODE": "serverless",
           "ASSETSTREAM_INDEX__RRF_WINDOW": str(WINDOW), "COLUMNS": "200"}
    said = []
    for page in range(1, PAGES + 1):
        got = CliRunner().invoke(app, ["search", "wooden furniture", "--size", str(SIZE), "--page", str(page),
                                       "--es-url", store.url], env=env)
        assert got.exit_code == 0, got.output
        said.append(" ".join(got.output.split()))
    assert [f"of ≥ {WINDOW} · hybrid · page {p}" in s for p, s in enumerate(said, 1)] == [True] * PAGES, said
    assert "first 6 hits of the ranking" in said[-1] and "first 6 hits" not in said[0]
