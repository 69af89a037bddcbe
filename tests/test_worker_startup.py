"""A production worker never runs on the in-process (mock://) Schema Registry by accident: without
registry.allow_in_process it refuses to start with a clear message and exit code 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def worker(stage: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    clean.update({"PYTHONPATH": str(REPO), "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1", **env})
    # a worker that does not refuse keeps running (retrying the broker): the timeout fails the test
    return subprocess.run([sys.executable, "-m", "app.cli", "worker", stage], env=clean, capture_output=True,
                          text=True, timeout=60)


def test_a_worker_with_the_default_registry_refuses_to_start():
    result = worker("validate")
    assert result.returncode == 2, result.stderr[-2000:]
    err = " ".join(result.stderr.split())
    assert "refusing to start" in err and "mock://assetstream" in err
    assert "ASSETSTREAM_REGISTRY__URL" in err and "ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS" in err


def test_an_explicit_mock_url_is_refused_too():
    result = worker("index", ASSETSTREAM_REGISTRY__URL="mock://forgotten")
    assert result.returncode == 2 and "mock://forgotten" in " ".join(result.stderr.split())


def test_allowing_the_in_process_registry_is_explicit():
    from app.settings import Settings

    assert Settings().registry.refusal() is not None
    assert Settings.model_validate({"registry": {"allow_in_process": True}}).registry.refusal() is None
    assert Settings.model_validate({"registry": {"url": "http://sr:8081"}}).registry.refusal() is None
