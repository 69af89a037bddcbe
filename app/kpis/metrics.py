"""The KPI app's Prometheus gauges (`assetstream_kpi_*`), set from each published KpiSnapshot of the running
total and of the newest hour and day windows. Served by the faust web view at /metrics."""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

from app.kpis.compute import STATUSES

W = ["window"]
VALIDATED = Gauge("assetstream_kpi_validated_records", "Validated records in the window", W)
ASSETS = Gauge("assetstream_kpi_assets", "Distinct assets validated in the window", W)
STATUS = Gauge("assetstream_kpi_status_assets", "Distinct assets validated in the window by their latest status",
               W + ["status"])
AUTO_APPLY_SHARE = Gauge("assetstream_kpi_auto_apply_share", "auto_applied / (auto_applied+needs_review+rejected), "
                         "over the assets' latest decision by the pipeline", W)
REVIEW_SHARE = Gauge("assetstream_kpi_review_share", "needs_review / (auto_applied+needs_review+rejected), over the "
                     "assets' latest decision by the pipeline", W)
COVERAGE = Gauge("assetstream_kpi_coverage_ratio", "Share of active assets (latest version, not deleted) with the "
                 "field present; field=complete means title, alt text and tags", ["field"])
ACTIVE_ASSETS = Gauge("assetstream_kpi_active_assets", "Assets whose latest version is not deleted")
TTP = Gauge("assetstream_kpi_time_to_publish_seconds", "event_time -> validated, nearest-rank percentile",
            W + ["quantile"])
TTP_COUNT = Gauge("assetstream_kpi_time_to_publish_count", "Samples behind the time-to-publish percentiles", W)
COST_TOTAL = Gauge("assetstream_kpi_cost_usd", "Model spend of the validated records in the window", W)
COST_PER_ASSET = Gauge("assetstream_kpi_cost_per_asset_usd", "Model spend per distinct asset in the window", W)
DECISIONS = Gauge("assetstream_kpi_editor_decisions", "Editor decisions in the window: one per field decided, one "
                  "per verdict on a whole asset without fields (feedback --approve / --reject)", W)
EDIT_RATE = Gauge("assetstream_kpi_edit_rate", "edited / decisions, per field ('*' = all) and prompt version and model",
                  W + ["field", "prompt_id", "prompt_version", "model"])
OVERRIDE_RATE = Gauge("assetstream_kpi_override_rate", "(edited + rejected) / decisions, per field and prompt and model",
                      W + ["field", "prompt_id", "prompt_version", "model"])

FLOW_RECORDS = Gauge("assetstream_kpi_flow_records", "End-to-end count check over the kept windows: records "
                     "published on raw, and of those the validated and the dead-lettered ones; index_dead_lettered: of the "
                     "validated, those the index sink dead-lettered", ["kind"])
FLOW_UNACCOUNTED = Gauge("assetstream_kpi_flow_unaccounted", "Records published on raw longer than kpis.flow_grace_s "
                         "ago (after their window) that are neither validated nor dead-lettered: lost between hops")
FLOW_OLDEST = Gauge("assetstream_kpi_flow_oldest_unaccounted_timestamp_seconds",
                    "Start of the oldest window holding an unaccounted record (0 = none)")

AGENT_FAILING = Gauge("assetstream_kpi_agent_failing", "1 while an agent of the KPI app keeps failing: its last "
                      "record crashed it within the last minute and none has succeeded since (the KPIs and the count "
                      "check are then not being computed; /readyz answers 503)", ["agent"])
AGENT_CRASHES = Counter("assetstream_kpi_agent_crashes_total", "Records that crashed an agent of the KPI app (faust "
                        "restarts it)", ["agent"])

ALL = [VALIDATED, ASSETS, STATUS, AUTO_APPLY_SHARE, REVIEW_SHARE, COVERAGE, ACTIVE_ASSETS, TTP, TTP_COUNT,
       COST_TOTAL, COST_PER_ASSET, DECISIONS, EDIT_RATE, OVERRIDE_RATE, FLOW_RECORDS, FLOW_UNACCOUNTED, FLOW_OLDEST]


def update(snap: dict[str, Any]) -> None:
    w = snap["window"]
    VALIDATED.labels(w).set(snap["validated_records"])
    ASSETS.labels(w).set(snap["assets"])
    for status in STATUSES:
        STATUS.labels(w, status).set(snap.get(status) or 0)
    if snap["auto_apply_share"] is not None:
        AUTO_APPLY_SHARE.labels(w).set(snap["auto_apply_share"])
        REVIEW_SHARE.labels(w).set(snap["review_share"])
    cov = snap.get("coverage")
    if cov:
        ACTIVE_ASSETS.set(cov["active_assets"])
        for field, key in (("complete", "complete_share"), ("title", "title_share"),
                           ("alt_text", "alt_text_share"), ("tags", "tags_share")):
            if cov[key] is not None:
                COVERAGE.labels(field).set(cov[key])
    ttp = snap["time_to_publish"]
    TTP_COUNT.labels(w).set(ttp["count"])
    for q, key in (("0.5", "p50_ms"), ("0.9", "p90_ms"), ("0.99", "p99_ms")):
        if ttp[key] is not None:
            TTP.labels(w, q).set(ttp[key] / 1000.0)
    COST_TOTAL.labels(w).set(snap["cost"]["total_usd"])
    if snap["cost"]["per_asset_mean_usd"] is not None:
        COST_PER_ASSET.labels(w).set(snap["cost"]["per_asset_mean_usd"])
    DECISIONS.labels(w).set(snap["decisions"])
    for row in snap["edit_rates"]:
        labels = (w, row["field"], row["prompt_id"], row["prompt_version"], row["model"])
        EDIT_RATE.labels(*labels).set(row["edit_rate"])
        OVERRIDE_RATE.labels(*labels).set(row["override_rate"])


def update_flow(report: dict[str, Any]) -> None:
    for kind in ("published", "validated", "dead_lettered", "index_dead_lettered"):
        FLOW_RECORDS.labels(kind).set(report[kind])
    FLOW_UNACCOUNTED.set(report["unaccounted"])
    oldest = report["oldest_unaccounted_window_start"]
    FLOW_OLDEST.set(oldest / 1000.0 if oldest is not None else 0)
