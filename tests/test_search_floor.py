"""The relevance floor of the vector legs (index.semantic_min_similarity, issue 17): semantic and hybrid search
stop padding an answer with the k nearest documents however far they are. On a real osmem-server with the
documents written by the real index sink; the cosines the test compares with are computed here from the stored
vectors and the query's MiniLM vector."""
from __future__ import annotations

import numpy as np
import pytest

from consumers.index.sink import IndexSink
from domain.store.api import SearchRequest, run_search
from domain.store.management import read_alias
from domain.store.search import embed_query
from domain.store.vectors import unpack
from tests.store_support import as_items, settings_for, validated_asset

LIBRARY = [
    ("f-desk", "Zebrawood desk", "a striped zebrawood writing desk in a study", [("product", "table")]),
    ("f-party", "Kids blowing out birthday candles", "children around a cake with balloons", [("subject", "cake")]),
    ("f-tax", "Tax form on an office desk", "a printed form and a pen", [("subject", "document")]),
    ("f-boots", "Leather boots by the door", "brown boots on a mat", [("product", "boot")]),
    ("f-sofa", "Blue sofa in a living room", "a sofa with cushions", [("product", "sofa")]),
    ("f-lake", "Mountain lake at dawn", "still water below snowy peaks", [("setting", "outdoor")]),
    ("f-wedding", "Bride and groom dancing", "a couple dancing at their wedding reception", [("subject", "people")]),
]
NONSENSE = "qwpzrk vlemt"


@pytest.fixture(params=[True, False], ids=["vector-cache", "scan"])
def indexed(store, request):
    """The library indexed by the real sink; searched through the vector cache and through the per-query scan."""
    sink = IndexSink(settings_for(store.url, vector_cache=request.param, vector_cache_dir=""))
    sink.process_batch(as_items([validated_asset(aid, 1, title=t, alt_text=a, tags=tags, ocr_text="")
                                 for aid, t, a, tags in LIBRARY]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    yield sink
    sink.close()


def _ask(sink, query: str, mode: str, **index) -> dict:
    settings = sink.settings.with_overrides(index=index) if index else sink.settings
    return run_search(sink.client, settings, SearchRequest(query=query, mode=mode, size=20))


def _cosines(sink, query: str) -> dict[str, float]:
    q = np.asarray(embed_query(query), np.float32)
    out = {}
    for aid, *_ in LIBRARY:
        doc = sink.client.get(index=read_alias(sink.cfg), id=aid)["_source"]
        out[aid] = float(unpack(doc) @ q)
    return out


def _ids(answer: dict) -> list[str]:
    return [h["asset_id"] for h in answer["hits"]]


def test_a_nonsense_word_finds_nothing_by_meaning(indexed):
    floor = indexed.settings.index.semantic_min_similarity
    assert floor is not None and max(_cosines(indexed, NONSENSE).values()) < floor  # the data behind the check
    semantic = _ask(indexed, NONSENSE, "semantic")
    assert semantic["hits"] == [] and semantic["total"] == 0
    assert all(not bucket for bucket in semantic["facets"].values())
    hybrid = _ask(indexed, NONSENSE, "hybrid")
    assert hybrid["hits"] == [] and hybrid["total"] == 0  # the keyword leg matches nothing either
    # without the floor, the k nearest however far: every document, counted (what the user trial saw)
    padded = _ask(indexed, NONSENSE, "semantic", semantic_min_similarity=None)
    assert len(padded["hits"]) == len(LIBRARY) and padded["total"] == len(LIBRARY)


def test_a_rare_word_finds_the_asset_that_mentions_it_and_only_what_passes_the_floor(indexed):
    floor = indexed.settings.index.semantic_min_similarity
    cos = _cosines(indexed, "zebrawood")
    passing = {aid for aid, c in cos.items() if c >= floor}
    assert "f-desk" in passing and len(passing) < len(LIBRARY)  # the floor separates something here
    for mode in ("hybrid", "semantic"):
        answer = _ask(indexed, "zebrawood", mode)
        assert _ids(answer)[0] == "f-desk", mode
        assert set(_ids(answer)) == passing, mode  # the keyword hit and the near ones; none under the floor
        assert answer["total"] == len(passing), mode
        tags = {b["value"]: b["count"] for b in answer["facets"]["tags"]}
        assert tags.get("product:table") == 1 and sum(tags.values()) == len(passing), mode
    # keyword: the one asset that says it
    assert _ids(_ask(indexed, "zebrawood", "keyword")) == ["f-desk"]


def test_hybrid_keeps_every_keyword_match_whatever_its_cosine(indexed):
    # a floor above every cosine: the vector legs keep nothing, the keyword leg still answers
    answer = _ask(indexed, "desk", "hybrid", semantic_min_similarity=0.99)
    assert set(_ids(answer)) == {"f-desk", "f-tax"} and answer["total"] == 2
    assert _ask(indexed, "desk", "semantic", semantic_min_similarity=0.99)["hits"] == []



@pytest.mark.parametrize("query", ["*", "%", "\\", "!", "?!", "½", "²"])  # trial 31 N2: numerics, no digits
def test_a_query_with_no_letter_or_digit_answers_nothing_in_every_mode(indexed, query):
    """Trial 29: keyword answered `*` with nothing, hybrid and semantic with 20-50 unrelated hits (the vector legs'
    neighbours of a string with no word in it). Every mode now answers it as keyword does; the empty query is still
    every document, newest first."""
    for mode in ("keyword", "semantic", "hybrid"):
        answer = _ask(indexed, query, mode)
        assert (answer["hits"], answer["total"], answer["total_relation"]) == ([], 0, "eq"), (mode, answer["hits"])
        assert answer["mode"] == "keyword" and answer["query"] == query  # answered as keyword mode, as asked
        assert all(not bucket for bucket in answer["facets"].values()), mode
    assert _ask(indexed, "", "hybrid")["total"] == len(LIBRARY)


@pytest.mark.parametrize("query", ["the", "a of", "The, AND the!", "it is", "from"])
def test_a_query_of_stop_words_only_answers_nothing_and_says_why(indexed, query):
    """Trial 29: `the` answered 7 astronauts in hybrid and semantic, the vector legs' nearest neighbours of a word
    that says nothing. A query with no content word now answers nothing in every mode, filtered or not, and
    `not_searched` says why; a query with a content word beside its stop words is searched as before."""
    for mode in ("keyword", "semantic", "hybrid"):
        for extra in ({}, {"status": "auto_applied"}, {"collapse": True}):
            answer = run_search(indexed.client, indexed.settings, SearchRequest(query=query, mode=mode, size=20, **extra))
            assert (answer["hits"], answer["total"], answer["total_relation"]) == ([], 0, "eq"), (mode, extra)
            assert answer["not_searched"]["reason"] == "stop_words_only", (mode, extra)
            assert "stop word" in answer["not_searched"]["message"]
            assert all(not bucket for bucket in answer["facets"].values()), mode
    searched = _ask(indexed, "the desk", "hybrid")
    assert searched["not_searched"] is None and "f-desk" in _ids(searched)
    assert _ask(indexed, "*", "semantic")["not_searched"]["reason"] == "no_word"
    assert _ask(indexed, "", "hybrid")["not_searched"] is None  # the listing, not a search
