"""Gemini via the official google-genai SDK (client.aio.models.generate_content).

Structured output: response_mime_type="application/json" + response_json_schema (plain JSON Schema). The SDK's
retries stay off (its default, no retry_options): retries live in consumers/enrich/calling.py.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any, NoReturn

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from consumers.enrich.providers.base import (ProviderRequest, ProviderResponse, connection, images_of,
                                             parse_json_object)
from streams.errors import PermanentError, StageError, TransientError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
REFUSAL_FINISH = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "RECITATION",
                  "IMAGE_PROHIBITED_CONTENT"}


def _retry_delay(err: genai_errors.APIError) -> float | None:
    """google.rpc.RetryInfo retryDelay ("12s" / "0.5s") in the error details, else a retry-after header."""
    details = err.details if isinstance(err.details, dict) else {}
    inner = details.get("error", details) if isinstance(details, dict) else {}
    for item in (inner.get("details") or []) if isinstance(inner, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            m = re.fullmatch(r"\s*([0-9.]+)s\s*", str(item.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    headers = getattr(getattr(err, "response", None), "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", None) or value).split(".")[-1]


BATCH_ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
CACHE_RETRY_S = 300
"""after the cache API failed (5xx, connection), requests go without a context cache this long"""
TRANSIENT_RPC_CODES = {4, 8, 10, 13, 14}
"""google.rpc codes worth asking again: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE"""


def _stage_error(e: BaseException, timeout_s: float | None) -> BaseException:
    """An SDK or transport error as the project's error class (status only; never the key or the body); anything
    else unchanged."""
    if isinstance(e, genai_errors.APIError):
        code = int(e.code or 0)
        details = {"status": code, "error_status": e.status or ""}
        if code in TRANSIENT_STATUS or code >= 500:
            return TransientError(f"gemini {code} {e.status}", reason=f"http_{code}", details=details,
                                  retry_after_s=_retry_delay(e))
        return PermanentError(f"gemini {code} {e.status}", reason=f"http_{code}", details=details)
    name = type(e).__name__
    if "Timeout" in name:
        return TransientError(f"gemini timeout after {timeout_s}s", reason="timeout")
    if any(k in name for k in ("Connect", "Connection", "Disconnected", "ClientOS", "Transport",
                               "Network", "ReadError", "RemoteProtocol")):
        return TransientError(f"gemini connection error ({name})", reason="connection")
    return e


def _cache_key(request: ProviderRequest) -> str:
    return hashlib.sha256(f"{request.model}\x00{request.system}".encode("utf-8")).hexdigest()


def _raise(e: BaseException, timeout_s: float | None) -> NoReturn:
    mapped = _stage_error(e, timeout_s)
    if mapped is e:
        raise e
    raise mapped from e


def _response(resp: Any, request: ProviderRequest, request_id: str | None, latency_ms: float) -> ProviderResponse:
    """A GenerateContentResponse (synchronous or a batch entry's) as the provider response."""
    usage = resp.usage_metadata
    out_tokens = int((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
    cached = int(usage.cached_content_token_count or 0) if usage else 0  # part of prompt_token_count
    result = ProviderResponse(data=None, raw_text="", model=request.model, model_version=resp.model_version,
                              request_id=request_id,
                              input_tokens=int(usage.prompt_token_count or 0) - cached if usage else 0,
                              cache_read_tokens=cached, output_tokens=out_tokens, latency_ms=latency_ms)
    block = _enum_name(resp.prompt_feedback.block_reason) if resp.prompt_feedback else None
    cand = resp.candidates[0] if resp.candidates else None
    finish = _enum_name(cand.finish_reason) if cand is not None else None
    result.stop_reason = finish or block
    if block or finish in REFUSAL_FINISH or cand is None:
        raise PermanentError("gemini blocked the request", reason="refused",
                             details={"block_reason": block or "", "finish_reason": finish or "",
                                      "request_id": result.request_id or "",
                                      "input_tokens": result.input_tokens,
                                      "cache_read_tokens": result.cache_read_tokens,
                                      "output_tokens": result.output_tokens})
    text = "".join(p.text or "" for p in (cand.content.parts or []) if not getattr(p, "thought", False)) \
        if cand.content else ""
    result.raw_text = text
    result.data = parse_json_object(text)
    return result


class GeminiProvider:
    name = "gemini"

    def __init__(self, settings: Any = None, *, api_key: str | None = None, base_url: str | None = None,
                 client: genai.Client | None = None):
        if client is None:
            key, url, timeout_s = connection(settings, api_key, base_url, provider="gemini", vendor="gemini")
            opts = types.HttpOptions(base_url=url, timeout=int(timeout_s * 1000)) if url else \
                types.HttpOptions(timeout=int(timeout_s * 1000))
            client = genai.Client(api_key=key, http_options=opts)
        self.client = client
        enrich = getattr(settings, "enrich", None)
        # context caching: the system instruction (task rules + vocabulary) kept once per model at Google and
        # referenced by name, so every request bills those tokens at the cached rate instead of in full
        self.context_caching = bool(getattr(enrich, "prompt_caching", True))
        self.cache_ttl_s = int(getattr(enrich, "gemini_cache_ttl_s", 3600))
        self._caches: dict[str, tuple[str, float]] = {}  # sha256(model, system) -> (cachedContents/..., expires)
        self._uncacheable: set[str] = set()  # below the model's minimum size, or refused
        self._creating: dict[str, asyncio.Future] = {}

    @staticmethod
    def _contents(request: ProviderRequest) -> list[types.Content]:
        parts: list[Any] = []
        if request.video is not None:  # the video itself (its frames and sound), in place of its keyframes
            mime, data = request.video
            parts += [types.Part.from_text(text="The video:"), types.Part.from_bytes(data=data, mime_type=mime)]
        for label, data, media_type in [] if request.video is not None else images_of(request):
            if label:
                parts.append(types.Part.from_text(text=label))
            parts.append(types.Part.from_bytes(data=data, mime_type=media_type))
        parts.append(types.Part.from_text(text=request.user_text))
        return [types.Content(role="user", parts=parts)]

    @staticmethod
    def _config(request: ProviderRequest, timeout: bool = True, cached: str | None = None) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            system_instruction=None if cached else request.system, cached_content=cached,
            temperature=request.temperature, max_output_tokens=request.max_tokens,
            response_mime_type="application/json", response_json_schema=request.output_schema,
            http_options=types.HttpOptions(timeout=int(request.timeout_s * 1000)) if timeout else None)

    async def _cached(self, request: ProviderRequest) -> tuple[str | None, int]:
        """The name of the context cache holding this request's system instruction (created on first use, again
        once it expired) and the tokens just stored (0 when it already existed), or (None, 0): caching off, the
        prefix below the model's minimum (Google refuses it: remembered, never asked again), or the cache API
        failing (this request goes without; it never fails a request)."""
        if not self.context_caching:
            return None, 0
        key = _cache_key(request)
        if key in self._uncacheable:
            return None, 0
        hit = self._caches.get(key)
        if hit is not None and hit[1] > time.time() + 60:
            return hit[0] or None, 0  # "": the cache API failed a moment ago
        creating = self._creating.get(key)
        if creating is not None:  # another request of this loop is creating it: one cache, not many
            return await asyncio.shield(creating), 0
        fut = self._creating[key] = asyncio.get_running_loop().create_future()
        name, stored = None, 0
        try:
            name, stored = await self._create(key, request)
        finally:
            self._creating.pop(key, None)
            fut.set_result(name)
        return name, stored

    async def _create(self, key: str, request: ProviderRequest) -> tuple[str | None, int]:
        try:
            cache = await self.client.aio.caches.create(model=request.model, config=types.CreateCachedContentConfig(
                system_instruction=request.system, ttl=f"{self.cache_ttl_s}s", display_name=f"assetstream-{key[:16]}"))
        except genai_errors.APIError as e:
            if 400 <= int(e.code or 0) < 500:
                self._uncacheable.add(key)
            else:  # not asked again for a while
                self._caches[key] = ("", time.time() + 60 + CACHE_RETRY_S)
            log.info("gemini context cache not used for %s (%s %s)", request.model, e.code, e.status)
            return None, 0
        except Exception as e:  # noqa: BLE001 - go without the cache
            self._caches[key] = ("", time.time() + 60 + CACHE_RETRY_S)
            log.info("gemini context cache not used for %s (%s)", request.model, type(e).__name__)
            return None, 0
        self._caches[key] = (str(cache.name), time.time() + self.cache_ttl_s)
        stored = int(cache.usage_metadata.total_token_count or 0) if cache.usage_metadata else 0
        return str(cache.name), stored

    async def generate(self, request: ProviderRequest) -> ProviderResponse:
        started = time.monotonic()
        cached, stored = await self._cached(request)
        try:
            resp = await asyncio.wait_for(
                self.client.aio.models.generate_content(
                    model=request.model, contents=self._contents(request), config=self._config(request, cached=cached)),
                timeout=request.timeout_s + 1.0)
        except (asyncio.TimeoutError, TimeoutError) as e:
            raise TransientError(f"gemini timeout after {request.timeout_s}s", reason="timeout") from e
        except Exception as e:  # noqa: BLE001 - API errors and transport errors of httpx / aiohttp
            if cached and isinstance(e, genai_errors.APIError) and int(e.code or 0) in (400, 403, 404):
                # the cache is gone (deleted, expired early): forget it; the retry goes without or makes a new one
                self._caches.pop(_cache_key(request), None)
                raise TransientError(f"gemini {e.code} with context cache {cached}",
                                     reason="context_cache_gone") from None
            _raise(e, request.timeout_s)
        result = _response(resp, request, resp.response_id, (time.monotonic() - started) * 1000.0)
        result.cache_write_tokens = stored  # the cache's storage, priced once by whoever created it
        return result

    # --- batch mode (consumers/enrich/batching.py drives these): one batch job per model ------------------
    batch_per_model = True

    async def submit_batch(self, entries: list[tuple[str, ProviderRequest]]) -> str:
        """One batch job of inlined requests (all of one model), each tagged with its custom id; its name."""
        src = [types.InlinedRequest(contents=self._contents(r), config=self._config(r, timeout=False),
                                    metadata={"key": cid}) for cid, r in entries]
        try:
            job = await self.client.aio.batches.create(model=entries[0][1].model, src=src)
        except Exception as e:  # noqa: BLE001
            _raise(e, None)
        return str(job.name)

    async def batch_ended(self, batch_id: str) -> bool:
        try:
            job = await self.client.aio.batches.get(name=batch_id)
        except Exception as e:  # noqa: BLE001
            _raise(e, None)
        return _enum_name(job.state) in BATCH_ENDED

    async def batch_results(self, batch_id: str,
                            entries: dict[str, ProviderRequest]) -> dict[str, ProviderResponse | StageError]:
        try:
            job = await self.client.aio.batches.get(name=batch_id)
        except Exception as e:  # noqa: BLE001
            _raise(e, None)
        state = _enum_name(job.state)
        if state != "JOB_STATE_SUCCEEDED":  # failed, cancelled or expired as a whole: ask again
            raise TransientError(f"gemini batch {batch_id} {state}", reason=f"batch_{str(state).lower()}")
        out: dict[str, ProviderResponse | StageError] = {}
        order = list(entries)
        for i, item in enumerate((job.dest.inlined_responses if job.dest else None) or []):
            cid = (item.metadata or {}).get("key") or (order[i] if i < len(order) else None)
            request = entries.get(cid) if cid else None
            if request is None:
                continue
            request_id = f"{batch_id}/{cid}"
            if item.error is not None or item.response is None:
                code = int(getattr(item.error, "code", 0) or 0)
                cls = TransientError if code in TRANSIENT_RPC_CODES or code == 0 else PermanentError
                out[cid] = cls(f"gemini batch entry error {code}", reason=f"batch_rpc_{code}",
                               details={"request_id": request_id, "code": code})
                continue
            try:
                out[cid] = _response(item.response, request, request_id, 0.0)
            except StageError as e:  # blocked
                out[cid] = e
        return out

    async def aclose(self) -> None:
        try:
            await self.client.aio.aclose()
        except Exception:  # older SDKs have no aclose
            pass
