"""Who is asking: token login (Jupyter-style) with a signed session cookie, HTTP basic auth, or a trusted header
set by an authenticating proxy; and the CSRF token every state-changing request must carry.

Nothing here logs a token, a password or a cookie.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from app.review.settings import ReviewSettings, split_host

COOKIE = "assetstream_review"
"""The session cookie's name before the desk knows its port (an app served without ReviewServer); a desk serving on
port P names it `assetstream_review_P` (Auth.bind_desk): a browser keeps cookies per host, not per port, so two
desks on one host sharing one name signed each other out (trial 19, finding 2)."""
USER_MAX_LEN = 200
OUTCOME_MAX_AGE_S = 600
"""How long a signed outcome banner ("Sent to feedback: …") shows on a reload of the page it led to."""


def header_exposure_problem(cfg: ReviewSettings, host: str,
                            loopback_hint: str = "--host 127.0.0.1") -> str | None:
    """Why the app must not listen on `host` as configured, or None: header mode believes a user name from any
    client, so off loopback it needs review.trusted_proxies (as `ingest-server --insecure-no-auth` serves loopback
    only). `loopback_only` resolves `host`. `loopback_hint`: how the command asked sets the address (`run` has no
    --host: ASSETSTREAM_REVIEW__HOST=127.0.0.1)."""
    from app.console import loopback_only

    if cfg.auth != "header" or cfg.trusted_proxies or loopback_only(host):
        return None
    return (f"review.auth=header believes the {cfg.trusted_header} header from whoever sends it, and {host} is "
            "reachable from other machines: anyone there could claim any editor. Name the proxy that sets the "
            "header: ASSETSTREAM_REVIEW__TRUSTED_PROXIES='[\"10.0.0.5\"]' (its addresses or CIDRs; other clients "
            f"get 401), or listen on loopback ({loopback_hint}) with the proxy on this machine")


log = logging.getLogger("assetstream.review")

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
"""The names this machine's own browser reaches a loopback desk by (the Host check of header mode)."""


class Hosts:
    """The Host names a desk serves (trial 30 F7: DNS rebinding). In header mode the user name is believed from any
    client the app accepts, so a page in a browser on the desk's machine that rebinds its own name to 127.0.0.1 could
    send the header itself, same-origin; the browser then sends that page's name as `Host`, which this refuses. Served:
    the bound address and this machine's loopback names on the bound port, this machine's host name when bound to
    every interface, review.public_url's host, and review.allowed_hosts (a name alone: any port)."""

    def __init__(self, cfg: ReviewSettings, host: str | None = None, port: int | None = None):
        import socket

        names = {*LOCAL_NAMES, *([host] if host and host not in ("0.0.0.0", "::", "") else [socket.gethostname()])}
        self.allowed: set[tuple[str, int | None]] = {(n.lower().strip("[]"), port) for n in names}
        if cfg.public_url:
            from urllib.parse import urlsplit

            url = urlsplit(cfg.public_url)
            if url.hostname:
                self.allowed.add((url.hostname.lower(), url.port or (443 if url.scheme == "https" else 80)))
        for entry in cfg.allowed_hosts:
            parsed = split_host(entry)
            if parsed:
                self.allowed.add(parsed)

    def serves(self, host_header: str | None) -> bool:
        parsed = split_host(host_header or "")
        if parsed is None:
            return False
        name, port = parsed
        # no port: the scheme's default, which the desk cannot tell behind a proxy ending TLS (80 or 443)
        return any(name == n and (p is None or port == p or (port is None and p in (80, 443))) for n, p in self.allowed)

#: a signed outcome, `ok=<issued>.<hmac>`: ASCII digits and a hex SHA-256, nothing else is parsed
_OUTCOME = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")


def _canon(items: list[tuple[str, str]]) -> bytes:
    return json.dumps([[str(k), str(v)] for k, v in items], separators=(",", ":")).encode()


@dataclass(frozen=True)
class Principal:
    user: str
    session: str  # the session id (token mode) or "" (basic / header: every request authenticates itself)


