"""The in-process vector cache of the embedded store's exact cosine (domain/store/vector_cache.py): the same
answers as reading every vector per query, kept fresh as documents are indexed, rewritten and deleted. Real
osmem-server, documents written by the real IndexSink."""
from __future__ import annotations

import time

import pytest

from consumers.index.sink import IndexSink
from domain.store.management import read_alias
from domain.store.search import hybrid_search, semantic_search, similar
from tests.store_support import as_items, deleted_asset, settings_for, validated_asset

LIBRARY = [
    ("v-party", "Kids blowing out birthday candles", [("subject", "cake")], "auto_applied"),
    ("v-wedding", "Bride and groom dancing at their wedding", [("subject", "people")], "needs_review"),
    ("v-tax", "Tax form on an office desk", [("subject", "document")], "auto_applied"),
    ("v-sofa", "Blue sofa in a living room", [("product", "sofa")], "auto_applied"),
    ("v-lake", "Mountain lake at dawn", [("setting", "outdoor")], "auto_applied"),
]


def _ids(hits):
    return [h["asset_id"] for h in hits]


@pytest.fixture
def sink(store):
    s = IndexSink(settings_for(store.url, vector_cache_check_s=0.1))
    s.process_batch(as_items([validated_asset(aid, 1, title=t, alt_text=t, tags=tags, status=st, ocr_text="")
                              for aid, t, tags, st in LIBRARY]))
    s.client.indices.refresh(index=read_alias(s.cfg))
    yield s
    s.close()


def test_the_cache_answers_as_a_scan_does(sink):
    cached = sink.settings
    scan = cached.with_overrides(index={"vector_cache": False})
    for q in ("joyful celebration", "paperwork", "somewhere to sit"):
        a = semantic_search(sink.client, cached, q, filters=[], size=5)
        b = semantic_search(sink.client, scan, q, filters=[], size=5)
        assert _ids(a) == _ids(b) and [h["score"] for h in a] == pytest.approx([h["score"] for h in b], abs=1e-5)
        assert a[0]["title"]  # hit fields come from the store
    flt = [{"term": {"status": "needs_review"}}]
    assert _ids(semantic_search(sink.client, cached, "joyful celebration", filters=flt, size=5)) == ["v-wedding"]
    near = similar(sink.client, cached, "v-party", size=2)
    assert "v-party" not in _ids(near) and _ids(near) == _ids(similar(sink.client, scan, "v-party", size=2))


