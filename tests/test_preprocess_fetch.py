"""Fetching: the SSRF policy, redirects, limits, error classes, file roots. Real loopback HTTP server."""
from __future__ import annotations

import ipaddress
import os
import socket

import pytest
from PIL import Image

from consumers.preprocess.fetch import FetchPolicy, address_refusal, fetch, redact
from streams.errors import PermanentError, TransientError
from tests.preprocess_support import CONNECTS, LocalServer, endless_route, jpeg, slow_route

ALLOW_LOCAL = FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=5)
IMG = jpeg(Image.new("RGB", (64, 48), (200, 30, 30)))


@pytest.fixture(scope="module")
def server():
    s = LocalServer()
    yield s
    s.close()


def test_allow_listed_loopback_fetch_pins_address_and_keeps_host_header(server):
    url = server.image("/ok.jpg", IMG, "text/plain")  # the header lies; we never trust it
    got = fetch(url, ALLOW_LOCAL)
    assert got.data == IMG
    path, host = server.requests[-1]
    assert path == "/ok.jpg" and host == f"127.0.0.1:{server.port}"


def test_allow_list_by_cidr(server):
    url = server.image("/cidr.jpg", IMG)
    assert fetch(url, FetchPolicy(allow_hosts=("127.0.0.0/8",))).data == IMG


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_refused_without_allow_list(server, host):
    url = server.image("/secret.jpg", IMG).replace("127.0.0.1", host)
    before = len(server.requests)
    with pytest.raises(PermanentError) as ei:
        fetch(url, FetchPolicy())
    assert ei.value.reason == "forbidden_url"
    assert "loopback" in ei.value.message
    assert len(server.requests) == before  # never reached the server


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/iam/",
                                    "http://10.0.0.1/admin", "http://[::ffff:10.0.0.1]/x",
                                    "http://192.168.1.1:8080/"])
def test_redirect_to_private_or_metadata_refused_before_connecting(server, target):
    url = server.redirect(f"/to-private-{abs(hash(target))}", target)
    CONNECTS.clear()
    with pytest.raises(PermanentError) as ei:
        fetch(url, ALLOW_LOCAL)
    assert ei.value.reason == "forbidden_url"
    assert CONNECTS and all(a.startswith("127.") for a in CONNECTS), CONNECTS  # only the allowed server was dialled


def test_metadata_address_refused_even_with_private_networks_allowed():
    CONNECTS.clear()
    with pytest.raises(PermanentError) as ei:
        fetch("http://169.254.169.254/latest/meta-data/", FetchPolicy(allow_private_networks=True))
    assert ei.value.reason == "forbidden_url" and "metadata" in ei.value.message
    assert CONNECTS == []


