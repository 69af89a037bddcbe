"""User trial 4: `color:grey`, the vocabulary's old name of color:gray, was taken as a filter by the CLI, the API and
the review queue, and matched nothing, while color:gray had an asset. A filter on either name of a renamed tag
now matches the documents indexed under both (an index written before the rename keeps the old name). Real
osmem-server seeded through the real index sink; the review app's process over HTTP with its auth."""
from __future__ import annotations

import html

import httpx
import pytest

from tests import search_support
from tests.store_support import index_all, settings_for, validated_asset

pytestmark = pytest.mark.timeout(120)
TOKEN = search_support.TOKEN
server, api = search_support.server, search_support.api


@pytest.fixture(scope="module")
def settings(store):
    records = [validated_asset("rn-gray", 1, title="A gray pebble", tags=[("color", "gray")], status="needs_review",
                               ocr_text=""),
               validated_asset("rn-red", 1, title="A red pebble", tags=[("color", "red")], status="needs_review",
                               ocr_text="")]
    settings = index_all(settings_for(store.url), records)
    # a document indexed before the rename: it still carries the old name (the sink writes today's names)
    from domain.store.client import make_client
    from domain.store.management import read_alias

    es = make_client(settings)
    doc = es.get(index=read_alias(settings), id="rn-gray")["_source"]
    doc.update(asset_id="rn-grey-legacy", tags=["color:grey"])
    es.index(index=read_alias(settings), id="rn-grey-legacy", document=doc)
    es.indices.refresh(index=read_alias(settings))
    es.close()
    return settings


def _ids(answer: dict) -> set[str]:
    return {h["asset_id"] for h in answer["hits"]}


@pytest.mark.parametrize("name", ["color:grey", "color:gray"])
def test_either_name_of_a_renamed_tag_finds_both(api, name):
    r = api.get("/v1/search", params={"tag": name, "mode": "keyword"})
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == {"rn-gray", "rn-grey-legacy"}
    assert r.json()["request"]["tags"] == [name]  # the request is echoed as given


def test_the_review_queue_filter_finds_both(server, settings):
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        assert browser.get("/login", params={"token": TOKEN}).status_code == 303
        for name in ("color:grey", "color:gray"):
            page = html.unescape(browser.get("/", params={"tag": name}).text)
            assert "rn-gray" in page and "rn-grey-legacy" in page and "rn-red" not in page, page
