"""Writeback test support: a real loopback HTTP server playing a DAM's asset API (also used by bench/writeback.py),
and publishing `validated` records for the writeback group and waiting until it has handled them.

GET  /api/assets/<id>  -> the asset's JSON and an ETag (404 for ids starting with 'missing')
PATCH/PUT/POST        -> merges the JSON body; honours If-Match (412 on a stale ETag); records every request;
                         with `idempotent` set, drops a request whose Idempotency-Key it has seen (answers 200)
`answer(method, path, headers)` set -> its (status, body) answers any request it does not return None for
(e.g. a target that echoes what it was sent)
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


def publish(settings, values: list[dict[str, Any]]) -> None:
    from app.producer import AssetPublisher
    from domain.records import document_id

    with AssetPublisher(settings) as pub:
        for v in values:
            pub.send("validated", document_id(v), v)
        pub.flush()


def files_settings(broker: str, prefix: str, store_url: str, out, originals, **target):
    """Settings for a writeback group with one files target (copies of files under `originals` into `out`);
    `target`: more of its settings (e.g. tenants)."""
    from tests.kafka_support import make_settings

    return make_settings(
        broker, prefix,
        index={"url": store_url, "server_mode": "serverless", "number_of_replicas": 0, "index": prefix},
        writeback={"state_index": f"{prefix}-writeback",
                   "targets": [{"name": "files", "type": "files", "out_dir": str(out),
                                "source_roots": [str(originals)], **target}]},
        runner={"batch_max_wait_s": 0.2})


def handled(settings) -> int:
    """How many `validated` records the writeback group has committed."""
    from tests.kafka_support import committed

    return sum(committed(settings, settings.groups.name("writeback"), "validated").values())


def run_until(settings, values: list[dict[str, Any]], n: int, timeout_s: float = 60.0) -> None:
    """Publish, then wait until the (running) writeback group has handled n records in all."""
    publish(settings, values)
    deadline = time.monotonic() + timeout_s
    while handled(settings) < n:
        assert time.monotonic() < deadline, f"the writeback group handled {handled(settings)} of {n} records"
        time.sleep(0.2)


class FakeDam:
    def __init__(self, port: int = 0):
        self.assets: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.delay_s = 0.0
        self.answer = None
        self.idempotent = False
        self.keys: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/assets/{{asset_id}}"

    def etag(self, asset_id: str) -> str:
        body = json.dumps(self.assets.get(asset_id, {}), sort_keys=True).encode()
        return '"' + hashlib.sha1(body).hexdigest()[:16] + '"'

    def writes(self, asset_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] != "GET" and (asset_id is None or r["id"] == asset_id)]

    def start(self) -> "FakeDam":
        dam = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, status: int, doc: Any = None, etag: str | None = None):
                body = json.dumps(doc if doc is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")  # stop() then really ends the service
                self.close_connection = True
                if etag:
                    self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)

            def _answered(self, raw: bytes = b"") -> bool:
                got = dam.answer(self.command, self.path, dict(self.headers)) if dam.answer else None
                if got is None:
                    return False
                with dam.lock:
                    dam.requests.append({"method": self.command, "id": None, "path": self.path, "body": raw,
                                         "headers": dict(self.headers), "at": time.monotonic()})
                status, body = got
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                self.wfile.write(body)
                return True

            def _id(self) -> str | None:
                prefix = "/api/assets/"
                return unquote(self.path[len(prefix):]) if self.path.startswith(prefix) else None

            def do_GET(self):
                if self._answered():
                    return
                asset_id = self._id()
                with dam.lock:
                    dam.requests.append({"method": "GET", "id": asset_id, "headers": dict(self.headers),
                                         "at": time.monotonic()})
                if dam.delay_s:
                    time.sleep(dam.delay_s)
                if asset_id is None or asset_id.startswith("missing"):
                    return self._reply(404, {"error": f"no asset {asset_id}"})
                with dam.lock:
                    return self._reply(200, {"id": asset_id, **dam.assets.get(asset_id, {})}, dam.etag(asset_id))

            def _write(self):
                asset_id = self._id()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self._answered(raw):
                    return
                if dam.delay_s:
                    time.sleep(dam.delay_s)
                with dam.lock:
                    dam.requests.append({"method": self.command, "id": asset_id, "headers": dict(self.headers),
                                         "body": raw, "at": time.monotonic()})
                    if asset_id is None or asset_id.startswith("missing"):
                        return self._reply(404, {"error": f"no asset {asset_id}"})
                    match = self.headers.get("If-Match")
                    if match and match != dam.etag(asset_id):
                        return self._reply(412, {"error": "stale ETag"})
                    key = self.headers.get("Idempotency-Key")
                    if dam.idempotent and key in dam.keys:  # "already done": a repeated request is dropped
                        return self._reply(200, {"id": asset_id, **dam.assets.get(asset_id, {})}, dam.etag(asset_id))
                    dam.keys.add(key)
                    dam.assets.setdefault(asset_id, {}).update(json.loads(raw))
                    return self._reply(200, {"id": asset_id, **dam.assets[asset_id]}, dam.etag(asset_id))

            do_PATCH = do_PUT = do_POST = _write

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> "FakeDam":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
