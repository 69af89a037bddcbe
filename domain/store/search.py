"""`assetstream search`: keyword (BM25 + synonyms) or hybrid (BM25 + kNN over MiniLM text vectors, fused by
reciprocal rank fusion) search over the read alias, with filters applied inside both legs; "more like this".

Hybrid, per index.vector_mode:
- es: one request, the store's own `retriever: {rrf: {retrievers: [standard, knn]}}` (Elasticsearch 8.16+/9);
  if the store refuses it (older 8.x, or a license without RRF) two requests (query, then `knn`) fused here;
- opensearch: the BM25 query and a `knn` query (lucene engine, filter inside), fused here;
- off (the embedded store: no kNN): the BM25 hits, and exact cosine over the stored vectors of at most
  index.vector_scan_limit filtered documents, computed in this process, fused here.

The visual leg (index.visual_leg): when the query's MiniLM vector is close to ImageNet class names, the image
vectors are ranked against those classes' prototypes (domain/vision/prototypes.py) as one more kNN leg (a `knn`
retriever on `image_vector` in es mode, a `knn` query on opensearch, exact cosine on the embedded store), with the
same filters and only over image vectors this process's image model wrote (a filter; on the embedded store the
vector cache holds no others). Hybrid only: semantic stays the text kNN leg alone (its scores are text cosines; a
class-prototype cosine is not on that scale).

Relevance floor: the text kNN leg of hybrid and semantic search keeps only documents whose cosine with the query
is at least index.semantic_min_similarity (vector_leg's min_similarity), so a query nothing is about is not
padded with the k nearest however far; the visual leg adds at most index.visual_leg_max_hits images (its best).

Synonyms: every word or phrase of the query (up to 3 words, longest first) that the controlled vocabulary maps
to a canonical tag (label, synonym, plural, deprecated name, or 'facet:value') adds a `terms` clause on `tags`
(the canonical tag and the deprecated names that point to it). So "trainers", "sneakers" and
"product:sneaker" all find the assets tagged product:sneaker, without a reindex when the vocabulary grows.

Literal leg (literal_leg, index.literal_leg): hybrid fuses one more ranking, the documents whose own text holds
every query word as written (no synonyms, tags or stems), so an exact match is not outranked by documents that only
weak signals rank (issue 17, trial 12: "lemon" put the bottle labelled LEMON below dahlias with a weak
synonym-expanded model tag and the visual leg's "lemon" class). On es the word check is one request before the
retriever's. For a query of two words or more its documents, which hold every word, rank above all others
(all_words_first, trial 29: "espresso 2.50" ranked the menu saying both 8th).

Synonyms in the text (synonym_text_clause, keyword mode): the other names of each tag the query names (its label
and synonyms) are one more, lower-weight `should` clause over the text fields (trial 29: "trainers" did not find
the sign saying SNEAKERS, which carries no tag).

Word coverage (coverage_clauses, index.keyword_coverage): a constant score per query word or vocabulary term the
document matches, so keyword search (and hybrid's keyword leg) ranks an asset matching more of the query's words
above one matching fewer (issue 17: "orange spacesuit").
"""
from __future__ import annotations

import os
import re
import threading
import unicodedata
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from elasticsearch import ApiError, Elasticsearch, NotFoundError, helpers

from domain.events import DEFAULT_TENANT
from domain.store.client import index_settings
from domain.store.degraded import query as degraded_query
from domain.store.management import IMAGE_VECTOR_FIELD, VECTOR_FIELD, read_alias
from domain.store.vectors import KINDS, unpack

if TYPE_CHECKING:
    from domain.taxonomy import Taxonomy
    from domain.vision.prototypes import VisualQuery

SEARCH_FIELDS = ["title^3", "alt_text^2", "caption", "summary", "ocr_text", "visible_text", "tag_labels^2", "tags",
                 "creator", "credit_text"]
"""the text fields keyword search reads (BM25, coverage): what the image says and shows, its tags, and who made
or supplied it (the file's creator, the credit line: trial 12, a DAM user searches by photographer or agency)"""
HIT_FIELDS = ["asset_id", "tenant", "title", "alt_text", "tags", "status", "usage_flag", "field_sources", "reviewed_by",
              "event_time", "place", "duplicate_of", "family_id", "family_size", "degraded_parts", "media_type",
              "decorative"]


SYNONYM_BOOST = 2.0
MAX_PHRASE = 3


STOPWORDS = frozenset("a an and at by for from in of on or the to with".split())


def expand_query(query: str | None, taxonomy: "Taxonomy | None") -> list[str]:
    """Canonical tags (and the deprecated names that map to them) that the query's words and phrases name in
    the vocabulary, in query order. Longest phrase first: "running shoe" maps as a phrase before "shoe"."""
    return _expand(query, taxonomy)[0]


def names_tags_only(query: str | None, taxonomy: "Taxonomy | None") -> bool:
    """True when every word of the query (but STOPWORDS) is part of a vocabulary term: "blossom", "white
    trainers". False for "space suit", where "suit" alone maps (product:jacket) and says something else."""
    return _expand(query, taxonomy)[1]


def _expand(query: str | None, taxonomy: "Taxonomy | None") -> tuple[list[str], bool]:
    if not query or taxonomy is None:
        return [], False
    return _expand_units(query_units(query, taxonomy))


def _expand_units(units: list[tuple[str, list[str], int]]) -> tuple[list[str], bool]:
    """The canonical tags the query units name (expand_query) and whether they cover it (names_tags_only)."""
    found = [t for _text, tags, _n in units for t in tags]
    covered = all(tags or text.lower() in STOPWORDS for text, tags, _n in units)
    return list(dict.fromkeys(found)), covered and bool(found)


def query_units(query: str | None, taxonomy: "Taxonomy | None") -> list[tuple[str, list[str], int]]:
    """The query split as expand_query reads it: (text, tags, words) per vocabulary term (a phrase of up to
    MAX_PHRASE words, longest first, with its canonical tag and the deprecated names that map to it) or single
    word (no tags), in query order; STOPWORDS included (they are never counted, see coverage_clauses)."""
    words = [w.strip(".,;!?\"'()") for w in (query or "").split()]
    words = [w for w in words if w]
    units: list[tuple[str, list[str], int]] = []
    i = 0
    while i < len(words):
        for n in range(min(MAX_PHRASE, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + n])
            res = taxonomy.resolve(phrase) if taxonomy is not None else None
            if res is not None and res.mapped is not None:
                units.append((phrase, list(taxonomy.same_tags(res.mapped.tag)), n))
                i += n
                break
        else:
            units.append((words[i], [], 1))
            i += 1
    return units


