"""Small helpers for building and reading Avro record dicts."""
from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import time
from typing import Any

from streams import PIPELINE_VERSION


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def now_ms() -> int:
    return int(time.time() * 1000)


def to_ms(value: Any) -> int | None:
    """timestamp-millis values arrive as aware datetimes from the deserializer; accept ints too."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return (value - _EPOCH) // dt.timedelta(milliseconds=1)  # exact: no float rounding
    return int(value)


@functools.lru_cache(maxsize=1)
def worker_name() -> str:
    """POD_NAME (Kubernetes downward API) or the host name; looked up once (gethostname is a syscall)."""
    return os.environ.get("POD_NAME") or socket.gethostname()


def stamp(stage: str) -> dict[str, Any]:
    """The StageStamp every stage puts on its output."""
    return {"stage": stage, "version": PIPELINE_VERSION, "worker": worker_name(), "at": now_ms()}
