"""Index sink against a real osmem-server: versioning, deletes, per-item errors, outage, search, migration."""
from __future__ import annotations

import json
import time

import pytest
from elasticsearch import NotFoundError, helpers
from typer.testing import CliRunner

from app import cli

from consumers.index.document import document_from_validated
from domain.store.management import (MAPPING_VERSION, MAPPINGS, TEXT_ANALYZER, alias_targets, ensure_index,
                                     index_body, mapping_version, migrate, read_alias, write_alias)
from domain.store.search import literal_leg, search
from consumers.index.sink import IndexSink
from streams.errors import PermanentError, TransientError
from streams.metrics import INDEX_ITEMS
from app.settings import Settings
from tests.kafka_support import env_for
from tests.store_support import as_items, deleted_asset, settings_for, validated_asset


def _refresh(sink: IndexSink) -> None:
    sink.client.indices.refresh(index=read_alias(sink.cfg))


def _doc(sink: IndexSink, asset_id: str) -> dict | None:
    try:
        r = sink.client.get(index=read_alias(sink.cfg), id=asset_id)
    except NotFoundError:
        return None
    return {"version": r["_version"], **r["_source"]}


def _count(sink: IndexSink) -> int:
    _refresh(sink)
    return sink.client.count(index=read_alias(sink.cfg))["count"]


def _items(result: str) -> float:
    return INDEX_ITEMS.labels(result=result)._value.get()


@pytest.fixture
def sink(store):
    s = IndexSink(settings_for(store.url))
    yield s
    s.close()


def test_same_asset_twice_is_one_document(sink):
    v = validated_asset("asset-1", 1)
    assert sink.process_batch(as_items([v, v])) == [None, None]
    assert sink.process_batch(as_items([v])) == [None]  # a replay after a restart of the consumer
    assert _count(sink) == 1
    assert _doc(sink, "asset-1")["title"] == "Red running shoe on a white background"


def test_older_version_after_newer_keeps_the_newer(sink):
    conflicts = _items("conflict")
    new = validated_asset("asset-2", 3, title="Green trail shoe")
    old = validated_asset("asset-2", 2, title="Red running shoe")
    assert sink.process_batch(as_items([new])) == [None]
    assert sink.process_batch(as_items([old])) == [None]  # a 409 is success: the offset may be committed
    doc = _doc(sink, "asset-2")
    assert (doc["version"], doc["title"]) == (3, "Green trail shoe")
    # both orders inside one batch end the same way
    assert sink.process_batch(as_items([validated_asset("asset-3", 5, title="five"),
                                        validated_asset("asset-3", 4, title="four")])) == [None, None]
    assert _doc(sink, "asset-3")["title"] == "five"
    assert _items("conflict") - conflicts == 2


def test_delete_respects_versions(sink):
    assert sink.process_batch(as_items([validated_asset("asset-4", 5)])) == [None]
    assert sink.process_batch(as_items([deleted_asset("asset-4", 4)])) == [None]  # stale delete: conflict
    assert _doc(sink, "asset-4")["version"] == 5
    assert sink.process_batch(as_items([deleted_asset("asset-4", 6)])) == [None]
    assert _doc(sink, "asset-4") is None
    assert sink.process_batch(as_items([deleted_asset("never-indexed", 1)])) == [None]  # 404 is success
    _refresh(sink)
    assert [h["asset_id"] for h in search(sink.client, sink.settings, "shoe")] == []


def test_rejected_document_is_permanent_and_batch_mates_are_indexed(sink):
    good1 = validated_asset("asset-5", 1, title="Yellow umbrella")
    bad = validated_asset("asset-6", 1, title="Yellow raincoat", gps=(123.4, 2.0))  # latitude out of range
    good2 = validated_asset("asset-7", 1, title="Yellow boots")
    nan = validated_asset("asset-8", 1, title="Yellow hat", gps=(float("nan"), 2.0))  # Avro-valid, not JSON
    results = sink.process_batch(as_items([good1, bad, good2, nan]))
    assert results[0] is None and results[2] is None
    assert isinstance(results[3], PermanentError) and results[3].details["doc_id"] == "asset-8"
    err = results[1]
    assert isinstance(err, PermanentError)
    assert err.details["error_type"] == "mapper_parsing_exception"
    assert "location" in err.details["error_reason"]
    # a negative version would make the store refuse the whole bulk request: refused before sending
    (neg,) = sink.process_batch(as_items([validated_asset("asset-9", -1)]))
    assert isinstance(neg, PermanentError) and neg.reason == "document_error"
    assert err.details["doc_id"] == "asset-6" and err.details["status"] == "400"
    _refresh(sink)
    assert sorted(h["asset_id"] for h in search(sink.client, sink.settings, "yellow")) == ["asset-5", "asset-7"]


