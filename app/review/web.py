"""The review web app: a Starlette application, server-rendered Jinja2 templates (autoescaped: record text is
untrusted), a little vanilla JavaScript, plain CSS. Reads the index's read alias (only the tenants of
review.tenants when it is set: queries.Scope), publishes EditorDecisions to `feedback`; never writes the store.

    app = ReviewApp(settings)          # .asgi is the ASGI app; .login_url(base) the URL with the login token
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from elastic_transport import TransportError
from elasticsearch import ApiError, NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from app.kpis.feedback import alt_text_length, alt_text_missing
from app.review import decisions as dec
from app.review import rights
from app.review.auth import Auth, Hosts, Principal
from app.review.inflight import InFlight
from app.review.refusals import Refusals
from app.review.once import Once, StillSending, fingerprint, nonce, token
from domain.events import scoped_id
from domain.review import parse_tags_value
from domain.records import content_sha256
from domain.sources import source_label
from streams.records import to_ms
from domain.store.api import unknown_tag, without_default_scope
from domain.vision.frames import frames_phrase
from app.review.search_api import search_routes
from app.review.queries import (REASON_GROUPS, STATUSES, Filters, Index, carried_over, human_duration,
                                selection_digest, split_reasons)

RIGHTS_CHECK_SHOWN = 100  # assets a bulk approval's rights confirmation lists by name (the count covers them all)
OTHERS_NAMED = 10  # up to this many, "Approve only the others" and a bulk approval's outcome name the assets

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # the login token never leaves in a Referer (no-referrer would make
    # Chromium send `Origin: null` on our own form posts)
    "X-Frame-Options": "DENY",
}
Handler = Callable[[Request, Principal], Awaitable[Response]]
# an alt text that is only a file name or a camera's file name (IMG_1234.JPG, DSC_0042, sunset.png): JavaScript
# syntax, case-insensitive; the asset page hints it live (validate may name its own: client_rules wins)
_SENT_NOTE = re.compile(r" \((?:warning: |\d+ still being applied).*$", re.S)
# a decision sent from an asset's page that moved on (to the next asset, or the queue): "<id> (<title>): approved"
_ABOUT = re.compile(r"(?P<id>\S+)(?: \((?P<title>.*)\))?: (?P<what>[^:]+)", re.S)


class ReviewApp:
    def __init__(self, settings: Any, *, client: Any = None, token: str | None = None, producer: Any = None):
        from domain.store.client import make_client
        from domain.taxonomy import taxonomy_from_settings
        from consumers.validate.alttext import client_rules

        self.settings = settings
        self.cfg = settings.review
        self.auth = Auth(self.cfg, token)
        self.hosts = Hosts(self.cfg)  # serve_at() names the bound address and port
        self.es = client or make_client(settings)
        self.index = Index(self.es, settings)
        self.taxonomy = taxonomy_from_settings(settings)
        self.vocab = dec.vocabulary(self.taxonomy)
        rules = client_rules(settings.validate_.alt_text_max_chars)
        self.alt_rules = {"filename_pattern": rules["file_name_pattern"], **rules,
                          "hard_max_chars": settings.validate_.alt_text_hard_max_chars, "messages": {
            "filename": "\"{text}\" is a file name: say what the image shows (screen readers would read the name "
                        "out)",
            **rules["messages"],  # type: ignore[dict-item]
            "too_long_hard": "{n} characters (> {max}): no model or file alt text is published longer. Shorten "
                             "it (it is never cut for you), or tick \"send as written\" to publish it as written",
            # no alt text: what each way of leaving it empty publishes (domain/review.py apply_review)
            "cleared": "no alt text: the image will be published as decorative (screen readers skip it). Leave it "
                       "empty only if the image is decorative; otherwise write one",
            "empty": "no alt text for a non-decorative image: it stays in review until you write one, or choose "
                     "\"decorative\" if the image is decorative",
            "rejected": "rejecting leaves no alt text, and the image is not decorative: it stays in review until "
                        "you write one, or choose \"decorative\" if the image is decorative",
            "decorative": "decorative: published with no alt text (screen readers skip it). Only for an image "
                          "that adds nothing to the page",
            # a video is never decorative (trial 36 N3): an empty alt text for one is refused when sent
            "video_empty": "no alt text: a video is never decorative, so it cannot be sent empty (screen readers "
                           "would skip it, WCAG 1.1.1). Say what the video shows",
            "video_rejected": "rejecting leaves no alt text: the video stays in review until you write one",
            # already decorative (the model judged it, or a person): not an alt text missing (trial 20b, N4)
            "already_decorative": "decorative ({by}): published with no alt text (screen readers skip it). Choose "
                                  "\"decorative\" to confirm, or write an alt text if the image is not decorative",
            "force_over": "it is over {max} characters", "force_file_name": "it is a file name"}}
        self._producer = producer
        self._producer_lock = threading.Lock()
        self.once = Once()  # what each drawn form sent: a repeat of it sends nothing (trial 28 M1)
        # decisions sent and not applied yet, a lock per asset (trial 34 F1), held back at most unapplied_hold_s
        self.inflight = InFlight(self.cfg.unapplied_hold_s)
        self.refusals = Refusals(settings)  # the review group's refusals, from the dead-letter topic (started on use)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                 undefined=jinja2.ChainableUndefined)
        env.filters["when"] = lambda v: (str(v or "")[:16].replace("T", " ") if v else "–")
        env.filters["duration"] = human_duration
        env.filters["q"] = lambda v: quote(str(v), safe="")
        env.filters["counted"] = counted  # "1 asset", "5 assets"
        env.filters["short"] = short_title  # a title where it is read whole: <title>, an image's alt, a message
        env.filters["docid"] = lambda d: scoped_id(d.get("asset_id"), d.get("tenant"))  # the document's id
        env.filters["frames"] = lambda d: frames_phrase(d.get("format"), d.get("frames"))  # "animated, 12 frames"
        env.globals.update(confidence=self.index.confidence, STATUSES=STATUSES, clock=clock, video_length=video_length,
                           carried_over=carried_over, split_reasons=split_reasons, unmapped_keywords=unmapped_keywords,
                           usage=rights.usage, instructions=rights.instructions,
                           # what a person recognises the asset by: its file (relative to the file root that holds
                           # it) or its URL without credentials or query
                           source_of=lambda d: source_label(d.get("source_uri"), settings.preprocess.file_roots),
                           file_name=file_name,  # the queue's short form of it
                           serving=self.index.scope.tenants)  # the header names the tenants the app serves
        self.templates = Jinja2Templates(env=env)
        self.registry = CollectorRegistry()
        self.g_assets = Gauge("assetstream_review_assets", "Indexed assets per status", ["status"],
                              registry=self.registry)
        self.g_ttp = Gauge("assetstream_review_time_to_publish_seconds", "Upload (event_time) to approval "
                           "(reviewed_at) of approved assets, nearest-rank quantile", ["quantile"],
                           registry=self.registry)
        self.g_ttp_count = Gauge("assetstream_review_time_to_publish_count", "Approved assets timed in the "
                                 "time-to-publish sample (the newest review.ttp_sample approvals less those left "
                                 "out)", registry=self.registry)
        self.g_ttp_left_out = Gauge("assetstream_review_time_to_publish_left_out", "Approved assets in the "
                                    "time-to-publish sample left out of it: approved before their current upload "
                                    "event (a decision re-applied by a re-run on the same --out, or kept through a "
                                    "DAM's later event), so the index does not hold their first upload time",
                                    registry=self.registry)
        self.similar_decoders: ThreadPoolExecutor | None = None  # POST /v1/similar's decode threads (search_api)
        self.c_decisions = Counter("assetstream_review_decisions", "EditorDecisions this app published",
                                   ["verdict"], registry=self.registry)
        routes = [
            Route("/", self._authed(self.queue)),
            Route("/asset/{asset_id:path}", self._authed(self.asset), methods=["GET", "POST"]),
            Route("/thumb/{asset_id:path}", self._authed(self.thumbnail)),
            Route("/decide/{asset_id:path}", self._authed(self.decide), methods=["POST"]),
            Route("/bulk-approve", self._authed(self.bulk_approve), methods=["POST"]),
            Route("/rights-check", self._authed(self.rights_check)),
            Route("/logout", self._authed(self.logout), methods=["POST"]),
            Route("/metrics", self._authed(self.metrics)),
            Route("/login", self.login),
            Route("/healthz", self.healthz),
            *search_routes(self),  # GET /v1/search, /v1/assets/{id}/similar (app/review/search_api.py)
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.asgi = _Served(routes=routes)
        # header mode: a request naming a host this desk does not serve is refused (trial 30 F7: DNS rebinding)
        self.asgi.host_ok = (lambda h: self.hosts.serves(h)) if self.auth.mode == "header" else None

    # --- plumbing ------------------------------------------------------------------------------------------
    def serve_at(self, host: str, port: int) -> None:
        """The address the app is served on (ReviewServer.start, once bound): its signing key and cookie name
        (Auth.bind_desk) and the Host names it answers to in header mode (Hosts)."""
        self.auth.bind_desk(port)
        self.hosts = Hosts(self.cfg, host, port)

    def login_url(self, base: str) -> str:
        """Where an editor starts: with the token in token mode (Jupyter-style), the bare URL otherwise."""
        base = base.rstrip("/")
        return f"{base}/login?{urlencode({'token': self.auth.token})}" if self.auth.mode == "token" else f"{base}/"

    def producer(self):
        from confluent_kafka import Producer

        from streams.clientlog import client_logging

        with self._producer_lock:
            if self._producer is None:
                # a decision not acknowledged in time expires with the request instead of arriving later unseen
                self._producer = Producer({**self.settings.kafka.client_config(), **client_logging("review"),
                                           "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                                           "message.timeout.ms": int(self.cfg.publish_timeout_s * 1000)})
            return self._producer

    def close(self) -> None:
        self.refusals.close()
        if self.similar_decoders is not None:
            self.similar_decoders.shutdown(wait=False)
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None  # its client threads end with it
        self.es.close()

    def publish(self, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from app.kpis.feedback import publish_decisions

        sent = publish_decisions(self.settings, decisions, timeout_s=self.cfg.publish_timeout_s,
                                 producer=self.producer())
        for d in sent:
            self.c_decisions.labels(d["status"] or "fields").inc()
        return sent

    def _authed(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            who = self.auth.authenticate(request)
            if who is None:
                return self._unauthorized(request)
            if request.method == "POST":
                origin = request.headers.get("origin")
                if origin and urlsplit(origin).netloc not in self._own_hosts(request):
                    return self._message(request, None, 403, "Refused", "This request came from another site.")
                form = await request.form(max_fields=FORM_MAX_FIELDS)  # kept on the request: the handler's too
                if not self.auth.csrf_ok(who, request.headers.get("x-csrf-token") or form.get("csrf")):
                    return self._message(request, None, 403, "Refused",
                                         "The form's security token is missing or stale: reload the page and try again.")
            try:
                return await handler(request, who)
            except (ApiError, TransportError) as exc:  # the store: a page that says so, not a bare 500
                return self._store_failed(request, who, exc)

        return endpoint

    def _store_failed(self, request: Request, who: Principal, exc: Exception) -> Response:
        """503 with what an editor can do; the log line names the failure (no stack trace, no document)."""
        log.warning("review app: %s %s: the search store failed: %s", request.method, request.url.path,
                    type(exc).__name__)
        if isinstance(exc, NotFoundError) and "index_not_found" in str(exc):
            text = ("The search index does not exist yet: it is created when the index sink starts "
                    "(`assetstream worker index`) or by `assetstream index create`. Reload this page then.")
        else:
            text = ("The search index cannot be reached right now, so nothing can be shown or decided. Reload "
                    "this page in a moment; if it persists, ask an operator to check the store (index.url).")
        return self._message(request, who, 503, "Search index unavailable", text)

    def _own_hosts(self, request: Request) -> set[str]:
        hosts = {request.headers.get("host") or ""}
        if self.cfg.public_url:
            hosts.add(urlsplit(self.cfg.public_url).netloc)
        return hosts

    def _unauthorized(self, request: Request) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="assetstream review", charset="UTF-8"'} \
            if self.auth.mode == "basic" else {}
        text = {"token": "Open the login URL printed by `assetstream review` (or `assetstream run --serve`).",
                "basic": "Sign in with your user name and password.",
                "header": "Sign in through the proxy in front of this app."}[self.auth.mode]
        # a cookie this desk did not sign (another desk's on this host, a signed-out one) is not an expiry
        why = {None: "you are not signed in (your session may have expired)",
               "expired": "you are not signed in (your session expired)",
               "ended": "your session ended or belongs to another desk: sign in again"}[self.auth.refused_session(request)]
        if request.method == "POST":  # e.g. a decision made after the session expired: it must not look sent
            text = f"Nothing was sent: {why}. {text} Then open the asset again and repeat your decision."
        elif why.startswith("your session ended"):
            text = f"Your session ended or belongs to another desk: sign in again. {text}"
        return self._message(request, None, 401, "Sign in", text, headers=headers)

    def _message(self, request: Request, who: Principal | None, status: int, title: str, text: str,
                 headers: dict[str, str] | None = None) -> Response:
        return self.templates.TemplateResponse(request, "message.html", {
            "who": who, "title": title, "text": text, "header": None, "csrf": ""}, status_code=status,
            headers=headers)

    def _page(self, request: Request, who: Principal, name: str, context: dict[str, Any]) -> Response:
        title, about_other = outcome_title(context.get("sent"), context.get("error"))
        title = title or str(context.get("note") or "")[:80]  # "Cancelled: nothing approved" (a rights check's)
        return self.templates.TemplateResponse(request, name, {
            "who": who, "csrf": self.auth.csrf_token(who), "outcome_title": title,
            "once": nonce(),  # this page's forms: each sent at most once (trial 28 M1)
            # the outcome is about the asset decided before this one: the title says this one is the next
            "outcome_next": about_other and "doc" in context, **context})

    def _once(self, who: Principal, where: str, form: Any,
              act: Callable[[], dict[str, str] | None]) -> dict[str, str] | None:
        """act()'s answer, once per drawn form (its `once`), where it was posted (`where`: `_decide_at(id)`, BULK) and
        what the form submits: a repeat gets the first answer before anything is recomputed (code review 15b M1); the
        same nonce and fields posted to another asset is another decision (trial 30 F3). A form with no valid nonce
        (an older page, a script) is acted on each time."""
        drawn = token(form.get("once"))
        return self.once.answer((who.user, who.session, drawn, where, form_key(form)), act) if drawn else act()

    def _rights_token(self, who: Principal, docs: list[dict[str, Any]]) -> str:
        """What a person's "approve anyway" posts (`rights_confirmed`): the digest of the assets asked about, signed
        for this person and session under the desk's key (trial 30 F9: the plain digest let any script skip the
        question by computing it)."""
        return self.auth.confirmation(who, rights_digest(docs))

    def _rights_confirmed(self, who: Principal, form: Any, docs: list[dict[str, Any]]) -> bool:
        return self.auth.confirmation_ok(who, form.get("rights_confirmed"), rights_digest(docs))

    def _header(self) -> dict[str, Any]:
        counts = self.index.status_counts()
        ttp = self.index.time_to_publish()
        return {"counts": counts, "ttp": ttp}

    # --- pages ---------------------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        """Token mode: exchange the login token for a session cookie, then go to the queue (the token leaves
        the address bar)."""
        if not self.auth.token_ok(request.query_params.get("token")):
            return self._unauthorized(request)
        log.info("review: %s signed in with the login token", self.cfg.token_user)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(self.auth.cookie, self.auth.session_cookie(self.cfg.token_user),
                        max_age=self.cfg.session_max_age_s, httponly=True, samesite="strict", secure=self.cfg.cookie_secure, path="/")
        return resp

    async def logout(self, request: Request, who: Principal) -> Response:
        self.auth.end_session(who)
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(self.auth.cookie, path="/")
        return resp

    async def healthz(self, request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def queue(self, request: Request, who: Principal) -> Response:
        f = Filters.from_params(request.query_params, self.taxonomy)
        try:
            page = int(request.query_params.get("page") or 1)
        except ValueError:
            page = 1
        page = max(1, min(page, 10_000 // self.cfg.page_size))  # the store's result window

        def load():
            return {"header": self._header(), "result": self.index.queue(f, page),
                    "reasons": self.index.reason_counts(f), "choices": self.index.choices(),
                    "degraded": self.index.degraded_counts(f)}

        data = await run_in_threadpool(load)
        # a tag outside the vocabulary matches nothing: say so, as the search API and CLI do ("did you mean …?")
        tag_problem = unknown_tag(f.tag, self.taxonomy) if f.tag else None
        shown = self.auth.outcome(who, request.query_params)
        # back from a rights confirmation (its Cancel, signed): the rows ticked before are ticked again (trial 25 m1)
        ticked = set(request.query_params.getlist("ids")) if shown["note"] or shown["error"] else set()
        return self._page(request, who, "queue.html", {**data, "f": f, "reason_groups": list(REASON_GROUPS),
                                                       "scan_limit": self.cfg.scan_limit, "tag_problem": tag_problem,
                                                       "ticked": ticked, **shown})

    async def asset(self, request: Request, who: Principal) -> Response:
        asset_id = request.path_params["asset_id"]
        f = Filters.from_params(request.query_params, self.taxonomy)

        def load():
            doc = self.index.asset(asset_id)
            if doc is None:
                return None
            return {"doc": doc, "header": self._header(), "why": split_reasons(doc.get("reasons")),
                    "fields": dec.field_rows(doc, self.settings.kpis.field_tasks),
                    "chips": dec.tag_chips(doc, self.taxonomy),
                    "prompts": dec.prompts(doc, self.settings),
                    "family": self.index.duplicate_family(doc),
                    "next_id": self.index.neighbour(f, doc, after=True),
                    "prev_id": self.index.neighbour(f, doc, after=False)}

        data = await run_in_threadpool(load)
        if data is None:
            return self._message(request, who, 404, "Not found", f"No asset {asset_id!r} in the index.")
        from_file = file_values(data["doc"])
        for row in data["fields"]:  # a value the person's edit replaced may be the file's, not the model's (trial 20b)
            row["suggestion_from"] = "file" if row["suggestion"] is not None and row["suggestion"] in from_file \
                else "model"
        shown = self.auth.outcome(who, request.query_params)  # only when this app signed it for `who`
        doc = data["doc"]
        form = {"shown_version": doc.get("version"), "shown_decision": ((doc.get("review") or {}).get("decision_ids")
                                                                        or [""])[-1],
                "shown_sha256": content_sha256(doc) or "", "force_alt": False, "mine": request.query_params.get("mine")}
        if request.method == "POST":  # the form as it was left: the rights check's Cancel (its form, CSRF-checked),
            # or a refused decision's (decide() sends it here with a 307): the editor's typing is kept (trial 34 F3)
            draft = _Form([(k, str(v)) for k, v in (await request.form()).multi_items() if k != "csrf"])
            form = kept_edits(data["fields"], draft, form, rebase=bool(shown["error"]))
            tags = next((r.get("tags_value") for r in data["fields"] if r["name"] == "tags"), None)
            if tags is not None:  # the chips show the tags the form sends (code review 17 F4)
                data["chips"] = dec.restored_chips(data["chips"], tags, self.taxonomy)
        return self._page(request, who, "asset.html", {
            **data, "f": f, "vocab": self.vocab, "alt_rules": self.alt_rules, **shown,
            "refused": [refusal_said(r) for r in refused_since(self.refusals.of_asset(asset_id), doc, who.user)],
            "rights_digest": self._rights_token(who, [doc]) if rights.needs_rights_check(doc) else None,
            "error_fields": error_fields(shown["error"], data["fields"]), **form,
            "mine": ",".join(dec.own_decisions(form["mine"]))})

    async def thumbnail(self, request: Request, who: Principal) -> Response:
        # a document id, as a search hit's thumb_url names it (`default::a1` is the default tenant's `a1` too)
        thumb = await run_in_threadpool(self.index.thumbnail, without_default_scope(request.path_params["asset_id"]))
        k = request.query_params.get("k")  # a video's keyframe (its index in video.keyframes)
        if thumb and k is not None:
            frames = thumb.get("keyframes") or []
            i = int(k) if re.fullmatch(r"[0-9]{1,6}", k) else -1  # ASCII digits: `²` is a digit to isdigit()
            thumb = {"data": frames[i], "media_type": "image/jpeg"} if 0 <= i < len(frames) else None
        if not thumb or not thumb.get("data"):
            return Response("no preview", status_code=404, media_type="text/plain")
        try:
            data = base64.b64decode(thumb["data"], validate=True)
        except (binascii.Error, ValueError):
            return Response("bad preview", status_code=404, media_type="text/plain")
        media = thumb.get("media_type") if thumb.get("media_type") in ("image/jpeg", "image/png", "image/webp") \
            else "application/octet-stream"
        # never kept by the browser: a signed-out (or expired) browser asks again and gets 401, not the image
        return Response(data, media_type=media, headers={"Cache-Control": "private, no-store"})

    async def decide(self, request: Request, who: Principal) -> Response:
        asset_id = request.path_params["asset_id"]
        form = await request.form()
        f = Filters.from_params(form, self.taxonomy)

        def signed(kind: str, text: str) -> dict[str, str]:  # the outcome banner of the page shown next
            return self.auth.sign_outcome(who, kind, text)

        def fresh() -> dict[str, str] | None:
            # checked and sent under the asset's lock: a second decision on it from this app is checked after the
            # first was sent, against it while it is not applied yet (trial 34 F1); the wait for the review group
            # to apply it is after the lock (code review 18 F2: other editors' saves waited for it)
            with self.inflight.holding([asset_id]):
                then = checked_and_sent()
            return None if then is None else then()

        def checked_and_sent() -> Callable[[], dict[str, str]] | None:
            doc = self.index.asset(asset_id)
            if doc is None:
                raise dec.DecisionError(f"no asset {asset_id!r} in the index")
            pending = self.inflight.others(asset_id, doc, who.user, self.refusals.refused_ids)
            decision = dec.from_form(doc, form, who.user, self.taxonomy, pending)
            v = self.settings.validate_
            warnings, refusals = alt_text_length(decision, v.alt_text_max_chars, v.alt_text_hard_max_chars)
            warnings += alt_text_missing(decision, doc)
            refusals += alt_text_file_name(decision)
            if refusals and form.get("force_alt") != "1":
                raise dec.DecisionError(f"nothing was sent: {refusals[0].split(': ', 1)[1]}, or tick \"send as "
                                        "written\" and send it again")
            # restricted or unknown rights (editorial only too): an approval asks first, as a bulk one does, unless
            # the page's own confirmation (or the rights-check page's) named this asset
            if decision["status"] == "approved" and rights.needs_rights_check(doc) and \
                    not self._rights_confirmed(who, form, [doc]):
                return None

            sent = self.publish([decision])[0]
            self.inflight.add(asset_id, sent)

            def after_sending() -> dict[str, str]:
                what = sent["status"] or ", ".join(f"{x['field']} {x['action']}" for x in sent["fields"])
                done = {"what": what, "at": time.strftime("%H:%M", time.localtime()), "by": who.user}
                note = "".join(f" (warning: {w.split(': ', 1)[1]})" for w in warnings + refusals)
                if sent["status"] and form.get("advance") == "1":
                    # the page shown next is another asset's (or the queue): the outcome names the asset decided
                    title = short_title(_title_as_sent(doc, decision))
                    about = f"{asset_id} ({title})" if title and title != asset_id else asset_id
                    nxt = self.index.neighbour(f, doc, after=True)
                    if nxt:
                        return {**done, "target": _asset_url(nxt, f, **signed("sent", f"{about}: {what}{note}"))}
                    return {**done, "target": "/?" + urlencode({**f.params(), **signed("sent", f"{about}: {what}{note}")})}
                # the page shown next shows what was saved: wait (briefly) for the review group to apply it, or to
                # refuse it (another editor's decision on the same view came first, through another desk replica)
                self.refusals.start()
                self.index.wait_applied(asset_id, sent["decision_id"], self.cfg.apply_wait_s,
                                        until=lambda: self.refusals.of_decision(sent["decision_id"]) is not None)
                # the page shown next carries this decision as its own: once applied it is no conflict (from_form)
                mine = ",".join(dec.own_decisions(",".join([*dec.own_decisions(form.get("mine")), sent["decision_id"]])))
                refused = self.refusals.of_decision(sent["decision_id"])
                if refused is not None:
                    return {**done, "target": _asset_url(asset_id, f, **signed("error", refusal_said(refused)),
                                                         mine=mine)}
                return {**done, "target": _asset_url(asset_id, f, **signed("sent", what + note), mine=mine)}

            return after_sending

        def act() -> str | None:
            # the same form sent again (Enter twice, a proxy's retry, Back and approve again: trial 28 M1) gets the first
            # one's answer and sends nothing; looked up first: once the first is applied, the form is no longer the
            # same decision (code review 15b M1)
            answer = self._once(who, _decide_at(asset_id), form, fresh)
            return None if answer is None else answer["target"]

        try:
            target = await run_in_threadpool(act)
            if target is None:  # ask first, on the page a bulk approval's rights check is (Back returns to it)
                return await self._ask_rights(request, who, [("decide", asset_id), *_draft(form)])
        except StillSending as exc:  # the first submission carries the form: the page shows its outcome soon
            return RedirectResponse(_asset_url(asset_id, f, **signed("error", str(exc)),
                                               mine=",".join(dec.own_decisions(form.get("mine")))), status_code=303)
        except dec.DecisionError as exc:  # the page's own decisions stay its own
            error = str(exc)
        except Exception as exc:  # the broker did not acknowledge in time: say so, do not pretend
            log.warning("review: decision for %s not acknowledged: %s", asset_id, exc)
            error = f"not sent (the broker did not confirm it: {type(exc).__name__}: {exc}); try again"
        else:
            return RedirectResponse(target, status_code=303)
        # not sent: the asset's page again with the form as the editor left it (307: the browser posts the same
        # form there, CSRF token included; kept_edits), so a refusal never throws their typing away (trial 34 F3)
        return RedirectResponse(_asset_url(asset_id, f, **signed("error", error),
                                           mine=",".join(dec.own_decisions(form.get("mine")))), status_code=307)

    def _bulk_chosen(self, f: Filters, form: Any) -> list[tuple[str, str | None]]:
        """The (asset id, tenant) pairs a bulk approval's form covers; DecisionError when "Approve all" would
        approve other assets than the page confirmed."""
        if form.get("scope") == "all":
            chosen = self.index.matching(f)
            refusal = changed_since_confirmed(f, chosen, form)
            if refusal:  # the queue changed since the page was drawn: approve nothing
                raise dec.DecisionError(refusal)
            return chosen
        return self.index.tenants(list(dict.fromkeys(str(i) for i in form.getlist("ids"))))

    def _decided_meanwhile(self, chosen: list[tuple[str, str | None]], form: Any,
                           who: Principal) -> tuple[list[tuple[str, str | None]], str]:
        """Of a bulk approval's assets, those nobody decided on since the queue showed them (its row's `seen.<id>`:
        the newest decision it showed; an asset without one, e.g. on another page of "all matching", is checked only
        against the decisions other editors sent through this app that are not applied yet), and the others said in words,
        each naming who decided it (`decisions.decided_by`): "gift-0001 (rejected by alice) was decided meanwhile: left
        out" (trial 34 F2: a ticked row another editor rejected meanwhile was approved); the editor's own decision on
        another page is said as theirs, "(approved by erin (you, on another page or tab))" (code review 18 F8)."""
        ids = [scoped_id(i, t) for i, t in chosen]
        reviews = self.index.reviews(ids)
        keep, out = [], []
        for pair, doc_id in zip(chosen, ids):
            rv = reviews.get(doc_id) or {}
            last = (rv.get("decision_ids") or [""])[-1]
            seen = form.get(f"seen.{doc_id}")
            pending = self.inflight.others(doc_id, {"review": rv}, who.user, self.refusals.refused_ids)
            if (seen is not None and str(seen) != last) or pending:
                by = dec.decided_by(rv, who.user) if not pending else \
                    ", ".join(f"{p['status'] or 'fields'} by {p['editor']}, not applied yet" for p in pending)
                out.append(f"{doc_id} ({by})")
            else:
                keep.append(pair)
        said = ""
        if out:
            named = "; ".join(out[:OTHERS_NAMED]) + (f" and {len(out) - OTHERS_NAMED} more" if len(out) > OTHERS_NAMED
                                                     else "")
            said = f"{named} {'was' if len(out) == 1 else 'were'} decided meanwhile: left out"
        return keep, said

    def _rights_ask(self, who: Principal, chosen: list[tuple[str, str | None]]) -> dict[str, Any]:
        """What the rights confirmation shows of a bulk approval: the assets with restricted or unknown rights
        (`check`), their digest (`confirmed`), the count, and the others (ids, and titles when few)."""
        ids = [scoped_id(i, t) for i, t in chosen]
        check = self.index.rights_to_check(ids)
        flagged = {scoped_id(d.get("asset_id"), d.get("tenant")) for d in check}
        others = [i for i in ids if i not in flagged]
        return {"check": check, "total": len(ids), "others": others,
                "confirmed": self._rights_token(who, check),
                # "Approve only the 2 others" says which (trial 25 m5): by title, when few enough to read out
                "others_named": self.index.titles(others) if 0 < len(others) <= OTHERS_NAMED else None}

    async def bulk_approve(self, request: Request, who: Principal) -> Response:
        form = await request.form()
        f = Filters.from_params(form, self.taxonomy)

        def fresh() -> dict[str, str] | None:
            chosen = self._bulk_chosen(f, form)
            with self.inflight.holding(scoped_id(i, t) for i, t in chosen):  # as one asset's decision (trial 34 F1)
                then = checked_and_sent(chosen)
            return then() if callable(then) else then  # the wait for the review group after the locks

        def checked_and_sent(chosen: list[tuple[str, str | None]]) -> Any:
            # a row another editor (or tab) decided since the queue showed it is left out, and said (trial 34 F2)
            chosen, left_out = self._decided_meanwhile(chosen, form, who)
            if not chosen:
                if left_out:
                    raise dec.DecisionError(f"nothing approved: {left_out}")
                return {"what": "0 assets approved"}
            ids = [scoped_id(i, t) for i, t in chosen]
            # restricted or unknown rights among them (trial 23): approve nothing until the person confirms these
            # very assets (the digest of their ids), or chooses to approve only the others
            check = self.index.rights_to_check(ids)
            if check and not self._rights_confirmed(who, form, check):
                return None

            given = self.index.propagated(ids)
            sent = self.publish([dec.approval(i, who.user, t, given.get(scoped_id(i, t)), self.taxonomy,
                                              _seen(form, scoped_id(i, t))) for i, t in chosen])
            for doc, d in zip(ids, sent):
                self.inflight.add(doc, d)

            def after_sending() -> dict[str, str]:
                # the queue shown next is drawn from the index: wait (briefly) for the review group to apply them, so
                # it does not list what was just approved (trial 19), and say so when some are not applied yet
                pending, kept = self.index.wait_decided({doc: d["decision_id"] for doc, d in zip(ids, sent)},
                                                        self.cfg.apply_wait_s) if self.cfg.apply_wait_s else (0, 0)
                # which ones, when few (trial 25 m5: "Approve only the others" named none)
                return {"at": time.strftime("%H:%M", time.localtime()), "by": who.user, "what": f"{counted(len(sent), 'asset')} approved" + (
                    f" ({kept} kept in review by the review group: each asset's page says why)" if kept else "") + (
                    f" ({pending} still being applied: they may show here until it is done; reload in a moment)"
                    if pending else "") + (f" — {', '.join(ids)}" if len(ids) <= OTHERS_NAMED else "") + (
                    f"; not approved: {left_out}" if left_out else "")}

            return after_sending

        def act() -> str | None:
            # the same form approving again (a second click, Back and approve again) sends nothing; looked up first:
            # once the first is applied, "all matching" no longer matches the same assets (code review 15b M1)
            answer = self._once(who, BULK, form, fresh)
            return None if answer is None else answer["what"]

        try:
            done = await run_in_threadpool(act)
            if done is None:  # ask first: restricted or unknown rights, on a page of its own Back returns to
                again = [(k, str(v)) for k, v in form.multi_items() if k not in ("csrf", "rights_confirmed")]
                return await self._ask_rights(request, who, again)
            outcome = ("sent", done)
        except (dec.DecisionError, StillSending) as exc:
            outcome = ("error", str(exc))
        except Exception as exc:  # the broker did not acknowledge in time
            log.warning("review: bulk approval not acknowledged: %s", exc)
            outcome = ("error", f"not all sent (the broker did not confirm them: {type(exc).__name__}: {exc}); "
                                "try again")
        return RedirectResponse("/?" + urlencode({**f.params(), **self.auth.sign_outcome(who, *outcome)}),
                                status_code=303)

    async def rights_check(self, request: Request, who: Principal) -> Response:
        """GET: the page a bulk approval with restricted or unknown-rights assets shows instead of approving (the
        POST redirects here, trial 25 M2: Back from an asset it lists returns to it): how many and which, *Approve
        all N, including these M* (the same POST again, with the digest of these M), *Approve only the K others*
        (those ids, as a selection) or *Cancel* (back to the queue, nothing sent, the ticks kept). Its query is
        the approval's form, signed for this session: it approves nothing, each choice is a POST with the CSRF
        token."""
        again = self.auth.query_ok(who, list(request.query_params.multi_items()))
        if again is None:
            return self._message(request, who, 403, "Refused", "This confirmation link was not made for your "
                                 "session, or it expired: go back to the queue and approve again.")
        return await self._rights_page(request, who, again)

    async def _ask_rights(self, request: Request, who: Principal, again: list[tuple[str, str]]) -> Response:
        """An approval's rights check (`again`: its form, less the CSRF token): a redirect to the signed GET page
        (so Back returns to it), or, when that address would be longer than RIGHTS_URL_MAX (long edits, a long
        selection: a 1,000-character Russian caption is 6 KB encoded, and the draft carries each field's shown value
        too), the same page as this POST's answer: proxies refuse a request line over 8 KB (nginx 414), which lost
        the approval and its edits (session 17's note). Back then asks to send the form again, the lesser harm."""
        query = urlencode(self.auth.sign_query(who, again))
        if len(query) <= RIGHTS_URL_MAX:
            return RedirectResponse("/rights-check?" + query, 303)
        return await self._rights_page(request, who, again)

    async def _rights_page(self, request: Request, who: Principal, again: list[tuple[str, str]]) -> Response:
        """The rights-check page of an approval's form (`again`), as rights_check describes."""
        form = _Form(again)
        f = Filters.from_params(form, self.taxonomy)
        if form.get("decide") is not None:
            return await self._rights_check_one(request, who, str(form.get("decide")), again, f)

        others_once = self.auth.form_token(who, again, "others")  # the same on every redraw of this page (15b M2)

        def load() -> dict[str, Any]:
            # Back to this page after approving from it (all, or only the others): it says so, and offers no second
            # approval (trial 28 m1; the app remembers what each form sent: app/review/once.py). Looked up first: once
            # applied, "all matching" matches other assets (code review 15b M1)
            drawn = token(form.get("once"))
            done = [*(self.once.sent(who.user, who.session, drawn, BULK, form_key(form)) if drawn else []),
                    *self.once.sent(who.user, who.session, others_once)]
            if done:
                return {"done": done[0], "check": [], "total": 0, "others": []}
            chosen, left_out = self._decided_meanwhile(self._bulk_chosen(f, form), form, who)
            return {**self._rights_ask(who, chosen), "header": None, "left_out": left_out}

        try:
            ask = await run_in_threadpool(load)
        except dec.DecisionError as exc:
            ask = {"check": [], "error": str(exc)}
        if ask.get("done"):
            return self._page(request, who, "rights_confirm.html", {**ask, "f": f, "back": "/?" + f.query_string()})
        ticked = form.getlist("ids") if form.get("scope") != "all" else []
        if not ask["check"]:  # decided elsewhere meanwhile: nothing left to confirm here
            text = ask.get("error") or "nothing approved: none of these has restricted or unknown rights any more; " \
                                       "approve again" + (f" ({ask['left_out']})" if ask.get("left_out") else "")
            return RedirectResponse("/?" + urlencode([*f.params().items(), *[("ids", i) for i in ticked],
                                                      *self.auth.sign_outcome(who, "error", text).items()]), 303)
        # Cancel: the queue says so, its banner takes the focus, and the rows ticked are still ticked (m1)
        back = "/?" + urlencode([*f.params().items(), *[("ids", i) for i in ticked],
                                 *self.auth.sign_outcome(who, "note", "Cancelled: nothing approved").items()])
        return self._page(request, who, "rights_confirm.html", {
            **ask, "f": f, "again": again, "shown": RIGHTS_CHECK_SHOWN, "back": back, "others_once": others_once})

    async def _rights_check_one(self, request: Request, who: Principal, asset_id: str, again: list[tuple[str, str]],
                                f: Filters) -> Response:
        """The rights check of one asset's approval (its page's Approve all, `a`, Enter in a field) when the page
        did not ask itself (no JavaScript, or a page drawn before the asset's rights changed): the same page as a
        bulk approval's, with *Approve this asset anyway* (the asset page's form again, edits included, with the
        digest of this asset) and *Cancel* (back to the asset, nothing sent)."""
        doc = await run_in_threadpool(self.index.asset, asset_id)
        if doc is None:
            return self._message(request, who, 404, "Not found", f"No asset {asset_id!r} in the index.")
        if not rights.needs_rights_check(doc):  # decided or re-flagged meanwhile: approve again from its page
            return RedirectResponse(_asset_url(asset_id, f, **self.auth.sign_outcome(
                who, "error", "nothing approved: this asset has no restricted or unknown rights any more; approve "
                              "again")), 303)
        # Back to this page after approving from it (no JavaScript): it says so and offers no second approval (trial
        # 28 m1); the page remembers what its own form sent (app/review/once.py)
        drawn = token(_Form(again).get("once"))
        done = [d for d in (self.once.sent(who.user, who.session, drawn, _decide_at(asset_id)) if drawn else [])
                if d["what"] == "approved"]
        edits = self._edits(doc, again, who)
        form = [(k, v) for k, v in again if k != "decide"]
        # Cancel (no script): a form posting to the asset's page the form as the editor left it, edits and field
        # choices (CSRF-checked, as every form of this app); nothing is sent. Not a link: the form in a query could
        # pass what a server or proxy takes in a request line (code review 17 F3: 27 KB for a Russian caption)
        note = "Cancelled: nothing approved" + ("; your edits are kept here, not sent" if edits else "")
        back = _asset_url(asset_id, f, **self.auth.sign_outcome(who, "note", note))
        return self._page(request, who, "rights_confirm.html", {
            "done": done[0] if done else None, "edits": edits,
            "check": [doc], "total": 1, "others": [], "single": doc, "confirmed": self._rights_token(who, [doc]), "f": f,
            "again": form, "shown": RIGHTS_CHECK_SHOWN, "back": _asset_url(asset_id, f) if done else back,
            "draft": [(k, v) for k, v in form if k != "verdict"]})

    def _edits(self, doc: dict[str, Any], form: list[tuple[str, str]], who: Principal) -> list[tuple[str, str]]:
        """What an asset's approval will change, as (field label, what), so its rights check shows it (trial 28 m6):
        each edited value, and each rejected field with what it removes (trial 33 N3: rejecting the tags removed them
        all without a word on the page); none when the form no longer applies (the approval then says why)."""
        try:
            decision = dec.from_form(doc, _Form(form), who.user, self.taxonomy)
        except dec.DecisionError:
            return []
        return [(dec.LABELS[x["field"]], change_said(doc, x)) for x in decision["fields"]
                if x["action"] in ("edited", "rejected")]

    async def metrics(self, request: Request, who: Principal) -> Response:
        def collect():
            counts = self.index.status_counts()
            for status in STATUSES:
                self.g_assets.labels(status).set(counts[status])
            ttp = self.index.time_to_publish()
            for q, key in (("0.5", "p50"), ("0.9", "p90")):
                self.g_ttp.labels(q).set(ttp[key] if ttp[key] is not None else float("nan"))
            self.g_ttp_count.set(ttp["count"])
            self.g_ttp_left_out.set(ttp["left_out"])
            return generate_latest(self.registry)

        return Response(await run_in_threadpool(collect), media_type=CONTENT_TYPE_LATEST)


def changed_since_confirmed(f: Filters, chosen: list[tuple[str, str | None]], form: Any) -> str | None:
    """Why "Approve all" must approve nothing, or None: the page posts the digest of the ids it would approve
    (`selection`, from Index.queue) and the number its dialog named (`expect`); the approval recomputes the ids
    under the same filters. Another count, or the same count of other assets (one decided elsewhere, one arrived;
    with one row per family, a family's shown asset approved elsewhere so its copy is now the row), refuses."""
    confirmed = str(form.get("selection") or "")
    if confirmed and selection_digest([scoped_id(i, t) for i, t in chosen]) == confirmed:
        return None
    one = len(chosen) == 1
    unit = (("family" if one else "families") if f.collapse else ("asset" if one else "assets")) + \
        (" matches" if one else " match")
    expect = str(form.get("expect") or "")
    if not confirmed:
        return "nothing approved: the page did not say which assets it showed; reload the queue and approve again"
    if re.fullmatch(r"[0-9]{1,9}", expect) and int(expect) != len(chosen):  # ASCII digits (trial 30 F4)
        return (f"nothing approved: the queue changed since you looked: {len(chosen)} {unit} these filters now, "
                f"the page you confirmed showed {expect}; reload to see them and approve again")
    return (f"nothing approved: the queue changed since you looked: {len(chosen)} {unit} these filters, as "
            f"many as the page you confirmed showed, but not the same ones (some were decided elsewhere or new "
            f"ones arrived); reload to see them and approve again")


def rights_digest(docs: list[dict[str, Any]]) -> str:
    """What a person confirmed when asked about restricted or unknown rights: the digest of these assets' ids."""
    return selection_digest([scoped_id(d.get("asset_id"), d.get("tenant")) for d in docs])


def form_key(form: Any) -> str:
    """What a form submits, as a short digest: its items less the CSRF token, any rights confirmation and the values
    not edited (`_draft`), so the asset page's form and the rights-check page's re-post of it are one submission."""
    return fingerprint(sorted(_draft(form)))


FORM_MAX_FIELDS = 4 * 500 + 500
"""the most fields a posted form may have: a queue page of review.page_size's 500 rows, select all, sends each row's
`ids` and `seen.<id>` (code review 18 F3: Starlette's default 1,000 answered such a bulk approval 400 "Too many
fields"), with room for an asset page's fields and the filters"""
RIGHTS_URL_MAX = 4000
"""the longest query the rights check's redirect carries (_ask_rights); nginx's request line limit is 8 KB"""


def _draft(form: Any) -> list[tuple[str, str]]:
    """An asset page's form to carry through its rights check (a signed query): less the CSRF token and any
    confirmation, and less each value the editor did not change (the `shown.` value says it), so the address stays
    short; `from_form` reads a missing value as the one shown."""
    shown = {k[6:]: str(v).replace("\r\n", "\n") for k, v in form.multi_items() if k.startswith("shown.")}
    return [(k, str(v)) for k, v in form.multi_items() if k not in ("csrf", "rights_confirmed") and not (
        k.startswith("value.") and shown.get(k[6:]) == str(v).replace("\r\n", "\n"))]


def kept_edits(rows: list[dict[str, Any]], draft: Any, page: dict[str, Any], rebase: bool = False) -> dict[str, Any]:
    """The asset page's form as the editor left it (`draft`: the form a rights check's Cancel, or a refused decision,
    posts back, less the values not edited, which are the ones shown): each field's value and choice (`action`).
    Sets `value`, `shown`, `action` (and `tags_value`) on `rows`; returns the form's other hidden values for the page
    (`page`'s own where the draft has none).

    After a rights check's Cancel the page keeps what the first page had shown (`shown.<f>`, the version and the last
    decision), so sending it later still refuses what changed meanwhile (from_form), as the first page would have.
    After a refusal (`rebase`: the editor was told what changed) it shows the asset as it is now: a field the editor
    did not change shows its current value, one they changed keeps their text or choice over the current value
    (sending it again replaces that, knowingly), and one that also changed meanwhile says so (`meanwhile`: the
    value now), so nothing typed is lost (trial 34 F3) and nothing another editor set is undone unseen."""
    for row in rows:
        name = row["name"]
        before = draft.get(f"shown.{name}", row["shown"])
        action = draft.get(f"action.{name}") or ""
        if name == "tags":
            value = draft.get("value.tags")
            edited = value is not None and dec.shown_value({"shown.tags": value}, "tags", "") != \
                dec.shown_value({"shown.tags": before}, "tags", "")
        else:
            value = draft.get(f"value.{name}", before)
            edited = str(value).replace("\r\n", "\n").strip() != str(before).replace("\r\n", "\n").strip()
        if not rebase:
            row["shown"] = before
        elif edited or action:
            if before != row["shown"]:  # said as the page shows it (tags: their ids)
                row["meanwhile"] = ", ".join(parse_tags_value(row["shown"])) if name == "tags" else row["shown"]
        else:  # not the editor's: as the asset is now
            value, action = (None if name == "tags" else row["shown"]), ""
        if name == "tags":
            row["tags_value"] = value if edited or not rebase else None
        else:
            row["value"] = value
        row["action"] = action
    kept = ("mine",) if rebase else ("shown_version", "shown_decision", "shown_sha256", "mine")
    return {**page, **{k: draft.get(k) for k in kept if k in draft}, "force_alt": draft.get("force_alt") == "1"}


def refusal_said(refusal: dict[str, Any]) -> str:
    """The review group's refusal of an editor's decision, as the desk tells the editor (the asset's page, or at once
    after a Save): "not applied: your decision of 21:03 (alt text) was refused by the review group: alice changed
    the alt text at … after the page you decided on was drawn: check the values and decide again"."""
    at = refusal.get("decided_at") or refusal.get("at")
    when = time.strftime("%H:%M", time.localtime(at / 1000)) if at else "earlier"
    what = refusal.get("status") or ", ".join(dec.LABELS.get(f, f).lower() for f in refusal.get("fields") or []) \
        or "fields"
    head = f"not applied: your decision of {when} ({what}) was refused by the review group"
    if refusal.get("reason") == "stale_decision":
        return (f"{head}: {refusal['meanwhile']}, after the page you decided on was drawn (another desk sent both): "
                "check the values and decide again")
    return f"{head} ({refusal.get('reason')}): {refusal.get('message')}"


def refused_since(refusals: list[dict[str, Any]], doc: dict[str, Any], editor: str) -> list[dict[str, Any]]:
    """Of an asset's refused decisions, this editor's that no later decision of theirs, applied, superseded."""
    applied = ((doc.get("review") or {}).get("applied") or [])
    latest = max((to_ms(a["decided_at"]) or 0 for a in applied if a.get("editor") == editor
                  and a.get("decided_at") is not None), default=0)
    return [r for r in refusals if r["editor"] == editor and (r.get("at") or 0) > latest]


def change_said(doc: dict[str, Any], field: dict[str, Any]) -> str:
    """An edited or rejected field of a decision in words for the rights check: the new value ("(none)" for an
    emptied field, the decorative alt text said so), or for a rejection what it removes (each tag, counted)."""
    name = field["field"]
    if field["action"] == "edited":
        if field["value"]:
            return field["value"]
        return "(empty: the image is decorative)" if name == "alt_text" else "(none)"
    if name == "tags":
        tags = [str(t) for t in doc.get("tags") or []]
        return (f"rejected: the {counted(len(tags), 'tag')} {'is' if len(tags) == 1 else 'are'} removed "
                f"({', '.join(tags)})") if tags else "rejected (no tags to remove)"
    current = dec.doc_value(doc, name)
    return f"rejected: “{current}” is removed" if current else "rejected (empty already)"


def counted(n: int, one: str, many: str | None = None) -> str:
    """A count with its noun in the right number: "1 asset", "5 assets", "0 assets", "2 families"."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def clock(seconds: float | None) -> str:
    """A time in a video as a player shows it: m:ss.s (h:mm:ss past an hour)."""
    if seconds is None:
        return "–"
    m, sec = divmod(float(seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{sec:04.1f}" if h else f"{m}:{sec:04.1f}"


def file_name(source: str, width: int = 32) -> str:
    """The queue's short form of an asset's source (`source_label`): its last path segment, the file's name, at
    most `width` characters: a longer one keeps its start and end (the extension) around a "…"."""
    name = source.rstrip("/").rsplit("/", 1)[-1] or source
    if len(name) <= width:
        return name
    end = max(width // 3, len(name) - name.rfind(".") + 3 if "." in name[-9:] else 0)
    return name[:width - 1 - end] + "…" + name[-end:]


def video_length(seconds: float | None) -> str:
    """A video's duration: as `clock` shows times, but a clip shorter than a second (one frame) in hundredths of a
    second, never "0:00.0"."""
    if seconds is not None and 0 < float(seconds) < 1:
        return f"{float(seconds):.2f} s"
    return clock(seconds)


SHORT_TITLE = 80
"""characters of a title said where a screen reader reads it whole and nothing can cut it on screen: the page's
<title>, the preview's alt text, "This page is the next asset: ..." (trial 31: a 2,700-character title read whole in
each); the heading, the queue's link and the Title field keep it whole"""


