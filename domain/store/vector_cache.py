"""The embedded store has no kNN (vector_mode 'off'): semantic, hybrid and "more like this" rank by exact cosine in
the search process. Reading every stored vector per query costs ~40 µs a document (4 s at 100k), so a long-lived
search process (the review app / API) keeps the vectors in memory instead, one matrix per (store, alias, kind):

- loaded once, with one scan of the packed vectors (at most `index.vector_cache_max_docs` text vectors, 1.5 KB
  each, or `index.image_cache_max_docs` image vectors, 5 KB each: documents past the limit are not ranked, and
  a store holding more than the limit is not read again on every check, only every `vector_cache_reload_s`);
- kept fresh in the background (a query never waits for it): every `index.vector_cache_check_s` a thread reads
  the ids and `indexed_at` of what was indexed since the newest `indexed_at` it has seen (less a slack for
  refresh delays and clock skew between sink workers), then the vectors of the new or changed ones, and, at most
  every `index.vector_cache_count_s`, compares the store's document count (a delete makes it reload everything;
  osmem counts 100k documents in ~50 ms, and on one core that count every second per kind was the largest cause
  of keyword search's p99: docs/benchmarks.md, "Session 19: keyword latency"); every
  `index.vector_cache_reload_s` everything is read again;
- hybrid search's visual leg ranks by class scores (kind "classes", DERIVED from the image vectors: each one's
  cosine with the 1000 ImageNet class rows, 4 KB a document, computed in batches when loaded or refreshed), so a
  query reads its few classes' columns (~2 MB at 100k) instead of the 1280-d image matrix (512 MB);
- image vectors: only those this process's image model wrote (`image_vector_model` id and version, read with each
  vector; another model's is held as no vector, like a document without one), so "more like this image" and hybrid
  search's visual leg never rank a vector of another model's space; the saved file's name includes the model. (A
  filter in the store's scan and count would do the same, but osmem answers a filtered count of 100k documents in
  ~0.1 s, against a few ms for the refresh window, and the refresh runs every second);
- filters are the store's: with filters the query asks the store for the ids of the matching documents
  (`_source: false`, `index.vector_scan_limit` at most), and ranks those rows only.

A query then costs one matrix product (100k x 384 float32: ~10 ms on one core), one `mget` of the k best
documents' hit fields, and the checks above.

A one-shot process (`assetstream search`) would pay the whole load (3-7 s at 100k) on every run, so every full
load is also saved under `index.vector_cache_dir` (one `.npy` matrix + a JSON of ids, `indexed_at` stamps and the
concrete indices behind the alias, per store URL, alias and kind; written aside and renamed; the JSON names the
matrix file it goes with, so a matrix another save renamed into place is never read with these ids). A fresh process
memory-maps the matrix (copy-on-write; the background thread then copies it into memory, so a later query never
waits for a file page dropped under memory pressure) and brings it up to date the same way the background refresh does: the
documents indexed since the newest `indexed_at` in the file (less the slack), and the document count; a count that
disagrees (a delete) or an alias that points elsewhere now (a migration) means a full load, saved again. A row of a
deleted document that survives that check is harmless: its id is not found by the `mget` of the k best. A file
that cannot be read or written is ignored (logged at debug level).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import glob
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, helpers

from domain.store.management import alias_targets
from streams.cachelog import cache_failed
from domain.store.vectors import KINDS, unpack

SLACK_S = 30.0
SPARSE = 8  # a query vector with fewer than 1/SPARSE of its entries non-zero reads only those columns
MGET_CHUNK = 1000
MAX_ERRORS = 3

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    stamps: dict[str, str | None] = field(default_factory=dict)  # id -> indexed_at of the vector held
    mat: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    live: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # False: no vector (or another size)
    newest: str | None = None  # the newest indexed_at seen (ISO)
    loaded: float = 0.0
    counted: float = 0.0  # when the store's document count last agreed (monotonic)
    used: float = 0.0
    refresher: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # stop_refreshers: its store is going away
    lock: threading.Lock = field(default_factory=threading.Lock)


_entries: dict[tuple[str, str, str], _Entry] = {}
_entries_lock = threading.Lock()


def _entry(key: tuple[str, str, str]) -> _Entry:
    with _entries_lock:
        return _entries.setdefault(key, _Entry())


DERIVED = {"classes": "image"}
"""kinds an entry computes from another's stored vectors: "classes" = each image vector's cosine with the 1000
ImageNet class rows (domain.vision.prototypes.class_scores), what hybrid search's visual leg ranks by"""