def test_store_outage_is_transient_then_the_same_batch_succeeds(own_store):
    # the way the embedded run points the sink at its store
    sink = IndexSink(Settings().with_overrides(index={**own_store.index_overrides(), "index": "outage",
                                                      "health_check_interval_s": 0.2}))
    try:
        batch = as_items([validated_asset(f"out-{i}", 1, title=f"Lighthouse photo {i}") for i in range(5)])
        assert sink.process_batch(batch[:1]) == [None]
        assert sink.ready() and sink.should_pause() is None

        own_store.stop()
        results = sink.process_batch(batch)
        assert all(isinstance(r, TransientError) for r in results), results
        assert "unavailable" in (sink.should_pause() or "")
        time.sleep(0.25)  # health_check_interval_s = 0.2 in tests
        assert sink.ready() is False
        assert sink.should_pause() is not None

        own_store.restart()  # same port, empty (in-memory)
        time.sleep(0.25)
        assert sink.ready() is True
        assert sink.should_pause() is None
        assert sink.process_batch(batch) == [None] * 5
        _refresh(sink)
        assert sorted(h["asset_id"] for h in search(sink.client, sink.settings, "lighthouse")) == \
            [f"out-{i}" for i in range(5)]
    finally:
        sink.close()


def test_search_filters_and_hit_shape(sink):
    sink.process_batch(as_items([
        validated_asset("s-1", 1, title="Red dress on a mannequin", tags=[("color", "red"), ("product", "dress")]),
        validated_asset("s-2", 1, title="Red sofa in a living room", tags=[("color", "red"), ("product", "sofa")],
                        status="needs_review", usage_flag="credit_required"),
        validated_asset("s-3", 1, title="Blue sofa", tags=[("color", "blue"), ("product", "sofa")]),
    ]))
    _refresh(sink)
    hits = search(sink.client, sink.settings, "red sofa")
    assert hits[0]["asset_id"] == "s-2"
    assert set(hits[0]) == {"asset_id", "tenant", "title", "alt_text", "tags", "status", "usage_flag", "score",
                            "field_sources", "reviewed_by", "event_time", "place", "duplicate_of", "family_id",
                            "family_size", "degraded_parts", "media_type", "decorative", "highlights"}
    assert hits[0]["tags"] == ["color:red", "product:sofa"] and hits[0]["score"] > 0
    assert {h["asset_id"] for h in search(sink.client, sink.settings, None, tags=["product:sofa"])} == {"s-2", "s-3"}
    assert [h["asset_id"] for h in search(sink.client, sink.settings, "sofa", tags=["color:red", "product:sofa"])] \
        == ["s-2"]
    assert [h["asset_id"] for h in search(sink.client, sink.settings, None, status="needs_review")] == ["s-2"]
    assert {h["asset_id"] for h in search(sink.client, sink.settings, None, usage="ok")} == {"s-1", "s-3"}
    assert [h["asset_id"] for h in search(sink.client, sink.settings, "mannequin")] == ["s-1"]  # alt_text/title
    assert [h["asset_id"] for h in search(sink.client, sink.settings, "dresses")] == ["s-1"]  # english stemming


def test_ensure_index_is_idempotent_and_uses_aliases(es, store):
    s = settings_for(store.url)
    name = ensure_index(es, s)
    assert ensure_index(es, s) == name == f"{s.index.index}-v1"
    assert alias_targets(es, write_alias(s)) == [name] and alias_targets(es, read_alias(s)) == [name]
    mapping = es.indices.get_mapping(index=name)[name]["mappings"]
    props = mapping["properties"]
    assert props["location"]["type"] == "geo_point"
    assert props["hashes"]["properties"]["phash_bands"]["type"] == "keyword"
    assert props["provenance"]["type"] == "nested"
    assert props["enrichment"]["enabled"] is False
    assert props["title"]["analyzer"] == TEXT_ANALYZER
    assert mapping["_meta"] == MAPPINGS["_meta"]


def _english(mapping):
    """A mapping as version 5 wrote it: every text field on the built-in `english` analyzer (no folding)."""
    if isinstance(mapping, dict):
        return {k: ("english" if k == "analyzer" else _english(v)) for k, v in mapping.items()}
    return mapping


