"""Cache failures said where an operator looks: one WARNING per cache, operation and cause per interval.

A cache that cannot be read or written never fails a record (the embeddings or the model graph are computed
again, the model is called, the vectors are read from the store), so these failures used to be silent (the disk
caches: `except OSError: pass`) or only a counter in /metrics (the model-result cache; trial 22), while every process or record paid for
them unseen. Now each one is logged on
`assetstream.cache` naming the cache, the file or index and the errno (`[Errno 28 ENOSPC] No space left on
device`), at most once per `INTERVAL_S` for the same cache, operation, directory and errno (the repeats are counted
in the next line), and counted in `assetstream_cache_errors_total{cache, op}`.
"""
from __future__ import annotations

import errno
import logging
import os

from streams import metrics
from streams.clientlog import ClientLog

INTERVAL_S = 300.0

_log = ClientLog("cache", INTERVAL_S, logging.getLogger("assetstream.cache"))


def cause(exc: BaseException) -> str:
    """`[Errno 28 ENOSPC] No space left on device`, or the exception's type and message."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code:
        return f"[Errno {code} {errno.errorcode.get(code, '?')}] {exc.strerror or exc}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def cache_failed(cache: str, op: str, where: str, exc: BaseException, then: str) -> None:
    """`cache` (e.g. "local-provider") could not `op` ("read" / "write") `where` (a file or an index); `then` says
    what happens instead. Logged at most once per INTERVAL_S per cache, op, directory and errno; always counted."""
    metrics.CACHE_ERRORS.labels(cache, op).inc()
    code = getattr(exc, "errno", None) or type(exc).__name__
    key = f"{cache}|{op}|{os.path.dirname(where) or where}|{code}"
    _log.emit(logging.WARNING, f"{cache} cache: cannot {op} {where}: {cause(exc)}; {then}", key=key)