def _stored(kind: str) -> str:
    """The kind of vector read from the store for an entry of this kind."""
    return DERIVED.get(kind, kind)


@functools.lru_cache(maxsize=None)
def _scope_of(kind: str) -> tuple[tuple[str, str], ...]:
    """Which documents an entry holds, as (field, value) terms all must hold: for image vectors those this
    process's image model wrote (id and weights' version; domain.vision.classifier.image_model) — a vector of
    another model is in another space, and ranking it with this one's would be noise; text: every document."""
    if _stored(kind) != "image":
        return ()
    from domain.vision.classifier import image_model

    return tuple((f"image_vector_model.{k}", v) for k, v in sorted(image_model().items()))


def _vector(src: dict[str, Any], kind: str) -> np.ndarray | None:
    """The stored vector of a _source, None when it has none or it is out of the entry's scope (_scope_of)."""
    model = src.get("image_vector_model") or {}
    if any(model.get(f.rsplit(".", 1)[1]) != v for f, v in _scope_of(kind)):
        return None
    return unpack(src, _stored(kind))


def _derive(kind: str, vecs: list[np.ndarray | None], dims: int) -> list[np.ndarray | None]:
    """The entry's vectors from the stored ones (None: none, or not of the stored kind's size): the same for a
    stored kind, in one batch for a DERIVED one."""
    if kind not in DERIVED:
        return [v if v is not None and len(v) == dims else None for v in vecs]
    from domain.store.management import IMAGE_VECTOR_DIMS
    from domain.vision.prototypes import class_scores

    idx = [i for i, v in enumerate(vecs) if v is not None and len(v) == IMAGE_VECTOR_DIMS]
    out: list[np.ndarray | None] = [None] * len(vecs)
    if idx:
        for i, row in zip(idx, class_scores(np.stack([vecs[i] for i in idx]))):
            out[i] = row
    return out


def _fields(kind: str) -> list[str]:
    """What an entry reads of each document's _source."""
    floats_field, packed_field, _ = KINDS[_stored(kind)]
    return [packed_field, floats_field, "indexed_at", *(["image_vector_model"] if _scope_of(kind) else [])]


def _scan(client: Elasticsearch, alias: str, kind: str, query: dict[str, Any], limit: int):
    body = {"query": query, "_source": _fields(kind)}
    for n, h in enumerate(helpers.scan(client, index=alias, query=body, size=2000)):
        if n >= limit:
            break
        src = h.get("_source") or {}
        yield h["_id"], _vector(src, kind), src.get("indexed_at")


def _load(e: _Entry, client: Elasticsearch, alias: str, kind: str, dims: int, limit: int) -> None:
    """Read every vector (built aside, swapped in under the lock: queries go on with the old arrays)."""
    ids, vecs, stamps, newest = [], [], {}, None
    for doc_id, vec, at in _scan(client, alias, kind, {"match_all": {}}, limit):
        ids.append(doc_id)
        vecs.append(vec)
        stamps[doc_id] = at
        newest = max(newest or "", at or "") or None
    vecs = _derive(kind, vecs, dims)
    live = np.array([v is not None for v in vecs], bool)
    mat = np.stack([v if v is not None else np.zeros(dims, np.float32) for v in vecs]) if vecs else \
        np.zeros((0, dims), np.float32)
    with e.lock:
        e.ids, e.rows, e.stamps, e.live, e.mat = ids, {d: i for i, d in enumerate(ids)}, stamps, live, mat
        e.newest, e.loaded = newest, time.monotonic()


