"""Session fixtures: real servers started by the project itself. Nothing is started by hand."""
from __future__ import annotations

import os
import uuid

import pytest

from streams.embedded import Tansu

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
