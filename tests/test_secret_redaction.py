"""Secrets given as raw librdkafka properties (kafka.extra) are secrets like sasl_password: redacted wherever
settings are shown (`config show`, repr, configuration errors), handed to librdkafka in clear."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CANARIES = {"ssl.key.password": "canary-sslkey-4411", "sasl.password": "canary-sasl-4412",
            "sasl.oauthbearer.client.secret": "canary-oauth-4413", "ssl.keystore.password": "canary-ks-4414",
            "ssl.key.pem": "-----BEGIN PRIVATE KEY-----canary-pem-4415",
            "sasl.oauthbearer.config": "principal=x token=canary-token-4416"}
PLAIN = {"socket.timeout.ms": "5000", "sasl.mechanism": "OAUTHBEARER", "client.id": "dam-ingest"}


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    clean.update({"PYTHONPATH": str(REPO), "ASSETSTREAM_KAFKA__EXTRA": json.dumps({**CANARIES, **PLAIN}), **env})
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=clean, capture_output=True, text=True,
                          timeout=60)


def leaked(text: str) -> list[str]:
    return [v for v in CANARIES.values() if v.split("-----")[-1] in text]


def test_config_show_redacts_secret_librdkafka_properties():
    r = cli("config", "show")
    assert r.returncode == 0, r.stderr
    assert leaked(r.stdout + r.stderr) == []
    extra = json.loads(r.stdout)["kafka"]["extra"]
    assert {k: extra[k] for k in CANARIES} == {k: "**********" for k in CANARIES}
    assert {k: extra[k] for k in PLAIN} == PLAIN  # the others stay readable


def test_a_configuration_error_does_not_echo_secrets():
    r = cli("config", "show", ASSETSTREAM_RUNNER__PAUSE_AFTER_S="100000",
            ASSETSTREAM_KAFKA__SASL_PASSWORD="canary-field-4417")
    assert r.returncode == 2
    assert "pause_after_s" in r.stderr
    assert leaked(r.stderr) == [] and "canary-field-4417" not in r.stderr


def test_librdkafka_still_gets_the_values(monkeypatch):
    from app.settings import Settings

    monkeypatch.setenv("ASSETSTREAM_KAFKA__EXTRA", json.dumps({**CANARIES, **PLAIN}))
    s = Settings()
    conf = s.kafka.client_config()
    assert {k: conf[k] for k in CANARIES} == CANARIES and {k: conf[k] for k in PLAIN} == PLAIN
    assert leaked(repr(s) + str(s) + json.dumps(s.redacted())) == []
    # a copy with overrides (as the CLI makes) keeps the values, still hidden
    copy = s.with_overrides(runner={"metrics_port": 0})
    assert copy.kafka.client_config()["ssl.key.password"] == CANARIES["ssl.key.password"]
    assert leaked(repr(copy)) == []


@pytest.mark.parametrize("name,secret", [("ssl.key.password", True), ("sasl.username", True),
                                         ("sasl.mechanism", False), ("ssl.ca.location", False),
                                         ("sasl.oauthbearer.token.endpoint.url", True),
                                         ("ssl.keystore.location", True), ("enable.idempotence", False)])
def test_which_properties_are_secret(name, secret):
    from streams.config.kafka import is_secret_property

    assert is_secret_property(name) is secret


def test_the_env_line_of_run_serve_never_prints_a_password_in_a_url():
    """Trial 2: `assetstream run DIR --serve --registry https://user:PASSWORD@sr:8081` printed the registry URL with
    its password in the `env:` line (the store's URL was already redacted there)."""
    from app.review.cli import fleet_env
    from app.settings import Settings

    s = Settings().with_overrides(registry={"url": "https://sr-user:hunter2-registry@sr.example:8081"},
                                  index={"url": "https://elastic:hunter2-store@es.example:9200"},
                                  kafka={"bootstrap_servers": "kafka.example:9092"})
    line = fleet_env(s)
    assert "hunter2" not in line, line
    assert "ASSETSTREAM_REGISTRY__URL=" in line and "sr.example:8081" in line
    assert "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS=kafka.example:9092" in line