def _since(e: _Entry, client: Elasticsearch, alias: str, kind: str, dims: int, limit: int,
           count_every_s: float = 0.0) -> bool:
    """Apply what was indexed since the newest indexed_at seen (less SLACK_S): the ids and stamps of that window,
    then the vectors of the documents new or changed in it; False when a full reload is needed. The store's
    document count (a delete) is compared at most every `count_every_s` (index.vector_cache_count_s)."""
    if e.newest is None:  # documents without indexed_at (not written by the sink): only the count tells
        return int(client.count(index=alias)["count"]) == len(e.ids)
    start = (dt.datetime.fromisoformat(e.newest.replace("Z", "+00:00")) - dt.timedelta(seconds=SLACK_S))
    query = {"range": {"indexed_at": {"gte": start.isoformat(timespec="milliseconds").replace("+00:00", "Z")}}}
    window = {h["_id"]: (h.get("_source") or {}).get("indexed_at") for h in helpers.scan(
        client, index=alias, query={"query": query, "_source": ["indexed_at"]}, size=5000)}
    changed = [d for d, at in window.items() if e.stamps.get(d, "-") != at]
    fresh: list[tuple[str, np.ndarray | None, str | None]] = []
    for i in range(0, len(changed), MGET_CHUNK):
        docs = client.mget(index=alias, ids=changed[i:i + MGET_CHUNK], source_includes=_fields(kind))["docs"]
        fresh += [(d["_id"], _vector(d["_source"], kind), d["_source"].get("indexed_at")) for d in docs
                  if d.get("found")]
    fresh = [(d, vec, at) for (d, _, at), vec in zip(fresh, _derive(kind, [v for _, v, _ in fresh], dims))]
    with e.lock:
        added_ids, added = [], []
        for doc_id, vec, at in fresh:
            ok = vec is not None and len(vec) == dims
            row = e.rows.get(doc_id)
            if row is not None:  # in place: a query running now may see this one row half written
                e.mat[row] = vec if ok else 0.0
                e.live[row] = ok
            elif len(e.ids) + len(added_ids) < limit:
                added_ids.append(doc_id)
                added.append((vec if ok else np.zeros(dims, np.float32), ok))
            # else past the limit: unranked until the periodic reload, and the cache stays within its memory
            e.stamps[doc_id] = at
            e.newest = max(e.newest or "", at or "") or None
        if added:
            e.rows = {**e.rows, **{d: len(e.ids) + i for i, d in enumerate(added_ids)}}
            e.ids = e.ids + added_ids
            e.mat = np.concatenate([e.mat, np.stack([v for v, _ in added])])
            e.live = np.concatenate([e.live, np.array([ok for _, ok in added], bool)])
        n = len(e.ids)
    # over the limit the count can never agree: the documents past it stay unranked until the periodic reload
    # (a reload on every check would read `limit` vectors every vector_cache_check_s)
    if n >= limit or time.monotonic() - e.counted < count_every_s:
        return True
    agrees = int(client.count(index=alias)["count"]) == n
    if agrees:
        e.counted = time.monotonic()
    return agrees


def _paths(s: Any, alias: str, kind: str) -> tuple[str, str] | None:
    if not s.vector_cache_dir:
        return None
    key = hashlib.sha256(json.dumps([s.url, alias, kind, *_scope_of(kind)]).encode()).hexdigest()[:24]
    base = os.path.join(os.path.expanduser(s.vector_cache_dir), f"{kind}-{key}")
    return base + ".npy", base + ".json"


