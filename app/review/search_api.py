"""The search API, served by the review app's process with the review app's auth (token: `Authorization: Bearer
<token>` or the session cookie; basic; trusted proxy header). JSON in, JSON out; read-only (GET), so no CSRF token.

    GET /v1/search?query=trainers&mode=hybrid&tag=color:white&status=approved&usage=ok
                  &date_from=2026-11-01&date_to=2026-11-30&place=France&family=ASSET&tenant=acme&page=1&size=20
                  &facets=true&facet_size=30
    GET /v1/assets/{asset_id}/similar?tenant=acme&by=auto|image|text&size=10&status=approved   (tenant: the asset's)
    POST /v1/similar?size=10&status=approved     body: the query image's bytes (Content-Type image/*), or a
                                                 multipart/form-data upload with the file in field `file` or
                                                 `image` (curl -F file=@photo.jpg); at most
                                                 index.query_image_max_bytes (413 over it)

The answer is domain.store.api's (hits, total, facets with counts and tag labels). Every hit says its `tenant`
and its `thumb_url` (`/thumb/{id}` on this app, the same credentials); an asset is named
by its hit's `asset_id` and `tenant` (docs/index.md, "Tenants"). `total` and the facets are the same on every
page of one query: keyword mode counts every match; semantic, hybrid and similar count the first `window`
(index.rrf_window) hits of the ranking, the hits their pages show together, with `total_relation: "gte"` when
that window was filled (more may match below it); collapsed, `total` counts families and the facets the
documents (`matches`). A bad parameter is 400 with the reason, an
unknown asset (or one without a vector) 404, any other /v1 path a JSON 404 (405 for another method of a route),
an unreachable store 503 — never a stack trace, never a document to an
unauthenticated caller (401). An app serving some tenants (review.tenants) answers from them alone: `tenant=`
naming another is 403, "more like this" of another tenant's asset the 404 of an unknown asset (docs/index.md,
"Tenants"). POST searches too (it changes nothing), so it needs no CSRF token; a POST sent by
another site (its Origin header) is refused all the same. No CORS headers are sent, on purpose (cookie auth,
POST without a CSRF token): a front-end on another origin goes through a same-origin proxy (docs/index.md, "What a
front-end gets").
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from urllib.parse import urlsplit

from app.review.queries import Scope
from domain.events import DEFAULT_TENANT, TENANT_SEPARATOR
from domain.store.api import (SEARCH_PARAMS, SIMILAR_PARAMS, BadRequest, SearchRequest, document_id, run_search,
                              run_similar, run_similar_image)
from domain.store.client import index_settings
from domain.store.management import read_alias

if TYPE_CHECKING:
    from app.review.web import ReviewApp

log = logging.getLogger(__name__)


class OutOfScope(Exception):
    """A request naming a tenant the app does not serve (review.tenants): 403."""


class TooManyPixels(Exception):
    """An uploaded query image with more pixels than review.similar_max_pixels (from its header): 413."""


class Busy(Exception):
    """Every upload slot (review.similar_slots) stayed taken for review.similar_wait_s: 503 with Retry-After."""


RETRY_AFTER_S = 2


@dataclass(frozen=True)
class ScopedRequest(SearchRequest):
    """A request within the tenants the app serves: every filter list the API builds from it (the search's legs
    and facets, the neighbours of "more like this") carries the scope (review.tenants; none when it is empty)."""
    scope: tuple[dict[str, Any], ...] = ()
    tenants: tuple[str, ...] = ()

    def filters(self) -> list[dict[str, Any]]:
        return [*super().filters(), *self.scope]

    def reads(self, doc_id: str) -> bool:
        """family=ASSET of another tenant is never looked up (review 12: its family id came back in the echo)."""
        return Scope(self.tenants).holds_id(doc_id)

    def echo(self, similar: bool = False) -> dict[str, Any]:
        out = super().echo(similar)
        out.pop("scope", None)
        out.pop("tenants", None)
        return out


def scoped_request(params: Any, accepts: tuple[str, ...], scope: Scope) -> ScopedRequest:
    """The request, limited to the tenants the app serves. `tenant=` naming another tenant is refused (OutOfScope:
    403) on its name alone, before the store is asked, so the answer says nothing of what that tenant holds."""
    req = ScopedRequest.from_params(params, accepts=accepts)
    if req.tenant is not None and not scope.holds(req.tenant):
        raise OutOfScope(f"tenant={req.tenant} is not served here: this app serves only {', '.join(scope.tenants)} "
                         "(review.tenants)")
    return replace(req, scope=tuple(scope.filters), tenants=tuple(scope.tenants))


def refuse_other_tenants_asset(settings: Any, scope: Scope, asset_id: str, tenant: str | None) -> None:
    """"More like this" of an asset of a tenant the app does not serve: LookupError (404) with the words run_similar
    uses for an asset the index does not hold, so another tenant's asset ids cannot be probed."""
    if scope.holds_id(document_id(asset_id, tenant)):
        return
    if scope.tenants:
        raise LookupError(not_on_this_desk(scope, asset_id, tenant))
    alias = read_alias(index_settings(settings))
    raise LookupError(f"asset {asset_id} is not in {alias}" if TENANT_SEPARATOR in asset_id else
                      f"asset {asset_id} of tenant {tenant or DEFAULT_TENANT} is not in {alias} (another tenant's "
                      "asset: give the tenant its hits say, tenant=NAME or --tenant NAME)")


