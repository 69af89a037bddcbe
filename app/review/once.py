"""A form is sent at most once (trial 28 M1): each page the review app draws carries a nonce (`once`) in its forms;
the decision a submission makes is remembered for a while under (session, nonce, what it decides), and the same
submission again (Enter pressed twice, `a` right after a click, Back to the no-JS rights-check page and approve
again) gets the first one's answer and sends nothing. One that arrives while the first is still being sent waits
for it. A submission that sent nothing (refused, or the broker did not confirm it) is not remembered: trying again
sends it.

    once = Once()
    answer = once.answer(key, send)      # send() at most once per key while remembered; its answer for repeats
    once.sent(user, session, nonce)      # the answers a form's submissions got (what it sent), oldest first
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

ONCE_TTL_S = 3600.0  # how long a form's answer is remembered (a page left open over lunch, then Back)
ONCE_SIZE = 20_000  # answers remembered at most (the oldest are forgotten first)


def nonce() -> str:
    """A new form's nonce: unguessable, so one session cannot answer for another's form."""
    return secrets.token_urlsafe(12)


def fingerprint(value: Any) -> str:
    """What a submission decides, as a short digest (a decision's asset, verdict and fields; a bulk approval's ids)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Once:
    def __init__(self, ttl_s: float = ONCE_TTL_S, size: int = ONCE_SIZE):
        self.ttl_s, self.size = ttl_s, size
        self._lock = threading.Lock()
        self._done: OrderedDict[tuple[str, ...], tuple[float, Any]] = OrderedDict()
        self._busy: dict[tuple[str, ...], threading.Event] = {}

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self._done and (len(self._done) > self.size or next(iter(self._done.values()))[0] < now):
            self._done.popitem(last=False)

    def answer(self, key: tuple[str, ...], send: Callable[[], Any]) -> Any:
        """send()'s answer: called once for `key`; a repeat gets the answer remembered, and one arriving while the
        first runs waits for it. An answer of None, or an exception, is not remembered (nothing was sent)."""
        while True:
            with self._lock:
                self._forget_old()
                if key in self._done:
                    return self._done[key][1]
                running = self._busy.get(key)
                if running is None:
                    self._busy[key] = threading.Event()
                    break
            running.wait(120)  # the first one's publish times out well before this
        try:
            result = send()
            if result is not None:
                with self._lock:
                    self._done[key] = (time.monotonic() + self.ttl_s, result)
                    self._forget_old()
            return result
        finally:
            with self._lock:
                self._busy.pop(key).set()

    def sent(self, *form: str) -> list[Any]:
        """The answers remembered for a form (keys starting with these parts: user, session, nonce), oldest first."""
        n = len(form)
        with self._lock:
            self._forget_old()
            return [v for k, (_, v) in self._done.items() if k[:n] == form]
