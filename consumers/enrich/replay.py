"""A loopback HTTP server that replays recorded provider responses (tests and bench/enrich.py).

Recordings are JSON files: {"status": 200, "headers": {...}, "body": {...} | "raw": "text", "delay_s": 0.0}.
Requests are routed to a queue by a key (Anthropic: the forced tool name; Gemini: the response schema title or
"default"); each queue pops scripted responses and then repeats its last (or a default) one. Every request is
kept (path, headers without credentials, JSON body) so tests can assert on what was actually sent.

Binds 127.0.0.1 only.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

SECRET_HEADERS = {"x-api-key", "authorization", "x-goog-api-key"}
RECORDED_ORIGINS = ("https://api.anthropic.com",)


def load_recording(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    had_api_key: bool = False


def anthropic_route(path: str, body: Any) -> str:
    if path.startswith("/v1/messages/batches"):  # Message Batches: create (POST), retrieve and results (GET)
        if isinstance(body, dict) and "requests" in body:
            return "batch_create"
        return "batch_results" if path.rstrip("/").endswith("/results") else "batch_retrieve"
    try:
        return str(body["tool_choice"]["name"])
    except (KeyError, TypeError):
        return "default"


def gemini_route(path: str, body: Any) -> str:
    if path.split("?")[0].endswith(":batchGenerateContent"):
        return "batch_create"
    if "/batches/" in path:
        return "batch_retrieve"
    if path.split("?")[0].endswith("/cachedContents"):
        return "cache_create"
    try:
        return str(body["generationConfig"]["responseJsonSchema"]["title"])
    except (KeyError, TypeError):
        return "default"


@dataclass
class ReplayServer:
    route: Callable[[str, Any], str] = anthropic_route
    default: dict[str, Any] | None = None
    delay_s: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    keep_bodies: bool = True

    def __post_init__(self) -> None:
        self._queues: dict[str, deque] = defaultdict(deque)
        self._last: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.transform: Callable[[str, Any, dict[str, Any]], dict[str, Any]] | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    # scripting ---------------------------------------------------------------------------------------------
    def script(self, key: str, *recordings: dict[str, Any]) -> "ReplayServer":
        with self._lock:
            self._queues[key].extend(recordings)
        return self

    def rescript(self, key: str, *recordings: dict[str, Any]) -> "ReplayServer":
        """Drop what is left for `key` (and its last answer), then script these."""
        with self._lock:
            self._queues[key].clear()
            self._last.pop(key, None)
        return self.script(key, *recordings)

    def count(self, key: str | None = None) -> int:
        with self._lock:
            if key is None:
                return len(self.requests)
            return sum(1 for r in self.requests if self.route(r.path, r.body) == key)

    def _next(self, key: str) -> dict[str, Any]:
        with self._lock:
            q = self._queues.get(key)
            if q:
                rec = q.popleft()
                self._last[key] = rec
                return rec
            rec = self._last.get(key) or self.default
        if rec is None:
            return {"status": 500, "body": {"type": "error", "error": {"type": "api_error",
                                                                       "message": f"no recording for {key}"}}}
        return rec

    # server ------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "ReplayServer":
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms Nagle/delayed-ACK stall

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen("POST", self.path, {k: v for k, v in headers.items() if k not in SECRET_HEADERS},
                            body if replay.keep_bodies else None, time.monotonic(),
                            had_api_key=any(k in headers for k in SECRET_HEADERS))
                with replay._lock:
                    replay.requests.append(seen)
                    replay.in_flight += 1
                    replay.max_in_flight = max(replay.max_in_flight, replay.in_flight)
                try:
                    self._respond(body)
                finally:
                    with replay._lock:
                        replay.in_flight -= 1

            def do_GET(self):  # noqa: N802  (stats for a server running in another process; batch polls)
                if self.path != "/_replay/stats" and self.path.startswith("/v1"):
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    with replay._lock:
                        replay.requests.append(Seen("GET", self.path, {k: v for k, v in headers.items()
                                                                       if k not in SECRET_HEADERS}, None,
                                                    time.monotonic(), any(k in headers for k in SECRET_HEADERS)))
                    self._respond(None)
                    return
                out = json.dumps(replay.stats() if self.path == "/_replay/stats" else {}).encode()
                self.send_response(200 if self.path == "/_replay/stats" else 404)
                self.send_header("content-type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _respond(self, body):
                key = replay.route(self.path, body)
                rec = replay._next(key)
                if replay.transform is not None:
                    rec = replay.transform(key, {"path": self.path, "body": body} if key.startswith("batch_")
                                           else body, rec)
                delay = float(rec.get("delay_s", replay.delay_s))
                if delay:
                    time.sleep(delay)
                out = rec["raw"].encode() if "raw" in rec else json.dumps(rec.get("body", {})).encode()
                for origin in RECORDED_ORIGINS:  # URLs in recorded bodies (results_url) point back here
                    if origin.encode() in out:
                        out = out.replace(origin.encode(), replay.url.encode())
                try:
                    self.send_response(int(rec.get("status", 200)))
                    hdrs = {"content-type": "application/json", **{k.lower(): v for k, v in
                                                                    (rec.get("headers") or {}).items()}}
                    for k, v in hdrs.items():
                        if k != "content-length":
                            self.send_header(k, str(v))
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="replay-http",
                         daemon=True).start()
        return self

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"count": len(self.requests), "arrivals": [r.at for r in self.requests],
                    "max_in_flight": self.max_in_flight}

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> "ReplayServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _ScriptedBatches:
    """A batch API on a ReplayServer (its response transform): the requests of each batch by id, and recorded
    per-entry results scripted per route ahead of the ones a synchronous call would pop."""

    def __init__(self, srv: ReplayServer):
        self.srv = srv
        self.batches: dict[str, list[tuple[Any, str]]] = {}  # batch id -> [(custom id or metadata, route)]
        self.entries = 0
        self.entry_results: dict[str, deque] = defaultdict(deque)
        srv.transform = self

    def script_entry(self, route: str, *items: dict[str, Any]) -> "_ScriptedBatches":
        """Recorded per-entry results (their id is filled in) for the next batch entries of this route."""
        self.entry_results[route].extend(items)
        return self


class AnthropicBatches(_ScriptedBatches):
    """Message Batches on a ReplayServer, in the API's wire format: the create and retrieve answers are recorded
    MessageBatch objects (`batch_create`, `batch_retrieve` queues: e.g. in_progress, then ended), given the id of
    the batch the request names; the results are the API's JSONL, one line per request of that batch
    (`{"custom_id", "result": {"type": "succeeded", "message": ...}}`) whose message is the recording scripted for
    the request's tool (the same queues a synchronous call pops), or a recorded `errored` / `expired` line
    scripted under `batch_entry:<tool>`. `entries` counts the requests sent in batches."""

    def __call__(self, key: str, req: Any, rec: dict[str, Any]) -> dict[str, Any]:
        if not key.startswith("batch_") or int(rec.get("status", 200)) != 200:
            return rec
        if key == "batch_create":
            batch_id = f"msgbatch_{len(self.batches) + 1:04d}{uuid.uuid4().hex[:20]}"
            entries = [(r["custom_id"], anthropic_route("/v1/messages", r["params"])) for r in req["body"]["requests"]]
            self.batches[batch_id] = entries
            self.entries += len(entries)
            return self._batch(rec, batch_id)
        batch_id = req["path"].split("/")[4]
        if key == "batch_retrieve":
            return self._batch(rec, batch_id)
        lines = []
        for cid, tool in self.batches.get(batch_id, []):
            if self.entry_results[tool]:
                line = self.entry_results[tool].popleft()
            else:
                line = {"result": {"type": "succeeded", "message": self.srv._next(tool).get("body")}}
            lines.append(json.dumps({**line, "custom_id": cid}))
        return {**rec, "raw": "\n".join(lines) + "\n"}

    def _batch(self, rec: dict[str, Any], batch_id: str) -> dict[str, Any]:
        body = json.loads(json.dumps(rec["body"]).replace(rec["body"]["id"], batch_id))
        n = len(self.batches.get(batch_id, []))
        counts = body.get("request_counts") or {}
        if body.get("processing_status") == "ended":
            body["request_counts"] = {**{k: 0 for k in counts}, "succeeded": n}
        else:
            body["request_counts"] = {**{k: 0 for k in counts}, "processing": n}
        return {**rec, "body": body}


class GeminiBatches(_ScriptedBatches):
    """Gemini batch mode on a ReplayServer, in the API's wire format: `models/<m>:batchGenerateContent` answered with
    a recorded batch operation (`batch_create`: state BATCH_STATE_PENDING), `batches/<id>` with the recorded
    `batch_retrieve` queue (pending, then succeeded) for that batch; a succeeded one carries
    `metadata.output.inlinedResponses.inlinedResponses`, one per request in order with the request's metadata,
    whose `response` is the recording scripted for the request's response schema (the queues a synchronous call
    pops), or a recorded `{"error": ...}` entry scripted with `script_entry`. `entries` counts batched requests."""

    def __init__(self, srv: ReplayServer):
        super().__init__(srv)
        self._outputs: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, key: str, req: Any, rec: dict[str, Any]) -> dict[str, Any]:
        if not key.startswith("batch_") or int(rec.get("status", 200)) != 200:
            return rec
        if key == "batch_create":
            name = f"batches/{len(self.batches) + 1:04d}{uuid.uuid4().hex[:16]}"
            items = req["body"]["batch"]["inputConfig"]["requests"]["requests"]
            self.batches[name] = [(it.get("metadata") or {}, gemini_route("", {"generationConfig": it["request"].get(
                "generationConfig", {})})) for it in items]
            self.entries += len(items)
            return self._job(rec, name)
        name = "batches/" + req["path"].split("?")[0].rsplit("/", 1)[-1]
        job = self._job(rec, name)
        output = job["body"].get("metadata", {}).get("output")
        if output is not None:
            lines = self._outputs.get(name)
            if lines is None:  # a finished job answers the same every time it is asked
                lines = self._outputs[name] = [
                    {**(self.entry_results[route].popleft() if self.entry_results[route] else
                        {"response": self.srv._next(route).get("body")}), "metadata": metadata}
                    for metadata, route in self.batches.get(name, [])]
            output["inlinedResponses"] = {"inlinedResponses": lines}
            job["body"]["response"] = {**job["body"].get("response", {}), "inlinedResponses": {"inlinedResponses": lines}}
        return job

    def _job(self, rec: dict[str, Any], name: str) -> dict[str, Any]:
        body = json.loads(json.dumps(rec["body"]).replace(rec["body"]["name"], name))
        n = str(len(self.batches.get(name, [])))
        stats = body.get("metadata", {}).get("batchStats")
        if stats is not None:
            done = body["metadata"].get("state") == "BATCH_STATE_SUCCEEDED"
            body["metadata"]["batchStats"] = {"requestCount": n, **({"successfulRequestCount": n} if done
                                                                     else {"pendingRequestCount": n})}
        return {**rec, "body": body}


def main(argv: list[str] | None = None) -> None:
    """Serve recordings from a separate process (the bench, so the server does not share the client's GIL):

        python -m consumers.enrich.replay --delay 0.1 record_tags=tests/recordings/claude/tagging_ok.json ...

    Prints the URL on stdout, serves until stdin closes. GET /_replay/stats -> count, arrivals, max_in_flight.
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--route", choices=["anthropic", "gemini"], default="anthropic")
    ap.add_argument("scripts", nargs="*", help="key=recording.json")
    a = ap.parse_args(argv)
    srv = ReplayServer(route=anthropic_route if a.route == "anthropic" else gemini_route, delay_s=a.delay,
                       keep_bodies=False)
    for item in a.scripts:
        key, path = item.split("=", 1)
        srv.script(key, load_recording(path))
    srv.start()
    print(srv.url, flush=True)
    try:
        sys.stdin.read()
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