def _title_as_sent(doc: dict[str, Any], decision: dict[str, Any]) -> object:
    """The asset's title as the decision leaves it: the edited one when the person edited it (trial 32 F10: "Sent to
    feedback: sign_no (NO): approved" after the title was changed to "No parking sign"), none when they rejected
    it, else the indexed one."""
    for x in decision["fields"]:
        if x["field"] == "title":
            return x["value"]
    return doc.get("title")


def short_title(text: object, limit: int = SHORT_TITLE) -> str:
    """`text` on one line, cut at a word boundary before `limit` characters with "…" (a word longer than that is
    cut inside)."""
    one = " ".join(str(text or "").split())
    if len(one) <= limit:
        return one
    cut = one[:limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:.") + "…"


def outcome_title(sent: str | None, error: str | None) -> tuple[str, bool]:
    """The start of the page title after a decision, so a screen reader says the outcome first (trial 20), and
    whether it is about another asset than the page's. A verdict sent from an asset's page names that asset, as
    the page shown next is the next asset's (trial 20b: "Sent: approved · Tea cup" read as if Tea cup was
    approved): "Approved: Simple graphic" (the page adds "next: <its title>"). On the same page: "Sent: title
    accepted", "Sent: 2 assets approved", "Error: nothing was sent"."""
    if error:
        return "Error: " + error.split(":", 1)[0].split(" (", 1)[0][:80], False
    if sent:
        text = _SENT_NOTE.sub("", sent)
        m = _ABOUT.fullmatch(text)
        if m:
            what = m["what"].strip()
            return f"{what[:1].upper()}{what[1:40]}: {(m['title'] or m['id'])[:80]}", True
        return "Sent: " + text[:80], False
    return "", False


def alt_text_file_name(decision: dict[str, Any]) -> list[str]:
    """A refusal (as `alt_text_length` gives them) for an alt text a person wrote that is only a file name
    ("IMG_1234.JPG", "Image of DSC_0042.JPG"): never a description, so sent only as written (trial 20b, W1)."""
    from consumers.validate.alttext import file_name, short

    return [f"{decision.get('asset_id')}: the alt text \"{short(str(f['value']))}\" is a file name, not a "
            "description of the image: say what the image shows" for f in decision.get("fields") or []
            if f.get("field") == "alt_text" and f.get("action") == "edited" and file_name(f.get("value"))]


def file_values(doc: dict[str, Any]) -> set[str]:
    """The texts the file itself carried (its XMP/IPTC: title, description, alt text, …)."""
    embedded = ((((doc.get("record") or {}).get("enriched") or {}).get("pre") or {}).get("embedded")) or {}
    return {v for v in embedded.values() if isinstance(v, str) and v.strip()}


def unmapped_keywords(doc: dict[str, Any]) -> dict[str, list[str]]:
    """The asset's words not in the vocabulary (`suggested_tags`) by whose they are: validate puts there a person's
    keywords (the DAM's human_fields), the file's own (its XMP/IPTC) and, with `unknown_tags: suggest`, the model's,
    in that order, each once (trial 24 F7: a file's "nsfw" keyword was shown as a model tag)."""
    def key(text: Any) -> str:
        return " ".join(str(text).split()).lower()

    pre = ((doc.get("record") or {}).get("enriched") or {}).get("pre") or {}
    person = {key(k) for k in ((pre.get("asset") or {}).get("human_fields") or {}).get("keywords") or []}
    in_file = {key(k) for k in ((pre.get("embedded") or {}).get("keywords") or doc.get("embedded_keywords") or [])}
    out: dict[str, list[str]] = {"person": [], "file": [], "model": []}
    for word in doc.get("suggested_tags") or []:
        out["person" if key(word) in person else "file" if key(word) in in_file else "model"].append(word)
    return out


def error_fields(error: str | None, rows: list[dict[str, Any]]) -> set[str]:
    """The fields an error banner is about (it names them: "alt text changed while …", "alt_text is 300
    characters", a tag "not in the vocabulary"), so the page ties the error to them."""
    if not error:
        return set()
    low = error.lower()
    return {r["name"] for r in rows if re.search(rf"\b({re.escape(r['label'].lower())}|{r['name']})\b", low)
            or (r["name"] == "tags" and "not in the vocabulary" in low)}


class _Form:
    """A signed query's items read as a form (get, getlist, multi_items)."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items

    def get(self, key: str, default: Any = None) -> Any:
        return next((v for k, v in self.items if k == key), default)

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self.items)

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self.items)


def _seen(form: Any, doc_id: str) -> str | None:
    """The newest decision a queue row showed (`seen.<id>`), the base of its bulk approval; None when not on the page."""
    seen = form.get(f"seen.{doc_id}")
    return None if seen is None else str(seen)


BULK = "/bulk-approve"  # where a bulk approval's form posts (the form-once key's `where`)


def _decide_at(asset_id: str) -> str:
    """Where an asset's decision form posts: part of the form-once key, so the same nonce and fields posted to another
    asset is that asset's decision, not the first one's answer (trial 30 F3)."""
    return f"/decide/{asset_id}"


def _asset_url(asset_id: str, f: Filters, **extra: str) -> str:
    return f"/asset/{quote(asset_id, safe='')}?" + urlencode({**f.params(), **extra})


class _Served(Starlette):
    """The app with the security headers outside Starlette's error middleware, so its 500 page carries them too
    (trial 30 F4: `add_middleware` put them inside it, and an unhandled error's page had none), and, when
    `host_ok` is set (header mode), the Host check before any route."""

    host_ok: Callable[[str | None], bool] | None = None

    def build_middleware_stack(self):
        return _Headers(_HostCheck(super().build_middleware_stack(), self))


class _HostCheck:
    """421 for a request whose Host the desk does not serve (trial 30 F7), /healthz aside (probes name the pod)."""

    def __init__(self, app, served: _Served):
        self.app, self.served = app, served
        self.logged: set[str] = set()  # the host names refused and logged (once each, at most 100)

    async def __call__(self, scope, receive, send):
        check = self.served.host_ok
        if scope["type"] == "http" and check is not None and scope.get("path") != "/healthz":
            host = next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"host"), None)
            if not check(host):
                name = (host or "")[:100]
                if name not in self.logged and len(self.logged) < 100:
                    self.logged.add(name)
                    log.warning("review: refused a request for host %r: not one this desk serves (DNS rebinding, or "
                                "review.public_url / review.allowed_hosts missing the name the proxy sends)", name)
                response = Response("This desk does not answer to this host name. Open it at its own address "
                                    "(review.public_url), or add the name to review.allowed_hosts.\n",
                                    status_code=421, media_type="text/plain")
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class _Headers:
    """Security headers on every response, the 500 page for an unhandled error included; HTML and images are never
    cached by shared caches."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS.items():
                    if k.lower().encode() not in names:
                        headers.append((k.lower().encode(), v.encode()))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
