"""A running worker really exports every metric the alert rules and the dashboard query, and serves its
health probes."""
from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from app.producer import AssetPublisher, build_event
from streams.runner import StageRunner
from tests.deploy_support import referenced_metric_names
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic
from tests.stages import EchoStage


def _non_loopback_address() -> str | None:
    """An address of this machine other hosts could reach (None if it has none): a UDP socket's source address
    toward a documentation-range address (connect() on UDP sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def exported_names(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M)) | {
        n[: -len("_total")] for n in re.findall(r"^# TYPE (\S+_total) ", text, flags=re.M)}


def test_a_running_worker_exports_every_referenced_metric_and_probes(broker, unique):
    s = make_settings(broker, f"metrics{unique}", runner={"metrics_port": 0, "metrics_host": "127.0.0.1"})
    provision(s)
    with AssetPublisher(s) as pub:
        pub.publish_events([build_event("asset-1", "file:///x/1.jpg", version=1),
                            build_event("asset-2", "file:///x/2.jpg", version=1, attributes={"fail": "permanent"})])
    stage_cls = type("MetricsEcho", (EchoStage,), {"name": f"echo{unique}"})  # own labels in a shared process
    runner = StageRunner(stage_cls(s), s)
    with RunnerThread(runner):
        read_topic(s, "preprocessed", 1)
        read_topic(s, "dead_letter", 1)
        deadline = time.monotonic() + 10
        while runner.metrics_port is None and time.monotonic() < deadline:
            time.sleep(0.1)
        base = f"http://127.0.0.1:{runner.metrics_port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        other = _non_loopback_address()  # runner.metrics_host=127.0.0.1: this machine only (default 0.0.0.0)
        if other is not None:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{other}:{runner.metrics_port}/healthz", timeout=2)
        ready = httpx.get(f"{base}/readyz")
        time.sleep(2.5)  # one lag update cycle
        text = httpx.get(f"{base}/metrics").text
    assert ready.status_code == 200
    names = exported_names(text)
    missing = {m for m in referenced_metric_names() if m not in names and f"{m}_total" not in names}
    assert not missing, f"rules/dashboard query metrics this worker does not export: {sorted(missing)}"
    stage = f"echo{unique}"
    assert re.search(rf'assetstream_records_in_total\{{stage="{stage}"\}} 2\.0', text)
    assert re.search(rf'assetstream_records_dead_lettered_total\{{error_class="permanent",stage="{stage}"\}} 1\.0', text)
    assert re.search(rf'assetstream_consumer_lag\{{partition="\d",stage="{stage}",topic="[^"]+"\}} 0\.0', text)
    # per-record counts and observations are gathered in the poll loop and added once per iteration
    assert re.search(rf'assetstream_processing_seconds_count\{{stage="{stage}"\}} 2\.0', text)
    assert re.search(rf'assetstream_record_age_seconds_count\{{stage="{stage}"\}} 1\.0', text)  # the output's
    out_lines = re.findall(rf'assetstream_records_out_total\{{stage="{stage}",topic="[^"]+"\}} (\S+)', text)
    assert sorted(out_lines) == ["1.0", "1.0"], out_lines  # one output, one dead letter, both acknowledged


def test_batched_histogram_observations_export_exactly_what_observe_would():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from streams.metrics import LATENCY_BUCKETS, HistogramBatch

    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 0.3, 1.0, 2.5, 59.0, 120.0, 121.0, 1e6]
    a_reg, b_reg = CollectorRegistry(), CollectorRegistry()
    plain = Histogram("x_seconds", "x", ["stage"], buckets=LATENCY_BUCKETS, registry=a_reg).labels("s")
    batched = HistogramBatch(Histogram("x_seconds", "x", ["stage"], buckets=LATENCY_BUCKETS,
                                       registry=b_reg).labels("s"))
    assert not batched.direct, "prometheus_client internals changed: the batch falls back to observe()"
    for v in values:
        plain.observe(v)
        batched.observe(v)
    assert generate_latest(b_reg) != generate_latest(a_reg), "nothing should show before the flush"
    batched.flush()
    batched.flush()  # a second flush adds nothing
    strip = lambda text: [ln for ln in text.decode().splitlines() if "_created" not in ln]  # noqa: E731
    assert strip(generate_latest(b_reg)) == strip(generate_latest(a_reg))


def test_stale_events_help_does_not_send_the_on_call_to_the_dead_letters():
    """Trial 17: the /metrics HELP said stale events were "dead-lettered with reason stale_event"; enrich skips
    them and writes no dead letter (consumers/enrich/stage.py _stale, docs/monitoring.md)."""
    from prometheus_client import generate_latest

    import streams.metrics  # noqa: F401 - registers the workers' metrics

    help_line = next(line for line in generate_latest().decode().splitlines()
                     if line.startswith("# HELP assetstream_stale_events_total "))
    assert "not dead-lettered" in help_line and "reason stale_event" not in help_line, help_line