def coverage_clauses(units: Iterable[tuple[str, list[str], int]], boost: float | None) -> list[dict[str, Any]]:
    """One `constant_score` clause per query word or vocabulary term (query_units; STOPWORDS left out): a
    document scores `boost` x the term's word count when its text fields hold every word of it, or its tags the
    term's tag. Summed in the bool's `should`, an asset matching more of the query's words ranks above one
    matching fewer (issue 17: "orange spacesuit" ranked a colour-only match above the asset saying both), and
    BM25 still orders those that match as many. Plain query DSL (constant_score, bool, multi_match, terms), the
    same on Elasticsearch 8/9, OpenSearch and osmem-server; combined_fields would not do: it takes text fields
    only (tags is a keyword field) and OpenSearch has it only from 3.2. [] when boost is None or 0."""
    if not boost:
        return []
    out: list[dict[str, Any]] = []
    for text, tags, n in units:
        if not tags and text.lower() in STOPWORDS:
            continue
        match: list[dict[str, Any]] = [{"multi_match": {"query": text, "fields": SEARCH_FIELDS, "operator": "and",
                                                        "lenient": True}}]
        if tags:
            match.append({"terms": {"tags": tags}})
        out.append({"constant_score": {"filter": {"bool": {"should": match, "minimum_should_match": 1}},
                                       "boost": boost * n}})
    return out


SYNONYM_TEXT_BOOST = 0.5
"""the weight of synonym_text_clause against the query's own words (multi_match, boost 1) and coverage (100 a word)"""


def synonym_words(units: Iterable[tuple[str, list[str], int]], taxonomy: "Taxonomy | None") -> list[str]:
    """The other names of the vocabulary tags the query's terms name (query_units): each tag's label and
    synonyms, the term as the query says it left out ("trainers" -> sneaker, sneakers, running shoe, trainer, ...);
    in query order, once each."""
    if taxonomy is None:
        return []
    out: list[str] = []
    for text, tags, _n in units:
        said = folded(text)
        for tag in tags[:1]:  # the canonical tag (query_units: same_tags, canonical first)
            entry = taxonomy.entries.get(tag)
            if entry is not None:
                out.extend(w for w in (entry.label, *entry.synonyms) if folded(w) != said)
    return list(dict.fromkeys(out))


def synonym_text_clause(units: Iterable[tuple[str, list[str], int]],
                        taxonomy: "Taxonomy | None") -> dict[str, Any] | None:
    """Keyword search's synonym expansion into the text fields (trial 29: "trainers" found the assets tagged
    product:sneaker but not the "SNEAKERS NEW ARRIVALS" sign, whose only evidence is its text): a `should` clause
    matching any synonym_words as a phrase in SEARCH_FIELDS, at SYNONYM_TEXT_BOOST and outside word coverage, so
    an asset saying the query's own words (or carrying the tag) ranks first. None when the query names no tag."""
    words = synonym_words(units, taxonomy)
    if not words:
        return None
    return {"bool": {"should": [{"multi_match": {"query": w, "fields": SEARCH_FIELDS, "type": "phrase",
                                                 "lenient": True}} for w in words],
                     "minimum_should_match": 1, "boost": SYNONYM_TEXT_BOOST}}


PUBLISHABLE = ("auto_applied", "approved")
"""the statuses `status=publishable` stands for: published by the auto-apply rules or approved by a person (not
waiting for review, not rejected)"""


def build_filters(tags: Iterable[str | tuple[str, ...]] = (), status: str | None = None,
                  usage: str | None = None, degraded: str | None = None) -> list[dict[str, Any]]:
    """Exact filters, all must hold: every tag, the status, the usage flag, and `degraded` ("any" or a part such
    as "ocr", "faces", "text_vector": documents marked degraded, domain/store/degraded.py)."""
    filters: list[dict[str, Any]] = [  # a tag given with its other names (Taxonomy.same_tags): any of them
        {"term": {"tags": t}} if isinstance(t, str) else
        {"term": {"tags": t[0]}} if len(t) == 1 else {"terms": {"tags": list(t)}} for t in tags]
    if degraded:
        filters.append(degraded_query(degraded))
    if status == "publishable":  # what a site may show: decided by the rules or a person, not refused (trial 34 F8)
        filters.append({"terms": {"status": list(PUBLISHABLE)}})
    elif status:
        filters.append({"term": {"status": status}})
    if usage:
        filters.append({"term": {"usage_flag": usage}})
    return filters


def build_query(query: str | None, tags: Iterable[str] = (), status: str | None = None,
                usage: str | None = None, synonyms: Iterable[str] = (),
                filters: list[dict[str, Any]] | None = None,
                coverage: list[dict[str, Any]] | None = None,
                related: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bool query: multi_match on the text fields, or a `terms` match on the canonical tags the query's
    synonyms name, or `related` (synonym_text_clause: the tags' other names in the text fields) — any is enough;
    match_all when no text — plus the `coverage` clauses (coverage_clauses: more of the query's words matched
    ranks first); filters as build_filters, or `filters` as given."""
    filters = build_filters(tags, status, usage) if filters is None else filters
    if not (query and query.strip()):
        return {"bool": {"must": [{"match_all": {}}], "filter": filters}}
    should: list[dict[str, Any]] = [{"multi_match": {"query": query, "fields": SEARCH_FIELDS,
                                                     "type": "best_fields", "lenient": True}}]
    expanded = list(synonyms)
    if expanded:
        should.append({"terms": {"tags": expanded, "boost": SYNONYM_BOOST}})
    should.extend(coverage or ())
    if related is not None:
        should.append(related)
    return {"bool": {"should": should, "minimum_should_match": 1, "filter": filters}}


def with_narrower(tags: Iterable[str], taxonomy: "Taxonomy | None") -> list[str]:
    """The tags a query naming `tags` matches: each, and every tag below it in the vocabulary (Taxonomy.narrower,
    with its other names: same_tags). A sneaker is footwear in the vocabulary's own model (sneaker -> shoe ->
    footwear), and validate publishes the implied parents, but a person's edited tags (`product:sneaker` alone) and
    documents indexed before carry only the narrow tag: "footwear" found none of them (trial 29)."""
    out = list(tags)
    if taxonomy is not None:
        for tag in list(out):
            for child in taxonomy.narrower(tag):
                out.extend(taxonomy.same_tags(child))
    return list(dict.fromkeys(out))


def broadened(units: Iterable[tuple[str, list[str], int]],
              taxonomy: "Taxonomy | None") -> list[tuple[str, list[str], int]]:
    """query_units with each term's tags widened to the tags below them (with_narrower): the words as keyword search
    matches them (its coverage clauses), and as the review queue's search box does (app/review/queries.py)."""
    return [(text, with_narrower(tags, taxonomy), n) for text, tags, n in units]


def keyword_query(settings: Any, query: str | None, taxonomy: "Taxonomy | None",
                  filters: list[dict[str, Any]], text_synonyms: bool = False) -> tuple[dict[str, Any], list[str], bool]:
    """The keyword query of `search` and of hybrid's keyword leg (build_query with the query's synonyms and,
    unless index.keyword_coverage is off, its coverage clauses), the synonyms, and names_tags_only. With
    `text_synonyms` (keyword mode: `search`) also the named tags' other names in the text fields,
    synonym_text_clause; not in hybrid, whose text and tag legs find those assets, and where the clause put
    "lemon"'s bottle below the dahlias again (subject:fruit's names) on the bench."""
    s = index_settings(settings)
    units = query_units(query, taxonomy) if query and taxonomy is not None else []
    synonyms, named = _expand_units(units)
    broad = broadened(units, taxonomy)
    return (build_query(query, synonyms=with_narrower(synonyms, taxonomy), filters=filters,
                        coverage=coverage_clauses(broad, s.keyword_coverage),
                        related=synonym_text_clause(units, taxonomy) if text_synonyms else None), synonyms, named)


LITERAL_FIELDS = ["title^3", "alt_text^2", "caption", "ocr_text", "visible_text"]
"""the text fields the literal leg reads: what the asset's own text says (its title, alt text and caption, as the
model wrote them or a person edited them, and the text visible in it); no tags, tag labels or synonyms."""
_WORD = re.compile(r"\w+")


_LETTERS = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
                          "ı": "i"})


