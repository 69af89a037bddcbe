"""Blast-radius limits: a pacing rate limiter (global and per target) and a circuit breaker per target.

Both are per worker process and thread-safe. The limiter spaces requests evenly at 1/rate seconds (no bursts after
an idle spell), so any window of T seconds sees at most rate x T + 1 requests from a worker."""
from __future__ import annotations

import threading
import time


class Pacer:
    def __init__(self, rate_per_s: float | None, clock=time.monotonic, sleep=time.sleep):
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def acquire(self) -> float:
        """Block until a request may go; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
        wait = at - now
        if wait > 0:
            self._sleep(wait)
        return wait


class Breaker:
    """closed -> (failure_threshold consecutive transient failures) -> open for open_s -> one trial request
    (half-open) -> closed on success, open again on failure."""

    def __init__(self, failure_threshold: int, open_s: float, clock=time.monotonic):
        self.threshold, self.open_s, self._clock = failure_threshold, open_s, clock
        self.failures = 0
        self.opened_at: float | None = None
        self.reason: str | None = None
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.opened_at is None:
                return True
            if self._clock() - self.opened_at >= self.open_s:
                self.opened_at = self._clock()  # half-open: this caller is the trial; others wait another round
                return True
            return False

    def tripped(self) -> bool:
        """Opened and not closed again by a successful request since (the group stays paused meanwhile)."""
        with self._lock:
            return self.opened_at is not None

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self.reason = 0, None, None

    def failure(self, reason: str) -> bool:
        """Record a transient failure; True when this opened (or re-opened) the breaker."""
        with self._lock:
            self.failures += 1
            self.reason = reason
            if self.failures >= self.threshold:
                self.opened_at = self._clock()
                return True
            return False
