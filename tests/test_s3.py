"""streams/s3.py, the S3 access every s3:// user shares, against a real S3 server (SeaweedFS on loopback, started by
the test): clients from a config (explicit credentials or the AWS environment), one client per config, errors sorted
into missing / denied / credentials / transient without the secret, `s3://` parsing with the `..` refusal, and one
"install the s3 extra" error that each caller turns into its own."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from streams import s3 as s3api
from streams.errors import PermanentError

boto3 = pytest.importorskip("boto3")


@pytest.fixture
def no_aws_env(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def failure(call) -> s3api.S3Failure:
    with pytest.raises(s3api.errors()) as ei:
        call()
    return s3api.classify(ei.value)


def test_clients_from_the_callers_credentials_and_errors_classified(s3, unique, no_aws_env):
    cfg = s3api.S3Config(endpoint_url=s3.endpoint, region="us-east-1", access_key_id=s3.access_key,
                         secret_access_key=s3.secret_key, connect_timeout_s=2, read_timeout_s=5, max_attempts=1)
    assert s3.secret_key not in repr(cfg)
    client = s3api.new_client(cfg)
    bucket = f"shared{unique}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="a/b.jpg", Body=b"bytes")
    assert client.get_object(Bucket=bucket, Key="a/b.jpg")["Body"].read() == b"bytes"

    missing = failure(lambda: client.get_object(Bucket=bucket, Key="a/none.jpg"))
    assert (missing.kind, missing.code, missing.status, missing.answered) == ("missing", "NoSuchKey", 404, True)
    no_bucket = failure(lambda: client.get_object(Bucket=f"nobucket{unique}", Key="x"))
    assert (no_bucket.kind, no_bucket.code) == ("missing", "NoSuchBucket")

    wrong = s3api.S3Config(endpoint_url=s3.endpoint, region="us-east-1", access_key_id=s3.access_key,
                           secret_access_key="not-the-secret", max_attempts=1)
    denied = failure(lambda: s3api.new_client(wrong).get_object(Bucket=bucket, Key="a/b.jpg"))
    assert denied.kind == "denied" and denied.status == 403 and str(denied) == f"{denied.code} (HTTP 403)"
    assert "not-the-secret" not in str(denied) and s3.secret_key not in str(denied)

    anonymous = s3api.S3Config(endpoint_url=s3.endpoint, region="us-east-1", max_attempts=1)
    no_keys = failure(lambda: s3api.new_client(anonymous).get_object(Bucket=bucket, Key="a/b.jpg"))
    assert (no_keys.kind, str(no_keys)) == ("credentials", "NoCredentialsError")

    down = s3api.S3Config(endpoint_url=f"http://127.0.0.1:{closed_port()}", region="us-east-1",
                          access_key_id="k", secret_access_key="s", connect_timeout_s=1, max_attempts=1)
    unreachable = failure(lambda: s3api.new_client(down).get_object(Bucket=bucket, Key="a/b.jpg"))
    assert (unreachable.kind, unreachable.answered, str(unreachable)) == (
        "transient", False, "EndpointConnectionError")


def test_one_client_per_config():
    cache = s3api.ClientCache()
    a = s3api.S3Config(endpoint_url="http://127.0.0.1:1", region="us-east-1")
    assert cache.get(a) is cache.get(s3api.S3Config(endpoint_url="http://127.0.0.1:1", region="us-east-1"))
    assert cache.get(a) is not cache.get(s3api.S3Config(endpoint_url="http://127.0.0.1:2", region="us-east-1"))
    timed = s3api.S3Config.for_timeout(None, None, 30.0, max_attempts=2, retry_mode="standard")
    config = cache.get(timed).meta.config
    assert (config.connect_timeout, config.read_timeout, config.retries) == (
        10.0, 30.0, {"total_max_attempts": 3, "mode": "standard"})  # botocore: max_attempts retries + the first


def test_s3_uris():
    assert s3api.parse_uri("s3://bucket/library/red%20mug;1.jpg") == s3api.S3Key("bucket", "library/red mug;1.jpg")
    assert s3api.parse_uri("s3://bucket") == s3api.S3Key("bucket", "")
    assert s3api.parse_uri("file:///srv/a.jpg") is None and s3api.parse_uri("https://h/a.jpg") is None
    assert s3api.parse_uri("s3://b/lib/../private/x.jpg") == s3api.S3Key("b", "lib/../private/x.jpg")  # S3 keys are literal
    for bad, kw in (("s3:///key", {}), ("s3://bucket", {"require_key": True}),
                    ("s3://b/lib/../private/x.jpg", {"refuse_dot_segments": True}),
                    ("s3://b/lib/./x.jpg", {"refuse_dot_segments": True})):
        with pytest.raises(ValueError):
            s3api.parse_uri(bad, **kw)
    key = s3api.S3Key("b", "library/sub/a.JPG")
    assert (key.name, key.suffix, str(key)) == ("a.JPG", ".JPG", "s3://b/library/sub/a.JPG")
    assert key.under(s3api.S3Key("b", "library")) and key.under(s3api.S3Key("b", ""))
    assert not key.under(s3api.S3Key("b", "lib")) and not key.under(s3api.S3Key("other", "library"))
    assert s3api.S3Key("b", "out").child("x.jpg") == s3api.S3Key("b", "out/x.jpg")


def test_without_the_s3_extra_each_caller_says_what_to_install(monkeypatch, tmp_path):
    from consumers.preprocess.fetch import FetchPolicy, fetch
    from consumers.writeback.objects import Objects
    from streams.originals import OriginalUnavailable, S3Store

    monkeypatch.setitem(sys.modules, "boto3", None)  # as on an install without the `s3` extra
    with pytest.raises(s3api.S3Unavailable, match=r"pip install 'assetstream\[s3\]'"):
        s3api.new_client(s3api.S3Config(endpoint_url="http://127.0.0.1:2"))
    with pytest.raises(PermanentError, match=r"assetstream\[s3\]") as ei:
        fetch("s3://bucket/key.jpg", FetchPolicy(s3_endpoint_url="http://127.0.0.1:3"))
    assert ei.value.reason == "s3_unavailable"
    with pytest.raises(PermanentError, match=r"files: .*assetstream\[s3\]") as ei:
        Objects("files", "http://127.0.0.1:4", None, 5.0, 100).download(s3api.S3Key("b", "k.jpg"), Path(tmp_path))
    assert ei.value.reason == "s3_unavailable"
    with pytest.raises(OriginalUnavailable, match=r"dead-letter store: .*assetstream\[s3\]"):
        S3Store("bucket", "prefix", "http://127.0.0.1:5", None)
