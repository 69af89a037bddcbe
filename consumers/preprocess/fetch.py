"""Fetch asset bytes from a source URI: file://, http(s)://, s3://.

SSRF policy (http/https): the host is resolved once, every resolved address is checked, and the connection is
made to the checked address (URL rewritten to the IP, Host header and TLS SNI/certificate check set to the
original host name), so DNS rebinding cannot swap the target between check and connect. Redirects are followed
by hand, each hop re-checked the same way, at most `max_redirects`. Loopback, private, link-local, CGNAT,
multicast, reserved, unspecified and site-local addresses (and IPv6 forms that wrap such an IPv4 address:
IPv4-mapped/-compatible, SIIT, NAT64, 6to4, Teredo) are refused unless `allow_private_networks` is set or the
host/address is in `allow_hosts` (host names or CIDRs). Cloud metadata addresses are refused even with
`allow_private_networks`; only an explicit `allow_hosts` entry admits them.

Bytes are streamed and the download stops at `max_bytes`. One fetch attempt (connect, TLS, headers, body, every
redirect hop) has one wall-clock deadline, `fetch_timeout_s`, enforced on every socket operation, so an origin
that trickles its headers or body a byte at a time cannot hold it open longer; and once `fetch_rate_grace_s`
have passed on a connection, it must have delivered at least `fetch_min_rate_bytes_s` per second on average
(else `too_slow`).

A record's first attempt is held to less (`first_attempt_timeout_s`, `fetch(..., first_attempt=True)`): a slow
origin should not hold a worker thread for the whole `fetch_timeout_s` while fresh records queue behind it (head-
of-line blocking, issue 16.16). Past that point the attempt goes on only while the source has declared its length
and its average rate so far would finish the body within `fetch_timeout_s`, so a large image on a slow but steady
link still arrives in one attempt; anything else (no headers yet, no Content-Length, a trickle) fails as a transient
`too_slow` and is worked again from the retry topic with the full `fetch_timeout_s`.
"""
from __future__ import annotations

import functools
import ipaddress
import os
import socket
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import httpcore
import httpx

from domain.sources import file_path, redact
from streams import s3
from streams.errors import PermanentError, TransientError

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS / GCP / Azure / OpenStack
    "169.254.170.2",    # ECS task metadata
    "100.100.100.200",  # Alibaba
    "fd00:ec2::254",    # AWS IPv6
))
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "assetstream-preprocess/1 (+image fetch)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class Fetched:
    data: bytes
    final_uri: str
    """Where the bytes came from after redirects (credentials and query removed)."""
    declared_type: str | None = None
    """Content-Type the server claimed; informational only (the decoder sniffs)."""


@dataclass(frozen=True)
class FetchPolicy:
    file_roots: tuple[str, ...] = ()
    allow_private_networks: bool = False
    allow_hosts: tuple[str, ...] = ()
    max_bytes: int = 50 * 1024 * 1024
    timeout_s: float = 20.0
    first_attempt_timeout_s: float = 0.0  # 0: first attempts get timeout_s too
    max_redirects: int = 3
    min_rate_bytes_s: int = 1024
    rate_grace_s: float = 5.0
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    ca_bundle: str | None = None

    @classmethod
    def from_settings(cls, s) -> "FetchPolicy":
        return cls(file_roots=tuple(s.file_roots), allow_private_networks=s.allow_private_networks,
                   allow_hosts=tuple(s.allow_hosts), max_bytes=s.max_bytes, timeout_s=s.fetch_timeout_s,
                   first_attempt_timeout_s=s.first_attempt_timeout_s,
                   max_redirects=s.max_redirects, min_rate_bytes_s=s.fetch_min_rate_bytes_s,
                   rate_grace_s=s.fetch_rate_grace_s, s3_endpoint_url=s.s3_endpoint_url, s3_region=s.s3_region,
                   ca_bundle=s.ca_bundle)


def fetch(uri: str, policy: FetchPolicy, *, first_attempt: bool = False) -> Fetched:
    """The source's bytes. `first_attempt`: the record's first of several attempts, so an http(s) fetch is held to
    `policy.first_attempt_timeout_s` unless it is on course to finish within `timeout_s` (see the module doc)."""
    if not isinstance(uri, str) or not uri.strip():
        raise PermanentError("the event has no source_uri", reason="missing_source_uri")
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "file":
        return fetch_file(uri, policy)
    if scheme in ("http", "https"):
        return fetch_http(uri, policy, first_attempt=first_attempt)
    if scheme == "s3":
        return fetch_s3(uri, policy)
    raise PermanentError(f"unsupported URI scheme {scheme or '(none)'!r}; use file://, http(s):// or s3://",
                         reason="unsupported_scheme", details={"uri": redact(uri)})


