"""Calling models well: bounded in-flight requests, rate limits, retries with backoff, a per-request timeout,
output validation with one repair attempt, cost accounting and metrics.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import jsonschema
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base

from consumers.enrich.prompts import RenderedPrompt, repair_text
from consumers.enrich.providers.base import Provider, ProviderRequest, ProviderResponse
from consumers.enrich.ratelimit import RateLimiter
from streams import metrics
from consumers.enrich.settings import DEFAULT_MODELS, DEFAULT_PRICES, EnrichSettings
from streams.errors import PermanentError, TransientError
from streams.records import now_ms

log = logging.getLogger(__name__)

DEFAULT_MODELS_BY_PROVIDER: dict[str, dict[str, str]] = {
    "claude": {t: m.split(":", 1)[1] for t, m in DEFAULT_MODELS.items()},
    "gemini": {"tagging": "gemini-2.5-flash-lite", "alt_text": "gemini-2.5-flash", "rights": "gemini-2.5-flash"},
    "local": {"tagging": "efficientnet-lite0+nanodet+minilm", "alt_text": "efficientnet-lite0+nanodet+minilm",
              "rights": "efficientnet-lite0+nanodet+minilm"},
}
RAW_OUTPUT_LIMIT = 8000
IMAGE_TOKEN_ESTIMATE = 1600
BATCH_FACTOR = 0.5
"""A batch API request's price as a share of the synchronous one (Anthropic Message Batches, Gemini batch mode)."""

KEYFRAME_TOKEN_ESTIMATE = 120
"""a video keyframe's small JPEG (preprocess video_keyframe_thumbnail_edge, 256 px): ~ width x height / 750"""
VIDEO_TOKEN_ESTIMATE = 9000
"""a video sent whole to Gemini: ~300 tokens per second (1 frame/s at 258 + audio), for a 30 s clip"""


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    model: str

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.model}"

    @classmethod
    def parse(cls, text: str, default_provider: str = "local") -> "ModelSpec":
        if ":" in text:
            provider, model = text.split(":", 1)
            if provider in ("claude", "gemini", "local"):
                return cls(provider, model)
        return cls(default_provider, text)


def model_for(task: str, enrich: EnrichSettings) -> ModelSpec:
    if task in enrich.models:
        return ModelSpec.parse(enrich.models[task], enrich.provider)
    return ModelSpec(enrich.provider, DEFAULT_MODELS_BY_PROVIDER[enrich.provider].get(task, "default"))


# --- cost -----------------------------------------------------------------------------------------------

class PriceTable:
    def __init__(self, enrich: EnrichSettings):
        self.prices = {**DEFAULT_PRICES, **enrich.prices}

    def has(self, spec: ModelSpec) -> bool:
        return spec.provider == "local" or spec.key in self.prices

    def cost(self, spec: ModelSpec, input_tokens: int, output_tokens: int, cache_read: int = 0,
             cache_write: int = 0, *, batch: bool = False) -> float:
        """USD. Prompt-cache tokens at their own rates: `cache_read_per_mtok` / `cache_write_per_mtok` when the
        price entry has them, else Anthropic's published multipliers of the input price (0.1x read, 1.25x write).
        A batch API request costs `batch_factor` (default 0.5: Anthropic's and Google's published batch discount)
        of all of that."""
        if spec.provider == "local":
            return 0.0
        p = self.prices.get(spec.key)
        if p is None:
            raise PermanentError(f"no price for {spec.key}: add enrich.prices[{spec.key!r}]", reason="config")
        base = float(p.get("input_per_mtok", 0.0))
        factor = float(p.get("batch_factor", BATCH_FACTOR)) if batch else 1.0
        return factor * (input_tokens * base + output_tokens * float(p.get("output_per_mtok", 0.0))
                         + cache_read * float(p.get("cache_read_per_mtok", 0.1 * base))
                         + cache_write * float(p.get("cache_write_per_mtok", 1.25 * base))) / 1_000_000.0


