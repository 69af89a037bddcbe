"""A running worker really exports every metric the alert rules and the dashboard query, and serves its
health probes."""
from __future__ import annotations

import re
import time

import httpx

from streams.producer import AssetPublisher, build_event
from streams.runner import StageRunner
from tests.deploy_support import referenced_metric_names
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic
from tests.stages import EchoStage


def exported_names(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M)) | {
        n[: -len("_total")] for n in re.findall(r"^# TYPE (\S+_total) ", text, flags=re.M)}


def test_a_running_worker_exports_every_referenced_metric_and_probes(broker, unique):
    s = make_settings(broker, f"metrics{unique}", runner={"metrics_port": 0})
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