def folded(text: str) -> str:
    """Lower case, accents and the common ligatures folded to ASCII ("Café Zürich" -> "cafe zurich"): the text
    fields' analyzer folds them too (management.TEXT_ANALYZER), so the literal leg reads words the same way."""
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_LETTERS))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def has_word(query: str | None) -> bool:
    """Whether the query holds a letter or a decimal digit (any script): "*", "%", "\\" and "!" hold none, nor do
    "½" and "²" (numerics, not digits: trial 31), so no text field matches them and the vector legs would only pad
    the answer (trial 29)."""
    return any(c.isalpha() or c.isdecimal() for c in query or "")


ANALYZER_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split())
"""Lucene's English stop words (`_english_`), which the text fields' analyzer drops (management.ANALYSIS
english_stop): a query of these words alone matches no text field."""


def content_words(query: str | None, taxonomy: "Taxonomy | None" = None) -> list[str]:
    """The query's words (letters and digits, accents folded) that are not stop words (STOPWORDS and the analyzer's,
    ANALYZER_STOPWORDS), plus any stop word the vocabulary names as a tag: what a search can match on. [] for "the"
    or "a of" (trial 29: semantic and hybrid answered "the" with astronauts, the vector legs' nearest neighbours of
    a word that says nothing)."""
    words = list(dict.fromkeys(_WORD.findall(folded(query or ""))))
    stop = STOPWORDS | ANALYZER_STOPWORDS
    return [w for w in words if w not in stop or (taxonomy is not None and _names_tag(w, taxonomy))]


def _names_tag(word: str, taxonomy: "Taxonomy") -> bool:
    res = taxonomy.resolve(word)
    return res is not None and res.mapped is not None


