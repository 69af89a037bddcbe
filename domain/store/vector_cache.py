"""The embedded store has no kNN (vector_mode 'off'): semantic, hybrid and "more like this" rank by exact cosine in
the search process. Reading every stored vector per query costs ~40 µs a document (4 s at 100k), so a long-lived
search process (the review app / API) keeps the vectors in memory instead, one matrix per (store, alias, kind):

- loaded once, with one scan of the packed vectors (`index.vector_cache_max_docs` at most);
- kept fresh: at most every `index.vector_cache_check_s` a query first reads what was indexed since the newest
  `indexed_at` it has seen (less a slack for refresh delays and clock skew between sink workers) and compares
  the store's document count (a delete, or a rewrite that kept its `indexed_at`, such as `index embed`, makes the
  next check reload everything); and at least every `index.vector_cache_reload_s` everything is read again;
- filters are the store's: with filters the query asks the store for the ids of the matching documents
  (`_source: false`, `index.vector_scan_limit` at most), and ranks those rows only.

A query then costs one matrix product (100k x 384 float32: ~10 ms on one core), one `mget` of the k best
documents' hit fields, and the checks above. A one-shot process (the CLI) pays the load once, as before.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, helpers

from domain.store.vectors import KINDS, unpack

SLACK_S = 30.0


@dataclass
class _Entry:
    ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    mat: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    live: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # False: no vector (or another size)
    newest: str | None = None  # the newest indexed_at seen (ISO)
    loaded: float = 0.0
    checked: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


_entries: dict[tuple[str, str, str], _Entry] = {}
_entries_lock = threading.Lock()


def _entry(key: tuple[str, str, str]) -> _Entry:
    with _entries_lock:
        return _entries.setdefault(key, _Entry())


def _scan(client: Elasticsearch, alias: str, kind: str, query: dict[str, Any], limit: int):
    floats_field, packed_field, _ = KINDS[kind]
    body = {"query": query, "_source": [packed_field, floats_field, "indexed_at"]}
    for n, h in enumerate(helpers.scan(client, index=alias, query=body, size=2000)):
        if n >= limit:
            break
        src = h.get("_source") or {}
        yield h["_id"], unpack(src, kind), src.get("indexed_at")


def _load(e: _Entry, client: Elasticsearch, alias: str, kind: str, dims: int, limit: int) -> None:
    ids, vecs, newest = [], [], None
    for doc_id, vec, at in _scan(client, alias, kind, {"match_all": {}}, limit):
        ids.append(doc_id)
        vecs.append(vec if vec is not None and len(vec) == dims else None)
        newest = max(newest or "", at or "") or None
    e.ids, e.rows = ids, {d: i for i, d in enumerate(ids)}
    e.live = np.array([v is not None for v in vecs], bool)
    e.mat = np.stack([v if v is not None else np.zeros(dims, np.float32) for v in vecs]) if vecs else \
        np.zeros((0, dims), np.float32)
    e.newest, e.loaded = newest, time.monotonic()


def _since(e: _Entry, client: Elasticsearch, alias: str, kind: str, dims: int, limit: int) -> bool:
    """Apply what was indexed since the newest indexed_at seen; False when a full reload is needed."""
    if e.newest is None:
        return False
    start = (dt.datetime.fromisoformat(e.newest.replace("Z", "+00:00")) - dt.timedelta(seconds=SLACK_S))
    query = {"range": {"indexed_at": {"gte": start.isoformat(timespec="milliseconds").replace("+00:00", "Z")}}}
    added_ids, added = [], []
    for doc_id, vec, at in _scan(client, alias, kind, query, limit):
        ok = vec is not None and len(vec) == dims
        row = e.rows.get(doc_id)
        if row is not None:
            e.mat[row] = vec if ok else 0.0
            e.live[row] = ok
        else:
            added_ids.append(doc_id)
            added.append((vec if ok else np.zeros(dims, np.float32), ok))
        e.newest = max(e.newest or "", at or "") or None
    if added:
        e.rows.update({d: len(e.ids) + i for i, d in enumerate(added_ids)})
        e.ids.extend(added_ids)
        e.mat = np.concatenate([e.mat, np.stack([v for v, _ in added])])
        e.live = np.concatenate([e.live, np.array([ok for _, ok in added], bool)])
    return int(client.count(index=alias)["count"]) == len(e.ids) and len(e.ids) <= limit


def nearest(client: Elasticsearch, s: Any, alias: str, q: np.ndarray, filters: list[dict[str, Any]], k: int,
            kind: str) -> list[tuple[str, float]]:
    """The k (id, cosine) nearest to the unit vector q among the documents the filters allow, best first."""
    e = _entry((s.url, alias, kind))
    dims = len(q)
    with e.lock:
        now = time.monotonic()
        if not e.loaded or now - e.loaded > s.vector_cache_reload_s:
            _load(e, client, alias, kind, dims, s.vector_cache_max_docs)
            e.checked = now
        elif now - e.checked > s.vector_cache_check_s:
            if not _since(e, client, alias, kind, dims, s.vector_cache_max_docs):
                _load(e, client, alias, kind, dims, s.vector_cache_max_docs)
            e.checked = now
        ids, mat, live = e.ids, e.mat, e.live
    if not ids or mat.shape[1] != dims:
        return []
    mask = live.copy()
    if filters:
        allowed = np.zeros(len(ids), bool)
        body = {"query": {"bool": {"filter": filters}}, "_source": False}
        for n, h in enumerate(helpers.scan(client, index=alias, query=body, size=5000)):
            if n >= s.vector_scan_limit:
                break
            row = e.rows.get(h["_id"])
            if row is not None and row < len(allowed):
                allowed[row] = True
        mask &= allowed
    candidates = np.flatnonzero(mask)
    if not len(candidates):
        return []
    sims = (mat @ q)[candidates] if 2 * len(candidates) > len(ids) else mat[candidates] @ q
    top = np.argpartition(-sims, min(k, len(sims)) - 1)[:k] if len(sims) > k else np.arange(len(sims))
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(ids[candidates[i]], float(sims[i])) for i in top]
