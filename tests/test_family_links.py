"""Duplicate links that never loop, and copies processed together that are still one family (issues 15 item 4,
17 item 4), at the real IndexSink on a real osmem-server: whatever the order, the batches, the reruns, every
family has one canonical member (the best by quality, then the smallest id), every other member is duplicate_of
that member, none is duplicate_of itself or of a member pointing back, and processing the same records again
changes nothing."""
from __future__ import annotations

import hashlib
import itertools

import pytest

from consumers.index.sink import IndexSink
from domain.store.management import read_alias
from tests.store_support import as_items, settings_for, validated_asset

pytestmark = pytest.mark.timeout(300)

WRITTEN = ("family_id", "family_size", "family_canonical", "duplicate_of", "duplicate_distance")

#: (width, height, byte size) of a full-size original and of a web copy
ORIG, WEB = (4000, 3000, 5_400_000), (1600, 1200, 410_000)


def copy_record(aid: str, content: str, duplicate_of: str | None = None, *, size=WEB, version: int = 1,
                phash: str | None = None) -> dict:
    """A validated record of an image whose bytes are `content` (copies share its sha256), linked by enrich's
    dedupe to `duplicate_of` (None: enrich found no copy, e.g. two copies enriched at the same moment)."""
    v = validated_asset(aid, version, title="Mug on white", alt_text="a white mug", ocr_text="",
                        tags=[("product", "mug")])
    pre = v["enriched"]["pre"]
    sha = hashlib.sha256(content.encode()).hexdigest()
    pre["image"].update(width=size[0], height=size[1], byte_size=size[2], content_sha256=sha)
    ph = phash or hashlib.md5(content.encode()).hexdigest()[:16]
    pre["hashes"].update(sha256=sha, phash=ph, dhash=ph[::-1])
    v["enriched"]["duplicate_of"] = duplicate_of
    v["enriched"]["duplicate_distance"] = 0 if duplicate_of else None
    return v


def docs(sink: IndexSink) -> dict[str, dict]:
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    hits = sink.client.search(index=read_alias(sink.cfg), size=100, query={"match_all": {}},
                              source_includes=list(WRITTEN))["hits"]["hits"]
    return {h["_id"]: {k: h["_source"].get(k) for k in WRITTEN} for h in hits}


def assert_families_sound(found: dict[str, dict]) -> None:
    """One canonical per family, no self link, no link to a member that links on (so no loop)."""
    for i, d in found.items():
        assert d["duplicate_of"] != i, (i, d)
        if d["family_canonical"]:
            assert d["family_id"] == i and d["duplicate_of"] is None, (i, d)
        else:
            canonical = found[d["family_id"]]
            assert d["duplicate_of"] == d["family_id"] and canonical["family_canonical"], (i, d)
            assert canonical["duplicate_of"] is None, (i, canonical)
    for fam in {d["family_id"] for d in found.values()}:
        members = [i for i, d in found.items() if d["family_id"] == fam]
        assert sum(found[i]["family_canonical"] for i in members) == 1
        assert all(found[i]["family_size"] == len(members) for i in members)


def test_a_rerun_of_two_byte_copies_makes_no_loop_and_changes_nothing(store):
    """The trial's repro: first pass mug_copy -> mug; on the rerun each finds the other (already indexed) and
    enrich links mug -> mug_copy and mug_copy -> mug."""
    sink = IndexSink(settings_for(store.url))
    try:
        sink.process_batch(as_items([copy_record("mug", "cup"), copy_record("mug_copy", "cup", "mug")]))
        first = docs(sink)
        assert first == {
            "mug": {"family_id": "mug", "family_size": 2, "family_canonical": True, "duplicate_of": None,
                    "duplicate_distance": None},
            "mug_copy": {"family_id": "mug", "family_size": 2, "family_canonical": False, "duplicate_of": "mug",
                         "duplicate_distance": 0}}
        for rerun in (2, 3):  # a rerun publishes newer versions: one batch, then one record per batch
            mug, mug_copy = (copy_record("mug", "cup", "mug_copy", version=rerun),
                             copy_record("mug_copy", "cup", "mug", version=rerun))
            for batch in [[mug, mug_copy]] if rerun == 2 else [[mug_copy], [mug]]:
                sink.process_batch(as_items(batch))
            assert docs(sink) == first, rerun
    finally:
        sink.close()


