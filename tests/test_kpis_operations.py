"""The KPI app as an operator runs it: its unauthenticated web view binds to loopback unless configured
otherwise, and catching up on a backlog does not flood the log with faust's "producer buffer full" warning."""
from __future__ import annotations

import socket
import time

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
