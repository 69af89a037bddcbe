"""preprocess.fetch_timeout_s bounds the whole fetch attempt (connect, headers, body, redirects) and a
minimum transfer rate cuts off an origin that is merely very slow. Slow-loris servers on loopback trickle
the headers or the body a few bytes at a time; each stops by itself after TRICKLE_S.

A record's first attempt is cut at preprocess.first_attempt_timeout_s (issue 16.16, the burst case of head-of-line
blocking) unless the download is on course to finish within fetch_timeout_s: a slow-loris is moved on to the retry
topic in about that time, a large image on a slow but steady link still arrives."""
from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image

from consumers.preprocess.fetch import FetchPolicy, fetch
from streams.errors import TransientError
from streams.stage import RecordContext
from tests.preprocess_support import LocalServer, event, jpeg, stage

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


LARGE = bytes(range(256)) * (3 * 4096)  # 3 MiB
STEADY_BYTES_S = 1024 * 1024


def steady(declare_length: bool):
    """LARGE at a steady ~1 MiB/s in 64 KiB pieces: ~3 s, with or without a Content-Length."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        length = b"Content-Length: %d\r\n" % len(LARGE) if declare_length else b"Connection: close\r\n"
        h.close_connection = True
        try:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n" + length + b"\r\n")
            per = 64 * 1024
            for i in range(0, len(LARGE), per):
                h.wfile.write(LARGE[i:i + per])
                h.wfile.flush()
                time.sleep(per / STEADY_BYTES_S)
        except (BrokenPipeError, ConnectionResetError):
            pass
    return handle


@pytest.fixture(scope="module")
def server():
    s = LocalServer()
    s.routes.update({"/headers.jpg": headers_loris, "/body.jpg": body_loris, "/slow.jpg": slow_body,
                     "/large.jpg": steady(True), "/large-unsized.jpg": steady(False)})
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


def first_attempt_policy(timeout_s: float, first_s: float = 1.0) -> FetchPolicy:
    return FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=timeout_s, first_attempt_timeout_s=first_s,
                       min_rate_bytes_s=0)  # the first-attempt cut alone


def timed_fetch(url: str, policy: FetchPolicy, first_attempt: bool) -> tuple[bytes, float]:
    started = time.monotonic()
    got = fetch(url, policy, first_attempt=first_attempt)
    return got.data, time.monotonic() - started


@pytest.mark.parametrize("path", ["/headers.jpg", "/body.jpg", "/hop.jpg"])
def test_a_slow_first_attempt_is_moved_on_at_the_first_attempt_timeout(server, path):
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        fetch(server.url(path), first_attempt_policy(timeout_s=10.0), first_attempt=True)
    took = time.monotonic() - started
    assert caught.value.reason == "too_slow" and "first_attempt_timeout_s=1" in str(caught.value)
    assert 0.9 <= took < 2.0, took  # not the 10 s of fetch_timeout_s


def test_a_later_attempt_gets_the_full_fetch_timeout(server):
    error, took = timed_failure(server.url("/body.jpg"), first_attempt_policy(timeout_s=3.0))  # first_attempt=False
    assert error.reason == "timeout" and "fetch_timeout_s=3" in str(error)
    assert 2.9 <= took < 4.0, took


def test_a_large_download_on_a_steady_link_finishes_in_its_first_attempt(server):
    data, took = timed_fetch(server.url("/large.jpg"), first_attempt_policy(timeout_s=15.0), first_attempt=True)
    assert data == LARGE
    assert took > 1.5, took  # it ran well past the first-attempt cut: on course, so it was let go on


def test_a_steady_download_that_cannot_finish_in_time_is_moved_on_at_the_cut(server):
    with pytest.raises(TransientError) as caught:
        fetch(server.url("/large.jpg"), first_attempt_policy(timeout_s=2.0), first_attempt=True)
    assert caught.value.reason == "too_slow" and "would not arrive within fetch_timeout_s=2" in str(caught.value)


def test_an_unsized_large_download_is_moved_on_first_and_succeeds_on_the_next_attempt(server):
    url, policy = server.url("/large-unsized.jpg"), first_attempt_policy(timeout_s=15.0)
    with pytest.raises(TransientError) as caught:
        fetch(url, policy, first_attempt=True)
    assert caught.value.reason == "too_slow" and "declares no length" in str(caught.value)
    data, _took = timed_fetch(url, policy, first_attempt=False)
    assert data == LARGE


def test_the_stage_cuts_only_a_record_s_first_attempt_short(server):
    worker = stage(allow_private_networks=True, fetch_timeout_s=3.0, first_attempt_timeout_s=0.5,
                   fetch_min_rate_bytes_s=0)
    last = worker.settings.runner.retry_max_attempts

    def attempt(n: int) -> tuple[TransientError, float]:
        ctx = RecordContext("raw", 0, 0, "asset-1", {}, None, attempt=n)
        started = time.monotonic()
        with pytest.raises(TransientError) as caught:
            worker.process(event(server.url("/body.jpg")), ctx)
        return caught.value, time.monotonic() - started

    first, took = attempt(1)
    assert first.reason == "too_slow" and took < 1.5, took
    second, took = attempt(2)
    assert second.reason == "timeout" and 2.9 <= took < 4.0, took
    final, took = attempt(last)
    assert final.reason == "timeout" and 2.9 <= took < 4.0, took
