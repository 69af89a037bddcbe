"""Issue 22 item 4: during a broker outage each Kafka client error is logged once (per
runner.client_log_interval_s, with a count of its repeats), through the project's logging: librdkafka prints
nothing of its own to stderr, and its line and the runner's error callback for the same error count once."""
from __future__ import annotations

import collections
import logging
import re
import time

from streams.clientlog import ClientLog, error_key
from streams.embedded import Tansu, stop_process
from tests.kafka_support import make_settings, provision, start_worker

OUTAGE_S = 8.0


def test_worker_against_a_stopped_broker_logs_each_error_a_bounded_number_of_times(tmp_path, unique):
    broker = Tansu().start()
    worker = None
    try:
        s = make_settings(broker.bootstrap, f"cle{unique}")
        provision(s)
        log_path = tmp_path / "worker.log"
        worker = start_worker(s, "validate", log_path)
        deadline = time.monotonic() + 60
        while "assigned" not in log_path.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "assigned" in log_path.read_text(errors="replace"), log_path.read_text(errors="replace")
        mark = len(log_path.read_bytes())
        broker.stop()
        time.sleep(OUTAGE_S)
        outage = log_path.read_bytes()[mark:].decode(errors="replace").splitlines()
    finally:
        stop_process(worker, 20)
        broker.stop()
    raw = [line for line in outage if re.match(r"%\d\|", line)]
    assert raw == [], f"librdkafka wrote to stderr itself: {raw[:3]}"
    errors = [line for line in outage if "kafka client error" in line or "consumer error" in line]
    assert errors, "the outage was not logged at all:\n" + "\n".join(outage)
    per_error = collections.Counter(error_key(line.split("kafka client error: ")[-1]) for line in errors)
    assert max(per_error.values()) == 1, per_error  # once each within the interval (default 30 s)
    assert len(errors) <= 10, "\n".join(errors)


def test_repeats_are_counted_and_logged_after_the_interval(caplog):
    clog = ClientLog("validate", interval_s=0.2)
    line = "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: " \
           "Connection refused (after %dms in state CONNECT)"
    with caplog.at_level(logging.INFO, logger="assetstream.kafka"):
        for ms in range(5):
            clog.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", line % ms)
        time.sleep(0.25)
        clog.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-2", line % 7)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2, msgs
    assert "thrd:" not in msgs[0] and "after 0ms" not in msgs[0]
    assert "(4 more time(s) in the last" in msgs[1]


def test_a_tool_publishing_while_the_broker_is_down_prints_no_librdkafka_lines_of_its_own(unique):
    """Trial 10: a backfill during a broker restart printed librdkafka's own `%3|…|FAIL|…` lines to stderr, 16 in
    8 s; the tools' producers now log through the project's logging like the workers, each failure once."""
    import subprocess
    import sys

    from streams.embedded import free_port
    from tests.kafka_support import REPO, env_for

    s = make_settings(f"127.0.0.1:{free_port()}", f"tool{unique}")  # nothing listens there
    code = ("import logging, time\n"
            "logging.basicConfig(level=logging.WARNING)\n"
            "from app.console import load_settings\n"
            "from app.producer import AssetPublisher\n"
            "pub = AssetPublisher(load_settings())\n"
            "pub.publish_asset('a-1', 'file:///x.jpg', wait=False)\n"
            "pub.producer.flush(4)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=env_for(s))
    raw = [line for line in done.stderr.splitlines() if re.match(r"%\d\|", line)]
    assert raw == [], f"librdkafka wrote to stderr itself: {raw[:3]}"
    said = [line for line in done.stderr.splitlines() if "kafka client error" in line]
    assert 1 <= len(said) <= 3 and "publish" in said[0], done.stderr[-2000:]
