"""What a process's log holds: the project's events, not one line per HTTP request to the search store (trial 6:
329 of an enrich worker's 340 log lines were elastic_transport's). Real parts: the session's osmem store, the
Elasticsearch client, the logging set-up every command uses, in a process of its own."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import logging
from app.console import load_settings, setup_logging
from domain.store.client import make_client
settings = load_settings()
setup_logging(settings.log_level, settings.log_levels)
client = make_client(settings)
for _ in range(3):
    client.indices.exists(index="logging-probe")
logging.getLogger("assetstream.probe").info("three store requests made")
"""


def _log(store_url: str, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**base, "PYTHONPATH": str(ROOT), "ASSETSTREAM_INDEX__URL": store_url,
                              "ASSETSTREAM_INDEX__SERVER_MODE": "serverless", **env})
    assert res.returncode == 0, res.stderr
    return res.stderr.splitlines()


def test_store_requests_are_not_logged_at_info_unless_asked(store):
    lines = _log(store.url)
    assert any("INFO assetstream.probe: three store requests made" in line for line in lines), lines
    assert not [line for line in lines if "elastic_transport" in line], lines
    # log_levels brings them back (and log_level=DEBUG shows everything, these included)
    asked = _log(store.url, ASSETSTREAM_LOG_LEVELS__ELASTIC_TRANSPORT="INFO")
    assert len([line for line in asked if "INFO elastic_transport.transport: HEAD " in line]) == 3, asked
    debug = _log(store.url, ASSETSTREAM_LOG_LEVEL="DEBUG")
    assert len([line for line in debug if "INFO elastic_transport.transport: HEAD " in line]) == 3, debug