def test_ensure_index_warns_about_an_outdated_mapping(es, store, caplog):
    s = settings_for(store.url)
    old = {**_english(MAPPINGS), "_meta": {"assetstream_mapping_version": 0}}
    es.indices.create(index=f"{s.index.index}-v3", mappings=old,
                      aliases={read_alias(s): {}, write_alias(s): {"is_write_index": True}})
    with caplog.at_level("WARNING", logger="domain.store.management"):
        assert ensure_index(es, s) == f"{s.index.index}-v3"
    assert "mapping version 0" in caplog.text and "index migrate" in caplog.text
    assert migrate(es, s)["to_index"] == f"{s.index.index}-v4"
    assert mapping_version(es, f"{s.index.index}-v4") == MAPPINGS["_meta"]["assetstream_mapping_version"]


def test_migration_swaps_aliases_and_search_keeps_working(sink):
    sink.process_batch(as_items([validated_asset(f"m-{i}", i + 1, title=f"Mountain lake photo {i}")
                                 for i in range(12)] + [validated_asset("m-x", 7, title="City street")]))
    _refresh(sink)
    before = search(sink.client, sink.settings, "mountain lake", size=50)
    assert len(before) == 12

    summary = migrate(sink.client, sink.settings, to_version=2)  # already current: only an explicit version copies
    base = sink.cfg.index
    assert (summary["from_index"], summary["to_index"]) == (f"{base}-v1", f"{base}-v2")
    assert summary["documents"] == 13
    assert alias_targets(sink.client, write_alias(sink.cfg)) == [f"{base}-v2"]
    assert alias_targets(sink.client, read_alias(sink.cfg)) == [f"{base}-v2"]
    after = search(sink.client, sink.settings, "mountain lake", size=50)
    assert [(h["asset_id"], h["title"]) for h in after] == [(h["asset_id"], h["title"]) for h in before]

    # versions survived the copy: a stale replay is still a no-op, a newer version still lands -- in v2
    assert sink.process_batch(as_items([validated_asset("m-3", 2, title="stale"),
                                        validated_asset("m-x", 8, title="City street at night")])) == [None, None]
    assert _doc(sink, "m-3")["title"] == "Mountain lake photo 3"
    assert _doc(sink, "m-x")["version"] == 8
    assert sink.client.get(index=f"{base}-v2", id="m-x")["_source"]["title"] == "City street at night"
    assert sink.client.get(index=f"{base}-v1", id="m-x")["_source"]["title"] == "City street"


def test_migration_without_the_reindex_api(store):
    sink = IndexSink(settings_for(store.url, migrate_use_reindex_api=False, migrate_batch_size=3))
    try:
        sink.process_batch(as_items([validated_asset(f"r-{i}", 10 + i) for i in range(7)]))
        summary = migrate(sink.client, sink.settings, to_version=5)
        assert summary["method"] == "scan+bulk" and summary["documents"] == 7
        assert alias_targets(sink.client, write_alias(sink.cfg)) == [f"{sink.cfg.index}-v5"]
        assert _doc(sink, "r-4")["version"] == 14
    finally:
        sink.close()


