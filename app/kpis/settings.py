from __future__ import annotations

from streams.config import Section

from pydantic import Field, SecretStr


def _default_field_tasks() -> dict[str, str]:
    return {"title": "alt_text", "alt_text": "alt_text", "caption": "alt_text", "summary": "alt_text",
            "visible_text": "alt_text", "tags": "tagging", "credit_text": "rights", "licensing": "rights"}


class KpiSettings(Section):
    """The faust-streaming KPI / audit app (app/kpis): consumes `validated` and `feedback`, writes `kpis`
    (KpiSnapshot) and `audit` (AuditEntry). See docs/kpis.md."""

    app_id: str = Field("assetstream-kpis", description="faust app id = consumer group = prefix of its internal "
                        "topics (<app_id>-asset-state-changelog, <app_id>-kpi-events, <app_id>-kpi-changelog)")
    web_port: int = Field(6066, description="faust web view: /kpis (JSON), /flow (JSON, with asset ids), /metrics "
                          "(Prometheus gauges), /readyz")
    web_host: str = Field("127.0.0.1", description="interface the web view binds to (no auth unless web_token: loopback "
                                                   "unless a pod network / Service is meant to reach it, e.g. 0.0.0.0 "
                                                   "in Kubernetes)")
    web_token: SecretStr | None = Field(None, description="when set, /kpis, /flow (asset ids) and /metrics answer "
                                        "only requests with `Authorization: Bearer <web_token>` (401 otherwise; "
                                        "Prometheus: the scrape config's bearer token); /readyz stays open for "
                                        "probes. Unset: no auth (keep web_host on loopback or behind the "
                                        "NetworkPolicy)")
    data_dir: str = Field("/tmp/assetstream-kpis", description="faust local table state")
    store: str = Field("memory://", description="faust table store: memory:// (tables rebuilt from their changelog "
                       "topics at every start) or rocksdb:// (needs the rocksdict package)")
    publish_interval_s: float = Field(10.0, description="how often changed KPI windows are published to `kpis`")
    hour_windows_kept: int = Field(48, description="tumbling hour windows kept in the table (older are dropped)")
    day_windows_kept: int = Field(35, description="tumbling day windows kept in the table (older are dropped)")
    ttp_resolution_ms: int = Field(1000, description="time-to-publish samples are rounded to this before the "
                                   "nearest-rank percentiles (bounds table size; 1 = exact)")
    field_tasks: dict[str, str] = Field(default_factory=_default_field_tasks,
                                        description="edited field -> provenance task whose prompt/model wrote it")
    complete_fields: list[str] = Field(default_factory=lambda: ["title", "alt_text", "tags"],
                                       description="fields an asset needs for coverage (alt_text counts as present "
                                       "when the asset is decorative)")
    producer_max_batch_size: int = Field(1, description="faust producer batch bytes; 1 = one record per batch "
                                         "(tansu needs it for correct changelog recovery)")
    audit_retention_ms: int = Field(-1, description="retention.ms of the audit topic (-1 = forever)")
    internal_partitions: int = Field(0, description="partitions of the asset-state changelog; 0 = as many as "
                                     "`validated` has (must match it and `feedback`)")
    flow_enabled: bool = Field(True, description="the end-to-end count check: read raw and the DLQ too and count "
                               "what was published against what was validated or dead-lettered (docs/kpis.md)")
    flow_window_s: int = Field(300, ge=1, description="end-to-end count check: window (by publish time) in which "
                               "records published on raw are counted against the validated and dead-lettered ones")
    flow_grace_s: float = Field(900.0, ge=0, description="a published record still neither validated nor "
                                "dead-lettered this long after its window ended counts as unaccounted "
                                "(assetstream_kpi_flow_unaccounted, alert AssetstreamRecordsUnaccounted); "
                                "keep it above the pipeline's worst normal latency, retries included")
    flow_windows_kept: int = Field(288, ge=1, description="count-check windows kept (288 x 5 min = a day)")
    loglevel: str = Field("WARNING", description="faust worker log level")
    stall_check_s: float = Field(
        300.0, gt=0, description="faust's stall check (stream_processing_timeout and "
                                 "broker_commit_livelock_soft_timeout): a partition with records after its position "
                                 "and no record processed or committed for this long is logged, as a WARNING (faust "
                                 "says ERROR and 'report as bug'; on an idle or catching-up app it is a false alarm: "
                                 "/readyz and failing_agents say whether the app works; docs/kpis.md)")
    repeated_log_interval_s: float = Field(
        10.0, ge=0, description="faust's backpressure lines ('producer buffer full', 'producer flush took'), logged "
                                "many times a second while catching up, are logged at most once per this many "
                                "seconds, with how many were held back (0 = every one)")
