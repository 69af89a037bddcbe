"""Search that finds what people mean, on a real osmem-server with documents written by the real index sink."""
from __future__ import annotations

import pytest

from consumers.index.sink import IndexSink
from domain.store.management import read_alias
from domain.store.search import expand_query, search
from domain.taxonomy import load_taxonomy
from tests.store_support import as_items, settings_for, store, validated_asset  # noqa: F401


@pytest.fixture
def sink(store):
    s = IndexSink(settings_for(store.url))
    yield s
    s.close()


def _ids(hits):
    return [h["asset_id"] for h in hits]


def test_vocabulary_synonyms_find_the_canonical_tag(sink):
    sink.process_batch(as_items([
        validated_asset("k-1", 1, title="Athletic footwear on a bench", alt_text="white shoes on wood",
                        tags=[("product", "sneaker"), ("color", "white")]),
        validated_asset("k-2", 1, title="Leather boots by the door", alt_text="brown boots",
                        tags=[("product", "boot"), ("color", "brown")]),
        validated_asset("k-3", 1, title="Blue sofa", alt_text="a sofa", tags=[("product", "sofa")]),
    ]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    for q in ("trainers", "sneakers", "sneaker", "product:sneaker", "white trainers"):
        assert _ids(search(sink.client, sink.settings, q))[:1] == ["k-1"], q
    assert "k-1" not in _ids(search(sink.client, sink.settings, "trainers", taxonomy=None, tags=["product:boot"]))
    # filters still apply to synonym matches
    assert _ids(search(sink.client, sink.settings, "trainers", status="needs_review")) == []


def test_expand_query_maps_phrases_and_deprecated_names():
    tax = load_taxonomy()
    assert "product:sneaker" in expand_query("red running shoe", tax)
    assert "product:sneakers" in expand_query("trainers", tax)  # the v1 name still matches older documents
    assert expand_query("zzqx", tax) == []