def test_an_index_made_before_accent_folding_gets_it_by_migrate(store, caplog):
    """Trial 23: an index made before mapping version 6 keeps its analyzer (an analyzer never changes in place):
    "cafe" does not find "Café" there; `assetstream index migrate` makes the new index with the folding analyzer
    and copies the documents, and from then on it does (docs/operations.md, docs/index.md).
    Trial 26 F2/F3: the migration did not tell the operator to run the command being run, and a second run copied
    the whole index again (-v3, -v4, ... for every re-run of a rollout Job): it is a no-op that says so."""
    s = settings_for(store.url)
    sink = IndexSink(s)
    try:
        sink.client.indices.create(
            index=f"{s.index.index}-v1", settings={"number_of_replicas": 0},
            mappings={**_english(MAPPINGS), "_meta": {"assetstream_mapping_version": 5}},
            aliases={read_alias(s): {}, write_alias(s): {"is_write_index": True}})
        sink.process_batch(as_items([validated_asset("zh-1", 1, title="Café terrace in Zürich")]))
        _refresh(sink)
        assert [h["asset_id"] for h in search(sink.client, s, "Café")] == ["zh-1"]
        assert search(sink.client, s, "cafe") == [] and search(sink.client, s, "zurich") == []
        # review 14 L1: the literal leg (the exact words) still finds the words as written there
        assert [h["_id"] for h in literal_leg(sink.client, s, "Café Zürich", [], 10)] == ["zh-1"]
        env = env_for(s)
        caplog.clear()  # the sink's own warning about the v5 index, written above, is right
        with caplog.at_level("INFO", logger="domain.store.management"):
            first = CliRunner().invoke(cli.app, ["index", "migrate", "--json"], env=env)
        assert first.exit_code == 0, first.output
        summary = json.loads(first.stdout)
        assert summary["to_index"] == f"{s.index.index}-v2" and summary["migrated"] is True
        assert mapping_version(sink.client, summary["to_index"]) == MAPPING_VERSION
        assert "run `assetstream index migrate`" not in caplog.text
        assert f"(mapping version 5) to {s.index.index}-v2 (mapping version {MAPPING_VERSION})" in caplog.text
        for q in ("cafe", "zurich", "Café"):
            assert [h["asset_id"] for h in search(sink.client, s, q)] == ["zh-1"], q
        again = CliRunner().invoke(cli.app, ["index", "migrate"], env=env)
        assert again.exit_code == 0, again.output
        assert f"{s.index.index}-v2 is already at mapping version {MAPPING_VERSION}: nothing to migrate" in \
            again.stdout
        assert not sink.client.indices.exists(index=f"{s.index.index}-v3")
        assert alias_targets(sink.client, write_alias(s)) == [f"{s.index.index}-v2"]
        # code review 15b L4: a rollback's migrate copied an index made by a newer release into older mappings
        sink.client.indices.put_mapping(index=f"{s.index.index}-v2",
                                        meta={"assetstream_mapping_version": MAPPING_VERSION + 1})
        back = CliRunner().invoke(cli.app, ["index", "migrate"], env=env)
        assert back.exit_code == 2 and f"newer than this release's {MAPPING_VERSION}" in " ".join(back.output.split())
        assert not sink.client.indices.exists(index=f"{s.index.index}-v3")
    finally:
        sink.close()


def test_document_mapping():
    v = validated_asset("doc-1", 9, caption="A shoe", gps=(40.0, -3.5))
    doc_id, version, body = document_from_validated(v)
    assert (doc_id, version) == ("doc-1", 9)
    assert body["location"] == {"lat": 40.0, "lon": -3.5}
    assert body["facets"] == {"color": ["red"], "product": ["shoe"], "style": ["studio"]}
    assert body["tags"] == ["color:red", "product:shoe", "style:studio"]
    assert body["hashes"]["phash_bands"] == v["enriched"]["pre"]["hashes"]["phash_bands"]
    assert body["enrichment"]["raw_outputs"] == {"tagging": '{"tags": ["red", "shoe"]}'}
    assert body["event_time"] == "2026-03-01T12:09:00.000+00:00"
    assert body["provenance"][0]["model"] == "clip-vit-b32" and body["cost_usd"] == pytest.approx(0.00042)
    assert body["ocr_text"] == "SALE 50%" and body["exif"]["iso"] == 200 and body["place"]["country_code"] == "FR"
    assert "location" not in document_from_validated(validated_asset("doc-2", 1, gps=None))[2]
    assert document_from_validated(deleted_asset("doc-1", 10)) == ("doc-1", 10, None)
    # pixels15: an animated image's frame count is stored (not mapped: shown to a reviewer, never searched)
    assert "frames" not in body and "frames" not in MAPPINGS["properties"]
    v["enriched"]["pre"]["image"]["frames"] = 12
    assert document_from_validated(v)[2]["frames"] == 12


def test_migration_under_concurrent_writes_and_deletes_converges(sink):
    import random
    import threading

    ids = [f"c-{i:03d}" for i in range(150)]
    version = {a: 1 for a in ids}
    assert sink.process_batch(as_items([validated_asset(a, 1, title=f"Harbour photo {a}") for a in ids])) \
        == [None] * len(ids)
    present = set(ids)
    done = threading.Event()
    rnd = random.Random(7)

    def writer():
        while True:
            last = done.is_set()
            batch = []
            for a in rnd.sample(ids, 20):
                version[a] += 1
                if rnd.random() < 0.4:
                    batch.append(deleted_asset(a, version[a]))
                    present.discard(a)
                else:
                    batch.append(validated_asset(a, version[a], title=f"Harbour photo {a} v{version[a]}"))
                    present.add(a)
            assert sink.process_batch(as_items(batch)) == [None] * len(batch)
            if last:
                return

    t = threading.Thread(target=writer)
    t.start()
    try:
        summary = migrate(sink.client, sink.settings)
    finally:
        done.set()
        t.join(30)
    _refresh(sink)
    new = summary["to_index"]
    assert alias_targets(sink.client, write_alias(sink.cfg)) == [new]
    got = {h["_id"]: h["_version"] for h in helpers.scan(
        sink.client, index=read_alias(sink.cfg), version=True, query={"query": {"match_all": {}}})}
    assert set(got) == present
    assert got == {a: version[a] for a in present}