# --- file:// ----------------------------------------------------------------------------------------------

def fetch_file(uri: str, policy: FetchPolicy) -> Fetched:
    p = urllib.parse.urlsplit(uri)
    if p.netloc not in ("", "localhost"):
        raise PermanentError("file:// URIs must not name a host", reason="forbidden_url",
                             details={"uri": redact(uri)})
    raw_path = file_path(uri)  # the name's bytes as the producer's Path.as_uri() encoded them (any encoding)
    if "\x00" in raw_path or not raw_path.startswith("/"):
        raise PermanentError("file:// URI needs an absolute path", reason="forbidden_url",
                             details={"uri": redact(uri)})
    if not policy.file_roots:
        raise PermanentError("file:// URIs are disabled (no preprocess.file_roots configured)",
                             reason="forbidden_url", details={"uri": redact(uri)})
    # resolve symlinks and '..' BEFORE the check, then open exactly the resolved path
    path = Path(os.path.realpath(raw_path))
    roots = [Path(os.path.realpath(r)) for r in policy.file_roots]
    if not any(path == r or path.is_relative_to(r) for r in roots):
        # the roots are the operator's own configuration (not a secret): naming them says what to change
        named = ", ".join(policy.file_roots)
        raise PermanentError(f"file is outside the configured file_roots ({named}): preprocess reads only files "
                             "under them; add the folder to preprocess.file_roots (an `assetstream run` session "
                             "admits only the folders given to `run`: run it with this folder too)",
                             reason="forbidden_url", details={"uri": redact(uri), "file_roots": named})
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise PermanentError("file not found", reason="not_found", details={"uri": redact(uri)}) from None
    except IsADirectoryError:
        raise PermanentError("path is a directory", reason="not_found", details={"uri": redact(uri)}) from None
    except PermissionError:
        raise PermanentError("file is not readable", reason="access_denied",
                             details={"uri": redact(uri)}) from None
    except OSError as exc:
        raise TransientError(f"cannot open file: {exc.strerror}", reason="io_error",
                             details={"uri": redact(uri)}) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        import stat as _stat
        if not _stat.S_ISREG(st.st_mode):
            raise PermanentError("not a regular file", reason="not_found", details={"uri": redact(uri)})
        if st.st_size > policy.max_bytes:
            raise PermanentError(f"file is {st.st_size} bytes, over max_bytes={policy.max_bytes}",
                                 reason="too_large", details={"uri": redact(uri)})
        data = fh.read(policy.max_bytes + 1)
    if len(data) > policy.max_bytes:
        raise PermanentError(f"file is over max_bytes={policy.max_bytes}", reason="too_large",
                             details={"uri": redact(uri)})
    _check_nonempty(data, uri)
    return Fetched(data=data, final_uri=redact(uri))


def _check_nonempty(data: bytes, uri: str) -> None:
    if not data:
        raise PermanentError("the source is empty (0 bytes)", reason="empty_content", details={"uri": redact(uri)})


# --- address policy ---------------------------------------------------------------------------------------