def test_near_copies_linked_both_ways_make_one_family_without_a_loop(store):
    """Near copies (other bytes) that enrich linked to each other on a rerun: the better one is canonical."""
    sink = IndexSink(settings_for(store.url))
    try:
        sink.process_batch(as_items([copy_record("n-web", "web", "n-orig", phash="c3a5f00f0ff0a53c"),
                                     copy_record("n-orig", "orig", "n-web", size=ORIG, phash="c2a4f10e0ff0a53c")]))
        found = docs(sink)
    finally:
        sink.close()
    assert_families_sound(found)
    assert found["n-orig"]["family_canonical"] and found["n-web"]["duplicate_of"] == "n-orig"
    assert found["n-web"]["duplicate_distance"] == 4  # the pHash distance to the canonical member


def test_copies_processed_in_the_same_batch_are_one_family(store):
    """Both copies enriched at the same moment: neither found the other, neither has a link."""
    sink = IndexSink(settings_for(store.url))
    try:
        sink.process_batch(as_items([copy_record("tissue_copy", "tissue"), copy_record("tissue", "tissue"),
                                     copy_record("other", "something else")]))
        found = docs(sink)
    finally:
        sink.close()
    assert_families_sound(found)
    assert found["tissue"] == {"family_id": "tissue", "family_size": 2, "family_canonical": True,
                               "duplicate_of": None, "duplicate_distance": None}
    assert found["tissue_copy"]["duplicate_of"] == "tissue" and found["tissue_copy"]["family_id"] == "tissue"
    assert found["other"]["family_size"] == 1


@pytest.mark.parametrize("order", list(itertools.permutations(["o-orig", "o-web", "o-web2"])))
def test_unlinked_copies_in_consecutive_batches_in_any_order(store, order):
    """Three copies arriving one batch each, no refresh in between, enrich linking none of them (a race on
    every worker): the original (most pixels) is canonical whatever came first, and the result is the same."""
    sink = IndexSink(settings_for(store.url))
    sizes = {"o-orig": ORIG, "o-web": WEB, "o-web2": WEB}
    try:
        for aid in order:
            sink.process_batch(as_items([copy_record(aid, "photo", size=sizes[aid])]))
        found = docs(sink)
    finally:
        sink.close()
    assert_families_sound(found)
    assert {i: (d["family_id"], d["duplicate_of"]) for i, d in found.items()} == {
        "o-orig": ("o-orig", None), "o-web": ("o-orig", "o-orig"), "o-web2": ("o-orig", "o-orig")}, order


def test_copies_of_another_tenant_are_not_family(store):
    sink = IndexSink(settings_for(store.url))
    try:
        a, b = copy_record("t-a", "logo"), copy_record("t-b", "logo")
        b["enriched"]["pre"]["asset"]["tenant"] = "globex"
        sink.process_batch(as_items([a]))
        sink.process_batch(as_items([b]))
        found = docs(sink)
    finally:
        sink.close()
    assert {i: d["family_size"] for i, d in found.items()} == {"t-a": 1, "globex::t-b": 1}


def test_a_deleted_copy_is_no_member(store):
    from tests.store_support import deleted_asset

    sink = IndexSink(settings_for(store.url))
    try:
        sink.process_batch(as_items([copy_record("d-a", "poster")]))
        sink.process_batch(as_items([deleted_asset("d-a", 2)]))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        sink.process_batch(as_items([copy_record("d-b", "poster")]))
        found = docs(sink)
    finally:
        sink.close()
    assert found == {"d-b": {"family_id": "d-b", "family_size": 1, "family_canonical": True, "duplicate_of": None,
                             "duplicate_distance": None}}