def test_migration_catch_up_removes_documents_deleted_from_the_old_index(es, store):
    """The race the catch-up exists for, staged by hand: a delete lands in the old index after the copy."""
    from domain.store.management import _drop_deleted, _versions

    s = settings_for(store.url)
    old = ensure_index(es, s)
    for a, v in (("d-1", 3), ("d-2", 4), ("d-3", 5)):
        es.index(index=write_alias(s), id=a, document={"asset_id": a}, version=v, version_type="external")
    es.indices.create(index="copy-" + old, **index_body(s))
    es.reindex(source={"index": old}, dest={"index": "copy-" + old, "version_type": "external"}, refresh=True)
    copied = _versions(es, s.index, "copy-" + old)
    es.delete(index=old, id="d-1", version=6, version_type="external")  # deleted after the copy
    es.delete(index=old, id="d-2", version=6, version_type="external")  # deleted, but rewritten in the new index
    es.index(index="copy-" + old, id="d-2", document={"asset_id": "d-2"}, version=7, version_type="external")
    es.indices.refresh(index=old)
    assert _drop_deleted(es, "copy-" + old, copied, _versions(es, s.index, old)) == 1
    es.indices.refresh(index="copy-" + old)
    assert sorted(_versions(es, s.index, "copy-" + old)) == ["d-2", "d-3"]


def test_held_tag_suggestions_are_stored_but_never_searchable_as_tags(sink):
    """A weak model tag validate held back (issue 15: per-field auto-apply) is a suggestion for an editor: the
    document keeps it apart, and a tag filter or facet never finds the asset by it."""
    v = validated_asset("held-1", 1, title="Blue gift box", tags=[("product", "packaging")])
    v["tag_suggestions"] = [{"tag": "color:gray", "facet": "color", "label": "gray", "score": 0.41, "source": "model"}]
    assert sink.process_batch(as_items([v])) == [None]
    _refresh(sink)
    doc = _doc(sink, "held-1")
    assert doc["tag_suggestions"] == ["color:gray"]
    assert doc["tags"] == ["product:packaging"] and "color" not in doc["facets"]
    assert search(sink.client, sink.settings, None, tags=["color:gray"]) == []
    assert [h["asset_id"] for h in search(sink.client, sink.settings, None, tags=["product:packaging"])] == ["held-1"]


def test_a_store_answering_503_is_an_outage_that_names_its_status():
    """A cluster that answers 503 to the bulk request pauses the sink and gives every record back as transient,
    with the status in the reason. It used to raise AttributeError (ApiError has status_code, not status)."""
    from tests.store_support import answering

    with answering(503) as url:
        sink = IndexSink(settings_for(url))
        try:
            results = sink.process_batch(as_items([validated_asset("r-1"), validated_asset("r-2")]))
            assert len(results) == 2 and all(isinstance(r, TransientError) for r in results), results
            assert "503" in str(results[0])
            assert sink.should_pause() is not None  # the group pauses until the store answers again
        finally:
            sink.close()


def test_a_bulk_request_the_store_refuses_is_bisected_down_to_permanent_record_errors(store):
    """A 400 to the whole bulk request (one invalid action, a request too large) is bisected down to single
    records, and a record the store still refuses alone is a permanent error with the store's reason."""
    from tests.store_support import answering

    with answering(400, "x_content_parse_exception", only="_bulk", upstream=store.url) as url:
        sink = IndexSink(settings_for(url))
        try:
            results = sink.process_batch(as_items([validated_asset(f"b-{i}") for i in range(3)]))
            assert len(results) == 3 and all(isinstance(r, PermanentError) for r in results), results
            assert [(r.reason, r.details["status"]) for r in results] == [("x_content_parse_exception", "400")] * 3
            assert sink.should_pause() is None  # a refused record is no outage
        finally:
            sink.close()
