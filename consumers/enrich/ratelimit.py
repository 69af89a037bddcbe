"""Token-bucket rate limiting per "provider:model": requests/min and tokens/min, per worker process.

The request bucket starts with one request and holds at most two: requests are paced evenly at
60/requests_per_min seconds apart, so the count in any window of T seconds is at most rate x T + 2 (no bursts
after an idle spell, which providers' own token buckets would answer with 429s). The
token bucket holds one minute's worth (provider TPM limits are per-minute windows) and starts full. Token use is estimated
before the call and corrected with the real usage afterwards (the bucket may go negative, which delays the
next caller).
"""
from __future__ import annotations

import asyncio
import time


REQUEST_BURST = 2.0
"""Request-bucket capacity: room for one request of catch-up when the event loop wakes a waiter late, so a
busy worker still reaches the configured rate; never more than 2 requests at once."""


class TokenBucket:
    def __init__(self, per_minute: float, burst_seconds: float = 1.0, initial: float | None = 1.0,
                 clock=time.monotonic, capacity: float | None = None):
        self.rate = per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, self.rate * burst_seconds)
        self.clock = clock
        self.tokens = self.capacity if initial is None else min(initial, self.capacity)
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` is available (0 if now). Amounts above capacity wait for a full bucket."""
        self._refill()
        need = min(amount, self.capacity)
        if self.tokens >= need:
            return 0.0
        return (need - self.tokens) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.tokens -= amount

    def adjust(self, delta: float) -> None:
        """Positive delta = more was used than taken."""
        self._refill()
        self.tokens -= delta


class RateLimiter:
    """One per provider:model. `await acquire(est_tokens)` before a request, `settle(est, actual)` after."""

    def __init__(self, requests_per_min: float | None = None, tokens_per_min: float | None = None):
        self.requests = TokenBucket(requests_per_min, burst_seconds=0.0, capacity=REQUEST_BURST) if requests_per_min else None
        self.tokens = TokenBucket(tokens_per_min, burst_seconds=60.0, initial=None) if tokens_per_min else None
        self._lock = asyncio.Lock()
        self.waited_s = 0.0

    async def acquire(self, est_tokens: float = 0.0) -> None:
        if self.requests is None and self.tokens is None:
            return
        async with self._lock:  # FIFO: one waiter at a time holds the head of the line
            while True:
                wait = 0.0
                if self.requests is not None:
                    wait = max(wait, self.requests.wait_time(1.0))
                if self.tokens is not None and est_tokens:
                    wait = max(wait, self.tokens.wait_time(est_tokens))
                if wait <= 0:
                    break
                self.waited_s += wait
                await asyncio.sleep(wait)
            if self.requests is not None:
                self.requests.take(1.0)
            if self.tokens is not None and est_tokens:
                self.tokens.take(est_tokens)

    def settle(self, est_tokens: float, actual_tokens: float) -> None:
        if self.tokens is not None:
            self.tokens.adjust(actual_tokens - est_tokens)
