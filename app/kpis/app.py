"""The KPI / audit faust-streaming app.

    raw, dlq ──── agents on_published, on_dead_letter ─ count-check events (app/kpis/flow.py) ─┐
                  on_dead_letter: a decision the review group refused ─ AuditEntry (ref:<id>) ─> audit
    validated ─┐  agent on_validated ─ asset-state table (per asset: latest version, field flags, last provenance)
               │        │ AuditEntry (generated) ──────────────────────────────────────────────> audit
    feedback ──┘  agent on_feedback  ─ reads asset-state for the provenance and sources of what was shown,
                        │                  notes there what people decided (per field)
                        │ AuditEntry (editor_decision) ────────────────────────────────────────> audit
                        └ KPI events (JSON) -> <app_id>-kpi-events (1 partition)
                              agent on_kpi_event ─ kpi table: 'total', 'hour:<start>', 'day:<start>'
                                                  └ flow table: published vs validated + dead-lettered per window
                                                                (and the validated ones the index dead-lettered)
                              timer: changed windows -> KpiSnapshot -> kpis, Prometheus gauges
    web view: GET /kpis (JSON snapshots, the count check), GET /flow (the unaccounted records),
              GET /metrics (assetstream_kpi_*), GET /readyz (200 ready / 503: recovering, or an agent keeps failing)

Run: `assetstream streams kpis` or `python -m app.kpis.app`.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Iterator

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.avro import Serde, topic_names
from app.kpis import compute, flow, metrics
from app.kpis.audit import audit_key, audit_partition
from app.kpis.topics import ensure_topics, internal_topic_names
from app.settings import Settings
from domain.events import scoped_id
from domain.records import asset_of, document_id

log = logging.getLogger("assetstream.kpis")


def faust_settings(settings: Settings) -> dict[str, Any]:
    """faust App settings derived from ours (session/heartbeat from the kafka section)."""
    ks = settings.kpis
    return dict(
        broker=["kafka://" + hp.strip() for hp in settings.kafka.bootstrap_servers.split(",")],
        store=ks.store, datadir=ks.data_dir, web_port=ks.web_port, web_bind=ks.web_host,
        web_enabled=True, producer_max_batch_size=ks.producer_max_batch_size,
        # only our views (add_web_views): faust's own table, router, graph and stats views serve the tables with no
        # auth at all (trial 31 N1: /table/asset-state/<id>/ answered any tenant's asset without kpis.web_token)
        web_tables_enabled=False, web_router_enabled=False, web_graph_enabled=False, web_stats_enabled=False,
        broker_session_timeout=settings.kafka.session_timeout_ms / 1000.0,
        broker_heartbeat_interval=settings.kafka.heartbeat_interval_ms / 1000.0,
        # topics are created up front by ensure_topics(); faust must neither create them nor declare leader topics
        topic_allow_declare=False, topic_disable_leader=True,
        topic_replication_factor=settings.topics.replication_factor,
        consumer_auto_offset_reset="earliest", producer_acks=-1,
        stream_processing_timeout=ks.stall_check_s, broker_commit_livelock_soft_timeout=ks.stall_check_s,
    )


class AgentHealth:
    """Which agents keep failing. faust logs a crashed agent and restarts it, so the app stays up while, say,
    on_validated crashes on every record (trial 17: "Schema Not Found" every 5 s while /kpis said ready). An agent
    is failing while its last record crashed it within the last `window_s` and none has succeeded since."""

    def __init__(self, window_s: float = 60.0, clock=time.monotonic):
        self.window_s, self.clock = window_s, clock
        self.last_ok: dict[str, float] = {}
        self.last_failed: dict[str, tuple[float, str]] = {}

    @contextmanager
    def watch(self, agent: str) -> Iterator[None]:
        """Around the handling of one record: a raised exception counts as a crash (and propagates)."""
        try:
            yield
        except Exception as exc:
            self.last_failed[agent] = (self.clock(), f"{type(exc).__name__}: {exc}"[:300])
            metrics.AGENT_CRASHES.labels(agent).inc()
            raise
        self.last_ok[agent] = self.clock()

    def failing(self) -> dict[str, str]:
        """{agent: its last error} for the agents failing now; also sets assetstream_kpi_agent_failing."""
        now = self.clock()
        out = {agent: error for agent, (at, error) in self.last_failed.items()
               if now - at < self.window_s and at >= self.last_ok.get(agent, float("-inf"))}
        for agent in self.last_failed:
            metrics.AGENT_FAILING.labels(agent).set(1 if agent in out else 0)
        return out


def published_event(serde: Serde, value: bytes, timestamp_s: float | None) -> dict[str, Any] | None:
    """The count check's "p" event of a raw record (None for a poison record: it never counts as published)."""
    try:
        record = serde.deserialize("raw", value)
    except Exception:  # noqa: BLE001 - the runner dead-letters it as poison, which is not counted either
        return None
    at = int(timestamp_s * 1000) if timestamp_s else compute.now_ms()
    return {"t": "p", "at": at, "asset": record["asset_id"], "version": int(record["version"])}