def test_a_copy_indexed_before_the_asset_it_links_to_joins_it_when_it_arrives(store):
    """Enrich matched the copy with an original enriched a moment earlier, but the copy reaches the index first."""
    sink = IndexSink(settings_for(store.url))
    try:
        sink.process_batch(as_items([copy_record("e-web", "web", "e-orig", phash="c3a5f00f0ff0a53c")]))
        sink.process_batch(as_items([copy_record("e-other", "other")]))
        sink.process_batch(as_items([copy_record("e-orig", "orig", size=ORIG, phash="c2a4f10e0ff0a53c")]))
        found = docs(sink)
    finally:
        sink.close()
    assert_families_sound(found)
    assert found["e-web"] == {"family_id": "e-orig", "family_size": 2, "family_canonical": False,
                              "duplicate_of": "e-orig", "duplicate_distance": 4}


def test_a_rewrite_not_yet_searchable_is_not_undone_by_the_stale_view(store):
    """Elasticsearch shows a write to search only after its next refresh (every 1 s by default; osmem at once).
    A member this sink re-pointed keeps its _version, so the stale view of it has the same version as what the
    sink remembers writing: the sink's own write must win, or the next copy splits the family again."""
    sink = IndexSink(settings_for(store.url))
    alias = read_alias(sink.cfg)
    try:
        sink.process_batch(as_items([copy_record("r-web", "web", phash="c3a5f00f0ff0a53c")]))
        stale = sink.client.get(index=alias, id="r-web")
        sink.process_batch(as_items([copy_record("r-orig", "orig", "r-web", size=ORIG, phash="c2a4f10e0ff0a53c")]))
        assert docs(sink)["r-web"]["family_id"] == "r-orig"
        # what a search before the refresh still answers for r-web: its body before the rewrite, same version
        now = sink.client.get(index=alias, id="r-web")
        assert now["_version"] == stale["_version"]
        sink.client.index(index=now["_index"], id="r-web", document=stale["_source"], version=now["_version"],
                          version_type="external_gte", refresh=True)
        sink.process_batch(as_items([copy_record("r-web2", "web", phash="c3a5f00f0ff0a53c")]))
        found = docs(sink)
    finally:
        sink.close()
    assert {i: d["family_id"] for i, d in found.items()} == {"r-orig": "r-orig", "r-web": "r-orig",
                                                              "r-web2": "r-orig"}
    assert_families_sound(found)


def test_deleting_the_canonical_member_regroups_the_others_around_the_best_left(store):
    """The original is deleted; its web copies stay one family (the best of them canonical), none keeps a link
    to the deleted document, and re-indexing one of them changes nothing. A member deleted later only shrinks
    the family."""
    from tests.store_support import deleted_asset

    sink = IndexSink(settings_for(store.url))
    try:
        sink.process_batch(as_items([copy_record("n-orig", "orig", size=ORIG, phash="c2a4f10e0ff0a53c")]))
        sink.process_batch(as_items([copy_record("n-web", "web", "n-orig", phash="c3a5f00f0ff0a53c"),
                                     copy_record("n-web2", "web2", "n-web", size=(1200, 900, 200_000),
                                                 phash="c3a5f00f0ff0a53d")]))
        assert {i: d["family_id"] for i, d in docs(sink).items()} == dict.fromkeys(["n-orig", "n-web", "n-web2"],
                                                                                    "n-orig")
        sink.process_batch(as_items([deleted_asset("n-orig", 2)]))
        after = docs(sink)
        # a new version of a copy: enrich no longer finds the deleted original (its lookup and memory forget it)
        sink.process_batch(as_items([copy_record("n-web", "web", version=2, phash="c3a5f00f0ff0a53c")]))
        again = docs(sink)
        sink.process_batch(as_items([deleted_asset("n-web2", 2)]))
        last = docs(sink)
    finally:
        sink.close()
    assert after == {
        "n-web": {"family_id": "n-web", "family_size": 2, "family_canonical": True, "duplicate_of": None,
                  "duplicate_distance": None},
        "n-web2": {"family_id": "n-web", "family_size": 2, "family_canonical": False, "duplicate_of": "n-web",
                   "duplicate_distance": 1}}
    assert again == after
    assert last == {"n-web": {"family_id": "n-web", "family_size": 1, "family_canonical": True,
                              "duplicate_of": None, "duplicate_distance": None}}

