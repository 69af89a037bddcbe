"""Gemini via the official google-genai SDK (client.aio.models.generate_content).

Structured output: response_mime_type="application/json" + response_json_schema (plain JSON Schema). The SDK's
retries stay off (its default, no retry_options): retries live in consumers/enrich/calling.py.
"""
from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from consumers.enrich.providers.base import (ProviderRequest, ProviderResponse, connection, images_of,
                                             parse_json_object)
from streams.errors import PermanentError, TransientError

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

    async def generate(self, request: ProviderRequest) -> ProviderResponse:
        parts: list[Any] = []
        for label, data, media_type in images_of(request):  # a video: its keyframes in one call
            if label:
                parts.append(types.Part.from_text(text=label))
            parts.append(types.Part.from_bytes(data=data, mime_type=media_type))
        parts.append(types.Part.from_text(text=request.user_text))
        config = types.GenerateContentConfig(
            system_instruction=request.system, temperature=request.temperature,
            max_output_tokens=request.max_tokens, response_mime_type="application/json",
            response_json_schema=request.output_schema,
            http_options=types.HttpOptions(timeout=int(request.timeout_s * 1000)))
        started = time.monotonic()
        try:
            resp = await asyncio.wait_for(
                self.client.aio.models.generate_content(
                    model=request.model, contents=[types.Content(role="user", parts=parts)], config=config),
                timeout=request.timeout_s + 1.0)
        except genai_errors.APIError as e:
            code = int(e.code or 0)
            details = {"status": code, "error_status": e.status or ""}
            if code in TRANSIENT_STATUS or code >= 500:
                raise TransientError(f"gemini {code} {e.status}", reason=f"http_{code}", details=details,
                                     retry_after_s=_retry_delay(e)) from None
            raise PermanentError(f"gemini {code} {e.status}", reason=f"http_{code}", details=details) from None
        except (asyncio.TimeoutError, TimeoutError) as e:
            raise TransientError(f"gemini timeout after {request.timeout_s}s", reason="timeout") from e
        except Exception as e:  # transport errors of httpx / aiohttp, whichever the SDK picked
            name = type(e).__name__
            if "Timeout" in name:
                raise TransientError(f"gemini timeout after {request.timeout_s}s", reason="timeout") from e
            if any(k in name for k in ("Connect", "Connection", "Disconnected", "ClientOS", "Transport",
                                       "Network", "ReadError", "RemoteProtocol")):
                raise TransientError(f"gemini connection error ({name})", reason="connection") from e
            raise
        latency_ms = (time.monotonic() - started) * 1000.0
        usage = resp.usage_metadata
        out_tokens = int((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
        result = ProviderResponse(data=None, raw_text="", model=request.model, model_version=resp.model_version,
                                  request_id=resp.response_id,
                                  input_tokens=int(usage.prompt_token_count or 0) if usage else 0,
                                  output_tokens=out_tokens, latency_ms=latency_ms)
        block = _enum_name(resp.prompt_feedback.block_reason) if resp.prompt_feedback else None
        cand = resp.candidates[0] if resp.candidates else None
        finish = _enum_name(cand.finish_reason) if cand is not None else None
        result.stop_reason = finish or block
        if block or finish in REFUSAL_FINISH or cand is None:
            raise PermanentError("gemini blocked the request", reason="refused",
                                 details={"block_reason": block or "", "finish_reason": finish or "",
                                          "request_id": result.request_id or "",
                                          "input_tokens": result.input_tokens,
                                          "output_tokens": result.output_tokens})
        text = "".join(p.text or "" for p in (cand.content.parts or []) if not getattr(p, "thought", False)) \
            if cand.content else ""
        result.raw_text = text
        result.data = parse_json_object(text)
        return result

    async def aclose(self) -> None:
        try:
            await self.client.aio.aclose()
        except Exception:  # older SDKs have no aclose
            pass
