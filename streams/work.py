"""Per-record work, with no Kafka in it: from one consumed record to its serialized outputs or its dead letter.

The runner (`streams.runner`) owns the consumer, the producer, offsets and commits, and hands each record to
a `RecordWork`: decode the Avro value, call the stage, classify a failure (retry a transient one with
backoff and jitter), and serialize the outputs with their headers, or build the dead letter. It runs in the
runner's poll thread (`runner.inline`), in its thread pool, on its asyncio loop, or, with
`runner.processes > 0`, in child processes that rebuild the stage from the settings (`streams.children`):
Python code of a CPU stage then uses more than one core. A batch stage's records are worked in order, one
`process_batch` call per attempt (`run_batch`).
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import random
import threading
import time
import traceback
import uuid
from functools import partial
from typing import Any, Callable, Iterable

from streams import PIPELINE_VERSION
from streams.avro import OwnSchemaUnavailable, Serde, UnknownSchema, registry_error, topic_names
from streams.errors import (PermanentError, PoisonError, RegistryUnavailable, StageError, TransientError,
                            classify)
from streams.records import now_ms
from streams.retry import RetryTopic, reason_of, retry_state, without_retry_headers
from streams.stage import Output, RecordContext, Stage

log = logging.getLogger("assetstream.runner")

TRACE_HEADER = "trace-id"
IDEMPOTENCY_HEADER = "idempotency-key"

# what a finished record hands back: (topic, key, value, headers) per output
Produced = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]



REGISTRY_PAUSE = RegistryUnavailable.pause_reason
"""The pause reason (assetstream_paused{reason}) while records wait for the schema registry."""

REGISTRY_THREADS = 4
"""An io stage's threads for the steps that need the schema registry (RecordWork._beside_loop): a silent registry
holds at most these (registry.timeout_s bounds each connect and read of a call, and the client retries it); the
records behind them wait."""


def registry_unavailable(exc: BaseException) -> bool:
    """Whether a failure to decode or encode is the schema registry's (unreachable, timing out, 5xx, 429, refusing
    the credentials, refusing or not having the worker's own schema) rather than the record's. Such a record waits
    for the registry (RegistryUnavailable): a registry outage must not dead-letter every record read meanwhile
    (trial 21). Only a registry that answers that it has no schema with the record's id (404 for the writer's
    schema: UnknownSchema) is the record's fault, a poison letter as before; so is anything the bytes themselves
    break (framing, Avro data)."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, OwnSchemaUnavailable):
        return True
    if isinstance(exc, UnknownSchema):
        return False
    if isinstance(exc, SchemaRegistryError):
        return exc.http_status_code != 404
    return registry_error(exc)


def as_registry_outage(exc: BaseException) -> RegistryUnavailable:
    return RegistryUnavailable(f"schema registry unavailable: {type(exc).__name__}: {exc}",
                               reason="registry_unavailable")


