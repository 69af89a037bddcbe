"""What every HTTP target shares: one client, the global and its own rate limit, its circuit breaker, latency
metrics, and one classification of answers:

- 2xx -> success; the breaker closes;
- 401/403 (credentials), 408/429/5xx, 409/412/423/425 (a concurrent change: read again), timeouts, refused or reset
  connections -> TransientError: the runner retries without limit; three outage-like failures in a row open the
  breaker, which pauses the group's partitions until a trial request succeeds;
- any other 4xx (404 = the target does not know the asset, 400/422 = it refuses the body) -> PermanentError:
  that record is dead-lettered with the status and the target's reason (secrets scrubbed).
"""
from __future__ import annotations

import time
from typing import Any

import httpx

from consumers.writeback.limits import Breaker, Pacer
from consumers.writeback.settings import TargetSettings
from streams.errors import PermanentError, TransientError
from streams.metrics import WRITEBACK_BREAKER_OPEN, WRITEBACK_SECONDS

TRANSIENT_STATUS = {401, 403, 408, 409, 412, 423, 425, 429}
CONCURRENT_CHANGE = {409, 412}
MAX_REASON = 300


class HttpTarget:
    def __init__(self, cfg: TargetSettings, global_pacer: Pacer, client: httpx.Client | None = None):
        self.cfg, self.name = cfg, cfg.name
        self.global_pacer, self.pacer = global_pacer, Pacer(cfg.rate_per_s)
        self.breaker = Breaker(cfg.failure_threshold, cfg.open_s)
        self.client = client or httpx.Client(timeout=cfg.timeout_s, follow_redirects=False)
        self._secrets = [s.get_secret_value() for s in
                         (cfg.hmac_secret, cfg.bearer_token, cfg.api_key, cfg.application_password) if s]

    # --- the target's interface to the sink --------------------------------------------------------------------
    def read(self, value: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The target's current values of the mapped fields (absent ones left out) and its ETag, if any."""
        raise NotImplementedError

    merges_lists = False
    """True: list fields are merged into the target's (ours added, theirs kept), see plan.decide."""

    holds_the_original = False
    """True: the values the target holds that we never wrote are the asset file's own (FilesTarget)."""

    def write(self, value: dict[str, Any], fields: dict[str, Any], etag: str | None,
              previous: dict[str, Any] | None = None) -> str | None:
        """Send these fields (their names; `previous` = what we last wrote); returns the new ETag, if any."""
        raise NotImplementedError

    def release(self, value: dict[str, Any]) -> None:
        """The sink is done with this record (after write, or without one): drop anything read() kept for it."""

    # --- shared -------------------------------------------------------------------------------------------------
    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        if not self.breaker.allow():
            raise TransientError(f"{self.name}: circuit open after repeated failures ({self.breaker.reason})",
                                 reason="circuit_open", details={"target": self.name})
        self.global_pacer.acquire()
        self.pacer.acquire()
        started = time.perf_counter()
        try:
            resp = self.client.request(method, url, **kw)
        except httpx.HTTPError as e:  # refused, reset, timeout, TLS: the message never holds our headers
            self._failed(type(e).__name__)
            raise TransientError(f"{self.name}: {method} failed: {type(e).__name__}", reason="target_unavailable",
                                 details={"target": self.name, "error": type(e).__name__}) from None
        finally:
            WRITEBACK_SECONDS.labels(self.name, method).observe(time.perf_counter() - started)
        status = resp.status_code
        if 200 <= status < 300:
            self.breaker.success()
            WRITEBACK_BREAKER_OPEN.labels(self.name).set(0)
            return resp
        details = {"target": self.name, "status": str(status), "method": method, "reason": self.scrub(resp.text)}
        if status in TRANSIENT_STATUS or status >= 500:
            if status not in CONCURRENT_CHANGE:  # a concurrent edit is not an outage: read again and retry
                self._failed(str(status))
            retry_after = None
            try:
                retry_after = float(resp.headers.get("retry-after", ""))
            except ValueError:
                pass
            raise TransientError(f"{self.name}: {method} answered {status}", reason=f"http_{status}",
                                 details=details, retry_after_s=retry_after)
        self.breaker.success()  # the target is up; it refuses this asset
        raise PermanentError(f"{self.name}: {method} answered {status}: {details['reason']}",
                             reason=f"http_{status}", details=details)

    def json_of(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise PermanentError(f"{self.name}: answered {resp.status_code} with a body that is not JSON",
                                 reason="target_not_json",
                                 details={"target": self.name, "status": str(resp.status_code)}) from None

    def scrub(self, text: str) -> str:
        text = text[:MAX_REASON]
        for secret in self._secrets:  # a target echoing our headers must not put them in a dead letter
            text = text.replace(secret, "**********")
        return text

    def _failed(self, reason: str) -> None:
        if self.breaker.failure(reason):
            WRITEBACK_BREAKER_OPEN.labels(self.name).set(1)

    def paused(self) -> str | None:
        return f"{self.name}: {self.breaker.reason}" if self.breaker.tripped() else None

    def close(self) -> None:
        self.client.close()
