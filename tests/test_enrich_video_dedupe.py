"""Dedupe of videos by their keyframes (issue 20): a clip trimmed by a few seconds at the start or the end (and
re-encoded) is answered from the original's enrichment, found in the real search store by a worker that never
saw the original; a different clip with the same logo intro (the same poster frame) is not. The videos are made
by the test (PyAV), preprocessed and enriched by the real stages with the offline provider."""
from __future__ import annotations

import asyncio

import pytest

from app.settings import Settings
from consumers.enrich.dedupe import hamming
from consumers.enrich.stage import EnrichStage
from domain.store.client import make_client
from domain.store.management import ensure_index
from streams.avro import roundtrip
from tests.preprocess_support import event, stage as preprocess_stage
from tests.store_support import settings_for
from tests.test_enrich_dedupe import index_enriched
from tests.test_enrich_stage import ctx
from tests.video_support import Scene, make_video

LOGO = Scene(2.0, "ACME FILMS", (255, 255, 255), (200, 20, 20))
BREAD = Scene(3.0, "FRESH BREAD", (250, 240, 200))
SUNDAY = Scene(3.0, "OPEN SUNDAY", (30, 60, 170), (255, 255, 255))
CORNER = Scene(3.0, "CORNER BAKERY", (20, 120, 60), (255, 255, 255))
ORIGINAL = (LOGO, BREAD, SUNDAY, CORNER)  # 11 s
CUT_START = (Scene(2.0, BREAD.text, BREAD.background), SUNDAY, CORNER)  # the first 3 s cut: 8 s
CUT_END = (LOGO, BREAD, SUNDAY, Scene(1.0, CORNER.text, CORNER.background, CORNER.ink))  # the last 2 s cut: 9 s
SAME_INTRO = (LOGO, Scene(3.0, "SUMMER SALE", (250, 200, 40)), Scene(3.0, "NEW SHOES", (120, 20, 120), (255, 255, 255)),
              Scene(3.0, "VISIT US", (60, 60, 60), (255, 255, 255)))  # another clip behind the same logo intro


@pytest.fixture(scope="module")
def videos():
    """PreprocessedAsset records as the enrich stage reads them (a 1 s GOP, as web videos are cut)."""
    pre = preprocess_stage()

    def one(asset_id, scenes, **kw):
        return roundtrip("PreprocessedAsset", pre.preprocess_bytes(
            event(f"file:///{asset_id}", asset_id=asset_id), make_video(scenes, gop=10, **kw)))
    return {"orig": one("orig", ORIGINAL), "cut-start": one("cut-start", CUT_START),
            "cut-end": one("cut-end", CUT_END, container="webm", codec="libvpx-vp9", size=(480, 270)),
            "same-intro": one("same-intro", SAME_INTRO)}


def poster_distance(a, b) -> int:
    return hamming(a["hashes"]["phash"], b["hashes"]["phash"])


def enrich(settings: Settings, *values):
    stage = EnrichStage(settings)

    async def go():
        try:
            return [await stage.aprocess(v, ctx(v["asset"]["asset_id"])) for v in values]
        finally:
            await stage.aclose()
    return [o.value for o in asyncio.run(go())]


def test_a_trimmed_copy_reuses_the_original_found_in_the_store_and_a_shared_intro_does_not(store, videos):
    s = settings_for(store.url).with_overrides(enrich={"dedupe": "elasticsearch"})
    client = make_client(s)
    try:
        ensure_index(client, s)
        (orig,) = enrich(s, videos["orig"])  # worker A
        assert orig["duplicate_of"] is None and orig["enrichment"]["tags"]
        index_enriched(client, {"index": s.index.index}, orig)

        # worker B: a fresh LRU, so every answer comes from the store
        start, end, other = enrich(s, videos["cut-start"], videos["cut-end"], videos["same-intro"])
    finally:
        client.close()
    # the poster alone would get both wrong: the start cut has another poster, the other clip the same one
    assert poster_distance(videos["cut-start"], videos["orig"]) > s.enrich.dedupe_max_distance
    assert poster_distance(videos["same-intro"], videos["orig"]) <= s.enrich.dedupe_max_distance

    for copy in (start, end):
        assert copy["duplicate_of"] == "orig", copy["pre"]["asset"]["asset_id"]
        assert copy["duplicate_distance"] <= s.enrich.dedupe_max_distance
        assert copy["enrichment"]["tags"] == orig["enrichment"]["tags"]
        assert copy["enrichment"]["alt_text"] == orig["enrichment"]["alt_text"]
        assert copy["provenance"][-1]["model"] == "keyframes" and copy["cost_usd"] == 0.0
    assert other["duplicate_of"] is None  # enriched on its own
    assert other["provenance"][-1]["task"] != "dedupe"