def not_on_this_desk(scope: Scope, asset_id: str, tenant: str | None) -> str:
    """The 404 of "more like this" on an app serving some tenants, for an asset of another tenant and one that
    exists nowhere alike: it names no parameter the app would refuse (trial 19, finding 6: it said tenant=NAME,
    403 there)."""
    whose = "" if TENANT_SEPARATOR in asset_id else f" of tenant {tenant or DEFAULT_TENANT}"
    return f"this app holds no asset {asset_id}{whose} (it serves only {', '.join(scope.tenants)})"


def similar_in_scope(app: "ReviewApp", asset_id: str, req: ScopedRequest) -> dict[str, Any]:
    """"More like this" of an asset the app serves; on an app serving some tenants, an asset of another tenant and
    one not indexed get the same 404 (not_on_this_desk)."""
    refuse_other_tenants_asset(app.settings, app.index.scope, asset_id, req.tenant)
    try:
        return run_similar(app.es, app.settings, asset_id, req, taxonomy=app.taxonomy)
    except LookupError as exc:
        if app.index.scope.tenants and "is not in" in str(exc):
            raise LookupError(not_on_this_desk(app.index.scope, asset_id, req.tenant)) from None
        raise


def refuse_too_many_pixels(data: bytes, max_pixels: int) -> None:
    """TooManyPixels (413) when the query image's header gives more pixels than `max_pixels`
    (review.similar_max_pixels), before any pixel is decoded. Bytes that are no image are left to the search's
    own check (400)."""
    from domain.vision.header import TooManyPixels as OverLimit, open_header

    try:
        open_header(data, max_pixels).close()
    except OverLimit as exc:
        size = f"{exc.width}x{exc.height} = {exc.pixels / 1e6:.0f} MP" if exc.width and exc.height and exc.pixels \
            else "larger than the decoder accepts"
        raise TooManyPixels(f"the query image is {size}, over this app's limit of {max_pixels / 1e6:.0f} MP "
                            "(review.similar_max_pixels): send a smaller copy (it is compared at 224 pixels)") \
            from None
    except Exception:  # noqa: BLE001 - not an image: run_similar_image says so
        return


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _refusal(exc: Exception) -> JSONResponse:
    """The answer to a request refused for a reason of its own (not the store's)."""
    for kind, status in ((BadRequest, 400), (OutOfScope, 403), (TooManyPixels, 413), (LookupError, 404)):
        if isinstance(exc, kind):
            return _error(status, str(exc))
    return _error(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})  # Busy: every upload slot taken


HOW_TO_SEND = ("the raw bytes as the body (curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' URL) or a "
               "multipart form with the file in a field named file or image (curl -F file=@photo.jpg URL)")
FORM_FIELDS = ("file", "image")
FORM_SLACK = 64 * 1024
"""What a multipart body may add to the image's own bytes (boundaries, part headers, small fields)."""


