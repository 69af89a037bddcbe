"""The review app when its search store is down or has no index yet: every page an editor opens answers 503 with
what to do (a page, not a bare "Internal Server Error"), and the server log has one line per request, no stack
trace. Real parts: the app's own HTTP server, a loopback port with nothing listening, an osmem-server without
the index, the session's tansu broker."""
from __future__ import annotations

import logging
import uuid

import httpx

from app.review.server import ReviewServer
from streams.embedded import free_port
from tests.review_support import review_settings

PAGES = ("/", "/asset/some-asset", "/thumb/some-asset", "/metrics")


def _visit(settings) -> dict[str, tuple[int, str]]:
    with ReviewServer(settings) as srv, httpx.Client(follow_redirects=True, timeout=30) as editor:
        editor.get(srv.login_url)  # the session cookie (the queue behind it fails like the rest)
        return {path: (r.status_code, r.text) for path in PAGES for r in [editor.get(srv.url + path)]}


def test_pages_say_the_index_is_unreachable_when_the_store_is_down(broker, caplog):
    settings = review_settings(broker, f"http://127.0.0.1:{free_port()}", f"rvdown{uuid.uuid4().hex[:6]}")
    with caplog.at_level(logging.WARNING):
        answers = _visit(settings)
    for path, (status, body) in answers.items():
        assert status == 503, (path, status, body[:200])
        assert "Search index unavailable" in body and "cannot be reached right now" in body, path
        assert "Traceback" not in body and "Internal Server Error" not in body
    assert "review app: GET /asset/some-asset: the search store failed: ConnectionError" in caplog.text
    assert "Traceback" not in caplog.text and "Exception in ASGI application" not in caplog.text


def test_pages_say_how_the_index_gets_created_when_it_does_not_exist_yet(broker, store):
    settings = review_settings(broker, store.url, f"rvnone{uuid.uuid4().hex[:6]}")  # nothing indexed yet
    status, body = _visit(settings)["/"]
    assert status == 503, body[:300]
    assert "The search index does not exist yet" in body and "assetstream index create" in body
