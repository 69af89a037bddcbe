"""make_client: what actually goes over the wire (auth headers, media type), captured by a loopback listener."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from domain.store.client import make_client
from domain.store.settings import IndexSettings


@pytest.fixture
def recorder():
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = json.dumps({"version": {"number": "9.0.0"}, "tagline": "You Know, for Search"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_api_key_and_stack_media_type(recorder):
    url, seen = recorder
    client = make_client(IndexSettings(url=url, api_key="c2VjcmV0LWlkOnNlY3JldC1rZXk=", username="ignored"))
    client.info()
    assert seen[-1]["authorization"] == "ApiKey c2VjcmV0LWlkOnNlY3JldC1rZXk="
    assert seen[-1]["accept"].startswith("application/vnd.elasticsearch+json")


def test_basic_auth_and_serverless_plain_json(recorder):
    url, seen = recorder
    settings = IndexSettings(url=url, username="indexer", password="s3cret", server_mode="serverless")
    make_client(settings).info()
    assert seen[-1]["authorization"] == "Basic " + base64.b64encode(b"indexer:s3cret").decode()
    assert seen[-1]["accept"] == "application/json"
    assert "s3cret" not in repr(settings) and "s3cret" not in json.dumps(settings.model_dump(mode="json"))
