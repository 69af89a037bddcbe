"""Keyword ranking by how many of the query's words an asset matches (issue 17, user trial: "orange spacesuit"
ranked the one asset saying both words below colour-only matches), on a real osmem-server with documents written
by the real index sink."""
from __future__ import annotations

import json

import pytest

from consumers.index.sink import IndexSink
from domain.store.management import read_alias
from domain.store.search import coverage_clauses, hybrid_search, query_units, search
from domain.taxonomy import load_taxonomy
from tests.store_support import as_items, settings_for, validated_asset

TRIAL = [  # the trial's shape: one asset whose (edited) alt text says both words, many that only say or are "orange"
    ("suit", "Astronaut portrait", "a woman in an orange spacesuit in front of a flag", [("subject", "person")]),
    ("retina", "Retina photo", "red and coral fundus of an eye", [("color", "orange"), ("color", "red")]),
    ("logo", "Snake logo", "an orange and green snake emblem", [("content", "logo"), ("color", "orange")]),
    ("icon", "Snake icon", "green snake icon", [("content", "logo"), ("color", "orange")]),
    ("banner", "Orange summer sale banner", "orange banner with sale text", [("color", "orange"),
                                                                            ("content", "text")]),
    ("museum", "Spacesuit on display", "a white spacesuit in a museum hall", [("setting", "indoor")]),
    ("cat", "Cat", "tabby cat on a sofa", [("subject", "cat")]),
]


@pytest.fixture
def trial(store):
    sink = IndexSink(settings_for(store.url))
    sink.process_batch(as_items([validated_asset(aid, 1, title=t, alt_text=alt, tags=tags, ocr_text="")
                                 for aid, t, alt, tags in TRIAL]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    yield sink
    sink.close()


def _ids(hits):
    return [h["asset_id"] for h in hits]


def test_the_asset_matching_both_words_ranks_first(trial):
    from typer.testing import CliRunner

    from app.cli import app

    cfg = trial.cfg
    env = {"ASSETSTREAM_INDEX__INDEX": cfg.index, "ASSETSTREAM_INDEX__SERVER_MODE": "serverless"}
    out = CliRunner().invoke(app, ["search", "orange spacesuit", "--mode", "keyword", "--json", "--es-url", cfg.url],
                             env=env)
    assert out.exit_code == 0, out.output
    got = [h["asset_id"] for h in json.loads(out.output)["hits"]]
    assert got[0] == "suit", got
    # then every asset matching one of the words; nothing else
    assert set(got[1:]) == {"retina", "logo", "icon", "banner", "museum"}
    assert _ids(search(trial.client, trial.settings, "the orange spacesuit"))[0] == "suit"  # a stopword: no word
    assert _ids(hybrid_search(trial.client, trial.settings, "orange spacesuit"))[0] == "suit"


def test_a_vocabulary_synonym_counts_as_the_word_it_stands_for(store):
    sink = IndexSink(settings_for(store.url))
    sink.process_batch(as_items([
        validated_asset("shoe", 1, title="Trail runner side view", alt_text="mesh shoe with laces",
                        tags=[("product", "sneaker"), ("color", "orange")]),
        validated_asset("boot", 1, title="Orange rubber boot", alt_text="an orange boot in the rain",
                        tags=[("product", "boot"), ("color", "orange")]),
        validated_asset("white", 1, title="White athletic footwear", alt_text="white shoes on wood",
                        tags=[("product", "sneaker"), ("color", "white")]),
    ]))
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    try:
        # "trainers" names product:sneaker: the orange sneaker matches both words, though its text says neither
        assert _ids(search(sink.client, sink.settings, "orange trainers"))[0] == "shoe"
    finally:
        sink.close()


def test_one_word_queries_rank_as_before(trial):
    off = trial.settings.with_overrides(index={"keyword_coverage": None})
    for q in ("orange", "spacesuit", "snake", "cat"):
        with_coverage = search(trial.client, trial.settings, q)
        assert _ids(with_coverage) == _ids(search(trial.client, off, q)), q
        assert with_coverage, q


def test_coverage_clauses_count_words_not_stopwords_and_terms_as_their_words():
    tax = load_taxonomy()
    units = query_units("the orange running shoe", tax)
    assert [(text, n) for text, _tags, n in units] == [("the", 1), ("orange", 1), ("running shoe", 2)]
    clauses = coverage_clauses(units, 10.0)
    assert [c["constant_score"]["boost"] for c in clauses] == [10.0, 20.0]  # "the" is not counted
    shoe = clauses[1]["constant_score"]["filter"]["bool"]["should"]
    assert {"terms": {"tags": units[2][1]}} in shoe and "product:sneaker" in units[2][1]
    assert coverage_clauses(units, None) == [] and coverage_clauses(units, 0.0) == []