def dead_letter_event(serde: Serde, value: bytes, before_validated: dict[str, str],
                      validated_topic: str | None = None) -> dict[str, Any] | None:
    """The count check's "x" event of a dead letter written on the way from raw to validated, or its "xi" event of
    one the index sink wrote for a validated record (`validated_topic`: the physical name of `validated`) (None for
    others: a write-back letter, a poison record, an undecodable letter, the index letter of a record the review
    group re-published, which has no raw record behind it)."""
    try:
        letter = serde.deserialize("dead_letter", value)
    except Exception:  # noqa: BLE001
        return None
    index = letter["original_topic"] == validated_topic and letter.get("stage") == "index"
    logical = "validated" if index else before_validated.get(letter["original_topic"])
    if logical is None or letter["error_class"] == "poison" or not letter.get("asset_id"):
        return None
    version = None
    if letter.get("original_value") is not None:
        try:
            record = serde.deserialize(logical, letter["original_value"])
            if index and (record.get("stamp") or {}).get("stage") == "review":
                return None
            version = int(asset_of(record)["version"])
        except Exception:  # noqa: BLE001 - then it settles the asset's oldest pending publication
            version = None
    return {"t": "xi" if index else "x", "at": compute.to_ms(letter["last_failure_time"]), "asset": letter["asset_id"],
            "version": version}


def fold_kpi_event(kpi: Any, dirty: set[str], event: dict[str, Any], ks: Any) -> None:
    """Fold a KPI event into the running total and its hour and day windows; drop windows past the kept ones."""
    for key in compute.window_keys(event["at"]):
        agg = kpi.get(key) or compute.new_aggregate(key)
        kpi[key] = compute.fold(agg, key, event, ks)
        dirty.add(key)
    for key in compute.expired_windows(list(kpi.keys()), ks):
        del kpi[key]
        dirty.discard(key)


def refusal_auditor(serde: Serde, write_audit):
    """on_letter for count_check_agents: a decision the review group refused, audited beside the decision's own entry
    (compute.audit_for_refusal)."""
    async def audit_refusal(value: bytes, source: tuple[str, int, int]) -> None:
        try:
            letter = serde.deserialize("dead_letter", value)
        except Exception:  # noqa: BLE001 - not a letter this app reads: no refusal to audit
            return
        if letter.get("stage") != "review":
            return
        try:
            decision = serde.deserialize("feedback", letter["original_value"]) if letter.get("original_value") else None
        except Exception:  # noqa: BLE001 - the original cut or unreadable: the letter's details still say who and why
            decision = None
        entry = compute.audit_for_refusal(letter, decision, source)
        if entry is not None:
            await write_audit(entry)

    return audit_refusal


def count_check_agents(app: faust.App, settings: Settings, serde: Serde, emit,
                       health: AgentHealth | None = None, on_letter=None) -> None:
    """The agents feeding the end-to-end count check (app/kpis/flow.py): one "p" event per record published on
    raw, one "x" event per dead letter written on the way to validated, one "xi" per index letter of a validated
    record (validated records send theirs with their KPI event). `on_letter(value, (topic, partition, offset))`:
    called for every dead letter too (the audit of refused decisions), with the count check on or off."""
    flow_on = settings.kpis.flow_enabled
    if not flow_on and on_letter is None:
        return
    health = health or AgentHealth()
    names = topic_names(settings)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    before_validated = {names[t]: t for t in ("raw", "preprocessed", "enriched")}

    if flow_on:
        @app.agent(app.topic(names["raw"], **raw), name="assetstream.kpis.on_published")
        async def on_published(stream):
            async for event in stream.events():
                with health.watch("on_published"):
                    ev = published_event(serde, event.value, event.message.timestamp)
                    if ev is not None:
                        await emit(ev)

    @app.agent(app.topic(names["dead_letter"], **raw), name="assetstream.kpis.on_dead_letter")
    async def on_dead_letter(stream):
        async for event in stream.events():
            with health.watch("on_dead_letter"):
                if flow_on:
                    ev = dead_letter_event(serde, event.value, before_validated, names["validated"])
                    if ev is not None:
                        await emit(ev)
                if on_letter is not None:
                    msg = event.message
                    await on_letter(event.value, (msg.topic, msg.partition, msg.offset))


