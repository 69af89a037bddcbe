"""Hybrid search ranks first the asset whose own text holds the query's words (issue 17, trial 12: "lemon" put the
bottle labelled LEMON 4th, behind orange dahlias that a weak model tag, subject:fruit — "lemon" is a vocabulary
synonym of fruit — and the visual leg's "lemon" class ranked; "green eyes" put the cat whose edited alt text says
so 11th). Real images (their previews' image vectors), a real osmem-server, the real index sink."""
from __future__ import annotations

import pytest

from domain.store.client import make_client
from domain.store.search import hybrid_search
from tests.store_support import index_all, settings_for, validated_asset
from tests.test_search import _with_weak_tags
from tests.test_search_images import QUALITY, _thumbnail

pytestmark = pytest.mark.timeout(300)


def _asset(aid, image, title, alt, tags, weak=()):
    v = _with_weak_tags(validated_asset(aid, 1, title=title, alt_text=alt, tags=tags, ocr_text=""), proposed=weak)
    v["enriched"]["pre"]["thumbnail"] = _thumbnail(QUALITY / image)
    return v


@pytest.fixture(scope="module")
def settings(store):
    cat = _asset("cat", "chelsea.jpg", "Cat", "A tabby cat with green eyes looking at the camera", [("subject", "cat")])
    cat["field_sources"]["alt_text"] = "edited"  # the trial's edit
    return index_all(settings_for(store.url), [
        _asset("lemon", "bottle_lemon.jpg", "Glass bottle", "a glass bottle with a yellow lemon label",
               [("product", "bottle")]),
        _asset("lime", "bottle_lime.jpg", "Glass bottle", "a glass bottle with a green label", [("product", "bottle")]),
        *[_asset(f"dahlia{i}", "flower.jpg", "Orange flower", "orange petals in a garden",
                 [("subject", "flower"), ("color", "orange")], weak=["subject:fruit"]) for i in (1, 2)],
        _asset("teal", "gradient_teal.jpg", "Teal gradient", "a teal and green gradient", [("color", "green")]),
        cat,
    ])


def test_the_asset_saying_the_word_ranks_above_weak_tag_and_visual_matches(settings):
    client = make_client(settings)
    report: dict = {}
    got = [h["asset_id"] for h in hybrid_search(client, settings, "lemon", report=report)]
    # the dahlias are found by the synonym-expanded weak model tag and rank first in the visual leg...
    assert report["legs"]["tag"] == ["dahlia1", "dahlia2"] and report["legs"]["visual"][0].startswith("dahlia")
    assert got[0] == "lemon", got  # ...but the bottle saying "lemon" comes first
    got = [h["asset_id"] for h in hybrid_search(client, settings, "green eyes")]
    assert got[0] == "cat", got
    client.close()
