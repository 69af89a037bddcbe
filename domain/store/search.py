"""`assetstream search`: full-text + filters over the read alias, with query-time synonym expansion.

Synonyms: every word or phrase of the query (up to 3 words, longest first) that the controlled vocabulary maps
to a canonical tag (label, synonym, plural, deprecated name, or 'facet:value') adds a `terms` clause on `tags`
(the canonical tag and the deprecated names that point to it). So "trainers", "sneakers" and
"product:sneaker" all find the assets tagged product:sneaker, without a reindex when the vocabulary grows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from elasticsearch import Elasticsearch

from domain.store.client import index_settings
from domain.store.management import read_alias

if TYPE_CHECKING:
    from domain.taxonomy import Taxonomy

SEARCH_FIELDS = ["title^3", "alt_text^2", "caption", "summary", "ocr_text", "visible_text", "tag_labels^2", "tags"]
HIT_FIELDS = ["asset_id", "title", "alt_text", "tags", "status", "usage_flag"]


SYNONYM_BOOST = 2.0
MAX_PHRASE = 3


def expand_query(query: str | None, taxonomy: "Taxonomy | None") -> list[str]:
    """Canonical tags (and the deprecated names that map to them) that the query's words and phrases name in
    the vocabulary, in query order. Longest phrase first: "running shoe" maps as a phrase before "shoe"."""
    if not query or taxonomy is None:
        return []
    words = [w.strip(".,;!?\"'()") for w in query.split()]
    words = [w for w in words if w]
    found: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(MAX_PHRASE, len(words) - i), 0, -1):
            res = taxonomy.resolve(" ".join(words[i:i + n]))
            if res.mapped is not None:
                found.append(res.mapped.tag)
                found.extend(old for old, new in taxonomy.deprecated.items() if new == res.mapped.tag)
                i += n
                break
        else:
            i += 1
    return list(dict.fromkeys(found))


def build_filters(tags: Iterable[str] = (), status: str | None = None,
                  usage: str | None = None) -> list[dict[str, Any]]:
    """Exact filters, all must hold: every tag, the status, the usage flag."""
    filters: list[dict[str, Any]] = [{"term": {"tags": t}} for t in tags]
    if status:
        filters.append({"term": {"status": status}})
    if usage:
        filters.append({"term": {"usage_flag": usage}})
    return filters


def build_query(query: str | None, tags: Iterable[str] = (), status: str | None = None,
                usage: str | None = None, synonyms: Iterable[str] = ()) -> dict[str, Any]:
    """The bool query: multi_match on the text fields, or a `terms` match on the canonical tags the query's
    synonyms name (either is enough; match_all when no text); filters as build_filters."""
    filters = build_filters(tags, status, usage)
    if not (query and query.strip()):
        return {"bool": {"must": [{"match_all": {}}], "filter": filters}}
    should: list[dict[str, Any]] = [{"multi_match": {"query": query, "fields": SEARCH_FIELDS,
                                                     "type": "best_fields", "lenient": True}}]
    expanded = list(synonyms)
    if expanded:
        should.append({"terms": {"tags": expanded, "boost": SYNONYM_BOOST}})
    return {"bool": {"should": should, "minimum_should_match": 1, "filter": filters}}


def default_taxonomy(settings: Any) -> "Taxonomy":
    """The deployment's vocabulary when the whole Settings is at hand, else the bundled latest."""
    from domain.taxonomy import load_taxonomy, taxonomy_from_settings

    return taxonomy_from_settings(settings) if hasattr(settings, "validate_") else load_taxonomy()


def search(client: Elasticsearch, settings: "Any", query: str | None,
           tags: Iterable[str] = (), status: str | None = None, usage: str | None = None,
           size: int = 20, taxonomy: "Taxonomy | None" = None) -> list[dict[str, Any]]:
    """Hits, best first: [{asset_id, title, alt_text, tags, status, usage_flag, score}]."""
    s = index_settings(settings)
    synonyms = expand_query(query, taxonomy if taxonomy is not None else default_taxonomy(settings))
    body_query = build_query(query, tuple(tags), status, usage, synonyms)
    sort: list[Any] = ["_score", {"event_time": {"order": "desc", "unmapped_type": "date"}},
                       {"asset_id": {"order": "asc", "unmapped_type": "keyword"}}]
    resp = client.search(index=read_alias(s), query=body_query, size=size, source_includes=HIT_FIELDS,
                         sort=sort, track_scores=True)
    hits = []
    for h in resp["hits"]["hits"]:
        src = h.get("_source") or {}
        hits.append({"asset_id": src.get("asset_id", h["_id"]), "title": src.get("title"),
                     "alt_text": src.get("alt_text"), "tags": src.get("tags", []), "status": src.get("status"),
                     "usage_flag": src.get("usage_flag"), "score": h.get("_score")})
    return hits
