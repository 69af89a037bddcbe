"""deploy/grafana/assetstream.json: structure, coverage of the panels the issue asks for, every query valid PromQL
(parsed by promtool) and using only metrics defined in streams/metrics.py; each check shown to catch a broken copy."""
from __future__ import annotations

import importlib.util
import json
import re

from tests import deploy_support as ds


def dashboard() -> dict:
    return json.loads(ds.DASHBOARD_FILE.read_text())


def _walk(panels):
    for p in panels:
        yield p
        yield from _walk(p.get("panels", []))


def structure_problems(d: dict) -> list[str]:
    problems = []
    if not d.get("uid") or not d.get("title"):
        problems.append("dashboard needs uid and title")
    names = [v["name"] for v in d.get("templating", {}).get("list", [])]
    if "datasource" not in names:
        problems.append("no datasource variable: the dashboard would be tied to one Prometheus")
    ids = [p["id"] for p in _walk(d["panels"])]
    if len(ids) != len(set(ids)):
        problems.append("duplicate panel ids")
    for p in _walk(d["panels"]):
        gp = p.get("gridPos", {})
        if gp.get("x", 0) + gp.get("w", 0) > 24:
            problems.append(f"panel {p.get('title')}: wider than the 24-column grid")
        if p["type"] == "row":
            continue
        if not p.get("targets"):
            problems.append(f"panel {p.get('title')}: no query")
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(refs) != len(set(refs)) or None in refs:
            problems.append(f"panel {p.get('title')}: refIds must be set and unique")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"panel {p.get('title')}: query not bound to ${{datasource}}")
            for labels in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", t.get("expr", "")):
                names = [n.strip() for n in labels.split(",") if n.strip()]
                if len(names) != len(set(names)):
                    problems.append(f"panel {p.get('title')}: a label is listed twice in ({labels})")
    return problems


COVERAGE = {
    "throughput": lambda e: "assetstream_records_in_total" in e and "rate(" in e,
    "lag": lambda e: "assetstream_consumer_lag" in e,
    "record age quantile": lambda e: "histogram_quantile" in e and "assetstream_record_age_seconds_bucket" in e,
    "processing latency quantile": lambda e: "histogram_quantile" in e and "assetstream_processing_seconds_bucket" in e,
    "dlq": lambda e: "assetstream_records_dead_lettered_total" in e,
    "llm tokens per model": lambda e: "assetstream_llm_tokens_total" in e and "model" in e,
    "llm cost per model": lambda e: "assetstream_llm_cost_usd_total" in e and "model" in e,
    "dedupe hit ratio": lambda e: "assetstream_dedupe_total" in e and "/" in e,
    "review vs auto-apply share": lambda e: "assetstream_validation_decisions_total" in e and "status" in e and "/" in e,
}


def coverage_problems(d: dict) -> list[str]:
    exprs = ds.dashboard_exprs(d)
    return [f"no panel shows {what}" for what, ok in COVERAGE.items() if not any(ok(e) for e in exprs)]


def test_structure():
    assert structure_problems(dashboard()) == []


def test_structure_check_catches_broken_variant():
    d = dashboard()
    d["panels"][3]["id"] = d["panels"][2]["id"]
    d["panels"][4]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "prod-prom"}
    d["panels"][5]["targets"][0]["expr"] = "sum by (le, le) (rate(assetstream_index_bulk_seconds_bucket[5m]))"
    problems = structure_problems(d)
    assert any("duplicate" in p for p in problems) and any("datasource" in p for p in problems)
    assert any("listed twice in (le, le)" in p for p in problems)  # trial 17: the index bulk panel had it


def test_coverage():
    assert coverage_problems(dashboard()) == []


def test_coverage_check_catches_missing_panel():
    d = dashboard()
    d["panels"] = [p for p in d["panels"] if "dedupe" not in json.dumps(p.get("targets", []))]
    assert coverage_problems(d) == ["no panel shows dedupe hit ratio"]


def test_queries_are_valid_promql(tmp_path):
    assert ds.promql_problems(ds.dashboard_exprs(), tmp_path) == []


def test_invalid_query_is_caught(tmp_path):
    exprs = ds.dashboard_exprs() + ["sum by (stage) (rate(assetstream_records_in_total[$__rate_interval])"]
    assert ds.promql_problems(exprs, tmp_path)


def test_dashboard_metrics_are_defined():
    assert ds.unknown_metric_problems(ds.dashboard_exprs(), "assetstream.json") == []


def test_unknown_dashboard_metric_is_caught():
    d = dashboard()
    d["panels"][1]["targets"][0]["expr"] = "sum(assetstream_workers_up)"
    assert ds.unknown_metric_problems(ds.dashboard_exprs(d), "assetstream.json") == [
        "assetstream.json: assetstream_workers_up is not defined in streams/metrics.py"]


def test_template_variable_metric_is_checked():
    d = dashboard()
    stage = next(v for v in d["templating"]["list"] if v["name"] == "stage")
    stage["query"]["query"] = "label_values(assetstream_stage_info, stage)"
    assert ds.unknown_metric_problems(ds.dashboard_exprs(d), "x") == [
        "x: assetstream_stage_info is not defined in streams/metrics.py"]


def test_json_matches_its_builder():
    spec = importlib.util.spec_from_file_location("build_dashboard", ds.DEPLOY / "grafana" / "build_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.build() == dashboard(), "regenerate with python deploy/grafana/build_dashboard.py"
