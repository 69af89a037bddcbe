"""Kafka client errors, each logged once: librdkafka's own log lines and the runner's error callbacks go through
one rate limiter into the project's logging (logger `assetstream.kafka`), never straight to stderr.

During a broker outage librdkafka reports the same failure twice (a log line of its own, and `error_cb`) every
time it retries a connection: ~110 lines per worker in 10 s. `ClientLog` is passed as the clients' `logger`
(confluent-kafka calls its `log(level, fmt, *args)`) and the runner hands its error callbacks to `error()`. A
message is keyed without what changes between repeats (librdkafka's thread name, "(after 12ms in state ...)");
the first of a key is logged at once, repeats within `interval_s` are only counted, and the next one after the
interval is logged with that count. Two routes reporting the same error share one key.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

log = logging.getLogger("assetstream.kafka")

_THREAD = re.compile(r"\[thrd:[^\]]*\]:\s*")
_VARYING = re.compile(r"\s*\(after \d+ms[^)]*\)|\b\d+ms\b")


def error_key(message: str) -> str:
    """What identifies a repeated client error: the text without thread name and timings."""
    return _VARYING.sub("", _THREAD.sub("", message)).strip()


class ClientLog:
    """A rate-limited sink for one worker's Kafka client messages (thread-safe: librdkafka's callbacks arrive
    from whichever thread polls)."""

    def __init__(self, name: str, interval_s: float = 30.0, logger: logging.Logger = log):
        self.name = name
        self.interval_s = interval_s
        self.logger = logger
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last logged at, repeats not logged since)

    def emit(self, level: int, message: str, key: str | None = None) -> None:
        """Log `message` unless one of the same `key` (default: the message without what varies between
        repeats) was logged within `interval_s`."""
        key = error_key(message) if key is None else key
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.interval_s:
                self._seen[key] = (last[0], last[1] + 1)
                return
            repeats = last[1] if last is not None else 0
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # bounded: forget the oldest keys
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[old]
        text = error_key(message)
        if repeats:
            self.logger.log(level, "%s: %s (%d more time(s) in the last %.0fs)", self.name, text, repeats,
                            now - last[0])
        else:
            self.logger.log(level, "%s: %s", self.name, text)

    def error(self, err) -> None:
        """A non-fatal KafkaError from error_cb."""
        self.emit(logging.WARNING, f"kafka client error: {err.str()}")

    # confluent-kafka's `logger` interface: librdkafka's log lines
    def log(self, level: int, fmt: str, *args) -> None:
        try:
            fac, client, text = args
        except ValueError:
            self.emit(level, fmt % args if args else fmt)
            return
        # librdkafka errors (level >= ERROR) are the same events error_cb reports: keyed alike so they count once
        if level >= logging.ERROR:
            self.emit(logging.WARNING, f"kafka client error: {text}")
        else:
            self.emit(level, f"{fac} [{client}] {text}")

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging.Logger's name
        return self.logger.isEnabledFor(level)


def client_logging(name: str, interval_s: float = 30.0) -> dict[str, Any]:
    """Client settings that send a tool's librdkafka lines and errors (a backfill, a replay, a publish during a
    broker outage) through the project's logging, each failure once per `interval_s`, as the workers do; without
    them librdkafka prints its own `%3|…|FAIL|…` line to stderr at every reconnect."""
    clog = ClientLog(name, interval_s)
    return {"logger": clog, "error_cb": clog.error}