def _eventually(check, timeout_s: float = 10.0) -> bool:
    """The cache refreshes in the background every vector_cache_check_s (0.1 s here)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_the_cache_follows_new_rewritten_and_deleted_documents(sink):
    c, st = sink.client, sink.settings
    assert _eventually(lambda: _ids(semantic_search(c, st, "fireworks over the harbour", filters=[], size=1)) !=
                       ["v-fireworks"])
    sink.process_batch(as_items([validated_asset("v-fireworks", 1, title="Fireworks over the harbour at night",
                                                 alt_text="fireworks", tags=[("setting", "night")], ocr_text="")]))
    c.indices.refresh(index=read_alias(sink.cfg))
    assert _eventually(lambda: _ids(semantic_search(c, st, "fireworks over the harbour", filters=[], size=1)) ==
                       ["v-fireworks"])
    # a new version that says something else: its new vector is used
    sink.process_batch(as_items([validated_asset("v-fireworks", 2, title="Spreadsheet of quarterly tax figures",
                                                 alt_text="a spreadsheet", tags=[], ocr_text="")]))
    c.indices.refresh(index=read_alias(sink.cfg))
    assert _eventually(lambda: _ids(semantic_search(c, st, "fireworks over the harbour", filters=[], size=1)) !=
                       ["v-fireworks"])
    sink.process_batch(as_items([deleted_asset("v-tax", 2)]))
    c.indices.refresh(index=read_alias(sink.cfg))
    assert _eventually(lambda: "v-tax" not in _ids(semantic_search(c, st, "tax form paperwork", filters=[], size=10)))
    assert "v-tax" not in _ids(hybrid_search(c, st, "tax form paperwork", size=10))


def test_past_its_limit_the_cache_stays_within_it(store):
    """index.vector_cache_max_docs bounds the memory: documents indexed once the cache holds that many are not
    added between the periodic reloads (they are unranked until then, as documented), however many arrive."""
    from domain.store import vector_cache

    s = IndexSink(settings_for(store.url, vector_cache_check_s=0.1, vector_cache_max_docs=4))
    try:
        s.process_batch(as_items([validated_asset(aid, 1, title=t, alt_text=t, tags=tags, status=st, ocr_text="")
                                  for aid, t, tags, st in LIBRARY[:4]]))
        s.client.indices.refresh(index=read_alias(s.cfg))
        st = s.settings
        assert len(semantic_search(s.client, st, "birthday", filters=[], size=10)) >= 1  # loaded: 4 rows
        s.process_batch(as_items([validated_asset(f"v-more-{i}", 1, title=f"Harbour fireworks {i}",
                                                  alt_text="fireworks", tags=[], ocr_text="") for i in range(6)]))
        s.client.indices.refresh(index=read_alias(s.cfg))
        time.sleep(1.5)  # fifteen checks of the background refresh
        sizes = [len(e.ids) for key, e in vector_cache._entries.items() if key[1] == read_alias(s.cfg)]
    finally:
        s.close()
    assert sizes and max(sizes) <= 4, sizes


def test_stopping_the_run_s_store_logs_no_connection_warnings_from_the_search_cache(own_store, tmp_path, caplog):
    """Trial 33 N7: Ctrl-C of `run --serve` printed three `elastic_transport.node_pool` WARNING lines ("Node … has
    failed for 1/2/3 times in a row") after "review app stopped": the review app's searches left the vector cache
    polling the embedded store in the background, and the run then stopped that store. The run ends the polling
    before it stops the store, and the client's expected connection errors while it stops are not warnings; the
    logger's level is the same after the stop (a real error while running is logged as ever)."""
    import logging

    from app.embedded_run import EmbeddedRun

    s = IndexSink(settings_for(own_store.url, vector_cache_check_s=0.1))
    try:
        s.process_batch(as_items([validated_asset(aid, 1, title=t, alt_text=t, tags=tags, status=st, ocr_text="")
                                  for aid, t, tags, st in LIBRARY]))
        s.client.indices.refresh(index=read_alias(s.cfg))
        assert semantic_search(s.client, s.settings, "joyful celebration", filters=[], size=2)  # the cache polls
    finally:
        s.close()
    run = EmbeddedRun([], out_dir=tmp_path)
    run.services, run.settings = [own_store], s.settings
    level = logging.getLogger("elastic_transport").level
    caplog.set_level(logging.WARNING)
    run.stop()
    time.sleep(1.0)  # ten polls' time: each would have failed
    said = [r.getMessage() for r in caplog.records  # (another test's cache may poll the session's store)
            if r.name.startswith("elastic_transport") and own_store.url in r.getMessage()]
    assert said == [] and not own_store.running
    assert logging.getLogger("elastic_transport").level == level


def test_the_background_refresh_counts_the_store_s_documents_at_most_every_vector_cache_count_s(store):
    """Session 19: the refresh compared the store's document count at every check (every second per kind), and
    osmem counts 100k documents in ~50 ms: on one core those counts were most of keyword search's p99. New and
    rewritten documents are still read at every check; the count (a delete) at most every vector_cache_count_s."""
    s = IndexSink(settings_for(store.url, vector_cache_check_s=0.1, vector_cache_count_s=30))
    try:
        s.process_batch(as_items([validated_asset(aid, 1, title=t, alt_text=t, tags=tags, status=st, ocr_text="")
                                  for aid, t, tags, st in LIBRARY]))
        s.client.indices.refresh(index=read_alias(s.cfg))
        requests: list[str] = []
        send = s.client.perform_request

        def seen(method, path, *args, **kwargs):
            requests.append(path)
            return send(method, path, *args, **kwargs)

        s.client.perform_request = seen  # the store's client, as the search process uses it: its requests seen
        assert _ids(semantic_search(s.client, s.settings, "birthday", filters=[], size=1)) == ["v-party"]
        time.sleep(1.5)  # fifteen checks
        counts = [p for p in requests if p.endswith("/_count")]
        assert len(counts) <= 1, requests
        # a new document is still found at the next check
        s.process_batch(as_items([validated_asset("v-fireworks", 1, title="Fireworks over the harbour at night",
                                                  alt_text="fireworks", tags=[("setting", "night")], ocr_text="")]))
        s.client.indices.refresh(index=read_alias(s.cfg))
        assert _eventually(lambda: _ids(semantic_search(s.client, s.settings, "fireworks over the harbour",
                                                        filters=[], size=1)) == ["v-fireworks"], timeout_s=5)
    finally:
        s.close()
