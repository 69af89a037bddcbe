"""The search API's test server: the review app's process (uvicorn) over a module's `settings` fixture (a real
osmem-server seeded through the real index sink), and an HTTP client with its token. Test modules take them with
`server, api = search_support.server, search_support.api` and define `settings`."""
from __future__ import annotations

import httpx
import pytest

from app.review.server import ReviewServer

TOKEN = "search-api-test-token"


@pytest.fixture(scope="module")
def server(settings):
    with ReviewServer(settings, port=0, token=TOKEN) as srv:
        yield srv


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c