def add_web_views(app: faust.App, ks: Any, health: AgentHealth, ready, recovered, snapshots, flow_table) -> None:
    """The web view's pages: /kpis, /readyz (the k8s readinessProbe), /flow, /metrics. With kpis.web_token set, all
    but /readyz need `Authorization: Bearer <web_token>` (trial 30 F8: /flow lists asset ids)."""
    expected = f"Bearer {ks.web_token.get_secret_value()}".encode() if ks.web_token else None

    def refused(web, request):
        """A 401 for a request without the web token (when one is set), else None."""
        if expected is None or hmac.compare_digest((request.headers.get("Authorization") or "").encode(), expected):
            return None
        return web.json({"error": "authentication required: send Authorization: Bearer <kpis.web_token>"},
                        status=401, headers={"WWW-Authenticate": "Bearer"})

    @app.page("/kpis")
    async def kpis_view(web, request):
        if (no := refused(web, request)) is not None:
            return no
        return web.json({"app_id": ks.app_id, "ready": ready(), "failing_agents": health.failing(),
                         "snapshots": snapshots(), "flow": flow.report(flow_table, ks, compute.now_ms())})

    @app.page("/readyz")
    async def readyz_view(web, request):
        failing = health.failing()
        body = {"ready": ready(), "recovered": recovered(), "failing_agents": failing}
        return web.json(body, status=200 if body["ready"] else 503)

    @app.page("/flow")
    async def flow_view(web, request):
        if (no := refused(web, request)) is not None:
            return no
        now = compute.now_ms()
        return web.json({**flow.report(flow_table, ks, now),
                         "unaccounted_records": flow.unaccounted_assets(flow_table, ks, now)})

    @app.page("/metrics")
    async def metrics_view(web, request):
        if (no := refused(web, request)) is not None:
            return no
        health.failing()  # refresh assetstream_kpi_agent_failing (a failure ages out of the window)
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def make_app(settings: Settings, create_topics: bool = True) -> faust.App:
    """Build the app (creates missing topics first, so table partition counts are known)."""
    ks = settings.kpis
    names = topic_names(settings)
    counts = ensure_topics(settings, create_pipeline=create_topics)
    internal = internal_topic_names(settings)
    n = counts.get(names["validated"], settings.topics.partitions)
    if counts.get(names["feedback"], n) != n:
        raise RuntimeError(f"{names['feedback']} has {counts[names['feedback']]} partitions but {names['validated']} "
                           f"has {n}: the asset-state table needs them co-partitioned")
    audit_partitions = counts.get(names["audit"], settings.topics.partitions)
    serde = Serde.for_settings(settings)

    app = faust.App(ks.app_id, topic_partitions=n, **faust_settings(settings))
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    validated_topic = app.topic(names["validated"], **raw)
    feedback_topic = app.topic(names["feedback"], **raw)
    audit_topic = app.topic(names["audit"], partitions=audit_partitions, **raw)
    kpis_topic = app.topic(names["kpis"], **raw)
    kpi_events = app.topic(internal["kpi_events"], partitions=1, internal=False, **raw)

    asset_state = app.Table("asset-state", default=None, partitions=n)
    kpi = app.Table("kpi", default=None, partitions=1)
    flow_table = app.Table("flow", default=None, partitions=1)
    fold_flow = flow.fold if ks.flow_enabled else flow.ignore
    state: dict[str, Any] = {"dirty": set(), "published_once": False}
    health = AgentHealth()

    async def write_audit(entry: dict[str, Any]) -> None:
        key = audit_key(entry)
        await audit_topic.send(key=key.encode(), value=serde.serialize("audit", entry),
                               partition=audit_partition(key, audit_partitions))

    async def emit(event: dict[str, Any], acked: bool = False) -> None:
        sent = await kpi_events.send(key=b"kpi", value=json.dumps(event).encode(), partition=0)
        if acked:  # on the broker before anything after it (a state write) can land
            await sent

    @app.agent(validated_topic, name="assetstream.kpis.on_validated")
    async def on_validated(stream):
        async for event in stream.events():
            with health.watch("on_validated"):
                record = serde.deserialize("validated", event.value)
                key = document_id(record)  # the tenant-scoped id, as the record's key
                new_state, kpi_event = compute.apply_validated(asset_state.get(key), record, ks)
                msg = event.message
                source = (msg.topic, msg.partition, msg.offset)
                # the event first, acknowledged, then the state: a kill -9 in between redelivers the record, which
                # computes the same event again from the unchanged state (the KPI agent folds its position once);
                # the other way round, the state landed and the redelivered record moved nothing: a move lost
                await emit(compute.with_source(kpi_event, source), acked=True)
                # what people decided is on_feedback's to write, maybe meanwhile: kept as it is now
                new_state["people"] = (asset_state.get(key) or {}).get("people") or new_state.get("people") or {}
                asset_state[key] = new_state
                await write_audit(compute.audit_for_validated(record, ks, source))

    @app.agent(feedback_topic, name="assetstream.kpis.on_feedback")
    async def on_feedback(stream):
        async for event in stream.events():
            with health.watch("on_feedback"):
                decision = serde.deserialize("feedback", event.value)
                key = scoped_id(decision["asset_id"], decision.get("tenant"))
                current = asset_state.get(key)
                # the asset's decisions as people sent them, for the next one (compute.charged_fields); written
                # before any await, so on_validated's write of the asset cannot land between the read and this
                asset_state[key] = compute.note_decision(current, decision)
                msg = event.message
                source = (msg.topic, msg.partition, msg.offset)
                await write_audit(compute.audit_for_decision(decision, current, ks, source))
                await emit(compute.with_source(compute.decision_event(current, decision, ks), source))

    count_check_agents(app, settings, serde, emit, health, refusal_auditor(serde, write_audit))

    @app.agent(kpi_events, name="assetstream.kpis.on_kpi_event")
    async def on_kpi_event(stream):
        async for value in stream:
            with health.watch("on_kpi_event"):
                event = json.loads(value)
                if not fold_flow(flow_table, event, ks):  # the count check's own events stop there
                    fold_kpi_event(kpi, state["dirty"], event, ks)

    def recovered() -> bool:
        recovery = app.tables.recovery
        assigned = app.consumer.assignment() if app.consumer else set()
        return (recovery.completed.is_set() and not app.rebalancing and not recovery.in_recovery
                and TP(internal["kpi_events"], 0) in assigned)

    def ready() -> bool:
        """Tables recovered and assigned, and no agent keeps failing (a crash-looping agent leaves the KPIs and
        the count check silently stale: not ready, and assetstream_kpi_agent_failing says which)."""
        return not health.failing() and recovered()

    def snapshots() -> list[dict[str, Any]]:
        items = [(k, v) for k, v in kpi.items() if v]
        items.sort(key=lambda kv: (kv[0] != "total", compute.parse_window_key(kv[0])[0],
                                   -(compute.parse_window_key(kv[0])[1] or 0)))
        now = compute.now_ms()
        return [compute.snapshot(k, v, ks.app_id, ks, now) for k, v in items]

    @app.timer(interval=ks.publish_interval_s, name="assetstream.kpis.publish")
    async def publish() -> None:
        if not ready():
            return
        keys = set(kpi.keys()) if not state["published_once"] else set(state["dirty"])
        state["dirty"].clear()
        state["published_once"] = True
        newest: dict[str, str] = {}
        now = compute.now_ms()
        for key in sorted(keys):
            agg = kpi.get(key)
            if not agg:
                continue
            snap = compute.snapshot(key, agg, ks.app_id, ks, now)
            await kpis_topic.send(key=key.encode(), value=serde.serialize("kpis", snap))
        for key in kpi.keys():
            kind, start, _ = compute.parse_window_key(key)
            if kind == "total" or start > compute.parse_window_key(newest.get(kind, f"{kind}:-1"))[1]:
                newest[kind] = key
        for key in newest.values():
            if kpi.get(key):
                metrics.update(compute.snapshot(key, kpi[key], ks.app_id, ks, now))
        metrics.update_flow(flow.report(flow_table, ks, now))

    add_web_views(app, ks, health, ready, recovered, snapshots, flow_table)

    app.assetstream = {"serde": serde, "asset_state": asset_state, "kpi": kpi, "flow": flow_table,  # type: ignore[attr-defined]
                       "ready": ready, "health": health, "snapshots": snapshots, "partitions": n, "audit_partitions": audit_partitions}
    return app