def same_score(a: float | None, b: float | None) -> bool:
    """Equal scores, up to float rounding (one cosine computed in two rows of a matrix product)."""
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def canonical_first(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw store hits, best first, with a family's canonical member (no `duplicate_of`) before the other hits of the
    same score: copies that say what the canonical member says tie with it, and the store breaks the tie by date
    and id, so the quality-40 copy could rank first in every leg and stand for its family (trial 29). Otherwise the
    order is kept."""
    out = list(raw)
    start = 0
    for end in range(1, len(out) + 1):
        if end == len(out) or not same_score(out[end].get("_score"), out[start].get("_score")):
            if end - start > 1:
                out[start:end] = sorted(out[start:end], key=lambda h: bool((h.get("_source") or {}).get("duplicate_of")))
            start = end
    return out


def literal_words(query: str | None) -> list[str]:
    """The query's words as written (lower case, letters and digits, accents folded: `folded`), STOPWORDS left
    out: what the literal leg asks every one of."""
    return [w for w in dict.fromkeys(_WORD.findall(folded(query or ""))) if w not in STOPWORDS]


def build_literal_query(query: str | None, filters: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The literal leg's store query (literal_leg): the documents whose LITERAL_FIELDS hold every word of the
    query as the fields' analyzer reads it (`cross_fields`, operator and: the words may be spread over the fields,
    "lemon" in the title, "bottle" in the alt text), best BM25 first, filters as the other legs. None when the
    query has no word but STOPWORDS."""
    words = literal_words(query)
    if not words:
        return None
    # the words as written too, when folding changed them: an index made before mapping version 6 (not migrated
    # yet) does not fold, holds "café", and would not match "cafe" (code review 14 L1); on a folding index both
    # forms read the same
    written = [w for w in dict.fromkeys(_WORD.findall((query or "").lower())) if folded(w) not in STOPWORDS]
    # and the query's space-separated tokens whole, for the tokenizer to split: it keeps "2.50" one token, which
    # "2 50" does not match (trial 29: "espresso 2.50" had no literal match, the menu saying it)
    tokens = [t for t in (t.strip(".,;:!?\"'()") for t in folded(query or "").split()) if has_word(t)]
    forms = list(dict.fromkeys([" ".join(words), " ".join(written),
                                " ".join(t for t in tokens if t not in STOPWORDS)]))
    match = [{"multi_match": {"query": form, "fields": LITERAL_FIELDS, "type": "cross_fields", "operator": "and",
                              "lenient": True}} for form in forms]
    return {"bool": {"must": match if len(match) == 1 else [{"bool": {"should": match, "minimum_should_match": 1}}],
                     "filter": filters}}


def literal_leg(client: Elasticsearch, s: Any, query: str, filters: list[dict[str, Any]],
                window: int) -> list[dict[str, Any]]:
    """Hybrid search's literal leg (issue 17, trial 12: "lemon" ranked the bottle labelled LEMON below orange
    dahlias that a weak synonym-expanded model tag, subject:fruit, and the visual leg ranked): the documents whose
    own text holds every word of the query as written, as raw hits (HIT_FIELDS), best BM25 first. The store's
    analyzer stems ("photographer" matches "photograph"), so of build_literal_query's `window` best the leg keeps
    those whose fields hold each word itself (literal_words, whole words, any case, accents folded on both sides:
    "cafe" is "Café"): no stem, synonym or tag stands in for a word. [] when none does."""
    body = build_literal_query(query, filters)
    if body is None:
        return []
    fields = [f.split("^")[0] for f in LITERAL_FIELDS]
    hits = client.search(index=read_alias(s), query=body, size=window, sort=_SORT, track_scores=True,
                         source_includes=list(dict.fromkeys([*HIT_FIELDS, *fields])))["hits"]["hits"]
    words = set(literal_words(query))
    out = []
    for h in hits:
        src = h.get("_source") or {}
        said = set(_WORD.findall(folded(" ".join(str(src.get(f) or "") for f in fields))))
        if words <= said:
            out.append({**h, "_source": {k: v for k, v in src.items() if k in HIT_FIELDS}})
    return canonical_first(out)


ALL_WORDS_BONUS = 1.0
"""what all_words_first adds to the RRF score of a hit holding every word of a query of two words or more: more
than any RRF score (at most 5 legs x 1/61)"""


def all_words_first(query: str, fused: list[tuple[str, float]], literal_ids: Iterable[str]) -> list[tuple[str, float]]:
    """Hybrid's fused (id, RRF score) ranking with, for a query of two words or more (literal_words), the
    documents whose own text holds every word (the literal leg's) first, each scored ALL_WORDS_BONUS + its RRF
    score, then the others as fused (trial 29: "espresso 2.50" ranked the menu sign saying both words 8th, behind
    coffee photos that one word brought in through the keyword, text, tag and visual legs: two legs lost to three
    or four). A one-word query is left as fused: there the literal leg is one vote among the others."""
    holds = set(literal_ids)
    if not puts_all_words_first(query, holds):
        return fused
    return sorted(((d, sc + ALL_WORDS_BONUS if d in holds else sc) for d, sc in fused), key=lambda kv: -kv[1])


def puts_all_words_first(query: str, literal_ids: Iterable[str]) -> bool:
    """Whether all_words_first changes the order: a query of two words or more, and a document holding them all."""
    return len(literal_words(query)) >= 2 and any(True for _ in literal_ids)


def literal_ranking(query: str, ids: list[str], filters: list[dict[str, Any]]) -> dict[str, Any]:
    """The literal leg as a query for the Elasticsearch RRF retriever: build_literal_query (its BM25 order, the
    order literal_leg keeps) over the documents literal_leg kept (an `ids` filter), filters as the other legs."""
    only = [*filters, {"ids": {"values": ids}}]
    return build_literal_query(query, only) or {"bool": {"filter": only}}


TAG_LEG_BOOSTS = (("tags", 4.0), ("tag_suggestions", 2.0), ("model_tags", 1.0))
"""The tag leg's order: documents carrying a tag the query names (published), then those where it is held as a
suggestion for an editor, then those where the model proposed it below the hold threshold."""


def build_tag_query(synonyms: Iterable[str], filters: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Hybrid search's third ranking, when the query names vocabulary tags (names_tags_only: every word): the
    documents with one of them as a published tag, a held suggestion or a weaker model tag (TAG_LEG_BOOSTS),
    filters as the other legs. None when the query names no tag."""
    tags = list(synonyms)
    if not tags:
        return None
    return {"bool": {"should": [{"terms": {field: tags, "boost": boost}} for field, boost in TAG_LEG_BOOSTS],
                     "minimum_should_match": 1, "filter": filters}}


def default_taxonomy(settings: Any) -> "Taxonomy":
    """The deployment's vocabulary when the whole Settings is at hand, else the bundled latest."""
    from domain.taxonomy import load_taxonomy, taxonomy_from_settings

    return taxonomy_from_settings(settings) if hasattr(settings, "validate_") else load_taxonomy()


def search(client: Elasticsearch, settings: "Any", query: str | None,
           tags: Iterable[str] = (), status: str | None = None, usage: str | None = None,
           size: int = 20, taxonomy: "Taxonomy | None" = None, *, filters: list[dict[str, Any]] | None = None,
           offset: int = 0, aggs: dict[str, Any] | None = None,
           report: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Hits, best first: [{asset_id, title, alt_text, tags, status, usage_flag, score, ...}]. `filters`
    (build_filters or domain.store.api) replaces tags/status/usage when given; `offset` skips that many hits.
    `report`, when given, receives the exact `total` of matches and the `aggregations` of `aggs` over them
    (the same request: one pass over the matches)."""
    s = index_settings(settings)
    filters = build_filters(tuple(tags), status, usage) if filters is None else filters
    body_query = keyword_query(s, query, taxonomy if taxonomy is not None else default_taxonomy(settings), filters,
                               text_synonyms=True)[0]
    counted = {"track_total_hits": True, "aggs": aggs or None} if report is not None else {}
    resp = client.search(index=read_alias(s), query=body_query, size=size, from_=offset or None,
                         source_includes=HIT_FIELDS, sort=_SORT, track_scores=True, **counted,
                         highlight=highlight_body() if query and query.strip() else None)
    if report is not None:
        report.update(total=resp["hits"]["total"]["value"], aggregations=resp.get("aggregations"),
                      keyword_query=body_query)
    return [_hit(h) for h in resp["hits"]["hits"]]


HIGHLIGHT_FIELDS = ("title", "alt_text", "caption", "visible_text", "ocr_text")
"""The text fields a hit's snippets come from (highlights), in the order they are listed: what the asset's own text
says (no tags: a tag match has no words to show)."""
MARK = ("\ue000", "\ue001")
"""The highlighter's pre and post tags: two private-use characters no text of ours holds, read back into parts
(snippets), so a snippet is never HTML and a client escapes nothing."""
SNIPPET_CHARS = 120  # the store's fragment_size: about how many characters of the field a snippet shows
MAX_SNIPPET_CHARS = 300  # a snippet's hard limit, cut here whatever the store sent
MAX_SNIPPETS = 3  # fields per hit


def highlight_body() -> dict[str, Any]:
    """The search request's `highlight` section (Elasticsearch and OpenSearch document the same keys; osmem-server
    answers it too): one fragment of about SNIPPET_CHARS characters per field of HIGHLIGHT_FIELDS the query matched,
    the matched words between MARK's characters, no encoding (encoder "default": the text as stored, since it is
    returned as JSON text, not HTML). https://www.elastic.co/docs/reference/elasticsearch/rest-apis/highlighting,
    https://docs.opensearch.org/latest/search-plugins/searching-data/highlight/"""
    return {"fields": {f: {} for f in HIGHLIGHT_FIELDS}, "pre_tags": [MARK[0]], "post_tags": [MARK[1]],
            "encoder": "default", "fragment_size": SNIPPET_CHARS, "number_of_fragments": 1}


def snippets(highlight: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A hit's `highlights`: per field the query's words matched (HIGHLIGHT_FIELDS order, at most MAX_SNIPPETS),
    `{"field", "text", "parts": [{"text", "match"}]}` — `text` the snippet as plain text, `parts` the same text cut
    where the words matched (`match: true`), to show them in bold with no HTML from the store. [] when no word
    matched (a hit the vector, tag or visual legs found, or a semantic or "more like this" hit)."""
    out: list[dict[str, Any]] = []
    for field in HIGHLIGHT_FIELDS:
        fragments = (highlight or {}).get(field) or []
        if not fragments or len(out) >= MAX_SNIPPETS:
            continue
        parts = _parts(str(fragments[0]))
        if any(p["match"] for p in parts):
            out.append({"field": field, "text": "".join(p["text"] for p in parts), "parts": parts})
    return out


def _parts(fragment: str) -> list[dict[str, Any]]:
    """A highlighted fragment as parts, at most MAX_SNIPPET_CHARS characters in all; a stray MARK character (not
    ours) is dropped."""
    parts: list[dict[str, Any]] = []
    room = MAX_SNIPPET_CHARS
    for i, piece in enumerate(re.split(f"{MARK[0]}(.*?){MARK[1]}", fragment, flags=re.S)):
        piece = piece.replace(MARK[0], "").replace(MARK[1], "")[:room]
        if piece:
            parts.append({"text": piece, "match": i % 2 == 1})
            room -= len(piece)
    return parts


def _highlighted_page(client: Elasticsearch, s: Any, query: dict[str, Any] | None,
                      page: list[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
    """The hits of a fused page (raw hit, score), each with the snippets of the keyword `query` over it (none when
    `query` is None: hybrid_search's highlight=False), from _highlights."""
    found = _highlights(client, s, query, [h["_id"] for h, _ in page]) if query is not None else {}
    return [_hit({**h, "highlight": found.get(h["_id"])}, sc) for h, sc in page]


def add_snippets(client: Elasticsearch, settings: Any, query: dict[str, Any], hits: list[dict[str, Any]],
                 doc_ids: list[str]) -> None:
    """Fill the `highlights` of these hits (hybrid_search's, asked with highlight=False; `doc_ids` their document
    ids, in the same order) with the snippets of the keyword `query` (hybrid_search's report `keyword_query`):
    the page a client is shown, not the whole window ranked for its total and facets (issue 17 latency)."""
    found = _highlights(client, index_settings(settings), query, doc_ids)
    for hit, doc_id in zip(hits, doc_ids):
        hit["highlights"] = snippets(found.get(doc_id))


def _highlights(client: Elasticsearch, s: Any, query: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """The store's `highlight` of each of these documents (by document id) for the keyword `query`: one request
    for the documents (an `ids` query), whichever legs found them, on every vector_mode (the RRF retriever
    and the client-side fusion alike). The keyword query is the highlighter's `highlight_query`, not the request's
    query: the store then fetches the page's documents by id instead of running the keyword query over every
    document it matches (issue 17: ~20% of that request's time at 100k documents on the embedded store); a
    document that query does not match has no word of it to show either, so the snippets are the same."""
    if not ids:
        return {}
    resp = client.search(index=read_alias(s), query={"ids": {"values": ids}}, size=len(ids), source=False,
                         highlight={**highlight_body(), "highlight_query": query})
    return {h["_id"]: h.get("highlight") for h in resp["hits"]["hits"]}


_SORT: list[Any] = ["_score", {"event_time": {"order": "desc", "unmapped_type": "date"}},
                    {"asset_id": {"order": "asc", "unmapped_type": "keyword"}}]


def _hit(h: dict[str, Any], score: float | None = None) -> dict[str, Any]:
    src = h.get("_source") or {}
    return {"asset_id": src.get("asset_id", h["_id"]), "tenant": src.get("tenant") or DEFAULT_TENANT,
            "title": src.get("title"),
            "alt_text": src.get("alt_text"), "decorative": bool(src.get("decorative")),  # "" alt: decided or not
            "tags": src.get("tags", []), "status": src.get("status"),
            "usage_flag": src.get("usage_flag"), "score": h.get("_score") if score is None else score,
            "field_sources": src.get("field_sources") or {}, "reviewed_by": src.get("reviewed_by"),
            "event_time": src.get("event_time"), "place": src.get("place"), "duplicate_of": src.get("duplicate_of"),
            "family_id": src.get("family_id") or src.get("asset_id", h["_id"]), "family_size": src.get("family_size") or 1,
            "degraded_parts": src.get("degraded_parts") or [], "media_type": src.get("media_type") or "image",
            "highlights": snippets(h.get("highlight"))}


def hits_with_ids(raw: list[dict[str, Any]], doc_ids: list[str] | None) -> list[dict[str, Any]]:
    """The hits of these raw store hits; their document ids (`_id`, tenant-scoped: domain.events.scoped_id, e.g.
    `acme::a1` where the hit says asset_id `a1`) appended to doc_ids when given, in the same order, for whoever
    counts or looks the documents up again (a hit's asset_id does not name another tenant's document)."""
    if doc_ids is not None:
        doc_ids.extend(h["_id"] for h in raw)
    return [_hit(h) for h in raw]


def rrf(rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank of d), rank from 1; best first,
    ties by first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def vector_query_text(query: str, synonyms: Iterable[str], taxonomy: "Taxonomy | None") -> str:
    """What the kNN leg embeds: the query, and the labels of the vocabulary tags it names that it does not
    already say ("blossom" -> "blossom (flower)"), the words documents are embedded with."""
    if taxonomy is None:
        return query
    labels = [taxonomy.label(t) for t in synonyms if t in taxonomy.entries]
    labels = [x for x in dict.fromkeys(labels) if x.lower() not in query.lower()]
    return f"{query} ({', '.join(labels)})" if labels else query


def embed_query(text: str) -> list[float]:
    from domain.textembed import shared_embedder

    return [float(x) for x in shared_embedder().embed([text], cache=False)[0]]


def visual_query(s: Any, query: str, query_vector: list[float] | None = None) -> "VisualQuery | None":
    """The visual leg's image-space query for a text (its MiniLM vector when the caller has it): the prototypes
    of the ImageNet classes whose names are within index.visual_leg_threshold of it, or None (no class close
    enough, or index.visual_leg off)."""
    if not s.visual_leg:
        return None
    from domain.vision.prototypes import shared_prototypes

    return shared_prototypes().query(query, s.visual_leg_threshold, s.visual_leg_max_classes,
                                     None if query_vector is None else np.asarray(query_vector, np.float32))


def image_model_filter(model: dict[str, str]) -> list[dict[str, Any]]:
    """Only documents whose image vector this image model wrote (id and weights' version)."""
    return [{"term": {"image_vector_model.id": model["id"]}}, {"term": {"image_vector_model.version": model["version"]}}]


def visual_filters(s: Any, model: dict[str, str], filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The visual leg's filters: the query's, and image_model_filter — but with the embedded store's vector cache,
    which holds only this model's image vectors (domain/store/vector_cache.py): there a filter would make it ask
    the store for the ids it allows on every query (~0.3 s at 100k documents)."""
    if s.vector_mode == "off" and s.vector_cache:
        return filters
    return [*filters, *image_model_filter(model)]


# --- request bodies for a store with kNN (index.vector_mode es | opensearch). Checked field by field against:
# Elasticsearch search API `knn` section and kNN retriever: field, query_vector, k, num_candidates (>= k and at
#   most 10,000), filter (a query or a list of queries)
#   https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrievers/knn-retriever
#   https://www.elastic.co/guide/en/elasticsearch/reference/current/knn-search-api.html (and the client spec's
#   KnnSearch / KnnRetriever / RetrieverBase types, elasticsearch-js docs/reference/typescript-api/types/)
# Elasticsearch RRF retriever (GA in 8.16; 8.14/8.15 named the window `window_size`, so those answer 400 and
#   the legs are fused here): retrievers (two or more), rank_window_size, rank_constant (>= 1); standard retriever:
#   query. https://www.elastic.co/guide/en/elasticsearch/reference/8.14/retriever.html, RRFRetriever type
# OpenSearch `knn` query: {"knn": {<field>: {"vector": [...], "k": 1..10,000, "filter": <query>}}}; filter inside
#   the query is efficient filtering on the lucene engine (2.4+), which the knn_vector mapping names.
#   https://docs.opensearch.org/latest/query-dsl/specialized/k-nn/index
#   https://docs.opensearch.org/docs/vector-search/filter-search-knn/efficient-knn-filtering
#   https://docs.opensearch.org/latest/mappings/supported-field-types/knn-vector
MAX_KNN = 10_000  # Elasticsearch: num_candidates <= 10,000; OpenSearch: k in [1, 10,000]


def es_knn(field: str, vector: list[float], k: int, filters: list[dict[str, Any]],
           min_similarity: float | None = None) -> dict[str, Any]:
    """The Elasticsearch `knn` search section, also the body of a `knn` retriever: k nearest of num_candidates
    per shard (twice k, at least 100, at most 10,000, never below k); `similarity` = min_similarity when given,
    the raw cosine a vector needs to be a match ("relates to the raw similarity used, not the document score":
    for `similarity: cosine` the cosine itself, not the _score (1 + cosine) / 2)."""
    k = max(1, min(k, MAX_KNN))
    knn: dict[str, Any] = {"field": field, "query_vector": vector, "k": k,
                           "num_candidates": min(MAX_KNN, max(100, 2 * k))}
    if filters:
        knn["filter"] = filters
    if min_similarity is not None:
        knn["similarity"] = min_similarity
    return knn


def es_rrf_retriever(legs: list[dict[str, Any]], window: int, rank_constant: int) -> dict[str, Any]:
    """The Elasticsearch `retriever` of hybrid search: `rrf` over the legs (each a retriever: {"standard":
    {"query": ...}} or {"knn": es_knn(...)})."""
    return {"rrf": {"retrievers": legs, "rank_window_size": window, "rank_constant": max(1, rank_constant)}}


def opensearch_knn(field: str, vector: list[float], k: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """The OpenSearch `knn` query, the filters inside it (efficient filtering)."""
    clause: dict[str, Any] = {"vector": vector, "k": max(1, min(k, MAX_KNN))}
    if filters:
        clause["filter"] = {"bool": {"filter": filters}}
    return {"knn": {field: clause}}


def opensearch_cosine(score: float) -> float:
    """The cosine behind an OpenSearch lucene `cosinesimil` hit score: score = (2 - d) / 2 with d = 1 - cosine,
    i.e. (1 + cosine) / 2 (https://docs.opensearch.org/latest/mappings/supported-field-types/knn-spaces)."""
    return 2.0 * score - 1.0


def vector_leg(client: Elasticsearch, settings: "Any", vector: list[float], filters: list[dict[str, Any]],
               k: int, exclude: str | None = None, kind: str = "text",
               min_similarity: float | None = None) -> list[dict[str, Any]]:
    """The k nearest documents to `vector` (cosine) among those the filters allow, best first, as raw hits
    (_id, _source with HIT_FIELDS, _score = cosine-derived). The store's kNN where it has one. kind: which
    vector, "text" (MiniLM, 384) or "image" (EfficientNet-Lite0 pooled features, 1280). min_similarity: the
    relevance floor, a cosine: documents below it are not returned (fewer than k, or none), on every path:
    exact cosine here (off), the knn section's `similarity` (es), the hits' scores converted back (opensearch:
    its knn query takes k, or min_score / max_distance, not both)."""
    s = index_settings(settings)
    return canonical_first(_vector_hits(client, s, vector, filters, k, exclude, kind, min_similarity))


def _vector_hits(client: Elasticsearch, s: Any, vector: list[float], filters: list[dict[str, Any]], k: int,
                 exclude: str | None, kind: str, min_similarity: float | None) -> list[dict[str, Any]]:
    """vector_leg's hits, in the store's (or the exact cosine's) order."""
    field = KINDS[kind][0]
    if s.vector_mode == "off":
        return _exact_cosine(client, s, np.asarray(vector, np.float32), filters, k, kind, exclude, min_similarity)
    if exclude is not None:
        filters = [*filters, {"bool": {"must_not": [{"ids": {"values": [exclude]}}]}}]
    if s.vector_mode == "es":
        return client.search(index=read_alias(s), knn=es_knn(field, vector, k, filters, min_similarity), size=k,
                             source_includes=HIT_FIELDS)["hits"]["hits"]
    hits = client.search(index=read_alias(s), query=opensearch_knn(field, vector, k, filters), size=k,
                         source_includes=HIT_FIELDS)["hits"]["hits"]
    if min_similarity is None:
        return hits
    return [h for h in hits if opensearch_cosine(h.get("_score") or 0.0) >= min_similarity - 1e-6]


def visual_leg(client: Elasticsearch, settings: "Any", visual: "VisualQuery", filters: list[dict[str, Any]],
               k: int, min_similarity: float | None = None) -> list[dict[str, Any]]:
    """The visual leg's k best documents, as vector_leg's hits (score = the image vector's cosine with
    visual.vector). The embedded store's vector cache ranks by the documents' class scores (kind "classes",
    domain/store/vector_cache.py): the query reads its few classes' columns, not the 1280-d image matrix (the
    same cosines; 100k image vectors are 512 MB to read per query)."""
    s = index_settings(settings)
    if s.vector_mode == "off" and s.vector_cache:
        return _cached(client, s, read_alias(s), np.asarray(visual.weights, np.float32), filters, k, "classes", None,
                       min_similarity)
    return vector_leg(client, s, visual.vector, filters, k, kind="image", min_similarity=min_similarity)


def _cached(client: Elasticsearch, s: Any, alias: str, q: np.ndarray, filters: list[dict[str, Any]], k: int,
            kind: str, exclude: str | None, min_similarity: float | None = None) -> list[dict[str, Any]]:
    """The k best by the vectors this process keeps in memory (domain/store/vector_cache.py), at least
    min_similarity when given, then one mget of them."""
    from domain.store.vector_cache import nearest

    floor = -np.inf if min_similarity is None else min_similarity
    best = [(d, sc) for d, sc in nearest(client, s, alias, q, filters, k + (exclude is not None), kind)
            if d != exclude and sc >= floor][:k]
    if not best:
        return []
    docs = client.mget(index=alias, ids=[d for d, _ in best], source_includes=HIT_FIELDS)["docs"]
    found = {d["_id"]: d for d in docs if d.get("found")}
    return [{**found[d], "_score": sc} for d, sc in best if d in found]


def _exact_cosine(client: Elasticsearch, s: Any, q: np.ndarray, filters: list[dict[str, Any]],
                  k: int, kind: str, exclude: str | None, min_similarity: float | None = None) -> list[dict[str, Any]]:
    """No kNN in the store: rank by cosine here (stored vectors are unit-norm; the query too). With
    index.vector_cache (default) over the vectors this process keeps in memory (domain/store/vector_cache.py),
    then one mget of the k best; without, over a scan of at most index.vector_scan_limit (text) or
    index.image_scan_limit (image) filtered documents per query. Below min_similarity: not returned."""
    alias = read_alias(s)
    if s.vector_cache:
        return _cached(client, s, alias, q, filters, k, kind, exclude, min_similarity)
    if exclude is not None:
        filters = [*filters, {"bool": {"must_not": [{"ids": {"values": [exclude]}}]}}]
    limit = s.vector_scan_limit if kind == "text" else s.image_scan_limit
    ids: list[dict[str, Any]] = []
    vecs: list[np.ndarray] = []
    floats_field, packed_field, _ = KINDS[kind]
    body = {"query": {"bool": {"filter": filters}} if filters else {"match_all": {}},
            "_source": [*HIT_FIELDS, packed_field, floats_field]}
    for h in helpers.scan(client, index=alias, query=body, size=1000):
        src = h.get("_source") or {}
        vec = unpack(src, kind)
        src.pop(packed_field, None)
        src.pop(floats_field, None)
        if vec is not None and len(vec) == len(q):
            ids.append(h)
            vecs.append(vec)
        if len(ids) >= limit:
            break
    if not ids:
        return []
    sims = np.stack(vecs) @ q
    order = np.argsort(-sims, kind="stable")[:k]
    floor = -np.inf if min_similarity is None else min_similarity
    return [{**ids[i], "_score": float(sims[i])} for i in order if sims[i] >= floor]


def hybrid_search(client: Elasticsearch, settings: "Any", query: str, tags: Iterable[str] = (),
                  status: str | None = None, usage: str | None = None, size: int = 20,
                  taxonomy: "Taxonomy | None" = None, *, filters: list[dict[str, Any]] | None = None,
                  offset: int = 0, window: int | None = None,
                  report: dict[str, Any] | None = None, highlight: bool = True) -> list[dict[str, Any]]:
    """BM25 (with synonyms) + kNN over the text vectors (+ the tag leg, build_tag_query, when the query names
    vocabulary tags and index.tag_leg is on; + the visual leg, visual_query, when the query is close to ImageNet
    class names and index.visual_leg is on; + the literal leg, literal_leg, when index.literal_leg is on and a
    document's own text holds every query word), fused with RRF; the filters apply to every leg.
    Hits as `search`, score = the RRF score.

    The result set is the first `window` (default index.rrf_window) hits of the fusion, whatever the page: every
    leg ranks its `window` best, and `offset`/`size` page within the fused window (as the Elasticsearch RRF
    retriever pages within its fixed rank_window_size), so pages of one query never overlap nor skip a hit and
    a deeper page does not change the ranking. `report`, when given, receives `ranked_ids` (the document ids of
    the whole result set, best first: for its total and facets, domain.store.api; the es path then asks for
    the whole window in one request), `legs` (each leg's ranking, document ids best first: keyword, text, tag,
    visual, literal; client-side fusion only) and `visual_leg` (visual_report: the classes it used and its share of
    images, or why it took no part), and `keyword_query` (the keyword leg's query, what add_snippets highlights).
    `highlight=False`: the hits' `highlights` are left empty, for the caller to fill those of the page it shows
    (add_snippets; domain.store.api asks for the whole window and shows a page of it)."""
    if not (query and query.strip()):
        return search(client, settings, query, tags, status, usage, size, taxonomy, filters=filters, offset=offset)
    s = index_settings(settings)
    tags = tuple(tags)
    filters = build_filters(tags, status, usage) if filters is None else filters
    taxonomy = taxonomy if taxonomy is not None else default_taxonomy(settings)
    bm25, synonyms, named = keyword_query(s, query, taxonomy, filters)
    # the query names vocabulary tags (every word of it): rank the documents carrying them, and embed the labels
    tag_query = build_tag_query(with_narrower(synonyms, taxonomy), filters) if s.tag_leg and named else None
    window = s.rrf_window if window is None else window
    # client-side fusion: the store ranks the keyword, tag and literal legs (on the leg threads, _store_legs) while
    # this process embeds the query and ranks the vector legs: the store's work and this process's overlap
    pending = _store_legs(client, s, query, bm25, tag_query, filters, window) if s.vector_mode != "es" else None
    text = vector_query_text(query, synonyms if named else (), taxonomy)
    vector = embed_query(text)
    visual = visual_query(s, query, vector if text == query else None)
    visual_k = visual_share(s, visual, window)
    image_filters = visual_filters(s, visual.model, filters) if visual is not None else filters
    if report is not None:
        report["visual_leg"] = visual_report(s, visual, visual_k)
        report["keyword_query"] = bm25
    if s.vector_mode == "es":
        literal = literal_leg(client, s, query, filters, window) if s.literal_leg else []
        try:
            legs: list[dict[str, Any]] = [{"standard": {"query": bm25}},
                                          {"knn": es_knn(VECTOR_FIELD, vector, window, filters,
                                                         s.semantic_min_similarity)}]
            if tag_query is not None:
                legs.append({"standard": {"query": tag_query}})
            if visual is not None:
                legs.append({"knn": es_knn(IMAGE_VECTOR_FIELD, visual.vector, visual_k, image_filters,
                                           s.visual_min_similarity)})
            if literal:  # the documents literal_leg kept, in its order (one more request: the words' check)
                legs.append({"standard": {"query": literal_ranking(query, [h["_id"] for h in literal], filters)}})
            holds = [h["_id"] for h in literal]
            # the whole window to count it, or to put the hits holding every word first; else the store pages in it
            whole = report is not None or puts_all_words_first(query, holds)
            resp = client.search(index=read_alias(s), size=window if whole else max(0, min(size, window - offset)),
                                 from_=None if whole else offset or None, source_includes=HIT_FIELDS,
                                 retriever=es_rrf_retriever(legs, window, s.rrf_rank_constant))
            got = {h["_id"]: h for h in resp["hits"]["hits"][:window]}
            ranked = all_words_first(query, [(d, h.get("_score") or 0.0) for d, h in got.items()], holds)
            if report is not None:
                report["ranked_ids"] = [d for d, _ in ranked]
            page = ranked[offset:offset + size] if whole else ranked
            return _highlighted_page(client, s, bm25 if highlight else None, [(got[d], sc) for d, sc in page])
        except ApiError as e:
            if e.status_code not in (400, 403):
                raise  # 400: no retriever/rrf in this version; 403: the license has no RRF -> fuse here
    refused = pending is None  # es, fused here after the store refused the retriever: the literal leg is ranked
    if refused:
        pending = _store_legs(client, s, query, bm25, tag_query, filters, window, literal=False)
    near = vector_leg(client, s, vector, filters, window, min_similarity=s.semantic_min_similarity)
    seen = visual_leg(client, s, visual, image_filters, visual_k, s.visual_min_similarity) if visual is not None \
        else []
    if not refused:
        literal = pending["literal"].result() if "literal" in pending else []
    keyword = pending["keyword"].result()
    tagged = pending["tag"].result() if "tag" in pending else []
    if report is not None:
        report["legs"] = {name: [h["_id"] for h in leg] for name, leg in
                          (("keyword", keyword), ("text", near), ("tag", tagged), ("visual", seen),
                           ("literal", literal))}
    by_id = {h["_id"]: h for h in near + tagged + seen + literal} | {h["_id"]: h for h in keyword}
    rankings = [[h["_id"] for h in keyword], [h["_id"] for h in near]]
    for leg in (tagged, seen, literal):
        if leg:
            rankings.append([h["_id"] for h in leg])
    # the window, as the store's retriever keeps it; the hits holding every word of the query first
    fused = all_words_first(query, rrf(rankings, s.rrf_rank_constant), [h["_id"] for h in literal])[:window]
    if report is not None:
        report["ranked_ids"] = [doc_id for doc_id, _ in fused]
    return _highlighted_page(client, s, bm25 if highlight else None,
                             [(by_id[doc_id], score) for doc_id, score in fused[offset:offset + size]])


LEG_THREADS = 6
"""the process's threads for the legs the store ranks (three a hybrid query at most: two queries at once overlap)"""
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    """In a forked child: the parent's leg threads are not there; the child's first hybrid query starts its own."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _store_legs(client: Elasticsearch, s: Any, query: str, bm25: dict[str, Any], tag_query: dict[str, Any] | None,
                filters: list[dict[str, Any]], window: int, literal: bool = True) -> dict[str, Future]:
    """Hybrid's legs the store ranks, started on this process's leg threads: `keyword` (bm25), `tag` (when the
    query names tags) and `literal` (index.literal_leg, unless `literal` is False), each a Future of its raw hits."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=LEG_THREADS, thread_name_prefix="search-leg")
    out = {"keyword": _POOL.submit(_ranked, client, s, bm25, window)}
    if tag_query is not None:
        out["tag"] = _POOL.submit(_ranked, client, s, tag_query, window)
    if literal and s.literal_leg:
        out["literal"] = _POOL.submit(literal_leg, client, s, query, filters, window)
    return out


def _ranked(client: Elasticsearch, s: Any, query: dict[str, Any], window: int) -> list[dict[str, Any]]:
    """A leg the store ranks: its `window` best hits (HIT_FIELDS), canonical members first among equal scores."""
    return canonical_first(client.search(index=read_alias(s), query=query, size=window, source_includes=HIT_FIELDS,
                                         sort=_SORT, track_scores=True)["hits"]["hits"])


def visual_share(s: Any, visual: "VisualQuery | None", window: int) -> int:
    """How many of the visual leg's best images go into the fusion (every leg's ranking is cut to its share;
    the Elasticsearch retriever's knn `k` is the same number): index.visual_leg_max_hits (at most the window),
    or index.visual_leg_weak_hits when the query's closest class name is below index.visual_leg_weak_below —
    a weak match's images then cannot fill the page past what the text legs rank ("galaxy" -> mobile phone)."""
    k = min(window, s.visual_leg_max_hits or window)
    if visual is not None and s.visual_leg_weak_below is not None and visual.classes[0][1] < s.visual_leg_weak_below:
        k = min(k, s.visual_leg_weak_hits)
    return k


def visual_report(s: Any, visual: "VisualQuery | None", images: int | None = None) -> dict[str, Any]:
    """How the visual leg took part in a hybrid answer: the classes it used and how many of its best images
    went into the fusion (visual_share), or why it did not take part."""
    if visual is not None:
        explained = visual.explain()
        best: dict[str, dict[str, Any]] = {}  # ImageNet has two classes named "missile", two "sunglasses": one
        for c in explained["classes"]:       # entry per name, its higher similarity (both classes rank images)
            if c["name"] not in best or c["similarity"] > best[c["name"]]["similarity"]:
                best[c["name"]] = c
        explained["classes"] = sorted(best.values(), key=lambda c: -c["similarity"])
        return {"used": True, **explained, **({"images": images} if images is not None else {})}
    reason = "index.visual_leg is off" if not s.visual_leg else \
        f"no ImageNet class name within index.visual_leg_threshold ({s.visual_leg_threshold}) of the query"
    return {"used": False, "reason": reason}


def semantic_search(client: Elasticsearch, settings: "Any", query: str, *, filters: list[dict[str, Any]],
                    size: int = 20, offset: int = 0, taxonomy: "Taxonomy | None" = None,
                    doc_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Meaning only: the documents whose text vectors are nearest to the query's (kNN leg alone; the query
    with the labels of the vocabulary tags it names, vector_query_text), best first, score = cosine-derived;
    only those at or above index.semantic_min_similarity (a nonsense word: none). `doc_ids`, when given,
    receives the hits' document ids (hits_with_ids)."""
    taxonomy = taxonomy if taxonomy is not None else default_taxonomy(settings)
    synonyms, named = _expand(query, taxonomy)
    text = vector_query_text(query, synonyms if named else (), taxonomy)
    near = vector_leg(client, settings, embed_query(text), filters, offset + size,
                      min_similarity=index_settings(settings).semantic_min_similarity)
    return hits_with_ids(near[offset:offset + size], doc_ids)


def similar(client: Elasticsearch, settings: "Any", asset_id: str, tags: Iterable[str] = (),
            status: str | None = None, usage: str | None = None, size: int = 20, *,
            filters: list[dict[str, Any]] | None = None, offset: int = 0, by: str = "text",
            doc_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """"More like this": the assets whose text (by="text") or image (by="image") vectors are nearest to this
    asset's (itself excluded; `asset_id` is its document id, tenant-scoped). Raises LookupError when the asset
    is not indexed or has no such vector. `doc_ids`: as semantic_search's."""
    s = index_settings(settings)
    floats_field, packed_field, _ = KINDS[by]
    try:
        doc = client.get(index=read_alias(s), id=asset_id, source_includes=[floats_field, packed_field])
    except NotFoundError:
        raise LookupError(f"asset {asset_id} is not in {read_alias(s)}") from None
    vector = unpack(doc.get("_source") or {}, by)
    if vector is None:
        raise LookupError(f"asset {asset_id} has no text vector (indexed before vectors, or embedding off): run "
                          "`assetstream index embed`" if by == "text" else
                          f"asset {asset_id} has no image vector (indexed before image vectors, with "
                          "index.embed_images off, or without a preview): reprocess it")
    filters = build_filters(tuple(tags), status, usage) if filters is None else filters
    near = vector_leg(client, s, [float(x) for x in vector], filters, offset + size, exclude=asset_id, kind=by)
    return hits_with_ids(near[offset:offset + size], doc_ids)


def similar_to_image(client: Elasticsearch, settings: "Any", image: bytes, *, filters: list[dict[str, Any]],
                     size: int = 20, offset: int = 0, doc_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The assets whose image vectors are nearest to an uploaded image's. Raises ValueError when the bytes are
    not an image this process can decode. `doc_ids`: as semantic_search's."""
    from domain.store.vectors import embed_image_bytes

    vector = embed_image_bytes(image)
    if vector is None:
        raise ValueError("the query image cannot be decoded (JPEG, PNG, WebP, GIF, BMP or TIFF expected)")
    near = vector_leg(client, settings, [float(x) for x in vector], filters, offset + size, kind="image")
    return hits_with_ids(near[offset:offset + size], doc_ids)
