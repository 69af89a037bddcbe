"""Topics of the KPI app, created up front with the AdminClient (faust's own topic declaration is off)."""
from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from app.settings import Settings
from streams.topics import check_broker_reachable, topic_specs

PIPELINE_TOPICS = ("raw", "validated", "feedback", "dead_letter", "audit", "kpis")  # raw, dead_letter: count check


def internal_topic_names(settings: Settings) -> dict[str, str]:
    app_id = settings.kpis.app_id
    return {"asset_state": f"{app_id}-asset-state-changelog", "kpi_events": f"{app_id}-kpi-events",
            "kpi": f"{app_id}-kpi-changelog", "flow": f"{app_id}-flow-changelog"}


def audit_topic_config(settings: Settings) -> dict[str, str]:
    """What the `audit` topic needs (tell `assetstream topics create`): kept forever, never compacted."""
    return {"retention.ms": str(settings.kpis.audit_retention_ms), "retention.bytes": "-1", "cleanup.policy": "delete"}


def partition_counts(admin: AdminClient, topics: list[str], timeout_s: float = 10.0) -> dict[str, int]:
    md = admin.list_topics(timeout=timeout_s)
    return {t: len(md.topics[t].partitions) for t in topics
            if t in md.topics and md.topics[t].error is None and md.topics[t].partitions}


def ensure_topics(settings: Settings, create_pipeline: bool = True, timeout_s: float = 20.0) -> dict[str, int]:
    """Create the app's internal topics (and, if missing, validated/feedback/audit/kpis); return partition counts
    of every topic the app uses, by full name."""
    check_broker_reachable(settings.kafka)
    admin = AdminClient(settings.kafka.client_config())
    t = settings.topics
    names = {logical: t.name(logical) for logical in PIPELINE_TOPICS}
    existing = partition_counts(admin, list(names.values()), settings.kafka.connect_timeout_s)  # its first answer
    wanted: list[NewTopic] = []
    if create_pipeline:
        for logical, name in names.items():
            if name not in existing:
                config = {"retention.ms": str(t.retention_ms)}
                if logical == "audit":
                    config = audit_topic_config(settings)
                if logical == "kpis":
                    config = {"cleanup.policy": "compact"}
                if logical == "dead_letter":
                    config = {"retention.ms": str(t.dlq_retention_ms)}
                wanted.append(NewTopic(name, t.partitions, t.replication_factor, config=config))
        schemas = topic_specs(settings).get("schemas")  # a mock:// registry's schemas topic, as `topics create`
        if schemas is not None and not partition_counts(admin, [schemas.topic], timeout_s):
            wanted.append(schemas)
    _create(admin, wanted, timeout_s)
    existing = partition_counts(admin, list(names.values()), timeout_s)
    n = settings.kpis.internal_partitions or existing.get(names["validated"], t.partitions)
    internal = internal_topic_names(settings)
    wanted = []
    have = partition_counts(admin, list(internal.values()), timeout_s)
    for key, name in internal.items():
        if name in have:
            continue
        parts = n if key == "asset_state" else 1
        config = {"cleanup.policy": "compact"} if key != "kpi_events" else {"retention.ms": str(t.retention_ms)}
        wanted.append(NewTopic(name, parts, t.replication_factor, config=config))
    _create(admin, wanted, timeout_s)
    return partition_counts(admin, list(names.values()) + list(internal.values()), timeout_s)


def _create(admin: AdminClient, topics: list[NewTopic], timeout_s: float) -> None:
    if not topics:
        return
    for _name, fut in admin.create_topics(topics, operation_timeout=timeout_s).items():
        try:
            fut.result(timeout_s)
        except Exception as exc:  # noqa: BLE001 - already there (another worker raced us) is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise
