"""Backfill through the providers' batch APIs: submit, poll, collect, map back to records.

With `enrich.batch = "backfill"`, every model request of a record published by `assetstream backfill` (event
attribute `ingest` = `backfill*`) goes to a `BatchCollector` instead of a synchronous call. The collector gathers
the requests of many records (`enrich.batch_max_requests`, or whatever came within `enrich.batch_max_wait_s` of
the first), sends them as one batch (Claude: Message Batches; Gemini: batch mode, one job per model; both billed at
half price), asks every `enrich.batch_poll_interval_s` whether it ended, fetches the results and hands each request
its own answer by its `custom_id`. Live records of the same worker stay synchronous. An identical request already
waiting shares that entry's answer; every sent entry is written to the `BatchJournal`, so a worker that restarts
(or takes over the partition) during a batch waits for that batch instead of paying for the question again.

Nothing here blocks the consumer: each waiting record is an awaiting coroutine on the io stage's event loop,
while the runner keeps polling (at `runner.max_in_flight` it stops taking records, then pauses the partitions, so
`max.poll.interval.ms` is never exceeded). A record finishes only when its batch results are collected; its outputs
are produced and acknowledged and only then its offset is committed, as for any record. A batch entry that
errored transiently, expired or was canceled raises TransientError: the calling layer retries it (in the next
batch), then the runner. Answers go into the result cache like synchronous ones, so a redelivered record finds them.

A provider that supports batches implements `submit_batch(entries) -> batch id`, `batch_ended(batch id) -> bool`
and `batch_results(batch id, entries) -> {custom_id: ProviderResponse | StageError}`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from consumers.enrich.providers.base import ProviderRequest, ProviderResponse
from streams import metrics
from streams.errors import StageError, TransientError
from streams.records import now_ms

log = logging.getLogger(__name__)


def supports_batches(provider: Any) -> bool:
    return all(callable(getattr(provider, name, None)) for name in ("submit_batch", "batch_ended", "batch_results"))


def is_backfill(asset: dict[str, Any]) -> bool:
    """Whether the event came from `assetstream backfill` (the only traffic the batch path takes)."""
    return str((asset.get("attributes") or {}).get("ingest") or "").startswith("backfill")


_Entry = tuple[ProviderRequest, asyncio.Future, str]
"""A request waiting for its batch: the request, the future its callers await, its digest."""


@dataclass
class _Open:
    """Requests gathered for a provider's next batch."""

    provider: str
    entries: dict[str, _Entry] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class BatchCollector:
    """One per stage. `await call(provider, request)` returns that request's answer once its batch ended."""

    def __init__(self, providers: dict[str, Any], *, max_requests: int, max_wait_s: float, poll_interval_s: float,
                 journal: "BatchJournal | None" = None):
        self.providers = providers
        self.journal = journal
        self._attached: dict[str, _Open] = {}  # batch id -> requests that found their entry in a batch already sent
        self.max_requests, self.max_wait_s, self.poll_interval_s = max_requests, max_wait_s, poll_interval_s
        self._open: dict[str, _Open] = {}
        self._running: set[asyncio.Task] = set()
        self._shared: dict[str, asyncio.Future] = {}
        self._closed = False
        self.batches_sent = 0

    @classmethod
    def from_settings(cls, enrich: Any, providers: dict[str, Any],
                      journal: "BatchJournal | None" = None) -> "BatchCollector":
        return cls(providers, max_requests=enrich.batch_max_requests, max_wait_s=enrich.batch_max_wait_s,
                   poll_interval_s=enrich.batch_poll_interval_s, journal=journal)

    def supports(self, provider: str) -> bool:
        return supports_batches(self.providers.get(provider))

    async def call(self, provider: str, request: ProviderRequest) -> ProviderResponse:
        """The request's answer once its batch ended. The same request (same model, prompt, rendered text, image)
        already waiting in an open or sent batch is not sent again: it gets that answer with no tokens of its own
        (it cost nothing; the request id names the entry that paid), like a result-cache hit."""
        if self._closed:
            raise TransientError("enrich is stopping: no new batch", reason="batch_stopped")
        digest = _digest(provider, request)
        shared = self._shared.get(digest)
        if shared is not None:
            resp = await asyncio.shield(shared)
            return dataclasses.replace(resp, input_tokens=0, output_tokens=0, cache_read_tokens=0,
                                       cache_write_tokens=0)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._shared[digest] = fut
        fut.add_done_callback(lambda _: self._shared.pop(digest, None))
        sent = await self.journal.get(digest) if self.journal is not None else None
        if sent is not None and sent.get("provider") == provider:  # asked before a restart: wait for that entry
            self._attach(str(sent["batch_id"]), provider, str(sent["custom_id"]), (request, fut, digest))
        else:
            self._enqueue(provider, (request, fut, digest))
        return await asyncio.shield(fut)  # a cancelled record leaves the entry to the others waiting for it

    def _enqueue(self, provider: str, entry: _Entry) -> None:
        # a Gemini batch job is for one model; a Claude batch may mix them
        group = f"{provider}:{entry[0].model}" if getattr(self.providers[provider], "batch_per_model", False) \
            else provider
        pending = self._open.setdefault(group, _Open(provider))
        pending.entries[uuid.uuid4().hex] = entry  # custom_id: [a-zA-Z0-9_-]{1,64}
        if len(pending.entries) >= self.max_requests:
            self._send(group)
        elif pending.timer is None:
            pending.timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._send, group)

    def _start(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # --- re-attaching after a restart -----------------------------------------------------------------------
    def _attach(self, batch_id: str, provider: str, custom_id: str, entry: _Entry) -> None:
        group = self._attached.get(batch_id)
        if group is None:
            group = self._attached[batch_id] = _Open(provider)
            self._start(self._follow(batch_id, group))
        group.entries[custom_id] = entry

    async def _follow(self, batch_id: str, group: _Open) -> None:
        """Wait for a batch another (stopped) worker sent and hand its answers to the requests that asked the same
        questions again; whatever it cannot answer (gone, failed, expired entries) goes into a new batch."""
        provider = self.providers[group.provider]
        results: dict[str, Any] = {}
        try:
            while not await provider.batch_ended(batch_id):
                await asyncio.sleep(self.poll_interval_s)
            self._attached.pop(batch_id, None)  # later arrivals follow it anew (it ended: one poll)
            results = await provider.batch_results(batch_id, {cid: e[0] for cid, e in group.entries.items()})
            metrics.LLM_BATCHES.labels(group.provider, "reattached").inc()
        except asyncio.CancelledError:
            _fail(group.entries, TransientError("enrich stopped while its batch ran", reason="batch_stopped"))
            raise
        except Exception as e:  # noqa: BLE001 - the batch is gone or unreadable: ask again
            log.warning("%s batch %s could not be followed (%s): asking again", group.provider, batch_id,
                        type(e).__name__)
        self._attached.pop(batch_id, None)
        for cid, entry in group.entries.items():
            result = results.get(cid)
            if entry[1].done():
                continue
            if result is None or isinstance(result, TransientError):
                self._enqueue(group.provider, entry)
            elif isinstance(result, BaseException):
                entry[1].set_exception(result)
            else:
                entry[1].set_result(result)

    def _send(self, group: str) -> None:
        pending = self._open.pop(group, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        entries = {cid: e for cid, e in pending.entries.items() if not e[1].done()}
        if entries:
            self._start(self._run(pending.provider, entries))

    async def _run(self, provider_name: str, entries: dict[str, _Entry]) -> None:
        provider = self.providers[provider_name]
        requests = {cid: e[0] for cid, e in entries.items()}
        started = time.monotonic()
        try:
            batch_id = await provider.submit_batch(list(requests.items()))
            self.batches_sent += 1
            metrics.LLM_BATCHES.labels(provider_name, "submitted").inc()
            log.info("%s batch %s sent: %d requests", provider_name, batch_id, len(requests))
            if self.journal is not None:  # so a worker that restarts before the results waits for them instead
                await self.journal.put_many({e[2]: {"provider": provider_name, "batch_id": batch_id, "custom_id": cid,
                                                    "sent_at": now_ms()} for cid, e in entries.items()})
            while not await provider.batch_ended(batch_id):
                await asyncio.sleep(self.poll_interval_s)
            results = await provider.batch_results(batch_id, requests)
        except asyncio.CancelledError:  # the stage closes: nobody waits for ever
            _fail(entries, TransientError("enrich stopped while its batch ran", reason="batch_stopped"))
            raise
        except Exception as e:  # noqa: BLE001 - every waiting request gets the failure; the caller retries
            metrics.LLM_BATCHES.labels(provider_name, "failed").inc()
            _fail(entries, e if isinstance(e, StageError) else TransientError(
                f"{provider_name} batch failed: {type(e).__name__}", reason="batch_failed"))
            return
        metrics.LLM_BATCHES.labels(provider_name, "collected").inc()
        waited_ms = (time.monotonic() - started) * 1000.0
        log.info("%s batch %s collected after %.0f s", provider_name, batch_id, waited_ms / 1000.0)
        for cid, (_, fut, _) in entries.items():
            if fut.done():
                continue
            result = results.get(cid)
            if result is None:
                fut.set_exception(TransientError(f"{provider_name} batch {batch_id}: no result for {cid}",
                                                 reason="batch_missing_result"))
            elif isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                result.latency_ms = result.latency_ms or waited_ms
                fut.set_result(result)

    async def aclose(self) -> None:
        """Stop waiting: requests still open or in a sent batch fail transiently (their records stay
        uncommitted and are enriched again after a restart)."""
        self._closed = True
        for group in list(self._open):
            pending = self._open.pop(group)
            if pending.timer is not None:
                pending.timer.cancel()
            _fail(pending.entries, TransientError("enrich stopped before the batch was sent", reason="batch_stopped"))
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _digest(provider: str, request: ProviderRequest) -> str:
    """What makes two requests the same question (the parts a provider sends)."""
    h = hashlib.sha256()
    for part in (provider, request.task, request.model, request.system, request.user_text,
                 json.dumps(request.output_schema, sort_keys=True), str(request.max_tokens),
                 str(request.temperature), request.image_media_type, str(request.context.get("output_tool"))):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    h.update(hashlib.sha256(request.image).digest() if request.image else b"-")
    return h.hexdigest()


def _fail(entries: dict[str, _Entry], err: BaseException) -> None:
    for _, fut, _ in entries.values():
        if not fut.done():
            fut.set_exception(err)


class BatchJournal:
    """Which batch entry asks which question: request digest -> provider, batch id, custom id, when sent. Kept in
    `<index>-batches` in the search store (`enrich.result_cache = store`) so a worker that restarts, or takes over
    a partition, while a batch runs waits for that batch's answer instead of paying for the question again. Entries
    older than `max_age_s` (default 7 days; Claude keeps results 29 days, a batch ends within 24 h) are ignored. A
    store that does not answer costs a new batch entry, never a stall."""

    def __init__(self, docs: Any, *, max_age_s: float = 7 * 86400.0):
        self.docs, self.max_age_s = docs, max_age_s

    async def get(self, digest: str) -> dict[str, Any] | None:
        try:
            found = (await asyncio.to_thread(self.docs._get, [digest])).get(digest)
        except Exception as e:  # noqa: BLE001
            log.warning("batch journal unavailable (%s): a new batch entry", type(e).__name__)
            return None
        if found is None or now_ms() - int(found.get("sent_at") or 0) > self.max_age_s * 1000:
            return None
        return found

    async def put_many(self, docs: dict[str, dict[str, Any]]) -> None:
        try:
            await asyncio.to_thread(self.docs._put_many, docs)
        except Exception as e:  # noqa: BLE001
            log.warning("batch journal not written (%s): a restart would ask these questions again",
                        type(e).__name__)


def make_batch_journal(settings: Any, client: Any = None) -> BatchJournal | None:
    """The journal in the search store when the result cache lives there (`enrich.result_cache = store`)."""
    if settings.enrich.result_cache != "store":
        return None
    from consumers.enrich.results import StoreDocs
    return BatchJournal(StoreDocs(settings, client, "batches"))