class RepeatLimit(logging.Filter):
    """Lets a record starting with one of `prefixes` through at most once per `interval_s` (per prefix); the
    next one let through says how many were held back. Other records pass untouched."""

    def __init__(self, prefixes: tuple[str, ...], interval_s: float, clock=time.monotonic):
        super().__init__()
        self.prefixes, self.interval_s, self.clock = prefixes, interval_s, clock
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        now = self.clock()
        last = self.last.get(prefix)
        if last is not None and now - last < self.interval_s:
            self.held[prefix] = self.held.get(prefix, 0) + 1
            return False
        held = self.held.pop(prefix, 0)
        if held:
            record.msg, record.args = f"{message} (and {held} more like it in the last {now - last:.0f}s)", ()
        self.last[prefix] = now
        return True


# faust's producer buffer logs these on every table write while a backlog is replayed (it then waits for the
# buffer to drain: that is the backpressure, working as intended)
BACKPRESSURE_LINES = ("producer buffer full", "producer flush took")


def limit_backpressure_logs(interval_s: float) -> RepeatLimit | None:
    if interval_s <= 0:
        return None
    limit = RepeatLimit(BACKPRESSURE_LINES, interval_s)
    logger = logging.getLogger("faust.transport.producer")
    for old in [f for f in logger.filters if isinstance(f, RepeatLimit)]:
        logger.removeFilter(old)
    logger.addFilter(limit)
    return limit