def test_in_one_worker_the_trimmed_copy_is_found_by_its_keyframes(videos):
    s = Settings().with_overrides(enrich={"dedupe": "memory", "result_cache": "off"})
    orig, start, other = enrich(s, videos["orig"], videos["cut-start"], videos["same-intro"])
    assert start["duplicate_of"] == "orig" and start["enrichment"]["tags"] == orig["enrichment"]["tags"]
    assert other["duplicate_of"] is None


def test_a_trim_longer_than_the_setting_is_another_clip(videos):
    s = Settings().with_overrides(enrich={"dedupe": "memory", "result_cache": "off", "dedupe_video_max_trim_s": 2.0})
    _, start = enrich(s, videos["orig"], videos["cut-start"])
    assert start["duplicate_of"] is None  # 3 s cut
    _, end = enrich(s, videos["orig"], videos["cut-end"])
    assert end["duplicate_of"] == "orig"  # 2 s cut


def test_a_trimmed_copy_says_it_is_the_same_clip_not_its_poster_distance(store, videos):
    """The user trial: the trimmed copy's reason said "near-duplicate of … (pHash distance 26)", its poster's
    distance (another frame: far over any threshold), while the link is the same-clip match of its keyframes. The
    reason validate writes and the one the index rewrites with the family link both say so, for the copy cut at
    the start (another poster) and the one cut at the end (the same poster: a pHash distance of 0 is no proof)."""
    from consumers.validate.stage import ValidateStage
    from domain.store.management import read_alias
    from tests.store_support import index_all

    s = settings_for(store.url).with_overrides(enrich={"dedupe": "memory", "result_cache": "off"})
    validated = [ValidateStage(s).process(v).value
                 for v in enrich(s, videos["orig"], videos["cut-start"], videos["cut-end"])]
    same_clip = "near-duplicate of orig (same clip: its keyframes match)"
    assert all(same_clip in v["reasons"] for v in validated[1:])
    index_all(s, validated)
    client = make_client(s)
    try:
        hits = client.search(index=read_alias(s.index), query={"terms": {"asset_id": ["cut-start", "cut-end"]}},
                             source_includes=["reasons", "duplicate_of", "duplicate_distance"])["hits"]["hits"]
    finally:
        client.close()
    assert len(hits) == 2
    for doc in (h["_source"] for h in hits):
        assert doc["duplicate_of"] == "orig" and doc.get("duplicate_distance") is None
        assert [r for r in doc["reasons"] if r.startswith("near-duplicate")] == [same_clip]


def test_a_video_whose_keyframe_selection_was_cut_short_says_so_in_its_notes(store, videos):
    """Trial 14: only the review app's video facts said a keyframe selection stopped at a cap; the run's rows
    (`run --json` reasons), summary.json and the index did not. Validate now notes it (an informational note)."""
    import copy

    from app.review.queries import split_reasons
    from consumers.validate.stage import ValidateStage

    s = settings_for(store.url).with_overrides(enrich={"dedupe": "memory", "result_cache": "off"})
    whole, = enrich(s, videos["orig"])
    capped = copy.deepcopy(whole)
    capped["pre"]["video"]["truncated_by"] = "max_wall_s"  # as preprocess writes it when video_max_wall_s ran out
    note = ("note: keyframe selection stopped early (the preprocess.video_max_wall_s cap): later parts of the "
            "video were not looked at")
    review, notes = split_reasons(ValidateStage(s).process(capped).value["reasons"])
    assert note in notes and note not in review
    assert not any("keyframe selection" in r for r in ValidateStage(s).process(whole).value["reasons"])