class Record:
    """One consumed message on its way through the runner (a plain slotted class: one is built per record)."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "headers", "timestamp_ms", "received", "tp",
                 "pending_acks", "abandoned", "event_time_ms", "epoch", "letter_truncated", "letter_owed")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes | None]], timestamp_ms: int | None,
                 received: float | None = None, epoch: int = 0):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp_ms = timestamp_ms
        self.received = time.monotonic() if received is None else received
        self.tp = (topic, partition)
        self.pending_acks = 0
        self.abandoned = False
        self.event_time_ms: int | None = None
        self.epoch = epoch
        self.letter_truncated = False
        self.letter_owed = False  # its dead letter waits for the schema registry (built again later)

    def context(self, attempt: int) -> RecordContext:
        headers = {k: (v or b"") for k, v in self.headers}
        trace = headers.get(TRACE_HEADER)
        trace = trace.decode("utf-8", "replace") if trace else uuid.uuid4().hex
        return RecordContext(self.topic, self.partition, self.offset,
                             self.key.decode("utf-8", "replace") if self.key is not None else None,
                             headers, self.timestamp_ms, attempt, trace)


class Result:
    """What the work on one record hands back to the poll thread: serialized outputs, or a dead letter."""

    __slots__ = ("record", "outputs", "dead_letter", "error_class", "event_time_ms")

    def __init__(self, record: Record, outputs: list[Produced] | None = None, dead_letter: bytes | None = None,
                 error_class: str | None = None, event_time_ms: int | None = None):
        self.record = record
        self.outputs = outputs if outputs is not None else []
        self.dead_letter = dead_letter
        self.error_class = error_class
        self.event_time_ms = event_time_ms


class Abandon(BaseException):
    """Raised inside the work when shutdown interrupts retries: the record stays uncommitted."""


def uses_retry_topic(runner: Any, stage: Any) -> bool:
    """Whether a stage's workers send transient failures to (and consume) its input's retry topic: runner.retry_mode
    topic or auto (auto falls back to in place when the topic is missing), and a record-by-record stage."""
    return runner.retry_mode != "inplace" and stage.kind != "batch"


class RecordWork:
    """Decode -> stage -> encode for one record, with retries and dead letters. No Kafka types in here.

    `on_failed(error_class)` and `on_retried()` count failed attempts and retries: the runner passes its
    sensor's (child processes count them and report them to the runner instead).
    """

    def __init__(self, stage: Stage, settings: Any, stop: threading.Event | None = None,
                 on_failed: Callable[[str], None] | None = None, on_retried: Callable[[], None] | None = None):
        self.stage = stage
        self.name = stage.name
        self.rs = settings.runner
        self.names = topic_names(settings)
        self.serde = Serde.for_settings(settings)
        self.stop_event = stop if stop is not None else threading.Event()
        self.on_failed = on_failed or (lambda cls: None)
        self.on_retried = on_retried or (lambda: None)
        # asks the runner to pause consumption (Backpressure.request; set by the runner): while any record waits
        # for the schema registry, with REGISTRY_PAUSE
        self.pause: Callable[[str | None], None] = lambda reason: None
        self._registry_waiting = 0
        self._registry_lock = threading.Lock()
        self._stage_headers = (("stage", self.name.encode()), ("stage-version", PIPELINE_VERSION.encode()))
        self._embed = getattr(stage, "embeds_input", None)  # see Stage.embeds_input
        self._embed_count = 0
        self._registry_threads: cf.ThreadPoolExecutor | None = None  # see _beside_loop
        # runner.retry_mode=topic (or auto; the runner sets this to None when auto finds no retry topic):
        # transient failures go to the input's retry topic, not a backoff in place
        self.retry = (RetryTopic(settings.topics.retry_name(stage.input_topic), self.rs.retry_topic_delays_s)
                      if uses_retry_topic(self.rs, stage) else None)

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def decode(self, rec: Record) -> dict[str, Any]:
        if rec.value is None:
            raise PoisonError("record has no value (tombstone) on a pipeline topic", reason="empty_value")
        try:
            return self.serde.deserialize(self.stage.input_topic, rec.value)
        except Exception as exc:
            if registry_unavailable(exc):  # the registry's fault, not the record's: waited out, never dead-lettered
                raise as_registry_outage(exc) from exc
            raise PoisonError(f"cannot deserialize Avro value: {exc}", reason="deserialize") from exc

    def backoff(self, attempt: int, exc: BaseException) -> float:
        hint = getattr(exc, "retry_after_s", None)
        base = min(self.rs.retry_max_delay_s, self.rs.retry_base_delay_s * (2 ** (attempt - 1)))
        delay = random.uniform(base / 2, base)  # jitter
        return max(delay, hint or 0.0)

    def registry_down(self, down: bool) -> None:
        """A record starts (True) or stops (False) waiting for the schema registry: consumption is paused
        (REGISTRY_PAUSE) while any record waits."""
        with self._registry_lock:
            self._registry_waiting += 1 if down else -1
            if down and self._registry_waiting == 1:
                self.pause(REGISTRY_PAUSE)
            elif not down and self._registry_waiting == 0:
                self.pause(None)

    def registry_delay(self, rec: Record, waits: int, exc: BaseException) -> float:
        """The wait before trying a record again that waits for the schema registry (capped backoff, without
        limit: not counted toward runner.retry_max_attempts). Raises Abandon while stopping."""
        if self.stopping:
            raise Abandon()  # shutting down: left uncommitted, the next owner retries
        self.on_failed("transient")
        self.on_retried()
        delay = self.backoff(min(waits, 8), exc)
        log.log(logging.WARNING if waits == 1 or waits % 10 == 0 else logging.INFO,
                "%s: %s/%d@%d waits for the schema registry (%d tries): %s; again in %.1fs", self.name, rec.topic,
                rec.partition, rec.offset, waits, exc, delay)
        return delay

    def run(self, rec: Record, wait: bool = True) -> Result:
        """A cpu stage's record, retried until it succeeds or is dead-lettered. Raises Abandon when shutdown
        interrupts the retries. While the registry cannot give an output's schema the stage's result is kept and
        only its serialization is tried again (the stage does not run again). `wait=False` (the poll thread,
        runner.inline): a record that needs the schema registry while it cannot serve raises RegistryUnavailable
        instead of waiting; the caller tries again later: the exception's `resume` (when set) is the step that met
        the outage, serializing the stage's outputs or the dead letter, to call instead of running the stage again
        (None: run() again)."""
        waits = [0]  # tries that waited for the schema registry
        try:
            return self._run(rec, waits, wait)
        finally:
            if waits[0]:
                self.registry_down(False)

    def _run(self, rec: Record, waits: list[int], wait: bool = True) -> Result:
        attempt, first_failure = self.first_attempt(rec)
        done: tuple[Any, ...] | None = None  # what the stage returned: an outage then retries only success()
        while True:
            try:
                if done is None:
                    value = self.decode(rec)
                    ctx = rec.context(attempt)
                    done = (rec, value, self.stage.process(value, ctx), ctx.trace_id)
                return self.success(*done)
            except BaseException as exc:  # noqa: BLE001 - every failure is classified
                if isinstance(exc, RegistryUnavailable):  # waited out without limit, consumption paused
                    if not wait:
                        if done is not None:
                            exc.resume = partial(self.success, *done)
                        raise
                    waits[0] += 1
                    if waits[0] == 1:
                        self.registry_down(True)
                    self.stop_event.wait(self.registry_delay(rec, waits[0], exc))
                    continue  # the stage's result is kept: only its outputs are serialized again
                done = None
                first_failure = first_failure or now_ms()
                retry = self.should_retry(exc, attempt)
                if retry is None:
                    try:
                        return self.failure(rec, exc, attempt, first_failure, wait=wait)
                    except RegistryUnavailable as outage:  # only with wait=False
                        rec.letter_owed = True  # the warning is said once, not again at each try
                        outage.resume = partial(self.failure, rec, exc, attempt, first_failure, wait=False)
                        raise
                if self.retry is not None:
                    return self.to_retry_topic(rec, exc, attempt, first_failure, retry)
                self.stop_event.wait(retry)
                attempt += 1

    async def run_async(self, rec: Record) -> Result:
        """An io stage's record (the caller bounds concurrency; runner.retry_attempt_timeout_s bounds each
        attempt)."""
        import asyncio

        attempt, first_failure = self.first_attempt(rec)
        bound = self.rs.retry_attempt_timeout_s
        waits = 0
        resume: Callable[[], Result] | None = None  # the outputs' serialization of the stage's kept result
        try:
            while True:
                if resume is None:
                    result = await self._attempt_async(rec, attempt, bound)
                else:
                    result = await self._resume_async(resume)
                if isinstance(result, Result):
                    return result
                exc = result
                if isinstance(exc, RegistryUnavailable):  # waited out without limit, consumption paused
                    resume = exc.resume or resume  # the stage does not run again, only its outputs are serialized
                    waits += 1
                    if waits == 1:
                        self.registry_down(True)
                    await self._sleep(self.registry_delay(rec, waits, exc))
                    continue
                resume = None
                first_failure = first_failure or now_ms()
                retry = self.should_retry(exc, attempt)
                if retry is None:
                    return await self.failure_async(rec, exc, attempt, first_failure)
                if self.retry is not None:
                    return self.to_retry_topic(rec, exc, attempt, first_failure, retry)
                await asyncio.sleep(retry)
                attempt += 1
        finally:
            if waits:
                self.registry_down(False)

    async def _beside_loop(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args, **kwargs), a step that needs the schema registry, in this worker's own few registry threads
        (REGISTRY_THREADS), not the loop's default executor: a registry that never answers holds these threads
        only, never the threads the stage's own `asyncio.to_thread` work (a local model, a cache) runs in."""
        import asyncio

        if self._registry_threads is None:
            self._registry_threads = cf.ThreadPoolExecutor(REGISTRY_THREADS, thread_name_prefix=f"{self.name}-registry")
        return await asyncio.get_running_loop().run_in_executor(self._registry_threads, partial(fn, *args, **kwargs))

    def close(self) -> None:
        """The worker is done (after the drain): the registry threads end once their call does."""
        if self._registry_threads is not None:
            self._registry_threads.shutdown(wait=False, cancel_futures=True)

    async def _sleep(self, delay: float) -> None:
        """asyncio.sleep that ends early on shutdown."""
        import asyncio

        deadline = time.monotonic() + delay
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.2))

    async def _attempt_async(self, rec: Record, attempt: int, bound: float | None) -> Result | BaseException:
        """One attempt of an io stage's record: its result, or the exception it failed with. Decoding and encoding
        that need the schema registry (an id this process does not know yet) run in a registry thread: a slow or
        silent registry holds this record only, never the loop (known ids, the usual case, stay on the loop)."""
        import asyncio

        serde = self.serde
        try:
            if serde.reads_offline(self.stage.input_topic, rec.value):
                value = self.decode(rec)
            else:
                value = await self._beside_loop(self.decode, rec)
            ctx = rec.context(attempt)
            work = self.stage.aprocess(value, ctx)
            if bound is not None:
                try:
                    result = await asyncio.wait_for(work, bound)
                except TimeoutError:
                    raise TransientError(f"attempt took longer than runner.retry_attempt_timeout_s ({bound}s)",
                                         reason="attempt_timeout") from None
            else:
                result = await work
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, asyncio.CancelledError):
                raise
            return exc
        return await self._resume_async(partial(self.success, rec, value, result, ctx.trace_id))

    async def _resume_async(self, serialize: Callable[[], Result]) -> Result | BaseException:
        """An io stage's outputs serialized (`serialize`: success() of the stage's result), beside the loop when
        that needs the schema registry: the Result, or the exception it failed with; a RegistryUnavailable's
        `resume` is `serialize`, to try again alone (the stage does not run again)."""
        import asyncio

        try:
            if self.serde.writes_offline(self.stage.output_topic):
                return serialize()
            return await self._beside_loop(serialize)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, RegistryUnavailable):
                exc.resume = serialize
            return exc

    def decode_batch(self, batch: list[Record], abandon: Callable[[Record], None],
                     pause: Callable[[str | None], None]) -> list[tuple[Record, dict[str, Any] | PoisonError]] | None:
        """The batch's values (or their PoisonError), in order. While any record waits for the schema registry the
        whole batch waits (paused, REGISTRY_PAUSE) and is decoded again; None when shutdown came first (the batch
        is abandoned, uncommitted)."""
        waits = 0
        while True:  # a registry outage: the batch waits (consumption paused), nothing is dead-lettered
            decoded: list[tuple[Record, dict[str, Any] | PoisonError]] = []
            why: TransientError | None = None
            for rec in batch:
                try:
                    decoded.append((rec, self.decode(rec)))
                except PoisonError as exc:
                    decoded.append((rec, exc))
                except TransientError as exc:
                    why = exc  # the rest waits too: the batch is worked in order
                    break
            if why is None:
                break
            self.on_failed("transient")
            if self.stopping:
                for rec in batch:
                    abandon(rec)  # not committed: the next owner retries
                return None
            self.on_retried()
            pause(REGISTRY_PAUSE)
            waits += 1
            delay = self.backoff(min(waits, 8), why)
            log.warning("%s: a batch of %d record(s) waits for the schema registry (%s); retrying in %.1fs",
                        self.name, len(batch), why, delay)
            self.stop_event.wait(delay)
        if waits:
            pause(None)  # the registry is back (also when every waiting record then turned out poison)
        return decoded

    def run_batch(self, batch: list[Record], abandon: Callable[[Record], None],
                  pause: Callable[[str | None], None]) -> list[Result]:
        """A batch stage's records, in order, in one process_batch call per attempt. Transient item failures
        are retried (with backoff) until they succeed: a store outage (an error with a `pause_reason`, e.g.
        StoreUnavailable) pauses consumption (`pause`) rather than dead-lettering everything; on shutdown the
        items still failing are abandoned (uncommitted). While any record of the batch waits for the schema
        registry, the whole batch waits (paused, REGISTRY_PAUSE) and is decoded again in order; a record whose
        outputs wait for their schema keeps what the stage returned for it and is not given to the stage again. A
        record that waits holds the later records of its key (an asset's versions come out in order)."""
        results: list[Result] = []

        def letter(rec: Record, exc: BaseException, attempts: int, first: int) -> None:
            try:
                results.append(self.failure(rec, exc, attempts, first))
            except Abandon:  # shutdown while the dead letter waited for the registry
                abandon(rec)

        decoded = self.decode_batch(batch, abandon, pause)
        if decoded is None:
            return results  # shutdown while the batch waited for the registry
        # per record: the record, its value, the attempt, the first failure, and what the stage returned for it
        # when only its outputs' serialization waits for the schema registry (the stage does not run it again)
        todo: list[tuple[Record, dict[str, Any], int, int | None, tuple[Any, str] | None]] = []
        for rec, value in decoded:
            if isinstance(value, PoisonError):
                self.on_failed("poison")
                letter(rec, value, 1, now_ms())
            else:
                todo.append((rec, value, 1, None, None))
        while todo:
            items = [(value, rec.context(attempt)) for rec, value, attempt, _, kept in todo if kept is None]
            try:
                outcomes = list(self.stage.process_batch(items)) if items else []
                if len(outcomes) != len(items):
                    raise RuntimeError(f"{self.name}.process_batch returned {len(outcomes)} outcomes for "
                                       f"{len(items)} records")
            except BaseException as exc:  # noqa: BLE001 - the whole batch failed the same way
                outcomes = [exc] * len(items)
            fresh = iter(zip(items, outcomes))
            retry: list[tuple[Record, dict[str, Any], int, int | None, tuple[Any, str] | None]] = []
            worst_delay, pause_reason, why = 0.0, None, None
            waiting_keys: set[bytes | None] = set()  # keys with an earlier record of this batch waiting to retry
            for rec, value, attempt, first, kept in todo:
                if kept is None:
                    (_, ctx), outcome = next(fresh)
                    kept = None if isinstance(outcome, BaseException) else (outcome, ctx.trace_id)
                if kept is not None and rec.key in waiting_keys:
                    # an earlier version of this asset waits: its outputs must not be overtaken (CI: the registry
                    # came back between two records' serializations and version 1 came out after 2 and 3)
                    retry.append((rec, value, attempt, first, kept))
                    continue
                if kept is not None:
                    try:
                        results.append(self.success(rec, value, *kept))
                        continue
                    except Exception as exc:  # noqa: BLE001 - as in the single-record path: that record only
                        outcome = exc  # e.g. RegistryUnavailable: the output's schema cannot be registered
                    if not isinstance(outcome, RegistryUnavailable):
                        kept = None  # the stage's result itself is at fault: run it again, or dead-letter it
                cls = classify(outcome)
                self.on_failed(cls)
                first = first or now_ms()
                if cls == "transient":
                    self.on_retried()
                    worst_delay = max(worst_delay, self.backoff(min(attempt, 8), outcome))
                    pause_reason = pause_reason or getattr(outcome, "pause_reason", None)
                    why = why or outcome
                    waiting_keys.add(rec.key)
                    retry.append((rec, value, attempt + 1, first, kept))
                else:
                    letter(rec, outcome, attempt, first)
            if retry and self.stopping:
                for rec, *_ in retry:
                    abandon(rec)  # not committed: the next owner retries
                break
            if retry:
                pause(pause_reason)  # a dependency is down (e.g. StoreUnavailable): pause while it lasts
                log.warning("%s: %d item(s) failed transiently (first: %s); retrying in %.1fs", self.name,
                            len(retry), why, worst_delay)
                self.wait_retry(worst_delay, pause_reason is not None)
            else:
                pause(None)
            todo = retry
        return results

    def wait_retry(self, delay: float, dependency_down: bool) -> None:
        """Wait `delay` seconds before retrying a batch, or less: when a dependency was down (the failures had a
        `pause_reason`) and the stage's `ready()` turns from False to True during the wait, retry at once (a
        long backoff must not outlast the outage by many seconds). A stage whose ready() never says False (the
        default) waits the whole delay. Ends early on shutdown."""
        if not dependency_down:
            self.stop_event.wait(delay)
            return
        deadline = time.monotonic() + delay
        seen_down = False
        while not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                up = bool(self.stage.ready())
            except Exception:  # noqa: BLE001 - a failing probe is a dependency still down
                up = False
            if up and seen_down:
                log.info("%s: %s reports ready again; retrying now", self.name, self.name)
                return
            seen_down = seen_down or not up
            self.stop_event.wait(min(left, self.rs.retry_probe_interval_s))

    def first_attempt(self, rec: Record) -> tuple[int, int | None]:
        """The number of this consumption's first attempt and the time of the first failure: 1 and None, or
        what the headers of a record from the retry topic say."""
        state = retry_state(rec.headers) if self.retry is not None else None
        return (state.attempts + 1, state.first_failure_ms) if state else (1, None)

    def to_retry_topic(self, rec: Record, exc: BaseException, attempt: int, first_failure: int,
                       delay: float) -> Result:
        """The record's only output: itself, to the retry topic, due after `delay` (runner.retry_mode=topic)."""
        assert self.retry is not None
        headers = self.retry.headers(rec.topic, rec.partition, rec.offset, rec.headers, exc, attempt,
                                     first_failure, delay)
        return Result(rec, outputs=[(self.retry.topic, rec.key, rec.value, [h for h in headers if h[1] is not None])])

    def should_retry(self, exc: BaseException, attempt: int) -> float | None:
        """The delay before the next attempt, or None to dead-letter now."""
        cls = classify(exc)
        self.on_failed(cls)
        in_place = self.retry is None  # moving a record to the retry topic is fine while stopping
        if cls != "transient" or attempt >= self.rs.retry_max_attempts or (self.stopping and in_place):
            if cls == "transient" and self.stopping and in_place and attempt < self.rs.retry_max_attempts:
                raise Abandon()  # shutting down: leave it uncommitted, the next owner retries
            return None
        self.on_retried()
        if not in_place:
            delay = max(self.retry.delay_s(attempt), getattr(exc, "retry_after_s", None) or 0.0)
            log.info("%s: transient error (attempt %d), to the retry topic, due in %.2fs: %s", self.name, attempt,
                     delay, exc)
            return delay
        delay = self.backoff(attempt, exc)
        log.info("%s: transient error (attempt %d), retrying in %.2fs: %s", self.name, attempt, delay, exc)
        return delay

    def success(self, rec: Record, value: dict[str, Any], result: Any, trace: str) -> Result:
        """Serialize a record's outputs with their headers (trace id, idempotency key, provenance). Raises
        RegistryUnavailable when the registry cannot give an output's schema id (the record waits)."""
        if result is None:
            outputs: Iterable[Output] = ()
        elif isinstance(result, Output):
            outputs = (result,)
        else:
            outputs = list(result)
        facts = self.stage.output_facts(value)
        content_id = self.stage.content_id
        trace_b = trace.encode()
        source = f"{rec.topic}/{rec.partition}/{rec.offset}".encode()
        serialized = []
        for out in outputs:
            logical = out.topic or self.stage.output_topic
            if logical is None:
                raise RuntimeError(f"stage {self.name} returned an output without a topic")
            key = out.key if out.key is not None else (rec.key.decode() if rec.key is not None else None)
            data = None
            if out.value is not None:
                try:
                    if self._embed and rec.value is not None and out.value.get(self._embed) is value:
                        data = self._with_input_bytes(logical, out.value, rec.value)
                    if data is None:
                        data = self.serde.serialize(logical, out.value)
                except (TypeError, ValueError, AttributeError, KeyError) as exc:  # fastavro: the value, not Kafka
                    raise PermanentError(f"the stage's {logical} output does not fit its schema: {exc}",
                                         reason="output_not_serializable", details={"output_topic": logical}) from exc
                except Exception as exc:
                    if registry_unavailable(exc):
                        raise as_registry_outage(exc) from exc
                    raise
            headers = [(TRACE_HEADER, trace_b),
                       (IDEMPOTENCY_HEADER, idempotency_key(key, content_id(out.value), facts.version).encode()),
                       *self._stage_headers, ("source", source)]
            if out.headers:
                headers += [(k, v.encode()) for k, v in out.headers.items()]
            serialized.append((self.names[logical], key.encode() if key is not None else None, data, headers))
        return Result(rec, outputs=serialized, event_time_ms=facts.event_time_ms)

    def _with_input_bytes(self, logical: str, value: dict[str, Any], input_data: bytes) -> bytes | None:
        """The output encoded around the input's own Avro bytes (Stage.embeds_input), or None if not exact.
        The first 16 such outputs and every 1000th are checked against a full encoding: a stage that breaks
        its promise gets correct output and a loud log line, and copying stops for this worker."""
        field = self._embed
        data = self.serde.serialize_embedding(logical, value, field, self.stage.input_topic, input_data)
        if data is None:
            return None
        self._embed_count += 1
        if self._embed_count <= 16 or self._embed_count % 1000 == 0:
            full = self.serde.serialize(logical, value)
            if full != data:
                log.error("%s: the output's %r differs from the input as read, although the stage declares "
                          "embeds_input=%r (it changed its input); input bytes are no longer copied", self.name,
                          field, field)
                self._embed = None
                return full
        return data

    def failure(self, rec: Record, exc: BaseException, attempts: int, first_failure: int, *,
                wait: bool = True) -> Result:
        """The dead letter for a record. Never raises: a bug while describing a failure must not stall
        the partition, so odd exception attributes are stringified and unknown classes are permanent; while the
        schema registry cannot give the dead letter's schema id, it waits (consumption paused) until it can,
        and only shutdown ends that wait, with Abandon (the record stays uncommitted). `wait=False` (a thread that
        must not wait: the poll thread, an asyncio loop): RegistryUnavailable is raised instead, and the caller
        asks again later (Outputs._or_later, failure_async, executors.Inline)."""
        try:
            cls = classify(exc)
        except Exception:  # noqa: BLE001
            cls = "permanent"
        error_class = {"transient": "transient_exhausted"}.get(cls, cls)
        if error_class not in ("poison", "permanent", "transient_exhausted"):
            error_class = "permanent"
        asset_id = rec.key.decode("utf-8", "replace") if rec.key is not None else None
        raw_details = getattr(exc, "details", None)
        details = ({str(k): str(v) for k, v in raw_details.items()} if isinstance(raw_details, dict) else {})
        if isinstance(exc, StageError):
            details.setdefault("reason", str(exc.reason))
        retried = retry_state(rec.headers)
        topic, partition, offset = retried.origin or (rec.topic, rec.partition, rec.offset)
        if retried.first_reason:  # worked through the retry topic: where it started, and why
            details.setdefault("first_reason", retried.first_reason)
            details.setdefault("last_reason", reason_of(exc))
        letter = {  # an original too large to carry is moved to the sidecar store by Outputs
            "original_topic": topic, "original_partition": partition, "original_offset": offset,
            "original_key": rec.key, "original_value": rec.value,
            "original_headers": [{"key": k, "value": v} for k, v in without_retry_headers(rec.headers)],
            "asset_id": asset_id, "stage": self.name, "error_class": error_class,
            "error_type": type(exc).__name__, "message": str(exc) or type(exc).__name__,
            "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:],
            "attempts": attempts, "first_failure_time": first_failure, "last_failure_time": now_ms(),
            "details": details,
        }
        if not rec.letter_owed:  # said once, not at each try of a letter waiting for the registry
            log.warning("%s: dead-lettering %s/%d@%d (%s, %s): %s", self.name, rec.topic, rec.partition,
                        rec.offset, error_class, details.get("reason", type(exc).__name__), exc)
        try:
            data = self._letter_bytes(rec, letter, wait)
        except RegistryUnavailable:
            raise
        except Exception as ser_exc:  # noqa: BLE001 - e.g. a header that is not bytes: keep the essentials
            letter.update(original_headers=[], stack=None,
                          details={"reason": str(details.get("reason", "")), "serialization_error": str(ser_exc)})
            data = self._letter_bytes(rec, letter, wait)
        return Result(rec, dead_letter=data, error_class=error_class)

    async def failure_async(self, rec: Record, exc: BaseException, attempts: int, first_failure: int) -> Result:
        """failure() on an asyncio loop: while the registry cannot give the dead letter's schema id this record
        waits with asyncio.sleep (consumption paused), never blocking the loop's other records."""
        waits = 0
        try:
            while True:
                try:  # in a registry thread: the registry call itself (a slow registry) does not hold the loop either
                    return await self._beside_loop(self.failure, rec, exc, attempts, first_failure, wait=False)
                except RegistryUnavailable as outage:
                    rec.letter_owed = True
                    waits += 1
                    if waits == 1:
                        self.registry_down(True)
                    await self._sleep(self.registry_delay(rec, waits, outage))
        finally:
            rec.letter_owed = False
            if waits:
                self.registry_down(False)

    def _letter_bytes(self, rec: Record, letter: dict[str, Any], wait: bool = True) -> bytes:
        """The dead letter serialized, waiting for the schema registry while it cannot give the id (without
        `wait`: raising RegistryUnavailable)."""
        waits = 0
        try:
            while True:
                try:
                    return self.serde.serialize("dead_letter", letter)
                except Exception as exc:
                    if not registry_unavailable(exc):
                        raise
                    if not wait:
                        raise as_registry_outage(exc) from exc
                    waits += 1
                    if waits == 1:
                        self.registry_down(True)
                    self.stop_event.wait(self.registry_delay(rec, waits, as_registry_outage(exc)))
        finally:
            if waits:
                self.registry_down(False)


def idempotency_key(key: str | None, content: str | None, version: Any) -> str:
    """Output key + content id + pipeline version + event version (Stage.content_id, Stage.output_facts):
    equal for a replayed record."""
    raw = f"{key}|{content or '-'}|{PIPELINE_VERSION}|{version}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