# faust's stall check (faust.transport.drivers.aiokafka, every 7 s): a partition with records after its position and
# none processed or committed yet, once the app has run stream_processing_timeout, is logged as an ERROR ending in
# "report as bug". It compares with the app's start, not with when the records arrived, so any burst reaching a
# long-running app, and any catch-up on a busy machine, trips it (trial 22: 10 such lines on a healthy app). The
# app's own health is /readyz (failing agents) and the count check; these lines are demoted to WARNING with a note.
STALL_CHECK_LINES = tuple(
    text.split("%", 1)[0].strip() for text in (
        aiokafka_driver.SLOW_PROCESSING_STREAM_IDLE_SINCE_START, aiokafka_driver.SLOW_PROCESSING_STREAM_IDLE,
        aiokafka_driver.SLOW_PROCESSING_NO_COMMIT_SINCE_START, aiokafka_driver.SLOW_PROCESSING_NO_RECENT_COMMIT))
STALL_CHECK_NOTE = (" [assetstream: faust's stall check, demoted to WARNING: expected while the app catches up or "
                    "right after records reach an idle partition; /readyz and the count check say whether it works]")


class DemoteStallCheck(logging.Filter):
    """faust's stall-check ERRORs become WARNINGs with STALL_CHECK_NOTE; other records pass untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and isinstance(record.msg, str) \
                and any(line in record.msg for line in STALL_CHECK_LINES):
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            # faust's text goes on to say "report as bug" for the commit case: the note comes first
            first, _, rest = record.msg.partition("\n")
            record.msg = first + STALL_CHECK_NOTE + ("\n" + rest if rest else "")
        return True


def demote_stall_check_logs() -> DemoteStallCheck:
    logger = logging.getLogger(aiokafka_driver.__name__)
    for old in [f for f in logger.filters if isinstance(f, DemoteStallCheck)]:
        logger.removeFilter(old)
    demote = DemoteStallCheck()
    logger.addFilter(demote)
    return demote


def run(settings: Settings | None = None) -> None:
    """Run the app as a faust worker until SIGTERM / SIGINT."""
    settings = settings or Settings()
    app = make_app(settings)
    os.makedirs(settings.kpis.data_dir, exist_ok=True)
    worker = faust.Worker(app, loglevel=settings.kpis.loglevel)
    limit_backpressure_logs(settings.kpis.repeated_log_interval_s)
    demote_stall_check_logs()
    worker.execute_from_commandline()


if __name__ == "__main__":
    run()