@pytest.mark.parametrize("address, why", [
    ("64:ff9b::7f00:1", "loopback address (127.0.0.1 in NAT64 form)"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata address (169.254.169.254 in NAT64 form)"),
    ("64:ff9b:1::a00:1", "local-use NAT64 address (64:ff9b:1::/48: a private translator's prefix)"),
    ("64:ff9b:1:a00:1:0:808:808", "local-use NAT64 address (64:ff9b:1::/48: a private translator's prefix)"),
    ("::7f00:1", "loopback address (127.0.0.1 in IPv4-compatible form)"),
    ("::ffff:0:7f00:1", "loopback address (127.0.0.1 in SIIT (IPv4-translated) form)"),
    ("2002:7f00:1::1", "loopback address (127.0.0.1 in 6to4 form)"),
    ("2002:a9fe:a9fe::1", "cloud metadata address (169.254.169.254 in 6to4 form)"),
    ("2001:0:7f00:1::80ff:fffe", "loopback address (127.0.0.1 in Teredo form)"),
    ("fec0::1", "site-local address"),
])
def test_ipv6_wrapping_a_forbidden_ipv4_is_refused_before_connecting(address, why):
    CONNECTS.clear()
    with pytest.raises(PermanentError) as ei:
        fetch(f"http://[{address}]:18932/latest/meta-data/", FetchPolicy())
    assert ei.value.reason == "forbidden_url" and ei.value.details["why"] == why
    assert CONNECTS == []


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111", "8.8.8.8"])
def test_global_addresses_still_allowed(address):
    assert address_refusal("h", ipaddress.ip_address(address), FetchPolicy()) is None


def test_local_use_nat64_with_private_networks_allowed_is_still_judged_by_what_it_may_reach():
    allowed = FetchPolicy(allow_private_networks=True)
    assert address_refusal("h", ipaddress.ip_address("64:ff9b:1::a00:1"), allowed) is None
    assert "metadata" in address_refusal("h", ipaddress.ip_address("64:ff9b:1::a9fe:a9fe"), allowed)


def test_private_networks_switch_allows_loopback(server):
    url = server.image("/private-ok.jpg", IMG)
    assert fetch(url, FetchPolicy(allow_private_networks=True)).data == IMG


def test_redirect_chain_followed_and_rechecked(server):
    server.image("/final.jpg", IMG)
    server.redirect("/r2", "/final.jpg", 301)
    url = server.redirect("/r1", server.url("/r2"), 307)
    got = fetch(url, ALLOW_LOCAL)
    assert got.data == IMG and got.final_uri.endswith("/final.jpg")


def test_too_many_redirects(server):
    server.redirect("/loop-a", "/loop-b")
    server.redirect("/loop-b", "/loop-a")
    with pytest.raises(PermanentError) as ei:
        fetch(server.url("/loop-a"), ALLOW_LOCAL)
    assert ei.value.reason == "too_many_redirects"


def test_redirect_to_other_scheme_refused(server):
    url = server.redirect("/to-file", "file:///etc/passwd")
    with pytest.raises(PermanentError) as ei:
        fetch(url, ALLOW_LOCAL)
    assert ei.value.reason == "forbidden_url"


@pytest.mark.parametrize("code,cls,reason", [(404, PermanentError, "not_found"), (410, PermanentError, "not_found"),
                                             (403, PermanentError, "access_denied"),
                                             (503, TransientError, "upstream_unavailable"),
                                             (429, TransientError, "upstream_unavailable"),
                                             (400, PermanentError, "http_error")])
def test_http_status_classified(server, code, cls, reason):
    server.routes[f"/status-{code}"] = (code, {"Content-Type": "text/plain"}, b"nope")
    with pytest.raises(cls) as ei:
        fetch(server.url(f"/status-{code}"), ALLOW_LOCAL)
    assert ei.value.reason == reason
    assert type(ei.value) is cls


def test_stream_stops_at_max_bytes(server):
    server.routes["/endless"] = endless_route()
    with pytest.raises(PermanentError) as ei:
        fetch(server.url("/endless"), FetchPolicy(allow_hosts=("127.0.0.1",), max_bytes=300_000))
    assert ei.value.reason == "too_large"


def test_declared_length_over_limit_refused(server):
    server.image("/big.jpg", b"\xff\xd8\xff" + b"\0" * 5000)
    with pytest.raises(PermanentError) as ei:
        fetch(server.url("/big.jpg"), FetchPolicy(allow_hosts=("127.0.0.1",), max_bytes=1000))
    assert ei.value.reason == "too_large"


def test_slow_server_times_out_as_transient(server):
    server.routes["/slow.jpg"] = slow_route(3.0, IMG)
    with pytest.raises(TransientError) as ei:
        fetch(server.url("/slow.jpg"), FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=0.5))
    assert ei.value.reason == "timeout"


def test_unreachable_port_is_transient():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(TransientError) as ei:
        fetch(f"http://127.0.0.1:{port}/x.jpg", ALLOW_LOCAL)
    assert ei.value.reason == "unreachable"


def test_empty_body_is_permanent(server):
    server.routes["/empty.jpg"] = (200, {"Content-Type": "image/jpeg"}, b"")
    with pytest.raises(PermanentError) as ei:
        fetch(server.url("/empty.jpg"), ALLOW_LOCAL)
    assert ei.value.reason == "empty_content"


def test_credentials_never_reach_errors():
    with pytest.raises(PermanentError) as ei:
        fetch("http://user:hunter2@10.1.2.3/a.jpg?token=s3cr3t", FetchPolicy())
    text = ei.value.message + repr(ei.value.details)
    assert "hunter2" not in text and "s3cr3t" not in text
    assert redact("https://u:p@example.com:8443/a/b.jpg?sig=abc#f") == "https://example.com:8443/a/b.jpg"


def test_unsupported_scheme():
    with pytest.raises(PermanentError) as ei:
        fetch("ftp://example.com/a.jpg", FetchPolicy())
    assert ei.value.reason == "unsupported_scheme"


# --- file:// ----------------------------------------------------------------------------------------------

def test_file_under_root(tmp_path):
    (tmp_path / "a.jpg").write_bytes(IMG)
    assert fetch(f"file://{tmp_path}/a.jpg", FetchPolicy(file_roots=(str(tmp_path),))).data == IMG


