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

import base64
import json
import re
import time
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

import httpx

from consumers.writeback.limits import Breaker, Pacer
from consumers.writeback.settings import TargetSettings
from streams.errors import PermanentError, TransientError
from streams.logs import HIDDEN, URL_CREDENTIALS, hide_url_credentials
from streams.metrics import WRITEBACK_BREAKER_OPEN, WRITEBACK_SECONDS

TRANSIENT_STATUS = {401, 403, 408, 409, 412, 423, 425, 429}
CONCURRENT_CHANGE = {409, 412}
CREDENTIALS_REFUSED = {
    401: "our credentials were refused: a wrong, revoked or expired password or token",
    403: "refused: our credentials, or what their user may do (its role)"}
MAX_REASON = 300
SCRUB_SPAN = 4096  # what is scrubbed of a target's answer (plus the longest secret form), then cut to MAX_REASON
_CREDENTIAL_VALUES = [  # whatever the secret: the value of an Authorization header, Basic/Bearer credentials,
    # a password in a URL, and `password`/`token`/`key`-like JSON or form fields. Each pattern starts at the start
    # of a run of the characters it repeats (no rescan from every position inside a long run: linear time)
    # (pattern, whether its value is hidden only when it looks like a credential: words after "basic"/"token:" may
    # be a target's plain explanation; an Authorization header's value and a URL's password are always hidden)
    (re.compile(r"(?i)(\bauthorization\b[\"']?\s*[:=]\s*[\"']?)([^\"'\r\n,;}&]+)"), False),
    (re.compile(r"(?i)(\b(?:basic|bearer)\s+)([a-z0-9+/=._~\\-]{4,})"), True),
    (URL_CREDENTIALS, False),
    (re.compile(r"(?i)((?<![\w-])[\w-]*(?:password|passwd|secret|token|api[_-]?key)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
                r"([^\"'\s,;}&]+)"), True),
]


def _looks_secret(value: str) -> bool:
    """A credential-looking value (a backstop behind the exact secret forms): long, or with a digit or a symbol
    that words do not have. Keeps a target's plain words ("Basic information is required", "token: expired")."""
    return len(value) >= 16 or any(c.isdigit() or c in "=./+_~\\-" for c in value)


def secret_forms(secrets: list[str], logins: list[tuple[str, str]] = ()) -> list[str]:
    """Every form in which the client may send (and a target echo) these secrets: as they are, URL- and
    JSON-escaped, and for each (user, password) login the Basic-auth `user:password` and its base64; longest first.
    WordPress application passwords work with and without their spaces, so both are covered."""
    plain = set()
    for secret in secrets:
        plain |= {secret, secret.replace(" ", "")}
    for user, password in logins:
        for pw in {password, password.replace(" ", "")}:
            pair = f"{user}:{pw}"
            b64 = base64.b64encode(pair.encode()).decode()
            plain |= {pair, b64, b64.rstrip("=")}
    forms = set()
    for p in plain:
        if len(p) >= 4:  # a one-letter "secret" would blank every answer; nothing that short is one
            forms |= {p, quote(p, safe=""), quote_plus(p), quote(p), json.dumps(p)[1:-1],
                      json.dumps(p)[1:-1].replace("/", "\\/")}  # PHP's json_encode escapes slashes
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, forms: list[str]) -> str:
    """`text` without any of these secret forms (secret_forms) nor any credential-looking value."""
    for form in forms:
        text = text.replace(form, HIDDEN)
    for pattern, if_secret in _CREDENTIAL_VALUES:
        text = pattern.sub(lambda m, if_secret=if_secret: m.group(1) + (
            m.group(2) if if_secret and not _looks_secret(m.group(2)) else HIDDEN), text)
    return text


class HttpTarget:
    def __init__(self, cfg: TargetSettings, global_pacer: Pacer, client: httpx.Client | None = None):
        self.cfg, self.name = cfg, cfg.name
        self.global_pacer, self.pacer = global_pacer, Pacer(cfg.rate_per_s)
        self.breaker = Breaker(cfg.failure_threshold, cfg.open_s)
        self.client = client or httpx.Client(timeout=cfg.timeout_s, follow_redirects=False)
        secrets = [s.get_secret_value() for s in
                   (cfg.hmac_secret, cfg.bearer_token, cfg.api_key, cfg.application_password) if s]
        logins = [(cfg.username or "", cfg.application_password.get_secret_value())] \
            if cfg.application_password else []
        url = urlsplit(cfg.url or "")
        if url.password:  # https://user:pass@host/...: httpx sends it as Basic auth
            secrets.append(unquote(url.password))
            logins.append((unquote(url.username or ""), unquote(url.password)))
        self._secrets = secret_forms(secrets, logins)
        hide_url_credentials("httpx")  # it logs each request's URL, credentials included

    # --- the target's interface to the sink --------------------------------------------------------------------
    def read(self, value: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The target's current values of the mapped fields (absent ones left out) and its ETag, if any."""
        raise NotImplementedError

    merges_lists = False
    """True: list fields are merged into the target's (ours added, theirs kept), see plan.decide."""

    holds_the_original = False
    """True: the values the target holds that we never wrote are the asset file's own (FilesTarget)."""

    def as_stored(self, wanted: dict[str, Any]) -> dict[str, Any]:
        """{their field: our value} in the form the target stores it (what we send, and what it reads back)."""
        return wanted

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
        # the reason is our short code (http_404); what the target said goes in the message and `response`
        details = {"target": self.name, "status": str(status), "method": method, "response": self.scrub(resp.text)}
        if status in TRANSIENT_STATUS or status >= 500:
            if status not in CONCURRENT_CHANGE:  # a concurrent edit is not an outage: read again and retry
                self._failed(str(status))
            retry_after = None
            try:
                retry_after = float(resp.headers.get("retry-after", ""))
            except ValueError:
                pass
            # refused credentials: said first (trial 35 F8: a revoked WordPress password is answered 401 "not
            # allowed to edit posts", which read like a role problem), then what the target said (scrubbed)
            said = f": the target said: {details['response']}" if details["response"] else ""
            said = (f" ({CREDENTIALS_REFUSED[status]}){said}" if status in CREDENTIALS_REFUSED else "")
            raise TransientError(f"{self.name}: {method} answered {status}{said}", reason=f"http_{status}",
                                 details=details, retry_after_s=retry_after)
        self.breaker.success()  # the target is up; it refuses this asset
        raise PermanentError(f"{self.name}: {method} answered {status}: {details['response']}",
                             reason=f"http_{status}", details=details)

    def json_of(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise PermanentError(f"{self.name}: answered {resp.status_code} with a body that is not JSON",
                                 reason="target_not_json",
                                 details={"target": self.name, "status": str(resp.status_code)}) from None

    def scrub(self, text: str) -> str:
        """What a target answered, fit for a log line and a dead letter: every form of our credentials replaced
        (a target echoing our headers or URL must not put them there), any credential-looking value redacted,
        and only then cut to MAX_REASON (a secret at the cut cannot leave its first characters behind)."""
        span = SCRUB_SPAN + max(map(len, self._secrets), default=0)  # a large answer: only its head is kept
        return scrub(text[:span], self._secrets)[:MAX_REASON]

    def _failed(self, reason: str) -> None:
        if self.breaker.failure(reason):
            WRITEBACK_BREAKER_OPEN.labels(self.name).set(1)

    def paused(self) -> str | None:
        return f"{self.name}: {self.breaker.reason}" if self.breaker.tripped() else None

    def close(self) -> None:
        self.client.close()