def _as_ip(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _allow_list_match(host: str, ip: IPAddress, allow_hosts: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allow_hosts:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        if "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif _as_ip(entry) is not None:
            if _as_ip(entry) == ip:
                return True
        elif entry == host:
            return True
    return False


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def _rfc6052_candidates(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an address in the local-use NAT64 prefix 64:ff9b:1::/48 may carry: the operator picks
    the translation prefix length (/48, /56, /64 or /96, RFC 6052), so every layout whose suffix is zero counts."""
    n = int(ip)
    bits = lambda hi, lo: (n >> (128 - lo)) & ((1 << (lo - hi)) - 1)  # noqa: E731  (bits hi..lo-1, MSB = 0)
    out = [bits(96, 128)]
    for v4, suffix_from in (((bits(48, 64) << 16) | bits(72, 88), 88), ((bits(56, 64) << 24) | bits(72, 96), 96),
                            (bits(72, 104), 104)):
        if bits(64, 72) == 0 and bits(suffix_from, 128) == 0:
            out.append(v4)
    # a zero candidate is the empty tail of a longer layout (the /96 one of a /48 address), not a target
    return [ipaddress.IPv4Address(v4) for v4 in dict.fromkeys(v for v in out if v)] or [ipaddress.IPv4Address(0)]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """(kind, the IPv4 addresses) an IPv6 address wraps and reaches through a translator or tunnel, or None."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", [ip.ipv4_mapped]
    if ip in _NAT64:
        return "NAT64", [low32]
    if ip in _NAT64_LOCAL:
        return "local-use NAT64", _rfc6052_candidates(ip)
    if ip in _SIIT:
        return "SIIT (IPv4-translated)", [low32]
    if ip in _V4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are IPv6's own unspecified and loopback
        return "IPv4-compatible", [low32]
    if ip.sixtofour is not None:
        return "6to4", [ip.sixtofour]
    if ip.teredo is not None:
        return "Teredo", list(ip.teredo)  # (server, client)
    return None


def address_refusal(host: str, ip: IPAddress, policy: FetchPolicy) -> str | None:
    """Why connecting to ip (resolved from host) is refused, or None if it is allowed. An IPv6 address that wraps
    an IPv4 one (IPv4-mapped, NAT64, SIIT, IPv4-compatible, 6to4, Teredo) is judged by the IPv4 address it reaches."""
    if _allow_list_match(host, ip, policy.allow_hosts):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL and not policy.allow_private_networks:
            # RFC 8215: a local translator's prefix; it may map the address by a layout (or ignore bits) we cannot
            # know (review 12: 64:ff9b:1:a00:1:0:808:808 read as 8.8.8.8 may reach 10.0.0.1)
            return "local-use NAT64 address (64:ff9b:1::/48: a private translator's prefix)"
        wrapped = _embedded_ipv4(ip)
        if wrapped is not None:
            kind, v4s = wrapped
            for v4 in v4s:
                why = _refusal(v4, policy)
                if why:
                    return f"{why} ({v4} in {kind} form)"
            return None
        if ip in _SITE_LOCAL and not policy.allow_private_networks:
            return "site-local address"
    return _refusal(ip, policy)


def _refusal(ip: IPAddress, policy: FetchPolicy) -> str | None:
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_global:
        return None
    if policy.allow_private_networks and (ip.is_private or ip.is_loopback or ip.is_link_local
                                          or ip in ipaddress.ip_network("100.64.0.0/10")):
        return None
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_private:
        return "private address"
    return "reserved / non-global address"


def resolve_checked(host: str, port: int, policy: FetchPolicy) -> IPAddress:
    """Resolve host once, refuse if ANY resolved address is forbidden, return the address to connect to."""
    literal = _as_ip(host)
    if literal is not None:
        addrs = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_AGAIN,):
                raise TransientError(f"DNS lookup for {host!r} failed temporarily", reason="dns_error") from None
            raise PermanentError(f"host {host!r} does not resolve", reason="unresolvable_host") from None
        except UnicodeError:
            raise PermanentError(f"invalid host name {host!r}", reason="forbidden_url") from None
        addrs = []
        for info in infos:
            ip = _as_ip(info[4][0])
            if ip is not None and ip not in addrs:
                addrs.append(ip)
        if not addrs:
            raise PermanentError(f"host {host!r} does not resolve", reason="unresolvable_host")
    for ip in addrs:
        why = address_refusal(host, ip, policy)
        if why:
            raise PermanentError(f"refusing to fetch from {host!r}: it resolves to a {why} ({ip}); add it to "
                                 "preprocess.allow_hosts to allow it", reason="forbidden_url",
                                 details={"host": host, "address": str(ip), "why": why})
    return sorted(addrs, key=lambda a: a.version)[0]  # IPv4 first: v6 routes are the more often broken


# --- http(s):// -------------------------------------------------------------------------------------------

def _pinned_target(url: str, policy: FetchPolicy) -> tuple[str, dict[str, str], dict, str]:
    """(url to request with the IP in it, headers, httpx extensions, host) after the address check."""
    try:
        p = urllib.parse.urlsplit(url)
        port = p.port
    except ValueError:
        raise PermanentError("malformed URL", reason="forbidden_url", details={"uri": redact(url)}) from None
    scheme = p.scheme.lower()
    if scheme not in ("http", "https"):
        raise PermanentError(f"redirect to a {scheme or 'schemeless'} URL is not followed", reason="forbidden_url",
                             details={"uri": redact(url)})
    host = p.hostname
    if not host:
        raise PermanentError("URL has no host", reason="forbidden_url", details={"uri": redact(url)})
    if p.username or p.password:
        raise PermanentError("URLs with embedded credentials are refused", reason="forbidden_url",
                             details={"uri": redact(url)})
    port = port or (443 if scheme == "https" else 80)
    ip = resolve_checked(host, port, policy)
    ip_host = f"[{ip}]" if ip.version == 6 else str(ip)
    default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
    host_header = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
    target = urllib.parse.urlunsplit((scheme, f"{ip_host}:{port}", p.path or "/", p.query, ""))
    headers = {"Host": host_header, "User-Agent": USER_AGENT, "Accept": "image/*",
               "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": host} if scheme == "https" and _as_ip(host) is None else {}
    return target, headers, extensions, host


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_bundle: str | None):
    """One verifying TLS context per CA bundle per process (building one loads the CA store: ~20 ms)."""
    import ssl

    ctx = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    if not ca_bundle:
        try:
            import certifi

            ctx.load_verify_locations(certifi.where())
        except Exception:  # noqa: BLE001 - the system store alone is fine
            pass
    return ctx


class _Deadline:
    """One fetch attempt's clock: a total deadline over every socket operation of every hop, a minimum average
    transfer rate per connection once its grace period has passed and, on a first attempt, the earlier cut
    (`first_attempt_timeout_s`) that only a download on course to finish in time passes. Raises TransientError."""

    POLL_S = 0.25  # a blocked read wakes this often to check the deadline and the rate

    def __init__(self, policy: FetchPolicy, uri: str, first_attempt: bool = False):
        self.policy, self.uri = policy, uri
        self.started = time.monotonic()
        self.deadline = self.started + policy.timeout_s
        cut = policy.first_attempt_timeout_s if first_attempt else 0.0
        self.first_cut = self.started + cut if 0 < cut < policy.timeout_s else None
        self.received = 0  # bytes the server sent in this attempt (every hop, headers and body)
        self.expected: int | None = None  # body length the final response declared
        self.body_from = 0  # self.received when that response's headers were read
        self.told = False  # whether expect() was called

    def expect(self, length: int | None) -> None:
        """The final response's declared body length (None: not declared), told once its headers are read."""
        self.expected, self.body_from, self.told = length, self.received, True

    def left(self, timeout: float | None = None) -> float:
        """How long the next socket operation may block: its own timeout, capped by the deadline (and, on a first
        attempt with no declared length yet, by the first-attempt cut, so a blocked operation wakes for it)."""
        now = time.monotonic()
        left = self.deadline - now
        if left <= 0:
            raise TransientError(f"fetch took longer than fetch_timeout_s={self.policy.timeout_s:g}s (connect, "
                                 "headers and body together)", reason="timeout", details={"uri": redact(self.uri)})
        if self.first_cut is not None and not self.told and now < self.first_cut:
            left = min(left, self.first_cut - now)
        return left if timeout is None else min(timeout, left)

    def check_on_course(self, now: float) -> None:
        """Past the first-attempt cut: go on only if the declared body would arrive within the deadline at the
        rate its bytes have come so far, averaged over the whole attempt (time spent on connecting, redirects
        and headers counts against it; their bytes do not)."""
        if self.expected is not None:
            body = self.received - self.body_from
            remaining = max(0, self.expected - body)
            rate = body / max(now - self.started, 1e-6)
            if remaining == 0 or (rate > 0 and now + remaining / rate <= self.deadline):
                return
            why = (f"{remaining} of {self.expected} bytes still to come at {rate:.0f} bytes/s would not arrive "
                   f"within fetch_timeout_s={self.policy.timeout_s:g}s")
        elif self.told:
            why = "the response declares no length, so it cannot be told to finish in time"
        else:
            why = "no response headers yet" if self.received else "no response yet"
        raise TransientError(f"first attempt not done within first_attempt_timeout_s="
                             f"{self.policy.first_attempt_timeout_s:g}s ({why}); retried with the full "
                             "fetch_timeout_s", reason="too_slow", details={"uri": redact(self.uri)})

    def past_first_cut(self, slack: float = 0.0) -> bool:
        return self.first_cut is not None and time.monotonic() >= self.first_cut - slack

    def check_rate(self, started: float, received: int) -> None:
        elapsed = time.monotonic() - started
        floor = self.policy.min_rate_bytes_s
        if floor > 0 and elapsed > self.policy.rate_grace_s and received / elapsed < floor:
            raise TransientError(f"the source sends {received / elapsed:.0f} bytes/s, under fetch_min_rate_bytes_s="
                                 f"{floor}", reason="too_slow", details={"uri": redact(self.uri)})


class _GuardedStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake is bounded by the attempt's deadline; reads
    also enforce the minimum transfer rate (counting every byte the server sent: headers and body)."""

    def __init__(self, inner: httpcore.NetworkStream, clock: _Deadline, started: float | None = None):
        self.inner, self.clock = inner, clock
        self.started = time.monotonic() if started is None else started
        self.received = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.clock.past_first_cut():
            # the first-attempt cut applies to waiting on the source, not to this thread being late (a busy
            # worker): bytes that have already arrived are taken; only a read that would wait is judged
            try:
                return self._got(self.inner.read(max_bytes, 0.001))
            except httpcore.ReadTimeout:
                self.clock.check_on_course(time.monotonic())
        began = time.monotonic()
        while True:
            wait = self.clock.left(timeout if timeout is None else timeout - (time.monotonic() - began))
            if wait <= 0:
                raise httpcore.ReadTimeout("timed out")
            try:
                data = self.inner.read(max_bytes, min(wait, _Deadline.POLL_S))
            except httpcore.ReadTimeout:
                if timeout is not None and time.monotonic() - began >= timeout:
                    raise
                self.clock.check_rate(self.started, self.received)
                if self.clock.past_first_cut():
                    self.clock.check_on_course(time.monotonic())
                continue
            return self._got(data)

    def _got(self, data: bytes) -> bytes:
        self.received += len(data)
        self.clock.received += len(data)
        if data:
            self.clock.check_rate(self.started, self.received)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self.clock.left(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self.inner.start_tls(ssl_context, server_hostname, self.clock.left(timeout))
        return _GuardedStream(tls, self.clock, self.started)

    def get_extra_info(self, info: str):
        return self.inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, clock: _Deadline):
        self.clock, self.inner = clock, httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        if self.clock.past_first_cut():  # a redirect hop begun after the cut
            self.clock.check_on_course(time.monotonic())
        stream = self.inner.connect_tcp(host, port, self.clock.left(timeout), local_address, socket_options)
        return _GuardedStream(stream, self.clock)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover - never used
        raise httpcore.ConnectError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.clock.left()))


def _guarded_client(clock: _Deadline, ssl_ctx, timeout: httpx.Timeout) -> httpx.Client:
    """An httpx client whose one connection runs on the deadline-bounded backend."""
    transport = httpx.HTTPTransport(verify=ssl_ctx, trust_env=False)
    # httpx builds its httpcore pool without a way to pass a network backend: give it the same pool on ours
    transport._pool = httpcore.ConnectionPool(ssl_context=ssl_ctx, max_connections=1, http1=True, http2=False,
                                              network_backend=_GuardedBackend(clock))
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


def fetch_http(uri: str, policy: FetchPolicy, first_attempt: bool = False) -> Fetched:
    clock = _Deadline(policy, uri, first_attempt)
    deadline = clock.deadline
    url = uri
    timeout = httpx.Timeout(policy.timeout_s, connect=min(policy.timeout_s, 10.0))
    ssl_ctx = _ssl_context(policy.ca_bundle)
    for _hop in range(policy.max_redirects + 1):
        target, headers, extensions, host = _pinned_target(url, policy)
        # a fresh client per hop: a pooled connection (keyed by IP) must never carry another host's request
        # over a TLS session that was verified for a different name
        try:
            with _guarded_client(clock, ssl_ctx, timeout) as client, \
                    client.stream("GET", target, headers=headers, extensions=extensions) as resp:
                if resp.status_code in REDIRECT_CODES:
                    location = resp.headers.get("location")
                    if not location:
                        raise PermanentError(f"HTTP {resp.status_code} without a Location header",
                                             reason="http_error", details={"uri": redact(url)})
                    url = urllib.parse.urljoin(url, location.strip())
                    if time.monotonic() > deadline:
                        raise TransientError(f"fetch took longer than {policy.timeout_s}s", reason="timeout",
                                             details={"uri": redact(url)})
                    continue
                _check_status(resp.status_code, url, resp.headers.get("retry-after"))
                declared_len = resp.headers.get("content-length")
                if declared_len and declared_len.isdigit() and int(declared_len) > policy.max_bytes:
                    raise PermanentError(f"server declares {declared_len} bytes, over max_bytes="
                                         f"{policy.max_bytes}", reason="too_large", details={"uri": redact(url)})
                clock.expect(int(declared_len) if declared_len and declared_len.isdigit() else None)
                buf = bytearray()
                for chunk in resp.iter_raw(chunk_size=256 * 1024):
                    buf += chunk
                    if len(buf) > policy.max_bytes:
                        raise PermanentError(f"download exceeded max_bytes={policy.max_bytes}",
                                             reason="too_large", details={"uri": redact(url)})
                    if time.monotonic() > deadline:
                        raise TransientError(f"download took longer than {policy.timeout_s}s",
                                             reason="timeout", details={"uri": redact(url)})
                data = bytes(buf)
                _check_nonempty(data, url)
                return Fetched(data=data, final_uri=redact(url), declared_type=resp.headers.get("content-type"))
        except httpx.TimeoutException:
            if clock.past_first_cut(slack=0.01):  # a connect or TLS handshake cut short on a first attempt
                clock.check_on_course(time.monotonic())
            raise TransientError(f"timed out fetching from {host}", reason="timeout",
                                 details={"uri": redact(url)}) from None
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate" in str(exc).lower():
                raise PermanentError(f"TLS certificate of {host} did not verify", reason="tls_error",
                                     details={"uri": redact(url)}) from None
            raise TransientError(f"cannot reach {host}: {type(exc).__name__}", reason="unreachable",
                                 details={"uri": redact(url)}) from None
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach {host}: {type(exc).__name__}", reason="unreachable",
                                 details={"uri": redact(url)}) from None
    raise PermanentError(f"more than max_redirects={policy.max_redirects} redirects", reason="too_many_redirects",
                         details={"uri": redact(uri)})


def _check_status(code: int, url: str, retry_after: str | None) -> None:
    if 200 <= code < 300:
        return
    d = {"uri": redact(url), "status": str(code)}
    if code in (404, 410):
        raise PermanentError(f"HTTP {code}: not found", reason="not_found", details=d)
    if code in (401, 403):
        raise PermanentError(f"HTTP {code}: access denied", reason="access_denied", details=d)
    if code in (408, 425, 429) or code >= 500:
        ra = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
        raise TransientError(f"HTTP {code} from the source", reason="upstream_unavailable", details=d,
                             retry_after_s=ra)
    raise PermanentError(f"HTTP {code} from the source", reason="http_error", details=d)


# --- s3:// ------------------------------------------------------------------------------------------------

_s3_clients = s3.ClientCache()  # one client per (endpoint, region, timeout), shared by every fetch


def fetch_s3(uri: str, policy: FetchPolicy) -> Fetched:
    try:
        loc = s3.parse_uri(uri, require_key=True)
    except ValueError:
        loc = None
    if loc is None:
        raise PermanentError("s3 URI must be s3://bucket/key", reason="forbidden_url", details={"uri": redact(uri)})
    try:
        client = _s3_clients.get(s3.S3Config.for_timeout(policy.s3_endpoint_url, policy.s3_region, policy.timeout_s,
                                                         max_attempts=1))
    except s3.S3Unavailable as exc:
        raise PermanentError(str(exc), reason="s3_unavailable") from None
    try:
        obj = client.get_object(Bucket=loc.bucket, Key=loc.key)
        size = obj.get("ContentLength")
        if size is not None and size > policy.max_bytes:
            obj["Body"].close()
            raise PermanentError(f"object is {size} bytes, over max_bytes={policy.max_bytes}", reason="too_large",
                                 details={"uri": redact(uri)})
        data = obj["Body"].read(policy.max_bytes + 1)
        obj["Body"].close()
    except s3.errors() as exc:
        failure = s3.classify(exc)
        d = {"uri": redact(uri), "code": failure.code}
        if failure.kind == "missing":
            raise PermanentError("s3 object not found", reason="not_found", details=d) from None
        if failure.kind == "denied":
            raise PermanentError("s3 access denied", reason="access_denied", details=d) from None
        if failure.kind == "credentials":
            raise PermanentError("no S3 credentials configured", reason="access_denied",
                                 details={"uri": redact(uri)}) from None
        if failure.answered:
            raise TransientError(f"s3 error {failure.code}", reason="upstream_unavailable", details=d) from None
        raise TransientError(f"cannot reach S3: {failure.code}", reason="unreachable",
                             details={"uri": redact(uri)}) from None
    if len(data) > policy.max_bytes:
        raise PermanentError(f"object is over max_bytes={policy.max_bytes}", reason="too_large",
                             details={"uri": redact(uri)})
    _check_nonempty(data, uri)
    return Fetched(data=data, final_uri=redact(uri))
