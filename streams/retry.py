"""Non-blocking retries through retry topics (`runner.retry_mode=topic`; the Uber / Confluent retry-topic pattern).

A record of a cpu or io stage that fails transiently is not retried in place (which held a worker slot and the
partition's commit position for the whole backoff: good assets behind a slow URL waited minutes). It is produced
to its input's retry topic (`<input>-retry`, `topics.retry_suffix`) with headers saying how many attempts were
made, when it may be tried again (not before), and the first failure; its input offset is committed once the
broker acknowledged that copy, like any output. The same worker consumes the retry topic too: a retry record
whose time has not come is held in memory (`DelayQueue`, bounded by `runner.retry_held_max`; above it the retry
partitions are paused) while everything else goes on, and is worked again when due. After
`runner.retry_max_attempts` attempts the record goes to the dead-letter topic (`transient_exhausted`), naming
the input topic, partition and offset it first came from, and the first and last reason.

Order per asset: a newer event of an asset overtakes an older one being retried; downstream writes are
idempotent and the index refuses the older version when it arrives (external versioning, a 409 is a success).

No Kafka calls in here: the runner consumes, holds and produces; `RecordWork` decides and builds the headers.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, NamedTuple

from streams import metrics
from streams.errors import StageError
from streams.records import now_ms

ATTEMPTS = "retry-attempts"  # attempts made so far
NOT_BEFORE = "retry-not-before"  # epoch ms: not to be worked before
FIRST_FAILURE = "retry-first-failure"  # epoch ms
FIRST_REASON = "retry-first-reason"
LAST_REASON = "retry-last-reason"
ORIGIN = "retry-origin"  # topic/partition/offset where the record was first consumed
HEADERS = frozenset((ATTEMPTS, NOT_BEFORE, FIRST_FAILURE, FIRST_REASON, LAST_REASON, ORIGIN))

Headers = list[tuple[str, bytes | None]]


class RetryTopicMissing(RuntimeError):
    """runner.retry_mode=topic and the worker's retry topic does not exist: the worker refuses to start."""


class RetryState(NamedTuple):
    """What a record's headers say about earlier attempts (all empty for a record never retried)."""

    attempts: int = 0
    not_before_ms: int | None = None
    first_failure_ms: int | None = None
    first_reason: str | None = None
    origin: tuple[str, int, int] | None = None


NEVER_RETRIED = RetryState()


def retry_state(headers: Headers) -> RetryState:
    found = {k: v.decode("utf-8", "replace") for k, v in headers if k in HEADERS and v is not None}
    if not found:
        return NEVER_RETRIED
    try:
        topic, partition, offset = found[ORIGIN].rsplit("/", 2)
        origin: tuple[str, int, int] | None = (topic, int(partition), int(offset))
    except (KeyError, ValueError):
        origin = None
    return RetryState(_int(found.get(ATTEMPTS)) or 0, _int(found.get(NOT_BEFORE)), _int(found.get(FIRST_FAILURE)),
                      found.get(FIRST_REASON), origin)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def reason_of(exc: BaseException) -> str:
    return str(exc.reason) if isinstance(exc, StageError) else type(exc).__name__


def without_retry_headers(headers: Headers) -> Headers:
    return [(k, v) for k, v in headers if k not in HEADERS]


class RetryTopic:
    """Where and when a transiently failed record is tried again (one per stage input)."""

    def __init__(self, topic: str, delays_s: list[float]):
        self.topic = topic
        self.delays_s = list(delays_s) or [0.0]

    def delay_s(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (1-based); the last configured delay repeats."""
        return self.delays_s[min(attempt, len(self.delays_s)) - 1]

    def headers(self, rec_topic: str, partition: int, offset: int, headers: Headers, exc: BaseException,
                attempt: int, first_failure_ms: int, delay_s: float) -> Headers:
        """The retry copy's headers: the record's own (earlier retry headers replaced) + the attempt count, the
        not-before time, the first failure and the origin."""
        state = retry_state(headers)
        origin = state.origin or (rec_topic, partition, offset)
        reason = reason_of(exc)
        return without_retry_headers(headers) + [
            (ATTEMPTS, str(attempt).encode()),
            (NOT_BEFORE, str(now_ms() + int(delay_s * 1000)).encode()),
            (FIRST_FAILURE, str(state.first_failure_ms or first_failure_ms).encode()),
            (FIRST_REASON, (state.first_reason or reason).encode()),
            (LAST_REASON, reason.encode()),
            (ORIGIN, f"{origin[0]}/{origin[1]}/{origin[2]}".encode()),
        ]


class DelayQueue:
    """Retry records waiting for their not-before time, earliest first (runner's poll thread only); how many are
    held is exported as assetstream_retry_held{stage}."""

    def __init__(self, stage: str) -> None:
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = itertools.count()
        self._held = metrics.RETRY_HELD.labels(stage)
        self._held.set(0)

    def __len__(self) -> int:
        return len(self._heap)

    def hold(self, rec: Any, not_before_ms: int) -> None:
        heapq.heappush(self._heap, (not_before_ms, next(self._seq), rec))
        self._held.set(len(self._heap))

    def due(self, now: int | None = None) -> list[Any]:
        """The held records whose time has come, earliest first."""
        now = now_ms() if now is None else now
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        if out:
            self._held.set(len(self._heap))
        return out

    def drop(self, tps: set[Any] | None, abandon: Callable[[Any], None]) -> None:
        """Give up the held records of these partitions (None: all), uncommitted: the next owner holds them."""
        keep = []
        for item in self._heap:
            if tps is None or item[2].tp in tps:
                abandon(item[2])
            else:
                keep.append(item)
        heapq.heapify(keep)
        self._heap = keep
        self._held.set(len(keep))


class RetryLane:
    """runner.retry_mode=topic: an executor (streams.executors interface) that works retry-topic records apart from
    fresh ones, on their own threads (cpu stages) or asyncio loop (io stages) of runner.concurrency. A slow record's
    later attempts then never take the slots fresh records need; only its first attempt does, bounded by the
    stage's own time limits (e.g. preprocess.fetch_timeout_s) or runner.retry_attempt_timeout_s."""

    def __init__(self, fresh: Any, retries: Any, retry_topic: str):
        self.fresh, self.retries, self.retry_topic = fresh, retries, retry_topic
        retries.abandoned = fresh.abandoned  # one set: what the drain no longer waits for
        self.abandoned = fresh.abandoned
        self.abandon = fresh.abandon
        self.both = (fresh, retries)

    def submit(self, recs: list[Any]) -> None:
        fresh = [r for r in recs if r.topic != self.retry_topic]
        if fresh:
            self.fresh.submit(fresh)
        if len(fresh) < len(recs):
            self.retries.submit([r for r in recs if r.topic == self.retry_topic])

    def start(self) -> None:
        for ex in self.both:
            ex.start()

    def flush(self, force: bool = False) -> None:
        for ex in self.both:
            ex.flush(force)

    def pump(self) -> None:
        for ex in self.both:
            ex.pump()

    def forget(self, tps: set[Any] | None) -> None:
        for ex in self.both:
            ex.forget(tps)

    def stop(self) -> None:
        for ex in self.both:
            ex.stop()

    def shutdown(self) -> None:
        for ex in self.both:
            ex.shutdown()
