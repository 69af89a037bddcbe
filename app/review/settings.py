"""The review web app's settings (`review.*`, env ASSETSTREAM_REVIEW__<FIELD>). See docs/review.md.

    ASSETSTREAM_REVIEW__AUTH=token                      # default: a random token printed in the login URL
    ASSETSTREAM_REVIEW__AUTH=basic ASSETSTREAM_REVIEW__USERS='{"alice": "…"}'
    ASSETSTREAM_REVIEW__AUTH=header ASSETSTREAM_REVIEW__TRUSTED_HEADER=X-Forwarded-User   # behind an OIDC proxy
    ASSETSTREAM_REVIEW__TRUSTED_PROXIES='["10.0.0.5"]'  # header mode off loopback: whose header is believed
    ASSETSTREAM_REVIEW__TENANTS='["acme"]'             # one desk per tenant (`assetstream review --tenant acme`)
"""
from __future__ import annotations

import getpass
import ipaddress
import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from domain.events import MAX_TENANT, identifier_problem
from streams.config import Section


def _os_user() -> str:
    """the name of the OS user running the app ("editor" when there is none)"""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return "editor"


def split_host(value: str) -> tuple[str, int | None] | None:
    """(name, port) of a Host header or an allowed-hosts entry ("desk.example", "desk.example:8077", "[::1]:8077"),
    lower-case; None when it is not one."""
    value = value.strip().lower().rstrip(".")
    m = re.fullmatch(r"\[([0-9a-f:.]+)\](?::([0-9]{1,5}))?|([^:\[\]/@\s]+)(?::([0-9]{1,5}))?", value)
    if not m:
        return None
    name, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return name.rstrip("."), int(port) if port else None


class ReviewSettings(Section):
    """The review web app (app/review): queue, asset view, decisions to `feedback`."""

    host: str = Field("127.0.0.1", description="interface to bind; loopback by default (put a proxy in front to "
                                              "expose it)")
    port: int = Field(8077, ge=0, le=65535, description="0 = any free port")
    public_url: str | None = Field(None, description="the URL editors use (behind a proxy); default "
                                                     "http://<host>:<port>")
    auth: Literal["token", "basic", "header"] = Field(
        "token", description="token: one login token (random at every start unless `token` is set), exchanged "
                             "for a session cookie; basic: HTTP basic auth against `users`; header: trust "
                             "`trusted_header` set by an authenticating proxy (OIDC)")
    token: SecretStr | None = Field(None, description="token mode: the login token (default: random per start)")
    token_user: str = Field(default_factory=_os_user, description="token mode: the editor name decisions carry")
    users: dict[str, SecretStr] = Field(default_factory=dict, description="basic mode: user name -> password")
    trusted_header: str = Field("X-Forwarded-User", description="header mode: the header holding the user name; "
                                "only read when auth=header")
    trusted_proxies: list[str] = Field(default_factory=list, description="header mode: the addresses or CIDRs "
                                       "(e.g. 10.0.0.5, 10.0.0.0/24) of the proxy whose `trusted_header` is "
                                       "believed; a request from any other address is 401. Empty = any address, "
                                       "which the app allows only when it listens on loopback")
    allowed_hosts: list[str] = Field(default_factory=list, description="header mode: more host names (or host:port) "
                                     "the app answers to besides the bound address, this machine's loopback names "
                                     "and public_url's host; a request naming any other host (DNS rebinding) is "
                                     "refused with 421")
    session_secret: SecretStr | None = Field(None, description="signs session cookies and CSRF tokens, with a key "
                                             "per desk (its tenants, port and public_url: a desk refuses another "
                                             "desk's cookie even with one secret); default: random per start, so "
                                             "a restart logs everyone out")
    session_max_age_s: int = Field(12 * 3600, ge=60, description="session cookie lifetime")
    cookie_secure: bool = Field(False, description="mark the session cookie Secure (set when served over https)")
    page_size: int = Field(25, ge=1, le=500, description="queue rows per page")
    scan_limit: int = Field(5000, ge=1, description="most documents read for the confidence filter (not indexed: "
                                                    "filtered in the app) and for bulk approve")
    ttp_sample: int = Field(10000, ge=1, description="most approved assets read for time-to-publish")
    publish_timeout_s: float = Field(15.0, gt=0, description="wait this long for the broker to acknowledge a "
                                     "decision")
    apply_wait_s: float = Field(2.0, ge=0, description="after Save field decisions (and after Approve "
                                "selected / all), wait up to this long for the review group to apply the decision "
                                "before showing the asset (the queue) again, so the page shows what was saved and "
                                "no longer lists what was approved (0 = show it at once)")
    unapplied_hold_s: float = Field(30.0, ge=0, description="how long a decision this desk sent and the review "
                                    "group has not applied holds back other editors' decisions on the same field "
                                    "(any, for a verdict), saying who sent it and when; after it they are sent, and "
                                    "the review group refuses whichever of two decisions on one view comes second "
                                    "(code review 18 F7: 10 minutes of 'reload in a moment' with no review worker "
                                    "running)")
    refusals_lookback_s: float = Field(86400.0, ge=0, description="how far back in the dead-letter topic a desk "
                                       "reads the review group's refusals of decisions when it starts, to show each "
                                       "editor the ones of their decisions")
    similar_slots: int = Field(2, ge=1, description="POST /v1/similar: most uploaded query images decoded and "
                               "embedded at once (each can take ~230 MB while decoding); one that gets no slot "
                               "within similar_wait_s is answered 503 with Retry-After")
    similar_wait_s: float = Field(1.0, ge=0, description="POST /v1/similar: how long an upload waits for a free "
                                  "slot (similar_slots) before it is answered 503")
    similar_max_pixels: int = Field(25_000_000, ge=10_000, description="POST /v1/similar: most pixels an uploaded "
                                    "query image may have (read from its header; a larger one is refused with 413 "
                                    "before any pixel is decoded). Query images are compared at 224 px")
    tenants: list[str] = Field(default_factory=list, description="serve only these tenants' assets: the queue, "
                               "asset pages, thumbnails, decisions, the figures and the search API (/v1) see no "
                               "other tenant's; empty = every tenant. `assetstream review --tenant T` (repeatable)")

    @field_validator("trusted_proxies", "allowed_hosts", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [] if value is None else [value] if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        for proxy in value:
            try:
                ipaddress.ip_network(proxy.strip(), strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {proxy!r} is not an IP address or CIDR (e.g. 10.0.0.5 or "
                                 "10.0.0.0/24)") from None
        return [p.strip() for p in value]

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for host in value:
            if split_host(host) is None:
                raise ValueError(f"allowed host {host!r} is not a host name or host:port (e.g. desk.example.com)")
        return [h.strip() for h in value]

    @field_validator("tenants", mode="before")
    @classmethod
    def _none_is_every_tenant(cls, value: object) -> object:
        return [] if value is None else value

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, value: list[str]) -> list[str]:
        for tenant in value:
            problem = identifier_problem(tenant, MAX_TENANT, scoped=True)
            if problem is not None:
                raise ValueError(f"tenant {problem}")
        return list(dict.fromkeys(value))
