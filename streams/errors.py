"""The three error classes every failure is sorted into, once. Stages raise these; the runner acts on them.

- PoisonError: the record cannot be deserialized. Raised by the runner itself. -> dead letter, commit.
- PermanentError: the record is bad (not an image, forbidden URL, schema violation). -> dead letter, commit.
- TransientError: the world is temporarily bad (timeout, 429, 5xx, store down). -> retry with backoff, then dead letter.
  StoreUnavailable, a TransientError with a `pause_reason`: a dependency every record needs is down; while a
  batch retries it, consumption is paused with that reason (`assetstream_paused{reason}`).
  RegistryUnavailable (pause reason schema_registry): the schema registry cannot serve the worker; retried
  without limit in every kind of stage, never dead-lettered.

Any other exception escaping a stage is treated as permanent (a bug must not stall the partition), with its stack.
"""
from __future__ import annotations

from typing import Any, Callable


class StageError(Exception):
    error_class = "permanent"

    def __init__(self, message: str, *, reason: str | None = None, details: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__
        self.details = {k: str(v) for k, v in (details or {}).items()}


class PoisonError(StageError):
    error_class = "poison"


class PermanentError(StageError):
    error_class = "permanent"


class TransientError(StageError):
    error_class = "transient"
    pause_reason: str | None = None
    """If set: the failure is not this record's but a dependency's, and while a batch stage retries it the worker
    pauses consumption with this reason (exported as assetstream_paused{reason})."""

    def __init__(self, message: str, *, reason: str | None = None, details: dict[str, str] | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message, reason=reason, details=details)
        self.retry_after_s = retry_after_s


class StoreUnavailable(TransientError):
    """The store a stage writes to or reads from is down or refusing work: retried, and consumption pauses."""

    pause_reason = "store_unavailable"


class RegistryUnavailable(TransientError):
    """The schema registry cannot serve the worker (unreachable, timing out, 5xx, 429, 401/403, refusing or not
    having the worker's own schema): never the record's fault. Retried without limit (not counted toward
    runner.retry_max_attempts) while consumption pauses; on shutdown the record stays uncommitted."""

    pause_reason = "schema_registry"
    resume: Callable[[], Any] | None = None
    """Set by RecordWork.run(wait=False) and an io stage's attempt: the step that met the outage (serializing the
    outputs of the stage's kept result, or the dead letter), to try again alone (streams.work)."""


def classify(exc: BaseException) -> str:
    """'poison' | 'permanent' | 'transient' for any exception."""
    if isinstance(exc, StageError):
        return exc.error_class
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return "transient"
    return "permanent"
