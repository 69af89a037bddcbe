"""A form is sent at most once (trial 28 M1): each page the review app draws carries a nonce (`once`) in its forms;
the answer a submission got is remembered for a while under (session, nonce, where it was posted, what the form
submits: the same nonce and fields posted to another asset is another decision, trial 30 F3), and the same
submission again (Enter pressed twice, `a` right after a click, Back to the no-JS rights-check page and approve
again) gets the first one's answer and sends nothing. The answer is looked up before anything is recomputed
(code review 15b M1): once the first decision is applied, the same form no longer makes the same decision. One that
arrives while the first is still being sent waits for it, a few seconds at most (then StillSending). A submission
that sent nothing (refused, or the broker did not confirm it) is not remembered: trying again sends it.

    once = Once()
    answer = once.answer(key, send)      # send() at most once per key while remembered; its answer for repeats
    once.sent(user, session, nonce[, where])  # the answers a form's submissions got (what it sent), oldest first
    token(form.get("once"))              # the client's nonce if it is one this app could have made, else ""
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

ONCE_TTL_S = 3600.0  # how long a form's answer is remembered (a page left open over lunch, then Back)
ONCE_SIZE = 20_000  # answers remembered at most (the oldest are forgotten first)
ONCE_WAIT_S = 5.0  # how long a repeat waits for the first one still being sent (code review 15b L1: was 120 s)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what nonce() and the rights page's derived tokens look like


class StillSending(Exception):
    """A repeat of a form whose first submission is still being sent after ONCE_WAIT_S: this one sent nothing."""


def token(value: Any) -> str:
    """A form's nonce as submitted, when it is one this app could have made (at most 64 of [A-Za-z0-9_-]); anything
    else (a megabyte of text, a list) is no nonce: the submission is then not deduplicated, and nothing big is
    remembered (code review 15b L1)."""
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else ""


def nonce() -> str:
    """A new form's nonce: unguessable, so one session cannot answer for another's form."""
    return secrets.token_urlsafe(12)


def fingerprint(value: Any) -> str:
    """A short digest of a value (what a form submits: app/review/web.py form_key)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Once:
    def __init__(self, ttl_s: float = ONCE_TTL_S, size: int = ONCE_SIZE, wait_s: float = ONCE_WAIT_S):
        self.ttl_s, self.size, self.wait_s = ttl_s, size, wait_s
        self._lock = threading.Lock()
        self._done: OrderedDict[tuple[str, ...], tuple[float, Any]] = OrderedDict()
        self._busy: dict[tuple[str, ...], threading.Event] = {}

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self._done and (len(self._done) > self.size or next(iter(self._done.values()))[0] < now):
            self._done.popitem(last=False)

    def answer(self, key: tuple[str, ...], send: Callable[[], Any]) -> Any:
        """send()'s answer: called once for `key`; a repeat gets the answer remembered, and one arriving while the
        first runs waits for it, up to wait_s (then StillSending: a request thread is not held for long). An answer
        of None, or an exception, is not remembered (nothing was sent)."""
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._lock:
                self._forget_old()
                if key in self._done:
                    return self._done[key][1]
                running = self._busy.get(key)
                if running is None:
                    self._busy[key] = threading.Event()
                    break
            left = deadline - time.monotonic()
            if left <= 0 or not running.wait(left):
                raise StillSending("nothing more was sent: this form's first submission is still being sent; "
                                   "reload in a moment to see its outcome")
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
        """The answers remembered for a form (keys starting with these parts: user, session, nonce[, where, …]),
        oldest first."""
        n = len(form)
        with self._lock:
            self._forget_old()
            return [v for k, (_, v) in self._done.items() if k[:n] == form]