class SpendLedger:
    """Spend of THIS worker process since start. With N workers the fleet can spend up to N x budget_usd
    unless each worker gets budget/N; there is no shared ledger yet (see docs/enrich.md)."""

    def __init__(self, budget_usd: float | None):
        self.budget_usd = budget_usd
        self.spent_usd = 0.0
        self._lock = threading.Lock()
        self._publish()

    def add(self, usd: float) -> None:
        with self._lock:
            self.spent_usd += usd
        self._publish()

    @property
    def remaining_usd(self) -> float | None:
        return None if self.budget_usd is None else self.budget_usd - self.spent_usd

    @property
    def exhausted(self) -> bool:
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd

    def _publish(self) -> None:
        if self.budget_usd is not None:
            metrics.BUDGET_REMAINING.labels("enrich").set(max(0.0, self.budget_usd - self.spent_usd))


# --- semantic checks beyond JSON Schema -------------------------------------------------------------------

_IMAGE_OF = re.compile(r"\b(image|picture|photo|photograph|graphic) of\b", re.IGNORECASE)


def semantic_errors(task: str, data: dict[str, Any]) -> list[str]:
    errs: list[str] = []
    if task == "alt_text":
        alt = data.get("alt_text", "")
        if data.get("decorative") and alt:
            errs.append("decorative is true, so alt_text must be the empty string")
        if not data.get("decorative") and not alt.strip():
            errs.append("alt_text is empty but decorative is false")
        if _IMAGE_OF.search(alt):
            errs.append('alt_text must not contain "image of"/"picture of"/"photo of"')
    if task == "tagging":
        seen = [t.get("tag") for t in data.get("tags", [])]
        if len(seen) != len(set(seen)):
            errs.append("tags must not repeat")
    return errs


_VALIDATORS: dict[str, Any] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """Compiled once per schema (checking the schema itself costs ~10 ms; we validate thousands of answers)."""
    key = json.dumps(schema, sort_keys=True)
    v = _VALIDATORS.get(key)
    if v is None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        v = _VALIDATORS[key] = cls(schema)
        if len(_VALIDATORS) > 256:
            _VALIDATORS.pop(next(iter(_VALIDATORS)))
    return v


def check_output(task: str, data: dict[str, Any] | None, raw_text: str, schema: dict[str, Any]) -> str | None:
    """None if valid, else a short description of the first problem."""
    if data is None:
        return "output is not a JSON object"
    err = jsonschema.exceptions.best_match(_validator(schema).iter_errors(data))
    if err is not None:
        path = "/".join(str(p) for p in err.absolute_path) or "(root)"
        return f"at {path}: {err.message[:300]}"
    errs = semantic_errors(task, data)
    return "; ".join(errs) if errs else None


# --- results --------------------------------------------------------------------------------------------

FALLBACK_REASON = "model path failed: template answer"

NOT_DEGRADING = frozenset({"batch_stopped"})
"""TransientError reasons that are no failure of the provider (enrich is stopping): never marked degraded, the
record is retried after the restart."""

_FAILED_AS = {"timeout": "timed out", "connection": "connection failed", "http_429": "rate limited (429)",
              "batch_expired": "batch entry expired", "batch_canceled": "batch entry canceled"}


def degraded_reason(provider: str, error: TransientError, attempts: int) -> str:
    """The degraded reason of a provider call that still failed transiently on the record's last attempt, e.g.
    "claude timed out after 3 attempts" (a metric label too: provider x failure kind x attempts stays small)."""
    kind = error.reason or "error"
    if kind in _FAILED_AS:
        what = _FAILED_AS[kind]
    elif kind.startswith("http_"):
        what = f"server error ({kind[5:]})"
    else:
        what = f"failed ({kind})"
    return f"{provider} {what} after {attempts} attempt{'s' if attempts != 1 else ''}"


EVIDENCE_KEY = "_evidence"
"""TaskResult.data's key for the provider's evidence origins (ProviderResponse.evidence), added after the answer
passed its schema; the raw text (raw_outputs) stays the answer as the schema has it. Cached with the answer."""


