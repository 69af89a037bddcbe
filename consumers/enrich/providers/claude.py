"""Claude via the official anthropic SDK (AsyncAnthropic, Messages API).

Structured output: one tool whose input_schema is the prompt's output schema, forced with
tool_choice={"type": "tool", "name": ...}; the tool_use block's `input` is the answer. The SDK's own retries are
off (max_retries=0): retries, backoff and rate limits live in consumers/enrich/calling.py.
The installed SDK (anthropic 2.x) no longer takes sampling parameters, so `request.temperature` is not sent.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import anthropic

from consumers.enrich.providers.base import (ProviderRequest, ProviderResponse, connection, images_of,
                                             parse_json_object)
from streams.errors import PermanentError, StageError, TransientError

TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}


def retry_after_seconds(headers: Any) -> float | None:
    """retry-after-ms, then retry-after (seconds); None if absent or unparseable."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        s = headers.get("retry-after")
        if s is not None:
            return max(0.0, float(s))
    except (TypeError, ValueError):
        return None
    return None


def _error_type(err: anthropic.APIStatusError) -> str:
    body = err.body if isinstance(err.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(inner.get("type") or "error")


def _tool_name(request: ProviderRequest) -> str:
    return str(request.context.get("output_tool") or f"record_{request.task}")


def _stage_error(e: anthropic.APIError, timeout_s: float | None) -> StageError:
    """The SDK's error as the project's error class (status, error type and request id; never the key or body)."""
    if isinstance(e, anthropic.APITimeoutError):
        return TransientError(f"claude timeout after {timeout_s}s", reason="timeout")
    if isinstance(e, anthropic.APIConnectionError):
        return TransientError("claude connection error", reason="connection")
    if not isinstance(e, anthropic.APIStatusError):
        return TransientError(f"claude error: {type(e).__name__}", reason="api_error")
    status, etype = e.status_code, _error_type(e)
    details = {"status": status, "error_type": etype, "request_id": e.request_id or ""}
    if status in TRANSIENT_STATUS or etype in ("overloaded_error", "rate_limit_error", "api_error"):
        return TransientError(f"claude {status} {etype}", reason=f"http_{status}", details=details,
                              retry_after_s=retry_after_seconds(e.response.headers))
    return PermanentError(f"claude {status} {etype}", reason=f"http_{status}", details=details)


def _response(msg: Any, request: ProviderRequest, request_id: str | None, latency_ms: float) -> ProviderResponse:
    """A Message (synchronous or a batch entry's) as the provider response: the forced tool's input, usage."""
    usage = msg.usage
    resp = ProviderResponse(data=None, raw_text="", model=request.model, model_version=msg.model,
                            request_id=request_id, input_tokens=int(usage.input_tokens or 0),
                            cache_read_tokens=int(getattr(usage, "cache_read_input_tokens", 0) or 0),
                            cache_write_tokens=int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
                            output_tokens=int(usage.output_tokens or 0), latency_ms=latency_ms,
                            stop_reason=msg.stop_reason)
    if msg.stop_reason == "refusal":
        raise PermanentError("claude refused the request", reason="refused",
                             details={"request_id": request_id or "", "model": msg.model,
                                      "input_tokens": resp.input_tokens, "output_tokens": resp.output_tokens,
                                      "cache_read_tokens": resp.cache_read_tokens,
                                      "cache_write_tokens": resp.cache_write_tokens})
    tool_name = _tool_name(request)
    for block in msg.content:
        if block.type == "tool_use" and block.name == tool_name:
            resp.data = block.input if isinstance(block.input, dict) else None
            resp.raw_text = json.dumps(block.input, ensure_ascii=False)
            return resp
    text = "".join(getattr(b, "text", "") for b in msg.content if b.type == "text")
    resp.raw_text = text
    resp.data = parse_json_object(text)
    return resp


class ClaudeProvider:
    name = "claude"

    def __init__(self, settings: Any = None, *, api_key: str | None = None, base_url: str | None = None,
                 client: anthropic.AsyncAnthropic | None = None):
        self._fixed = client
        # the stable prefix (output tool with the vocabulary, system prompt) is marked for Anthropic's prompt cache:
        # repeated within its lifetime it is billed at the cache-read rate (0.1x input) instead of in full
        self.prompt_caching = bool(getattr(getattr(settings, "enrich", None), "prompt_caching", True))
        self._client_kwargs: dict[str, Any] = {}
        self._clients: dict[int, anthropic.AsyncAnthropic] = {}
        if client is None:
            key, url, timeout = connection(settings, api_key, base_url, provider="claude", vendor="anthropic")
            self._client_kwargs = {"api_key": key, "base_url": url, "max_retries": 0, "timeout": timeout}

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """One SDK client per event loop: its connection pool belongs to the loop that opened it."""
        if self._fixed is not None:
            return self._fixed
        loop = asyncio.get_running_loop()
        c = self._clients.get(id(loop))
        if c is None:
            self._clients = {id(loop): anthropic.AsyncAnthropic(**self._client_kwargs)}  # drop dead loops' clients
            c = self._clients[id(loop)]
        return c

    def _params(self, request: ProviderRequest) -> dict[str, Any]:
        """The Messages API parameters of one request (the same for a synchronous call and a batch entry)."""
        content: list[dict[str, Any]] = []
        for label, data, media_type in images_of(request):  # a video: its keyframes in one call
            if label:
                content.append({"type": "text", "text": label})
            content.append({"type": "image", "source": {"type": "base64", "media_type": media_type,
                                                        "data": base64.b64encode(data).decode("ascii")}})
        content.append({"type": "text", "text": request.user_text})
        tool_name = _tool_name(request)
        return {"model": request.model, "max_tokens": request.max_tokens,
                "system": [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]
                if self.prompt_caching else request.system,
                "messages": [{"role": "user", "content": content}],
                "tools": [{"name": tool_name, "description": f"Record the {request.task} result.",
                           "input_schema": request.output_schema}],
                "tool_choice": {"type": "tool", "name": tool_name}}

    async def generate(self, request: ProviderRequest) -> ProviderResponse:
        started = time.monotonic()
        try:
            raw = await self.client.messages.with_raw_response.create(**self._params(request),
                                                                       timeout=request.timeout_s)
            msg = await raw.parse()
        except anthropic.APIError as e:
            raise _stage_error(e, request.timeout_s) from None
        request_id = raw.headers.get("request-id") or getattr(msg, "_request_id", None)
        return _response(msg, request, request_id, (time.monotonic() - started) * 1000.0)

    # --- Message Batches (consumers/enrich/batching.py drives these) ---------------------------------------
    async def submit_batch(self, entries: list[tuple[str, ProviderRequest]]) -> str:
        """One Message Batch of (custom_id, request); its id. Billed at half the synchronous price."""
        try:
            batch = await self.client.messages.batches.create(
                requests=[{"custom_id": cid, "params": self._params(r)} for cid, r in entries])
        except anthropic.APIError as e:
            raise _stage_error(e, None) from None
        return batch.id

    async def batch_ended(self, batch_id: str) -> bool:
        try:
            batch = await self.client.messages.batches.retrieve(batch_id)
        except anthropic.APIError as e:
            raise _stage_error(e, None) from None
        return batch.processing_status == "ended"

    async def batch_results(self, batch_id: str,
                            entries: dict[str, ProviderRequest]) -> dict[str, ProviderResponse | StageError]:
        """custom_id -> the parsed answer, or the error of that entry (errored, expired, canceled)."""
        out: dict[str, ProviderResponse | StageError] = {}
        try:
            async for line in await self.client.messages.batches.results(batch_id):
                request = entries.get(line.custom_id)
                if request is None:
                    continue
                result = line.result
                request_id = f"{batch_id}/{line.custom_id}"
                if result.type == "succeeded":
                    try:
                        out[line.custom_id] = _response(result.message, request, request_id, 0.0)
                    except StageError as e:  # a refusal
                        out[line.custom_id] = e
                elif result.type == "errored":
                    etype = str(getattr(result.error.error, "type", "error"))
                    details = {"error_type": etype, "request_id": request_id}
                    cls = TransientError if etype in ("overloaded_error", "rate_limit_error", "api_error") \
                        else PermanentError
                    out[line.custom_id] = cls(f"claude batch entry {etype}", reason=f"batch_{etype}",
                                              details=details)
                else:  # expired (not processed within 24 h) or canceled: ask again
                    out[line.custom_id] = TransientError(f"claude batch entry {result.type}",
                                                         reason=f"batch_{result.type}",
                                                         details={"request_id": request_id})
        except anthropic.APIError as e:
            raise _stage_error(e, None) from None
        return out

    async def aclose(self) -> None:
        if self._fixed is not None:
            await self._fixed.close()
            return
        loop = asyncio.get_running_loop()
        c = self._clients.pop(id(loop), None)
        if c is not None:
            await c.close()