class Auth:
    def __init__(self, cfg: ReviewSettings, token: str | None = None):
        self.cfg = cfg
        self.mode = cfg.auth
        self._refused_peers: set[str] = set()  # header mode: untrusted addresses already logged
        if self.mode == "basic" and not cfg.users:
            raise ValueError("review.auth=basic needs review.users (user name -> password)")
        self.token = token or (cfg.token.get_secret_value() if cfg.token else secrets.token_urlsafe(24))
        self._root = (cfg.session_secret.get_secret_value().encode() if cfg.session_secret
                      else secrets.token_bytes(32))
        self.bind_desk(None)
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in cfg.trusted_proxies]
        self._ended: dict[str, int] = {}  # session id -> its expiry: signed out, refused until it would expire

    # --- signing -------------------------------------------------------------------------------------------
    def bind_desk(self, port: int | None) -> None:
        """Sign for this desk alone: the key every signature uses (session cookie, CSRF token, outcome banner) is
        derived from review.session_secret AND the desk's identity: the tenants it serves, the port it listens on
        and its public_url. Two desks sharing a secret (one config file) then refuse each other's cookies and
        tokens as forged (trial 19, finding 1), while one desk restarted with the same secret, scope and port
        (or a replica of it) keeps its sessions. The session cookie is named after the port (see COOKIE)."""
        desk = json.dumps({"tenants": sorted(self.cfg.tenants), "port": port, "public_url": self.cfg.public_url},
                          separators=(",", ":"), sort_keys=True)
        self.secret = hmac.new(self._root, b"assetstream review desk\n" + desk.encode(), hashlib.sha256).digest()
        self.cookie = COOKIE if port is None else f"{COOKIE}_{port}"

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()

    def session_cookie(self, user: str) -> str:
        body = json.dumps({"u": user, "s": secrets.token_hex(16), "e": int(time.time()) + self.cfg.session_max_age_s},
                          separators=(",", ":")).encode()
        data = base64.urlsafe_b64encode(body).decode()
        return f"{data}.{self._sign(data.encode())}"

    def _cookie_body(self, value: str | None) -> dict[str, Any] | None:
        """The body of a session cookie this desk signed (expired or not), else None."""
        if not value or "." not in value:
            return None
        data, _, sig = value.rpartition(".")
        if not hmac.compare_digest(sig, self._sign(data.encode())):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(data.encode()))
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _from_cookie(self, value: str | None) -> Principal | None:
        body = self._cookie_body(value)
        if body is None or int(body.get("e", 0)) < time.time() or str(body.get("s")) in self._ended:
            return None
        return Principal(str(body["u"]), str(body["s"]))

    def refused_session(self, request: Request) -> str | None:
        """Why a request that failed authentication was refused, as far as its session cookie tells: None (token
        mode with no cookie, or another mode), "expired" (this desk signed it, its time is up), or "ended"
        (signed out, or not signed by this desk: another desk's, or from before a secret change)."""
        value = request.cookies.get(self.cookie) if self.mode == "token" else None
        if not value:
            return None
        body = self._cookie_body(value)
        if body is not None and str(body.get("s")) not in self._ended and int(body.get("e", 0)) < time.time():
            return "expired"
        return "ended"

    def end_session(self, who: Principal) -> None:
        """Sign out: the session's cookie is refused from now on, also a copy of it that was kept elsewhere (a
        cookie is valid on its own until it expires). Kept in this process: replicas of one desk sharing a secret
        keep their own lists."""
        if not who.session:  # basic / header / bearer: every request authenticates itself
            return
        now = time.time()
        for sid in [s for s, e in self._ended.items() if e < now]:  # expired anyway: forget them
            del self._ended[sid]
        self._ended[who.session] = int(now) + self.cfg.session_max_age_s

    def csrf_token(self, who: Principal) -> str:
        return self._sign(f"csrf\n{who.user}\n{who.session}".encode())

    def csrf_ok(self, who: Principal, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented), self.csrf_token(who))

    # --- outcome banners ------------------------------------------------------------------------------------
    def _outcome_mac(self, who: Principal, kind: str, text: str, issued: int) -> str:
        return self._sign(f"outcome\n{who.user}\n{who.session}\n{kind}\n{issued}\n{text}".encode())

    def sign_outcome(self, who: Principal, kind: str, text: str) -> dict[str, str]:
        """The query parameters that carry a decision's outcome ("sent" / "error" and its text) to the page shown
        next: the text and a signature for this principal (`ok=<issued>.<hmac>`), so a link made elsewhere cannot
        show a banner (trial 16, finding 7)."""
        issued = int(time.time())
        return {kind: text, "ok": f"{issued}.{self._outcome_mac(who, kind, text, issued)}"}

    def confirmation(self, who: Principal, digest: str) -> str:
        """A rights confirmation (`rights_confirmed`): the digest of the assets asked about, signed for this principal
        and session, so only the page this app drew for the person confirms (trial 30 F9)."""
        return self._sign(f"rights\n{who.user}\n{who.session}\n{digest}".encode())

    def confirmation_ok(self, who: Principal, presented: Any, digest: str) -> bool:
        return isinstance(presented, str) and hmac.compare_digest(presented, self.confirmation(who, digest))

    def sign_query(self, who: Principal, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """A page's query (the rights confirmation's: the bulk approval's form less its CSRF token) with its issue
        time (`at`) and a signature for this principal's session (`sig`): the GET page the POST redirects to (so Back
        works, trial 25 M2) shows only what this app asked for this person, never a link made elsewhere, and only for
        review.session_max_age_s (trial 30 F9: in session-less modes it was valid until the secret changed). It
        approves nothing itself."""
        items = [*items, ("at", str(int(time.time())))]
        return [*items, ("sig", self._sign(b"query\n" + f"{who.user}\n{who.session}\n".encode() + _canon(items)))]

    def form_token(self, who: Principal, items: list[tuple[str, str]], choice: str) -> str:
        """The nonce (`once`, app/review/once.py) of a choice's form on a signed page (the rights check's "Approve
        only the others"): derived from the page's query and the choice for this session, so every redraw of the
        page (Back) carries the same one and a repeat gets the first answer (code review 15b M2)."""
        return self._sign(b"once\n" + f"{who.user}\n{who.session}\n{choice}\n".encode() + _canon(items))[:32]

    def query_ok(self, who: Principal, items: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
        """The items of a query signed by sign_query for this principal within review.session_max_age_s (less `at`
        and `sig`), else None."""
        sig = [v for k, v in items if k == "sig"]
        rest = [(k, v) for k, v in items if k != "sig"]
        ok = len(sig) == 1 and hmac.compare_digest(
            str(sig[0]), self._sign(b"query\n" + f"{who.user}\n{who.session}\n".encode() + _canon(rest)))
        at = rest[-1][1] if rest and rest[-1][0] == "at" else ""
        if not ok or not re.fullmatch(r"[0-9]{1,12}", at) or \
                not -60 <= time.time() - int(at) <= self.cfg.session_max_age_s:  # a minute of clock skew (replicas)
            return None
        return rest[:-1]

    def outcome(self, who: Principal, params: Any) -> dict[str, str | None]:
        """{"sent": …, "error": …} from a request's query parameters: the one signed for this principal by
        sign_outcome within OUTCOME_MAX_AGE_S, else nothing (a forged, unsigned, another user's or stale banner is
        not shown)."""
        m = _OUTCOME.fullmatch(str(params.get("ok") or ""))  # crafted values (non-ASCII digits, huge numbers) too
        issued, mac = (m.group(1), m.group(2)) if m else ("", "")
        if issued and 0 <= time.time() - int(issued) <= OUTCOME_MAX_AGE_S:
            for kind in ("sent", "error", "note"):
                text = params.get(kind)
                if text is not None and hmac.compare_digest(mac, self._outcome_mac(who, kind, text, int(issued))):
                    return {"sent": None, "error": None, "note": None, kind: text}
        return {"sent": None, "error": None, "note": None}

    def from_trusted_proxy(self, request: Request) -> bool:
        """Whether the request's peer address (the socket's: no forwarding header is read) is a trusted proxy."""
        try:
            peer = ipaddress.ip_address((request.client.host if request.client else "").split("%")[0])
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
            peer = peer.ipv4_mapped
        return any(peer in net for net in self.proxies)

    # --- authentication -------------------------------------------------------------------------------------
    def token_ok(self, presented: str | None) -> bool:
        return self.mode == "token" and bool(presented) and hmac.compare_digest(str(presented), self.token)

    def authenticate(self, request: Request) -> Principal | None:
        """The principal of a request, or None (401). Header mode reads only the configured header; basic mode
        only the Authorization header; token mode the session cookie or `Authorization: Bearer <token>`."""
        if self.mode == "header":
            if self.proxies and not self.from_trusted_proxy(request):
                peer = request.client.host if request.client else "?"
                if peer not in self._refused_peers and len(self._refused_peers) < 100:  # once per address
                    self._refused_peers.add(peer)
                    log.warning("review: header auth refused a request from %s: not in review.trusted_proxies "
                                "(requests from it get 401; is the proxy's address listed?)", peer)
                return None
            user = (request.headers.get(self.cfg.trusted_header) or "").strip()
            return Principal(user[:USER_MAX_LEN], "") if user else None
        auth = request.headers.get("authorization") or ""
        scheme, _, cred = auth.partition(" ")
        if self.mode == "basic":
            if scheme.lower() != "basic":
                return None
            try:
                name, _, password = base64.b64decode(cred.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            expected = self.cfg.users.get(name)
            ok = hmac.compare_digest(password.encode(), (expected.get_secret_value() if expected else
                                                         secrets.token_hex(16)).encode())
            return Principal(name, "") if expected is not None and ok else None
        if scheme.lower() == "bearer" and self.token_ok(cred.strip()):
            return Principal(self.cfg.token_user, "")
        return self._from_cookie(request.cookies.get(self.cookie))