def _save(e: _Entry, client: Elasticsearch, s: Any, alias: str, kind: str) -> None:
    """Write what the entry holds to vector_cache_dir (aside, then renamed: a reader never sees half a file)."""
    paths = _paths(s, alias, kind)
    if paths is None:
        return
    with e.lock:
        ids, stamps, mat, live, newest = list(e.ids), dict(e.stamps), e.mat, e.live.copy(), e.newest
    try:
        os.makedirs(os.path.dirname(paths[0]), mode=0o700, exist_ok=True)  # ids and vectors: this user only
        _sweep(paths)
        meta = {"alias": alias, "kind": kind, "targets": alias_targets(client, alias), "dims": int(mat.shape[1]),
                "ids": ids, "stamps": [stamps.get(d) for d in ids], "live": live.tolist(), "newest": newest}
        tmp = f"{paths[0]}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(mat, np.float32))
            fh.flush()
            meta["matrix"] = _identity(os.fstat(fh.fileno()))  # kept by the rename
        os.replace(tmp, paths[0])
        with open(f"{paths[1]}.{os.getpid()}.tmp", "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
        os.replace(f"{paths[1]}.{os.getpid()}.tmp", paths[1])
    except (OSError, ValueError) as exc:
        cache_failed("vector", "write", paths[0], exc, "the next process reads every vector from the store "
                     "(index.vector_cache_dir)")
        for path in paths:  # a disk that filled up mid-write keeps nothing of this save
            with contextlib.suppress(OSError):
                os.unlink(f"{path}.{os.getpid()}.tmp")


def _sweep(paths: tuple[str, str]) -> None:
    """Remove what a save killed mid-write left behind (`<file>.<pid>.tmp` of a process that is gone): ~150 MB per
    100k vectors each, which would otherwise pile up with every crash."""
    for path in paths:
        for tmp in glob.glob(glob.escape(path) + ".*.tmp"):
            pid = tmp[len(path) + 1:-len(".tmp")]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # that process is alive: maybe saving right now
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # alive, another user's
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _identity(st: os.stat_result) -> list[int]:
    """Which file a saved matrix is: the ids file names the matrix written with it, so a matrix renamed into place
    by another save (two processes at once, or a stop between the two renames) is never read beside these ids."""
    return [st.st_dev, st.st_ino, st.st_size]


def _restore(e: _Entry, client: Elasticsearch, s: Any, alias: str, kind: str, dims: int, limit: int) -> bool:
    """Take the saved matrix (memory-mapped) and bring it up to date; False when there is none that fits."""
    paths = _paths(s, alias, kind)
    if paths is None:
        return False
    try:
        with open(paths[1], encoding="utf-8") as fh:
            meta = json.load(fh)
        mat = np.load(paths[0], mmap_mode="c")  # copy-on-write: in-place updates stay in this process
        held = _identity(os.stat(paths[0]))  # after the load: a matrix replaced meanwhile is not the one mapped
    except FileNotFoundError:
        log.debug("vector cache %s/%s: no saved copy", alias, kind)
        return False
    except (OSError, ValueError) as exc:
        cache_failed("vector", "read", paths[0], exc, "reading every vector from the store (index.vector_cache_dir)")
        return False
    if meta.get("matrix") != held:
        log.debug("vector cache %s/%s: the saved matrix is not the one its ids were saved with", alias, kind)
        return False
    ids = meta.get("ids") or []
    if meta.get("dims") != dims or mat.shape != (len(ids), dims) or len(ids) > limit or \
            meta.get("targets") != alias_targets(client, alias):
        return False
    with e.lock:
        e.ids, e.rows = ids, {d: i for i, d in enumerate(ids)}
        e.stamps = dict(zip(ids, meta.get("stamps") or [None] * len(ids)))
        e.live, e.mat, e.newest = np.asarray(meta.get("live"), bool), mat, meta.get("newest")
    changed = len(e.ids)
    if not _since(e, client, alias, kind, dims, limit):
        return False
    if len(e.ids) != changed or any(e.stamps.get(d) != at for d, at in zip(ids, meta.get("stamps") or [])):
        _save(e, client, s, alias, kind)  # the next process starts from here
    e.loaded = time.monotonic()
    return True


def _refresh_loop(e: _Entry, client: Elasticsearch, alias: str, kind: str, dims: int, limit: int, s: Any) -> None:
    """In the background, so a query never waits for it: every vector_cache_check_s what was indexed since;
    everything again every vector_cache_reload_s or when the count disagrees (a delete). Ends when no query
    used the cache for vector_cache_reload_s, or after MAX_ERRORS failures in a row (the next query loads
    again)."""
    errors = 0
    if isinstance(e.mat, np.memmap):  # restored from the saved file: into this process's memory, off the query path
        held = e.mat  # (file pages can be dropped under memory pressure and read back inside a query)
        copy = np.array(held)
        with e.lock:
            if e.mat is held:
                e.mat = copy
    while True:
        if e.stop.wait(max(0.05, s.vector_cache_check_s)):
            break
        if time.monotonic() - e.used > s.vector_cache_reload_s:
            break
        try:
            if time.monotonic() - e.loaded > s.vector_cache_reload_s or \
                    not _since(e, client, alias, kind, dims, limit, s.vector_cache_count_s):
                _load(e, client, alias, kind, dims, limit)
                _save(e, client, s, alias, kind)
            errors = 0
        except Exception as exc:  # the store is down or the alias is gone: try again, then give up
            errors += 1
            log.debug("vector cache %s/%s: refresh failed: %s", alias, kind, type(exc).__name__)
            if errors >= MAX_ERRORS:
                break
    with e.lock:
        e.loaded, e.refresher = 0.0, None


def stop_refreshers(url: str, timeout_s: float = 5.0) -> None:
    """End the background refreshes of the store at `url` before it is stopped (`run` stops its embedded store):
    polled after, each would fail, and the client logs every failed request at WARNING (trial 33 N7: three
    `elastic_transport.node_pool` lines after Ctrl-C of `run --serve`). A later query starts one again."""
    with _entries_lock:
        entries = [e for (at, _, _), e in _entries.items() if at == url]
    for e in entries:
        e.stop.set()
    for e in entries:
        thread = e.refresher
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)