def test_file_outside_roots_dotdot_and_symlink(tmp_path):
    root = tmp_path / "assets"
    root.mkdir()
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(IMG)
    os.symlink(outside, root / "link.jpg")
    policy = FetchPolicy(file_roots=(str(root),))
    for uri in (f"file://{outside}", f"file://{root}/../secret.jpg", f"file://{root}/link.jpg",
                f"file://{root}/%2e%2e/secret.jpg", "file:///etc/passwd"):
        with pytest.raises(PermanentError) as ei:
            fetch(uri, policy)
        assert ei.value.reason == "forbidden_url", uri
    # trial 24 F10: the message names the roots (the operator's own configuration) and what to change
    assert f"outside the configured file_roots ({root})" in str(ei.value)
    assert "preprocess.file_roots" in str(ei.value) and "folders given to `run`" in str(ei.value)


def test_a_file_name_that_is_not_utf8_is_fetched(tmp_path):
    """Trial 24 F1: `caf\\xe9.jpg` (a latin-1 byte, as on old Windows shares) was dead-lettered `not_found`: the
    producer's URI carries the name's bytes (`%E9`), and fetch decoded them as UTF-8 with replacement."""
    from app.producer import source_uri_for

    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    with open(name, "wb") as fh:
        fh.write(IMG)
    uri = source_uri_for(os.fsdecode(name))
    assert uri.endswith("/caf%E9.jpg")
    assert fetch(uri, FetchPolicy(file_roots=(str(tmp_path),))).data == IMG
    # the root check is made on the decoded name: the same name outside the root is still refused
    with pytest.raises(PermanentError) as ei:
        fetch(uri, FetchPolicy(file_roots=(str(tmp_path / "other"),)))
    assert ei.value.reason == "forbidden_url"


def test_file_uris_off_without_roots(tmp_path):
    (tmp_path / "a.jpg").write_bytes(IMG)
    with pytest.raises(PermanentError) as ei:
        fetch(f"file://{tmp_path}/a.jpg", FetchPolicy())
    assert ei.value.reason == "forbidden_url"


def test_file_missing_empty_and_too_large(tmp_path):
    policy = FetchPolicy(file_roots=(str(tmp_path),), max_bytes=1000)
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "big.jpg").write_bytes(b"\xff" * 2000)
    for name, reason in (("missing.jpg", "not_found"), ("zero.jpg", "empty_content"), ("big.jpg", "too_large")):
        with pytest.raises(PermanentError) as ei:
            fetch(f"file://{tmp_path}/{name}", policy)
        assert ei.value.reason == reason


# --- s3:// ------------------------------------------------------------------------------------------------

def test_s3_endpoint_down_is_transient(monkeypatch):
    pytest.importorskip("boto3")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    policy = FetchPolicy(s3_endpoint_url=f"http://127.0.0.1:{port}", s3_region="us-east-1", timeout_s=2)
    with pytest.raises(TransientError) as ei:
        fetch("s3://bucket/key.jpg", policy)
    assert ei.value.reason == "unreachable"


def test_s3_uri_needs_bucket_and_key():
    with pytest.raises(PermanentError) as ei:
        fetch("s3://bucket-only", FetchPolicy())
    assert ei.value.reason == "forbidden_url"


# --- https: connect to the pinned IP, verify the certificate for the host name -----------------------------

def test_https_pinned_ip_verifies_certificate_for_host_name(tmp_path):
    from tests.preprocess_support import LocalTLSServer, make_tls_files

    ca, cert, key = make_tls_files(tmp_path, "localhost")
    server = LocalTLSServer(cert, key)
    try:
        url = server.image("/tls.jpg", IMG)  # https://localhost:<port>/tls.jpg; the cert names only "localhost"
        policy = FetchPolicy(allow_hosts=("localhost",), ca_bundle=ca, timeout_s=5)
        CONNECTS.clear()
        assert fetch(url, policy).data == IMG
        assert CONNECTS and set(CONNECTS) <= {"127.0.0.1", "::1"}  # dialled the checked address
        assert server.requests[-1][1] == f"localhost:{server.port}"
        with pytest.raises(PermanentError) as ei:  # same server, but the name does not match the certificate
            fetch(server.url("/tls.jpg", host="127.0.0.1"), FetchPolicy(allow_hosts=("127.0.0.1",), ca_bundle=ca))
        assert ei.value.reason == "tls_error"
        with pytest.raises(PermanentError) as ei:  # an untrusted CA
            fetch(url, FetchPolicy(allow_hosts=("localhost",)))
        assert ei.value.reason == "tls_error"
    finally:
        server.close()
