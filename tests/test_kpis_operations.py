"""The KPI app as an operator runs it: its unauthenticated web view binds to loopback unless configured
otherwise, catching up on a backlog does not flood the log with faust's "producer buffer full" warning, and an
agent that keeps crashing makes it not ready."""
from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request

from confluent_kafka import Producer

from app.kpis import testing as T
from streams.topics import create_topics
from tests.test_kpis import app_for, make_env, wait_total

BACKLOG = 1500


def non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_catching_up_a_backlog_logs_buffer_full_rarely_and_binds_loopback(broker, unique):
    settings, env, port = make_env(broker, unique)
    env = {k: v for k, v in env.items() if k != "ASSETSTREAM_KPIS__WEB_HOST"}  # the default bind address
    env["ASSETSTREAM_KPIS__LOGLEVEL"] = "WARNING"  # as deployed
    create_topics(settings)
    now = int(time.time() * 1000)
    T.produce(settings, "validated",
              [(f"bk-{i}", T.validated_record(f"bk-{i}", 1, event_time_ms=now - 5000 + i, published_ms=now + i,
                                              title=f"t{i}", alt_text="a", tags=("color:red",)))
               for i in range(BACKLOG)])
    app = app_for(env, port)
    with app:
        wait_total(settings, BACKLOG, 0, timeout_s=240)
        started = time.monotonic()
        addr = non_loopback_address()
        if addr is not None:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((addr, port)) != 0, f"the KPI web view answers on {addr}:{port}"
        assert T.RunningApp.view(app)["ready"] is not None  # and it does answer on loopback
    log = open(app.log_path, errors="replace").read()
    full = [line for line in log.splitlines() if "producer buffer full" in line]
    elapsed = max(1.0, time.monotonic() - started)
    assert len(full) <= 3 + elapsed / 10, full[:20]  # at most one line per 10 s (plus the first)


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_an_agent_that_keeps_crashing_turns_readiness_false(broker, unique):
    """Trial 17: on_validated crashed on every record ("Schema Not Found") while /kpis said ready and the k8s
    probes only opened the port; the KPIs and the count check went stale without a signal."""
    settings, env, port = make_env(broker, unique)
    with app_for(env, port) as app:
        assert readyz(port) == (200, {"ready": True, "recovered": True, "failing_agents": {}})
        producer = Producer(settings.kafka.client_config())
        producer.produce(settings.topics.name("validated"), key=b"bad", value=b"not an avro record")
        assert producer.flush(10) == 0
        status, body = T.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(readyz(port)), 30,
                                  what="/readyz 503")
        assert list(body["failing_agents"]) == ["on_validated"] and body["recovered"], body
        assert app.view()["ready"] is False
        assert 'assetstream_kpi_agent_failing{agent="on_validated"} 1.0' in app.view("/metrics")


def test_agent_health_recovers_on_success_and_ages_out():
    from app.kpis.app import AgentHealth

    now = [0.0]
    health = AgentHealth(window_s=60, clock=lambda: now[0])

    def crash():
        with health.watch("on_feedback"):
            raise ValueError("Schema Not Found")

    try:
        crash()
    except ValueError:
        pass
    assert health.failing() == {"on_feedback": "ValueError: Schema Not Found"}
    with health.watch("on_feedback"):
        now[0] = 1.0
    assert health.failing() == {}  # the next record went through
    try:
        crash()
    except ValueError:
        pass
    now[0] = 62.0
    assert health.failing() == {}  # one crash a minute ago, nothing since: faust restarted it, no record waits


def test_faust_stall_check_lines_are_warnings_with_a_note(caplog):
    """faust's stall check says ERROR "... (report as bug)" whenever records reach a partition of an app that has run
    longer than stream_processing_timeout and are not processed or committed by its next tick (trial 22: 10 such
    lines on a healthy, idle or catching-up app). The app's logging turns exactly those into warnings with a note;
    the lines come from faust's own code (its consumer thread, not started), other errors stay errors."""
    import faust
    from faust.transport.drivers import aiokafka as drv

    from app.kpis.app import demote_stall_check_logs, faust_settings
    from app.settings import Settings

    settings = Settings().with_overrides(kpis={"stall_check_s": 42})
    app = faust.App("stall-check-test", **faust_settings(settings))
    assert app.conf.stream_processing_timeout == 42 and app.conf.broker_commit_livelock_soft_timeout == 42
    thread = app.consumer._thread
    demote_stall_check_logs()
    tp = faust.types.TP("assetstream.dlq", 0)
    with caplog.at_level(logging.WARNING, logger=drv.__name__):
        thread._log_slow_processing_stream(drv.SLOW_PROCESSING_STREAM_IDLE_SINCE_START, tp, "5.61 minutes ago")
        thread._log_slow_processing_commit(drv.SLOW_PROCESSING_NO_COMMIT_SINCE_START, tp, "6 minutes ago")
        thread.log.error("Got exception: boom")
    levels = [(r.levelname, r.getMessage().splitlines()[0]) for r in caplog.records]
    assert [lvl for lvl, _ in levels] == ["WARNING", "WARNING", "ERROR"], levels
    assert all("stall check, demoted to WARNING" in line for _, line in levels[:2]), levels
    assert "Stream has not started processing" in levels[0][1] and "assetstream.dlq" in levels[0][1]
