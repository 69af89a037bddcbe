"""Write deploy/grafana/assetstream.json (Grafana dashboard JSON model, schemaVersion 39).

Edit the panels here and re-run `python deploy/grafana/build_dashboard.py`; tests/test_deploy_grafana.py checks
the JSON (every query parses as PromQL and uses only metrics defined in streams/metrics.py).
"""
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "assetstream.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
S = 'stage=~"$stage"'
RI = "$__rate_interval"
LOOKUPS = f'sum(rate(assetstream_dedupe_total{{result!="error"}}[{RI}]))'  # each enrich lookup once, by its result
LAG = f"max by (stage, topic, partition) (assetstream_consumer_lag_committed{{{S}}})"

_ids = iter(range(1, 1000))
_y = 0


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict:
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref}
    if instant:
        t["instant"] = True
        t["range"] = False
    return t


def panel(title: str, targets: list[dict], *, kind: str = "timeseries", unit: str = "short", w: int = 12,
          h: int = 8, x: int = 0, description: str = "", stack: bool = False, percent: bool = False) -> dict:
    for ref, t in zip("ABCDEFGH", targets):
        t["refId"] = ref
    p = {
        "id": next(_ids), "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": _y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
        if stack or percent:
            custom["stacking"] = {"mode": "percent" if percent else "normal", "group": "A"}
            custom["fillOpacity"] = 60
        p["fieldConfig"]["defaults"]["custom"] = custom
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return p


def row(title: str) -> dict:
    global _y
    r = {"id": next(_ids), "type": "row", "title": title, "collapsed": False, "panels": [],
         "gridPos": {"h": 1, "w": 24, "x": 0, "y": _y}}
    _y += 1
    return r


def line(*panels: dict) -> list[dict]:
    """Lay panels side by side on one grid line."""
    global _y
    x = 0
    for p in panels:
        p["gridPos"]["x"], p["gridPos"]["y"] = x, _y
        x += p["gridPos"]["w"]
    _y += max(p["gridPos"]["h"] for p in panels)
    return list(panels)


def quantiles(metric: str, by: str = "", sel: str = "", qs=(0.5, 0.95, 0.99)) -> list[dict]:
    """histogram_quantile per `by` label(s) ("" = one series over everything)."""
    m = f"{metric}_bucket{{{sel}}}" if sel else f"{metric}_bucket"
    group = f"{by}, le" if by else "le"
    return [target(f"histogram_quantile({q}, sum by ({group}) (rate({m}[{RI}])))",
                   f"p{int(q * 100)} {{{{{by.split(', ')[0]}}}}}" if by else f"p{int(q * 100)}")
            for q in qs]


def build() -> dict:
    panels: list[dict] = []
    panels.append(row("Overview"))
    panels += line(
        panel("Workers up", [target(f'sum by (stage) (up{{job="assetstream-workers", {S}}})', "{{stage}}", instant=True)],
              kind="stat", w=6, h=5, description="Scrape targets answering, per selected stage (job "
                                                 "assetstream-workers)."),
        panel("Total consumer lag", [target(f"sum({LAG})", "lag", instant=True)], kind="stat", w=6, h=5,
              description="Records waiting across the selected stages (max per partition, summed)."),
        panel("Dead-lettered (1h)", [target(f"sum(increase(assetstream_records_dead_lettered_total{{{S}}}[1h]))",
                                            "dlq", instant=True)], kind="stat", w=4, h=5),
        panel("LLM spend (24h)", [target("sum(increase(assetstream_llm_cost_usd_total[24h]))", "USD", instant=True)],
              kind="stat", unit="currencyUSD", w=4, h=5),
        panel("LLM budget remaining", [target("min(assetstream_llm_budget_remaining_usd)", "USD", instant=True)],
              kind="stat", unit="currencyUSD", w=4, h=5),
    )
    panels.append(row("Throughput"))
    panels += line(
        panel("Records in / s", [target(f"sum by (stage) (rate(assetstream_records_in_total{{{S}}}[{RI}]))", "{{stage}}")],
              unit="reqps", w=8, description="Records taken from each stage's input topic."),
        panel("Records out / s", [target(f"sum by (stage, topic) (rate(assetstream_records_out_total{{{S}}}[{RI}]))",
                                         "{{stage}} → {{topic}}")], unit="reqps", w=8,
              description="Records produced and acknowledged, by destination topic (incl. assetstream.dlq)."),
        panel("In flight", [target(f"sum by (stage) (assetstream_in_flight{{{S}}})", "{{stage}}")], w=8,
              description="Taken but not yet committed. Pinned at runner.max_in_flight = backpressure."),
    )
    panels.append(row("Lag and age"))
    panels += line(
        panel("Consumer lag by stage", [target(f"sum by (stage) ({LAG})", "{{stage}}")], w=8,
              description="High watermark minus next offset, max per partition then summed per stage."),
        panel("Consumer lag by partition", [target(f"max by (stage, partition) (assetstream_consumer_lag_committed{{{S}}})",
                                                   "{{stage}}/{{partition}}")], w=8,
              description="One hot partition = skewed keys; all partitions = too few replicas."),
        panel("Record age p50 / p95", quantiles("assetstream_record_age_seconds", "stage", S, (0.5, 0.95)), unit="s", w=8,
              description="now - event_time when a stage finishes a record: end-to-end freshness."),
    )
    panels += line(
        panel("Paused consumption", [target(f"max by (stage, reason) (assetstream_paused{{{S}}})", "{{stage}} {{reason}}")],
              w=8, description="1 while a worker keeps its partitions paused (backpressure, budget, store down)."),
        panel("Offset commits / s", [target(f"sum by (stage) (rate(assetstream_offset_commits_total{{{S}}}[{RI}]))",
                                            "{{stage}}")], unit="ops", w=8),
        panel("Retry records held", [target(f"sum by (stage) (assetstream_retry_held{{{S}}})", "{{stage}}")], w=8,
              description="Records from a retry topic waiting in memory for their time (runner.retry_mode=topic); "
                          "at runner.retry_held_max the retry partitions pause. Rising with a flat input rate = a "
                          "dependency failing transiently."),
    )
    panels += line(
        panel("Partitions owned by nobody",
              [target(f"max by (stage, topic) (assetstream_topic_partitions{{{S}}}) - "
                      f"sum by (stage, topic) (assetstream_partitions_assigned{{{S}}})", "{{stage}} {{topic}}")],
              w=12, description="An input topic's partitions minus those the stage's workers own. Above 0: records "
                                "on those partitions wait and no worker reports their lag (AssetstreamPartitionsUnowned; "
                                "`assetstream status` shows which)."),
    )
    panels.append(row("Latency"))
    panels += line(
        panel("Processing time p50 / p95 / p99", quantiles("assetstream_processing_seconds", "stage", S), unit="s", w=8,
              description="Hand-off to the stage until its outputs are acknowledged."),
        panel("LLM request p95 by model", [target(
            f"histogram_quantile(0.95, sum by (provider, model, le) (rate(assetstream_llm_request_seconds_bucket[{RI}])))",
            "{{provider}}/{{model}}")], unit="s", w=8),
        panel("Index bulk p50 / p95", quantiles("assetstream_index_bulk_seconds", qs=(0.5, 0.95)), unit="s", w=8),
    )
    panels.append(row("Errors and dead letters"))
    panels += line(
        panel("Failed attempts / s", [target(
            f"sum by (stage, error_class) (rate(assetstream_records_failed_total{{{S}}}[{RI}]))",
            "{{stage}} {{error_class}}")], unit="ops", w=6),
        panel("Dead-lettered / s", [target(
            f"sum by (stage, error_class) (rate(assetstream_records_dead_lettered_total{{{S}}}[{RI}]))",
            "{{stage}} {{error_class}}")], unit="ops", w=6),
        panel("Retries / s", [target(f"sum by (stage) (rate(assetstream_records_retried_total{{{S}}}[{RI}]))",
                                     "{{stage}}")], unit="ops", w=6),
        panel("Error ratio", [target(
            f"sum by (stage) (rate(assetstream_records_failed_total{{{S}}}[{RI}])) / "
            f"sum by (stage) (rate(assetstream_records_in_total{{{S}}}[{RI}]))", "{{stage}}")], unit="percentunit", w=6,
            description="Failed attempts per record taken; the AssetstreamErrorRatioHigh alert fires above 5%."),
    )
    panels.append(row("LLM"))
    panels += line(
        panel("Tokens / s by model", [target(
            f"sum by (provider, model, direction) (rate(assetstream_llm_tokens_total[{RI}]))",
            "{{model}} {{direction}}")], w=8, stack=True),
        panel("Spend USD / h by model", [target(
            f"sum by (provider, model) (rate(assetstream_llm_cost_usd_total[{RI}])) * 3600", "{{provider}}/{{model}}")],
            unit="currencyUSD", w=8, stack=True),
        panel("Requests / s by outcome", [target(
            f"sum by (model, task, outcome) (rate(assetstream_llm_requests_total[{RI}]))",
            "{{model}} {{task}} {{outcome}}")], unit="reqps", w=8),
    )
    panels += line(
        panel("Dedupe hit ratio", [
            target(f'sum(rate(assetstream_dedupe_total{{result=~"exact|near|clip"}}[{RI}])) / {LOOKUPS}', "hit ratio"),
            target(f'sum(rate(assetstream_dedupe_total{{result="exact"}}[{RI}])) / {LOOKUPS}', "exact"),
        ], unit="percentunit", w=12, description="Share of enrich lookups answered from an earlier (near-)duplicate "
                                                "(images: exact/near; videos: clip): provider calls saved. `error` (the "
                                                "store unreachable) is counted besides the lookup's own result, so it is "
                                                "left out of the total."),
        panel("LLM budget remaining", [target("min(assetstream_llm_budget_remaining_usd)", "USD")], unit="currencyUSD",
              w=12),
    )
    panels.append(row("Validation and index"))
    panels += line(
        panel("Decision share: auto-apply vs review", [target(
            f"sum by (status) (rate(assetstream_validation_decisions_total[{RI}])) / ignoring (status) group_left "
            f"sum(rate(assetstream_validation_decisions_total[{RI}]))", "{{status}}")], unit="percentunit", w=8,
            percent=True, description="Share of validated assets by automation status."),
        panel("Decisions by usage flag / s", [target(
            f"sum by (usage_flag) (rate(assetstream_validation_decisions_total[{RI}]))", "{{usage_flag}}")],
            unit="ops", w=8),
        panel("Index items / s by result", [target(
            f"sum by (result) (rate(assetstream_index_items_total[{RI}]))", "{{result}}")], unit="ops", w=8),
    )
    panels.append(row("Write-back"))
    panels += line(
        panel("Write-back items / s by target and result", [target(
            f"sum by (target, result) (rate(assetstream_writeback_items_total[{RI}]))", "{{target}} {{result}}")],
            unit="ops", w=8, description="written / noop (unchanged since our last write) / skipped (not approved) "
                                         "/ conflict / retry / rejected."),
        panel("Conflicts / s (a person's edit kept)", [target(
            f"sum by (target, field) (rate(assetstream_writeback_conflicts_total[{RI}]))", "{{target}} {{field}}")],
            unit="ops", w=8),
        panel("Target latency p95, breaker open", [
            target(f"histogram_quantile(0.95, sum by (target, le) "
                   f"(rate(assetstream_writeback_request_seconds_bucket[{RI}])))", "p95 {{target}}"),
            target("max by (target) (assetstream_writeback_breaker_open)", "breaker {{target}}", ref="B"),
        ], unit="s", w=8, description="A breaker at 1 pauses the writeback group's partitions."),
    )
    # The KPI app's gauges (app/kpis/metrics.py, job assetstream-kpis), kept in their own row: they are
    # business KPIs computed by `assetstream streams kpis`, not worker telemetry. window = total | hour | day.
    panels.append(row("KPIs (KPI app, window = newest day)"))
    panels += line(
        panel("Auto-apply vs review share", [
            target('max(assetstream_kpi_auto_apply_share{window="day"})', "auto-apply"),
            target('max(assetstream_kpi_review_share{window="day"})', "needs review"),
        ], unit="percentunit", w=8, description="Share of validated records by automation status in the newest day."),
        panel("Time to publish", [target('max by (quantile) (assetstream_kpi_time_to_publish_seconds{window="day"})',
                                         "p{{quantile}}")], unit="s", w=8,
              description="event_time -> validated, nearest-rank percentiles over the newest day."),
        panel("Metadata coverage", [target("max by (field) (assetstream_kpi_coverage_ratio)", "{{field}}")],
              unit="percentunit", w=8, description="Share of active assets with the field present."),
    )
    panels += line(
        panel("Cost per asset", [target('max(assetstream_kpi_cost_per_asset_usd{window="day"})', "USD / asset")],
              unit="currencyUSD", w=8),
        panel("Assets by status", [target(
            'max by (status) (assetstream_kpi_status_assets{window="day"})', "{{status}}")], w=8,
            description="Distinct assets validated in the newest day, each under its latest status: auto_applied / "
                        "needs_review / rejected / deleted by the pipeline, approved by an editor (the review group "
                        "republishes the record; the asset leaves needs_review). A redelivered record counts once."),
        panel("Editor override rate by model", [target(
            'max by (model, prompt_version) (assetstream_kpi_override_rate{window="day",field="*"})',
            "{{model}} {{prompt_version}}")], unit="percentunit", w=8,
            description="(edited + rejected) / editor decisions: how often people correct the model."),
    )
    return {
        "uid": "assetstream-overview",
        "title": "assetstream",
        "description": "assetstream consumer fleet: throughput, lag, freshness, latency, errors, LLM spend, automation.",
        "tags": ["assetstream", "kafka"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            {"type": "query", "name": "stage", "label": "Stage", "datasource": DS,
             "definition": "label_values(assetstream_records_in_total, stage)",
             "query": {"query": "label_values(assetstream_records_in_total, stage)", "refId": "stage"},
             "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "refresh": 2, "sort": 1, "hide": 0},
        ]},
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")