def _is_form(request: Request) -> str | None:
    """"multipart" / "urlencoded" for an HTML-form body, else None (the body is the image's bytes)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return {"multipart/form-data": "multipart", "application/x-www-form-urlencoded": "urlencoded"}.get(kind)


async def _form_file(request: Request, body: bytes) -> bytes:
    """The uploaded file's bytes from a multipart/form-data body (field `file` or `image`; Starlette's parser,
    python-multipart). BadRequest when it cannot be parsed or holds no such file."""
    async def chunks() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=2, max_fields=50).parse()
    except MultiPartException as exc:
        raise BadRequest(f"the multipart body cannot be parsed ({exc.message}); send {HOW_TO_SEND}") from None
    try:
        upload = next((v for name in FORM_FIELDS for v in form.getlist(name) if isinstance(v, UploadFile)), None)
        if upload is None:
            raise BadRequest(f"the multipart body has no file field named file or image (it has: "
                             f"{', '.join(form.keys())[:200] or 'none'}); send {HOW_TO_SEND}")
        return await upload.read()
    finally:
        await form.close()


def search_routes(app: "ReviewApp") -> list[Route]:
    """The /v1 routes for one ReviewApp (its store client, settings, vocabulary, auth and tenants)."""

    def unauthenticated(request: Request) -> Response | None:
        if app.auth.authenticate(request) is not None:
            return None
        headers = {"WWW-Authenticate": 'Basic realm="assetstream review", charset="UTF-8"'} \
            if app.auth.mode == "basic" else {"WWW-Authenticate": "Bearer"} if app.auth.mode == "token" else {}
        return _error(401, "authentication required", headers)

    def api(handler: Callable[..., Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refused = unauthenticated(request)
            if refused is not None:
                return refused
            body = b""
            if request.method == "POST":
                origin = request.headers.get("origin")
                if origin and urlsplit(origin).netloc not in app._own_hosts(request):
                    return _error(403, "this request came from another site")
                limit = app.settings.index.query_image_max_bytes
                form = _is_form(request)
                if form == "urlencoded":
                    return _error(415, f"send the image file itself: {HOW_TO_SEND}")
                received = bytearray()  # appended in place: `bytes +=` copied the whole body per chunk (trial 30 F10)
                async for chunk in request.stream():
                    received += chunk
                    if len(received) > limit + (FORM_SLACK if form else 0):
                        return _error(413, f"the query image is over the limit of {limit} bytes "
                                           "(index.query_image_max_bytes)")
                body = bytes(received)
                if form:
                    try:
                        body = await _form_file(request, body)
                    except BadRequest as exc:
                        return _error(400, str(exc))
                    if len(body) > limit:
                        return _error(413, f"the query image is over the limit of {limit} bytes "
                                           "(index.query_image_max_bytes)")
            try:
                return JSONResponse(await run_in_threadpool(handler, request, body))
            except (BadRequest, OutOfScope, TooManyPixels, Busy, LookupError) as exc:
                return _refusal(exc)
            except Exception as exc:  # the store: unreachable, or refused the request
                log.warning("search API: %s %s failed: %s: %s", request.method, request.url.path,
                            type(exc).__name__, exc)
                return _error(503, f"the search store failed: {type(exc).__name__}")

        return endpoint

    def do_search(request: Request, _body: bytes) -> dict[str, Any]:
        req = scoped_request(request.query_params, SEARCH_PARAMS, app.index.scope)
        return run_search(app.es, app.settings, req, taxonomy=app.taxonomy)

    def do_similar(request: Request, _body: bytes) -> dict[str, Any]:
        req, asset_id = scoped_request(request.query_params, SIMILAR_PARAMS, app.index.scope), \
            request.path_params["asset_id"]
        return similar_in_scope(app, asset_id, req)

    cfg = app.settings.review
    slots = threading.BoundedSemaphore(cfg.similar_slots)  # decoding a query image can take ~230 MB (trial 16)
    # the decodes run on these threads only: memory a decode freed stays with its thread's malloc arena, so 40
    # threadpool threads taking turns would hold 40 decodes' worth; these hold at most similar_slots' worth
    decoders = ThreadPoolExecutor(cfg.similar_slots, thread_name_prefix="review-similar")
    app.similar_decoders = decoders  # shut down with the app

    def do_similar_image(request: Request, body: bytes) -> dict[str, Any]:
        req = scoped_request(request.query_params, SIMILAR_PARAMS, app.index.scope)
        refuse_too_many_pixels(body, cfg.similar_max_pixels)
        if not slots.acquire(timeout=cfg.similar_wait_s):
            raise Busy(f"too many query images are being searched with right now (review.similar_slots="
                       f"{cfg.similar_slots}): try again in {RETRY_AFTER_S} s")
        try:
            return decoders.submit(run_similar_image, app.es, app.settings, body, req, app.taxonomy).result()
        finally:
            slots.release()

    routes = [Route("/v1/search", api(do_search), methods=["GET"]),
              Route("/v1/assets/{asset_id:path}/similar", api(do_similar), methods=["GET"]),
              Route("/v1/similar", api(do_similar_image), methods=["POST"])]

    async def elsewhere(request: Request) -> Response:
        """Any other /v1 request: JSON like the rest of the API (401 first; 405 for a route's other methods)."""
        refused = unauthenticated(request)
        if refused is not None:
            return refused
        for route in routes:
            if route.matches(request.scope)[0] != Match.NONE:  # the path is the route's, the method is not
                allowed = sorted(route.methods or ())
                return _error(405, f"{request.url.path} takes {', '.join(allowed)}, not {request.method}",
                              {"Allow": ", ".join(allowed)})
        return _error(404, f"no such API route: {request.method} {request.url.path} (the API: GET /v1/search, "
                           "GET /v1/assets/{id}/similar, POST /v1/similar)")

    return [*routes, Route("/v1/{rest:path}", elsewhere, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])]
