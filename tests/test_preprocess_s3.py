"""s3:// sources against a real S3 server (SeaweedFS on loopback, started by the test)."""
from __future__ import annotations


import pytest
from PIL import Image

from consumers.preprocess.fetch import FetchPolicy, fetch
from streams.errors import PermanentError
from tests.preprocess_support import event, jpeg, stage

pytest.importorskip("boto3")


@pytest.fixture
def s3_env(s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    return s3


def test_s3_object_fetched_and_preprocessed(s3_env):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_env.endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="assets")
    data = jpeg(Image.new("RGB", (320, 200), (30, 70, 210)))
    client.put_object(Bucket="assets", Key="library/blue image.jpg", Body=data)
    policy = FetchPolicy(s3_endpoint_url=s3_env.endpoint, s3_region="us-east-1", timeout_s=10)
    assert fetch("s3://assets/library/blue%20image.jpg", policy).data == data
    with pytest.raises(PermanentError) as ei:
        fetch("s3://assets/library/missing.jpg", policy)
    assert ei.value.reason == "not_found"
    st = stage(s3_endpoint_url=s3_env.endpoint, s3_region="us-east-1", ocr_enabled=False)
    rec = st.process(event("s3://assets/library/blue%20image.jpg"), None).value
    assert rec["image"]["width"] == 320 and rec["signals"]["colors"][0]["name"] == "blue"


def test_s3_wrong_credentials_are_permanent(s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(PermanentError) as ei:
        fetch("s3://assets/x.jpg", FetchPolicy(s3_endpoint_url=s3.endpoint + "/", s3_region="us-east-1"))
    assert ei.value.reason == "access_denied"
    assert "wrong" not in ei.value.message + repr(ei.value.details)
