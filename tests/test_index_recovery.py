"""Issue 22 item 3: the index sink retries as soon as the store is back, whether it refused connections
(stopped) or hung (SIGSTOP), and a hung store is reported as `store_unavailable`, not `backpressure`."""
from __future__ import annotations

import contextlib
import os
import signal
import time

from consumers.index.sink import IndexSink
from domain.store.client import make_client
from domain.store.management import ensure_index
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision
from tests.store_support import validated_asset
from tests.test_index_runner import indexed_ids, publish_validated, wait_for

OUTAGE_S = 6.0


def recovery_settings(broker, prefix, url):
    # the default health-check interval; a long first backoff (10-20 s, as a grown one would be) so that
    # sleeping it out cannot pass; a small max_in_flight so that a hung batch fills it (the `backpressure` label)
    return make_settings(broker, prefix, index={"url": url, "server_mode": "serverless", "number_of_replicas": 0,
                                                "index": f"{prefix}-assets", "request_timeout_s": 3.0},
                         runner={"batch_max_wait_s": 0.2, "retry_base_delay_s": 20.0, "retry_max_delay_s": 20.0,
                                 "max_in_flight": 8, "batch_max_records": 8})


def first_write_after(s, ids: set[str], timeout_s: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if indexed_ids(s) & ids:
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - the index is being created again
            pass
        time.sleep(0.05)
    return float("inf")


LATE = {f"late-{i:02d}" for i in range(20)}


@contextlib.contextmanager
def indexing_sink(broker, prefix, store):
    """A sink runner that has indexed one record; yields (settings, runner)."""
    s = recovery_settings(broker, prefix, store.url)
    provision(s)
    ensure_index(make_client(s), s)
    publish_validated(s, [validated_asset("early-0")])
    runner = StageRunner(IndexSink(s), s)
    with RunnerThread(runner):
        assert wait_for(lambda: "early-0" in indexed_ids(s))
        yield s, runner


def test_refusing_store_first_write_within_2s_of_recovery(broker, unique, own_store):
    with indexing_sink(broker, f"rec{unique}", own_store) as (s, runner):
        own_store.stop()
        publish_validated(s, [validated_asset(a) for a in sorted(LATE)])
        time.sleep(OUTAGE_S)
        assert runner.backpressure.current == "store_unavailable"
        own_store.start()  # in-memory: comes back empty; the sink creates the index again
        took = first_write_after(s, LATE)
        assert took <= 2.0, f"first write {took:.1f}s after the store came back"


def test_frozen_store_is_unavailable_and_first_write_within_2s_of_recovery(broker, unique, own_store):
    with indexing_sink(broker, f"frz{unique}", own_store) as (s, runner):
        os.kill(own_store.proc.pid, signal.SIGSTOP)
        try:
            publish_validated(s, [validated_asset(a) for a in sorted(LATE)])
            reasons = set()
            deadline = time.monotonic() + OUTAGE_S
            while time.monotonic() < deadline:
                reasons.add(runner.backpressure.current)
                time.sleep(0.05)
        finally:
            os.kill(own_store.proc.pid, signal.SIGCONT)
        took = first_write_after(s, LATE)
        assert "store_unavailable" in reasons and "backpressure" not in reasons, reasons
        assert took <= 2.0, f"first write {took:.1f}s after the store came back"
