"""The search API, served by the review app's process with the review app's auth (token: `Authorization: Bearer
<token>` or the session cookie; basic; trusted proxy header). JSON in, JSON out; read-only (GET), so no CSRF token.

    GET /v1/search?query=trainers&mode=hybrid&tag=color:white&status=approved&usage=ok
                  &date_from=2026-11-01&date_to=2026-11-30&place=France&family=ASSET&page=1&size=20&facets=true
    GET /v1/assets/{asset_id}/similar?size=10&status=approved

The answer is domain.store.api's (hits, total, facets with counts); a bad parameter is 400 with the reason, an
unknown asset (or one without a vector) 404, an unreachable store 503 — never a stack trace, never a document to an
unauthenticated caller (401).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domain.store.api import BadRequest, SearchRequest, run_search, run_similar

if TYPE_CHECKING:
    from app.review.web import ReviewApp

log = logging.getLogger(__name__)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def search_routes(app: "ReviewApp") -> list[Route]:
    """The /v1 routes for one ReviewApp (its store client, settings, vocabulary and auth)."""

    def api(handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if app.auth.authenticate(request) is None:
                headers = {"WWW-Authenticate": 'Basic realm="assetstream review", charset="UTF-8"'} \
                    if app.auth.mode == "basic" else {"WWW-Authenticate": "Bearer"} if app.auth.mode == "token" else {}
                return _error(401, "authentication required", headers)
            try:
                return JSONResponse(await run_in_threadpool(handler, request))
            except BadRequest as exc:
                return _error(400, str(exc))
            except LookupError as exc:
                return _error(404, str(exc))
            except Exception as exc:  # the store: unreachable, or refused the request
                log.warning("search API: %s %s failed: %s: %s", request.method, request.url.path,
                            type(exc).__name__, exc)
                return _error(503, f"the search store failed: {type(exc).__name__}")

        return endpoint

    def do_search(request: Request) -> dict[str, Any]:
        req = SearchRequest.from_params(request.query_params)
        return run_search(app.es, app.settings, req, taxonomy=app.taxonomy)

    def do_similar(request: Request) -> dict[str, Any]:
        req = SearchRequest.from_params(request.query_params)
        return run_similar(app.es, app.settings, request.path_params["asset_id"], req)

    return [Route("/v1/search", api(do_search), methods=["GET"]),
            Route("/v1/assets/{asset_id:path}/similar", api(do_similar), methods=["GET"])]