def nearest(client: Elasticsearch, s: Any, alias: str, q: np.ndarray, filters: list[dict[str, Any]], k: int,
            kind: str) -> list[tuple[str, float]]:
    """The k (id, cosine) nearest to the unit vector q among the documents the filters allow, best first. kind
    "classes" (DERIVED): q weighs class scores (domain.vision.prototypes.VisualQuery.weights), the score is the
    image vector's cosine with the visual leg's query."""
    e = _entry((s.url, alias, kind))
    dims = len(q)
    limit = s.vector_cache_max_docs if kind == "text" else s.image_cache_max_docs  # 1280 floats: 5 KB a document
    e.used = time.monotonic()
    if not e.loaded and not _restore(e, client, s, alias, kind, dims, limit):
        _load(e, client, alias, kind, dims, limit)  # the first query of this process (or after a failure) waits
        _save(e, client, s, alias, kind)
    with e.lock:
        if e.refresher is None:
            e.stop.clear()
            e.refresher = threading.Thread(target=_refresh_loop, args=(e, client, alias, kind, dims, limit, s),
                                           daemon=True, name=f"vector-cache-{alias}-{kind}")
            e.refresher.start()
        ids, mat, live, rows = e.ids, e.mat, e.live, e.rows
    if not ids or mat.shape[1] != dims:
        return []
    mask = live.copy()
    if filters:
        allowed = np.zeros(len(ids), bool)
        body = {"query": {"bool": {"filter": filters}}, "_source": False}
        for n, h in enumerate(helpers.scan(client, index=alias, query=body, size=5000)):
            if n >= s.vector_scan_limit:
                break
            row = rows.get(h["_id"])
            if row is not None and row < len(allowed):
                allowed[row] = True
        mask &= allowed
    candidates = np.flatnonzero(mask)
    if not len(candidates):
        return []
    nz = np.flatnonzero(q)
    if len(nz) * SPARSE < dims:  # a few classes' columns (the visual leg), not the whole matrix
        sims = (mat[:, nz] @ q[nz])[candidates]
    else:
        sims = (mat @ q)[candidates] if 2 * len(candidates) > len(ids) else mat[candidates] @ q
    top = np.argpartition(-sims, min(k, len(sims)) - 1)[:k] if len(sims) > k else np.arange(len(sims))
    top = top[np.argsort(-sims[top], kind="stable")]
    return [(ids[candidates[i]], float(sims[i])) for i in top]
