"""The model-result cache: pay once for the same question.

A task's answer is determined by what the model is given: the image bytes sent (the thumbnail), the task, the
provider and model, the prompt (id, version and hash: system part, vocabulary, output schema, parameters) and the
record-specific text the prompt renders (OCR text, EXIF facts, product context, notes...). The key is a hash of
exactly those, so a reprocess, a metadata-only update that changes none of a task's inputs, a DLQ replay or a
byte-identical copy never calls the model again for that task, and a changed prompt re-runs only its own task. A
hit keeps the original provenance (prompt, model, request id, tokens) with `cost_usd` 0 and `reused_from` naming
the asset whose call produced it.

Stored where every enrich worker sees it: an index `<index>-results` in the search store (one small document per
key, not searchable, `dynamic: false`); `enrich.result_cache = memory` keeps it in this process (tests, one
worker); `off` disables it. Entries older than `enrich.result_cache_ttl_days` are ignored (and overwritten). A store
that does not answer never stalls enrichment: lookups miss and the model is called (metric result="error").
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from consumers.enrich.calling import ModelSpec, TaskResult
from consumers.enrich.prompts import RenderedPrompt
from streams import metrics
from streams.cachelog import cache_failed
from streams.records import now_ms

log = logging.getLogger(__name__)

KEY_VERSION = "2"
"""Part of every key: bump it when answers cached before would now be wrong. 2: the local provider's answers
carry their evidence (issue 15 item 6) and its faces come from BlazeFace; answers cached before had neither."""


def result_key(task: str, spec: ModelSpec, prompt: RenderedPrompt, image: bytes | None,
               extra_images: Sequence[tuple[str, bytes]] = (), revision: str = "") -> str:
    """sha256 over everything that determines a task's answer (a video's keyframes sent with it included, and
    the provider's `answer_revision` when it has one: only then is it part of the key, so that the keys of
    answers cached from a provider without one never change)."""
    h = hashlib.sha256()
    for part in (KEY_VERSION, *((f"revision={revision}",) if revision else ()),
                 task, spec.provider, spec.model, prompt.id, prompt.version, prompt.hash,
                 hashlib.sha256(prompt.user_text.encode("utf-8")).hexdigest(),
                 hashlib.sha256(image).hexdigest() if image else "-",
                 *(f"{label}={hashlib.sha256(data).hexdigest()}" for label, data in extra_images)):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _entry(result: TaskResult, asset_id: str) -> dict[str, Any]:
    prov = {k: v for k, v in result.provenance.items() if k != "reused_from"}
    if hasattr(prov.get("timestamp"), "timestamp"):
        prov["timestamp"] = int(prov["timestamp"].timestamp() * 1000)
    return {"task": result.task, "data": json.dumps(result.data, sort_keys=True), "raw_text": result.raw_text,
            "provenance": prov, "asset_id": asset_id, "created_at": now_ms()}


def _result(entry: dict[str, Any]) -> TaskResult:
    prov = {**entry["provenance"], "cost_usd": 0.0, "reused_from": entry.get("asset_id")}
    return TaskResult(task=entry["task"], data=json.loads(entry["data"]), raw_text=entry.get("raw_text") or "",
                      provenance=prov, cost_usd=0.0, attempts=0, repaired=False)


class MemoryResultCache:
    """This process only (an LRU): for tests and single-worker runs."""

    def __init__(self, max_entries: int = 20_000, ttl_s: float | None = None):
        self.max_entries, self.ttl_s = max_entries, ttl_s
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def get_many(self, keys: list[str]) -> dict[str, TaskResult]:
        out = {}
        for k in keys:
            e = self._entries.get(k)
            if e is not None and (self.ttl_s is None or now_ms() - e["created_at"] <= self.ttl_s * 1000):
                self._entries.move_to_end(k)
                out[k] = _result(copy.deepcopy(e))
        _count(len(out), len(keys) - len(out))
        return out

    async def put(self, key: str, result: TaskResult, asset_id: str) -> None:
        self._entries[key] = _entry(result, asset_id)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def aclose(self) -> None:
        pass


class StoreDocs:
    """Small documents by id in one index of the search store (`<index>-<suffix>`, not searchable, created on first
    write), read and written with a timeout; callers treat a failure as a miss."""

    MAPPINGS: dict[str, Any] = {"dynamic": False, "properties": {}}

    def __init__(self, settings: Any, client: Any, suffix: str, *, timeout_s: float = 2.0):
        from domain.store.management import shard_settings
        if client is None:
            from domain.store.client import make_client
            client = make_client(settings)
        self.client = client
        self.index = f"{settings.index.index}-{suffix}"
        self.index_settings = shard_settings(settings, side=True)
        self.timeout_s = timeout_s
        self._created = False

    def _get(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        from elasticsearch import NotFoundError
        try:
            resp = self.client.options(request_timeout=self.timeout_s).mget(index=self.index, ids=keys)
        except NotFoundError:  # nothing written yet
            return {}
        return {d["_id"]: d["_source"] for d in resp["docs"] if d.get("found")}

    def _ensure(self) -> None:
        from elasticsearch import BadRequestError
        if not self._created:
            try:
                self.client.indices.create(index=self.index, mappings=self.MAPPINGS, settings=self.index_settings)
            except BadRequestError as e:  # created by another worker
                if "already_exists" not in str(e):
                    raise
            self._created = True

    def _put(self, key: str, entry: dict[str, Any]) -> None:
        self._ensure()
        self.client.options(request_timeout=self.timeout_s).index(index=self.index, id=key, document=entry)

    def _put_many(self, entries: dict[str, dict[str, Any]]) -> None:
        """One bulk request; raises if any document was not written."""
        self._ensure()
        ops: list[dict[str, Any]] = []
        for key, entry in entries.items():
            ops += [{"index": {"_index": self.index, "_id": key}}, entry]
        resp = self.client.options(request_timeout=max(self.timeout_s, 10.0)).bulk(operations=ops)
        if resp.get("errors"):
            raise RuntimeError(f"{self.index}: some documents were not written")


class StoreResultCache(StoreDocs):
    """`<index>-results` in the search store, shared by every enrich worker."""

    MAPPINGS = {"dynamic": False, "properties": {"task": {"type": "keyword"}, "asset_id": {"type": "keyword"},
                                                  "created_at": {"type": "date"}}}

    def __init__(self, settings: Any, client: Any = None, *, timeout_s: float = 2.0, down_backoff_s: float = 30.0):
        super().__init__(settings, client, "results", timeout_s=timeout_s)
        self.ttl_s = settings.enrich.result_cache_ttl_days * 86400.0
        self.down_backoff_s = down_backoff_s
        self._down_until = 0.0

    async def get_many(self, keys: list[str]) -> dict[str, TaskResult]:
        if not keys or time.monotonic() < self._down_until:
            if keys:
                metrics.RESULT_CACHE.labels("error").inc(len(keys))
            return {}
        try:
            found = await asyncio.to_thread(self._get, keys)
        except Exception as e:  # noqa: BLE001 - pay rather than stall
            self._down(e, "read")
            metrics.RESULT_CACHE.labels("error").inc(len(keys))
            return {}
        fresh = {k: _result(e) for k, e in found.items() if now_ms() - int(e.get("created_at") or 0) <= self.ttl_s * 1000}
        _count(len(fresh), len(keys) - len(fresh))
        return fresh

    async def put(self, key: str, result: TaskResult, asset_id: str) -> None:
        if time.monotonic() < self._down_until:
            return
        try:
            await asyncio.to_thread(self._put, key, _entry(result, asset_id))
        except Exception as e:  # noqa: BLE001 - a missed put only costs a later call
            self._down(e, "write")

    def _down(self, e: Exception, op: str) -> None:
        """The store did not answer: lookups miss (the model is called) for `down_backoff_s`; one warning naming the
        index and the error per 5 minutes (streams/cachelog.py), not one per record."""
        self._down_until = time.monotonic() + self.down_backoff_s
        cache_failed("result", op, f"index {self.index}", e, f"calling the model; asking the store again in "
                     f"{self.down_backoff_s:.0f} s")

    async def aclose(self) -> None:
        pass  # the client belongs to whoever made it (the stage closes the dedupe index's)


def _count(hits: int, misses: int) -> None:
    if hits:
        metrics.RESULT_CACHE.labels("hit").inc(hits)
    if misses:
        metrics.RESULT_CACHE.labels("miss").inc(misses)


def make_result_cache(settings: Any, client: Any = None) -> MemoryResultCache | StoreResultCache | None:
    mode = settings.enrich.result_cache
    if mode == "store":
        return StoreResultCache(settings, client)
    if mode == "memory":
        return MemoryResultCache(ttl_s=settings.enrich.result_cache_ttl_days * 86400.0)
    return None
