"""`assetstream search`: full-text + filters over the read alias."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from elasticsearch import Elasticsearch

from domain.store.client import index_settings
from domain.store.management import read_alias

if TYPE_CHECKING:
    pass

SEARCH_FIELDS = ["title^3", "alt_text^2", "caption", "summary", "ocr_text", "visible_text", "tag_labels^2", "tags"]
HIT_FIELDS = ["asset_id", "title", "alt_text", "tags", "status", "usage_flag"]


def build_query(query: str | None, tags: Iterable[str] = (), status: str | None = None,
                usage: str | None = None) -> dict[str, Any]:
    """The bool query: multi_match on the text fields (match_all when no text); every tag, the status and the
    usage flag are exact filters (all must hold)."""
    filters: list[dict[str, Any]] = [{"term": {"tags": t}} for t in tags]
    if status:
        filters.append({"term": {"status": status}})
    if usage:
        filters.append({"term": {"usage_flag": usage}})
    must: dict[str, Any]
    if query and query.strip():
        must = {"multi_match": {"query": query, "fields": SEARCH_FIELDS, "type": "best_fields",
                                "lenient": True}}
    else:
        must = {"match_all": {}}
    return {"bool": {"must": [must], "filter": filters}}


def search(client: Elasticsearch, settings: "Any", query: str | None,
           tags: Iterable[str] = (), status: str | None = None, usage: str | None = None,
           size: int = 20) -> list[dict[str, Any]]:
    """Hits, best first: [{asset_id, title, alt_text, tags, status, usage_flag, score}]."""
    s = index_settings(settings)
    body_query = build_query(query, tuple(tags), status, usage)
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
