"""Serving the review app: uvicorn in a background thread on a socket bound before start (so port 0 works and the
printed URL is right), stopped cleanly. Access logs are off: the login URL carries the token."""
from __future__ import annotations

import signal
import socket
import threading
import time
from typing import Any, Callable

import uvicorn

from app.review.auth import header_exposure_problem
from app.review.web import ReviewApp


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: any free port). OSError (errno EADDRINUSE, ...) when it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock

#: hosts that bind every interface (the printed URL names this machine instead; review.public_url overrides it)
WILDCARDS = ("0.0.0.0", "::", "")


class ReviewServer:
    def __init__(self, settings: Any, *, host: str | None = None, port: int | None = None,
                 sock: socket.socket | None = None, **app_kwargs: Any):
        """`sock`: a socket bound with `bind_socket` beforehand (host and port are then the socket's)."""
        self.settings = settings
        self.host = host or settings.review.host
        self.port = settings.review.port if port is None else port
        exposed = header_exposure_problem(settings.review, self.host)
        if exposed:
            raise ValueError(exposed)
        self.app = ReviewApp(settings, **app_kwargs)
        self.sock: socket.socket | None = sock
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.settings.review.public_url:
            return self.settings.review.public_url.rstrip("/")
        host = self.host
        if host in WILDCARDS:  # bound to every interface: 0.0.0.0 is no address a browser elsewhere can open
            host = socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def login_url(self) -> str:
        return self.app.login_url(self.url)

    def start(self, timeout_s: float = 20.0) -> "ReviewServer":
        if self.sock is None:  # else bound beforehand (`run --serve` binds before it starts anything)
            self.sock = bind_socket(self.host, self.port)
        self.port = self.sock.getsockname()[1]
        self.app.serve_at(self.host, self.port)  # its cookie name, signing key and host names (port 0 is bound now)
        config = uvicorn.Config(self.app.asgi, log_level="warning", access_log=False, lifespan="off",
                                server_header=False, proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="review-web")
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the review web server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        if self.sock is not None:
            self.sock.close()
        self.app.close()

    def __enter__(self) -> "ReviewServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_until_interrupted(server: ReviewServer, announce: Callable[[str], None]) -> None:
    """Start, announce the login URL once, serve until Ctrl-C or SIGTERM, stop."""
    stop = threading.Event()
    # explicit handlers: a process started in the background by a shell inherits an ignored SIGINT
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    server.start()
    try:
        announce(server.login_url)
        while not stop.is_set() and server.thread is not None and server.thread.is_alive():
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
