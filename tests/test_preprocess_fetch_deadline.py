"""preprocess.fetch_timeout_s bounds the whole fetch attempt (connect, headers, body, redirects) and a
minimum transfer rate cuts off an origin that is merely very slow. Slow-loris servers on loopback trickle
the headers or the body a few bytes at a time; each stops by itself after TRICKLE_S."""
from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image

from consumers.preprocess.fetch import FetchPolicy, fetch
from streams.errors import TransientError
from tests.preprocess_support import LocalServer, jpeg

IMG = jpeg(Image.new("RGB", (64, 48), (30, 200, 30)))
TRICKLE_S = 12.0  # how long a slow-loris route keeps going at most (the test never needs it to finish)


def trickle(h: BaseHTTPRequestHandler, data: bytes, every_s: float, per: int = 1) -> None:
    stop = time.monotonic() + TRICKLE_S
    try:
        for i in range(0, len(data), per):
            if time.monotonic() > stop:
                return
            h.wfile.write(data[i:i + per])
            h.wfile.flush()
            time.sleep(every_s)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        h.close_connection = True


def headers_loris(h: BaseHTTPRequestHandler) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 20) for i in range(200))
    trickle(h, head + b"Content-Length: %d\r\n\r\n" % len(IMG) + IMG, every_s=0.1)


def body_loris(h: BaseHTTPRequestHandler) -> None:
    h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(IMG))
    trickle(h, IMG, every_s=0.1)


def slow_body(h: BaseHTTPRequestHandler) -> None:  # ~400 bytes/s: steady, but far below the floor
    h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (len(IMG) * 20))
    trickle(h, IMG * 20, every_s=0.05, per=20)


@pytest.fixture(scope="module")
def server():
    s = LocalServer()
    s.routes.update({"/headers.jpg": headers_loris, "/body.jpg": body_loris, "/slow.jpg": slow_body})
    s.redirect("/hop.jpg", s.url("/body.jpg"))
    yield s
    s.close()


def timed_failure(url: str, policy: FetchPolicy) -> tuple[TransientError, float]:
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        fetch(url, policy)
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("path", ["/headers.jpg", "/body.jpg", "/hop.jpg"])
def test_a_slow_loris_origin_is_cut_off_at_the_fetch_timeout(server, path):
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=2.0, min_rate_bytes_s=0)  # the deadline alone
    error, took = timed_failure(server.url(path), policy)
    assert error.reason == "timeout" and "fetch_timeout_s=2" in str(error)
    assert 1.9 <= took < 3.0, took


def test_an_origin_below_the_minimum_rate_is_cut_off_before_the_deadline(server):
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=20.0, min_rate_bytes_s=1024, rate_grace_s=1.5)
    error, took = timed_failure(server.url("/slow.jpg"), policy)
    assert error.reason == "too_slow" and "bytes/s" in str(error)
    assert took < 4.0, took


def test_a_normal_fetch_still_works_with_the_guard(server):
    url = server.image("/fine.jpg", IMG)
    got = fetch(url, FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=2.0, rate_grace_s=0.0))
    assert got.data == IMG