@dataclass
class TaskResult:
    task: str
    data: dict[str, Any]
    raw_text: str
    provenance: dict[str, Any]
    cost_usd: float
    attempts: int = 1
    repaired: bool = False
    degraded: str | None = None
    """Why the answer is not the model's real one (the provider answered with a template: stop_reason
    "fallback"; or the call failed transiently on the record's last attempt: then there is no answer at all,
    `answered` is False), or None. A degraded answer is retried, never cached or reused (issue 21)."""
    answered: bool = True
    """False: the provider call never returned an answer (data {}, raw_text ""); no field comes from this task."""


@dataclass
class _Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    requests: int = 0


def _wait_for(settings: EnrichSettings) -> Callable[[Any], float]:
    def wait(retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        n = retry_state.attempt_number
        backoff = min(settings.backoff_max_s, settings.backoff_initial_s * (2 ** (n - 1)))
        backoff = random.uniform(backoff / 2, backoff)  # jitter
        hint = getattr(exc, "retry_after_s", None)
        if hint is not None:
            return max(float(hint), 0.0)
        return backoff
    return wait


class _StopOnLongRetryAfter(stop_base):
    """Give up in-process when the provider asks for a longer pause than backoff_max_s: the runner then
    retries the record (honouring retry_after_s) instead of this task holding a slot."""

    def __init__(self, limit_s: float):
        self.limit_s = limit_s

    def __call__(self, retry_state: Any) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hint = getattr(exc, "retry_after_s", None)
        return hint is not None and float(hint) > self.limit_s


class Caller:
    """Sends rendered prompts to providers. One per stage (per worker process)."""

    def __init__(self, enrich: EnrichSettings, providers: dict[str, Provider], *, ledger: SpendLedger,
                 prices: PriceTable, sleep: Callable[[float], Any] = asyncio.sleep):
        self.settings = enrich
        self.providers = providers
        self.ledger = ledger
        self.prices = prices
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiters: dict[str, RateLimiter] = {}
        self._sleep = sleep

    def semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore = asyncio.Semaphore(self.settings.max_in_flight)
            self._loop = loop
            self._limiters = {}
        return self._semaphore

    def limiter(self, spec: ModelSpec) -> RateLimiter:
        """rate_limits["provider:model"] is one bucket for that model; rate_limits["provider"] is one bucket
        shared by all of that provider's models that have no entry of their own."""
        key = spec.key if spec.key in self.settings.rate_limits else spec.provider
        lim = self._limiters.get(key)
        if lim is None:
            cfg = self.settings.rate_limits.get(key)
            lim = RateLimiter(cfg.requests_per_min, cfg.tokens_per_min) if cfg else RateLimiter()
            self._limiters[key] = lim
        return lim

    def _account(self, spec: ModelSpec, task: str, usage: _Usage, input_tokens: int, output_tokens: int,
                 latency_ms: float, outcome: str | None, cache_read: int = 0, cache_write: int = 0,
                 batch: bool = False) -> None:
        """outcome=None: the request returned an answer; `run` counts it as ok / invalid_output once validated.
        Provenance counts every input token (full-rate and cached); the cost prices each at its own rate."""
        cost = self.prices.cost(spec, input_tokens, output_tokens, cache_read, cache_write, batch=batch)
        usage.input_tokens += input_tokens + cache_read + cache_write
        usage.output_tokens += output_tokens
        usage.cost_usd += cost
        usage.latency_ms += latency_ms
        usage.requests += 1
        self.ledger.add(cost)
        if outcome is not None:
            metrics.LLM_REQUESTS.labels(spec.provider, spec.model, task, outcome).inc()
        metrics.LLM_TOKENS.labels(spec.provider, spec.model, "input").inc(input_tokens)
        if cache_read:
            metrics.LLM_TOKENS.labels(spec.provider, spec.model, "cache_read").inc(cache_read)
        if cache_write:
            metrics.LLM_TOKENS.labels(spec.provider, spec.model, "cache_write").inc(cache_write)
        metrics.LLM_TOKENS.labels(spec.provider, spec.model, "output").inc(output_tokens)
        metrics.LLM_COST.labels(spec.provider, spec.model).inc(cost)
        if not batch:  # a batch entry's wait (minutes to hours) is no request latency
            metrics.LLM_LATENCY.labels(spec.provider, spec.model).observe(latency_ms / 1000.0)

    async def _accounted(self, spec: ModelSpec, request: ProviderRequest, usage: _Usage, call: Any,
                         batch: bool = False) -> ProviderResponse:
        """Await one provider request and account for it, whatever its outcome (refusals still bill the tokens
        the provider reported)."""
        started = time.monotonic()
        try:
            resp = await call
        except (asyncio.TimeoutError, TimeoutError):
            self._account(spec, request.task, usage, 0, 0, (time.monotonic() - started) * 1000, "timeout")
            raise TransientError(f"{spec.key} timed out after {request.timeout_s}s", reason="timeout") from None
        except TransientError:
            self._account(spec, request.task, usage, 0, 0, (time.monotonic() - started) * 1000, "transient",
                          batch=batch)
            raise
        except PermanentError as e:
            self._account(spec, request.task, usage, int(e.details.get("input_tokens", 0) or 0),
                          int(e.details.get("output_tokens", 0) or 0), (time.monotonic() - started) * 1000,
                          "refused" if e.reason == "refused" else "permanent",
                          int(e.details.get("cache_read_tokens", 0) or 0),
                          int(e.details.get("cache_write_tokens", 0) or 0), batch=batch)
            raise
        resp.latency_ms = resp.latency_ms or (time.monotonic() - started) * 1000
        self._account(spec, request.task, usage, resp.input_tokens, resp.output_tokens, resp.latency_ms, None,
                      resp.cache_read_tokens, resp.cache_write_tokens, batch=batch)
        return resp

    async def _once(self, spec: ModelSpec, request: ProviderRequest, usage: _Usage,
                    batcher: Any = None) -> ProviderResponse:
        if batcher is not None:  # waits for its batch: holds no in-flight slot and no rate-limit tokens
            return await self._accounted(spec, request, usage, batcher.call(spec.provider, request), batch=True)
        provider = self.providers[spec.provider]
        est = (len(request.system) + len(request.user_text)) / 4 + (IMAGE_TOKEN_ESTIMATE if request.image else 0) \
            + KEYFRAME_TOKEN_ESTIMATE * len(request.extra_images) + request.max_tokens \
            + (VIDEO_TOKEN_ESTIMATE if request.video is not None else 0)
        semaphore = self.semaphore()  # first: a new event loop resets the per-loop limiters
        limiter = self.limiter(spec)
        async with semaphore:
            await limiter.acquire(est)
            try:
                resp = await self._accounted(spec, request, usage, asyncio.wait_for(
                    provider.generate(request), timeout=request.timeout_s + 2.0))
            except PermanentError as e:
                limiter.settle(est, int(e.details.get("input_tokens", 0) or 0)
                               + int(e.details.get("output_tokens", 0) or 0))
                raise
            except TransientError:
                limiter.settle(est, 0)
                raise
        limiter.settle(est, resp.input_tokens + resp.cache_write_tokens + resp.output_tokens)
        return resp

    async def _with_retries(self, spec: ModelSpec, request: ProviderRequest, usage: _Usage,
                            batcher: Any = None) -> ProviderResponse:
        retrying = AsyncRetrying(stop=stop_after_attempt(max(1, self.settings.max_attempts))
                                 | _StopOnLongRetryAfter(self.settings.backoff_max_s),
                                 wait=_wait_for(self.settings), retry=retry_if_exception_type(TransientError),
                                 reraise=True, sleep=self._sleep)
        async for attempt in retrying:
            with attempt:
                return await self._once(spec, request, usage, batcher)
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, spec: ModelSpec, prompt: RenderedPrompt, *, image: bytes | None, media_type: str,
                  context: dict[str, Any], batcher: Any = None,
                  extra_images: list[tuple[str, bytes]] | None = None,
                  video: tuple[str, bytes] | None = None, degrade_after: int | None = None) -> TaskResult:
        """One task: call, validate, one repair attempt, provenance. Raises TransientError after the retries
        are used up, PermanentError("invalid_model_output") if the repaired answer is still invalid. With a
        `batcher` (consumers/enrich/batching.py) every request goes into the provider's next batch, at its price.

        `degrade_after` = the record's attempt number when this is its last one: then a call that still fails
        transiently (timeouts, 429, 5xx, connection errors, a batch entry that keeps expiring) returns a degraded
        result without an answer instead of raising (issue 21); permanent failures still raise."""
        usage = _Usage()
        try:
            return await self._run(spec, prompt, usage, image=image, media_type=media_type, context=context,
                                   batcher=batcher, extra_images=extra_images, video=video)
        except TransientError as e:
            if degrade_after is None or e.reason in NOT_DEGRADING:
                raise
            why = degraded_reason(spec.provider, e, degrade_after)
            log.warning("%s %s: %s: going on without its answer, marked degraded", spec.key, prompt.id, why)
            return TaskResult(task=prompt.id, data={}, raw_text="", provenance=self._provenance(
                spec, prompt, usage, None, None, why), cost_usd=usage.cost_usd, attempts=usage.requests,
                degraded=why, answered=False)

    @staticmethod
    def _provenance(spec: ModelSpec, prompt: RenderedPrompt, usage: _Usage, model_version: str | None,
                    request_id: str | None, degraded: str | None) -> dict[str, Any]:
        return {
            # the configured model id, as the enrich plan knows it ahead; what exactly ran is the model version
            "task": prompt.id, "provider": spec.provider, "model": spec.model,
            "model_version": model_version,
            "prompt_id": prompt.id, "prompt_version": prompt.version, "prompt_hash": prompt.hash,
            "request_id": request_id, "timestamp": now_ms(), "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens, "latency_ms": round(usage.latency_ms, 3),
            "cost_usd": usage.cost_usd, "reused_from": None, "degraded": degraded}

    async def _run(self, spec: ModelSpec, prompt: RenderedPrompt, usage: _Usage, *, image: bytes | None,
                   media_type: str, context: dict[str, Any], batcher: Any,
                   extra_images: list[tuple[str, bytes]] | None, video: tuple[str, bytes] | None) -> TaskResult:
        request = ProviderRequest(task=prompt.id, model=spec.model, system=prompt.system, user_text=prompt.user_text,
                                  output_schema=prompt.schema, image=image, image_media_type=media_type,
                                  extra_images=list(extra_images or []), video=video,
                                  max_tokens=prompt.max_tokens, temperature=prompt.temperature,
                                  timeout_s=self.settings.request_timeout_s,
                                  context={**context, "output_tool": prompt.output_tool})
        resp = await self._with_retries(spec, request, usage, batcher)
        error = check_output(prompt.id, resp.data, resp.raw_text, prompt.schema)
        repaired = False
        metrics.LLM_REQUESTS.labels(spec.provider, spec.model, prompt.id,
                                    "ok" if error is None else "invalid_output").inc()
        if error is not None:
            repair = ProviderRequest(**{**request.__dict__,
                                        "user_text": repair_text(prompt.user_text, resp.raw_text, error),
                                        "context": {**request.context, "repair_of": resp.raw_text,
                                                    "validation_error": error}})
            resp = await self._with_retries(spec, repair, usage, batcher)
            error = check_output(prompt.id, resp.data, resp.raw_text, prompt.schema)
            repaired = True
            metrics.LLM_REQUESTS.labels(spec.provider, spec.model, prompt.id,
                                        "repaired" if error is None else "invalid_output").inc()
            if error is not None:
                raise PermanentError(f"{spec.key} {prompt.id}: output still invalid after one repair: {error}",
                                     reason="invalid_model_output",
                                     details={"task": prompt.id, "model": spec.key, "validation_error": error,
                                              "raw_output": resp.raw_text[:RAW_OUTPUT_LIMIT]})
        assert resp.data is not None
        degraded = FALLBACK_REASON if resp.stop_reason == "fallback" else None
        provenance = self._provenance(spec, prompt, usage, resp.model_version, resp.request_id, degraded)
        data = {**resp.data, EVIDENCE_KEY: resp.evidence} if resp.evidence else resp.data
        return TaskResult(task=prompt.id, data=data, raw_text=resp.raw_text, provenance=provenance,
                          cost_usd=usage.cost_usd, attempts=usage.requests, repaired=repaired, degraded=degraded)
