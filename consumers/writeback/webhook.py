"""The generic DAM target: one JSON request per asset to a configured URL template.

    PATCH https://dam.example/api/assets/<asset id>
    Content-Type: application/json
    Idempotency-Key: <sha256 of target, asset and body>      (the same change retried = the same key)
    X-Assetstream-Timestamp / X-Assetstream-Signature       (hmac_secret: the ingest webhook's scheme)
    Authorization: Bearer ... | X-API-Key: ...               (bearer_token | api_key)
    If-Match: <ETag of the GET before>                       (when the target sent one)

With `read_current` the asset is first read with GET on the same URL (a JSON object with the mapped fields).
Answers: 2xx = written; 401/403/408/409/412/423/425/429/5xx, timeouts and connection errors = transient (retried
without limit; three in a row open the breaker, which pauses the group's partitions); any other 4xx (404 = the
target does not know the asset, 400/422 = it refuses the body) = a dead letter with the status and reason.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import quote

import httpx

from consumers.writeback.limits import Breaker, Pacer
from consumers.writeback.plan import MISSING, get_path, nest
from consumers.writeback.settings import TargetSettings
from domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from streams.errors import PermanentError, TransientError
from streams.metrics import WRITEBACK_BREAKER_OPEN, WRITEBACK_SECONDS

TRANSIENT_STATUS = {401, 403, 408, 409, 412, 423, 425, 429}
MAX_REASON = 300


class WebhookTarget:
    def __init__(self, cfg: TargetSettings, global_pacer: Pacer, client: httpx.Client | None = None):
        self.cfg, self.name = cfg, cfg.name
        self.global_pacer, self.pacer = global_pacer, Pacer(cfg.rate_per_s)
        self.breaker = Breaker(cfg.failure_threshold, cfg.open_s)
        self.client = client or httpx.Client(timeout=cfg.timeout_s, follow_redirects=False)
        self._secrets = [s.get_secret_value() for s in (cfg.hmac_secret, cfg.bearer_token, cfg.api_key) if s]

    def url(self, asset_id: str) -> str:
        return self.cfg.url.replace("{asset_id}", quote(asset_id, safe=""))

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": "assetstream-writeback"}
        if self.cfg.bearer_token:
            h["Authorization"] = "Bearer " + self.cfg.bearer_token.get_secret_value()
        if self.cfg.api_key:
            h[self.cfg.api_key_header] = self.cfg.api_key.get_secret_value()
        return h

    # --- requests --------------------------------------------------------------------------------------------
    def read(self, asset_id: str) -> tuple[dict[str, Any], str | None]:
        """The target's current values of the mapped fields (absent ones left out) and its ETag."""
        resp = self._request("GET", asset_id, headers=self._headers())
        try:
            doc = resp.json()
        except ValueError:
            raise PermanentError(f"{self.name}: GET answered {resp.status_code} with a body that is not JSON",
                                 reason="target_not_json", details={"target": self.name,
                                                                    "status": str(resp.status_code)}) from None
        current = {}
        for theirs in self.cfg.fields.values():
            v = get_path(doc, theirs)
            if v is not MISSING:
                current[theirs] = v
        return current, resp.headers.get("etag")

    def write(self, asset_id: str, fields: dict[str, Any], etag: str | None) -> str | None:
        body = json.dumps(nest(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        h = {**self._headers(), "Content-Type": "application/json",
             "Idempotency-Key": hashlib.sha256(b"|".join([self.name.encode(), asset_id.encode(), body])).hexdigest()}
        if self.cfg.hmac_secret:
            ts = str(int(time.time()))
            h[TIMESTAMP_HEADER] = ts
            h[SIGNATURE_HEADER] = sign(self.cfg.hmac_secret.get_secret_value(), ts, body)
        if etag:
            h["If-Match"] = etag
        return self._request(self.cfg.method, asset_id, headers=h, content=body).headers.get("etag")

    def _request(self, method: str, asset_id: str, **kw: Any) -> httpx.Response:
        if not self.breaker.allow():
            raise TransientError(f"{self.name}: circuit open after repeated failures ({self.breaker.reason})",
                                 reason="circuit_open", details={"target": self.name})
        self.global_pacer.acquire()
        self.pacer.acquire()
        started = time.perf_counter()
        try:
            resp = self.client.request(method, self.url(asset_id), **kw)
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
        details = {"target": self.name, "status": str(status), "method": method, "reason": self._reason(resp)}
        if status in TRANSIENT_STATUS or status >= 500:
            if status not in (409, 412):  # a concurrent edit is not an outage: re-read and retry
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

    def _failed(self, reason: str) -> None:
        if self.breaker.failure(reason):
            WRITEBACK_BREAKER_OPEN.labels(self.name).set(1)

    def _reason(self, resp: httpx.Response) -> str:
        text = resp.text[:MAX_REASON]
        for secret in self._secrets:  # a target echoing our headers must not put them in a dead letter
            text = text.replace(secret, "**********")
        return text

    def paused(self) -> str | None:
        return f"{self.name}: {self.breaker.reason}" if self.breaker.tripped() else None

    def close(self) -> None:
        self.client.close()
