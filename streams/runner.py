"""The stage runner: the only code in assetstream that talks to Kafka for the stages.

    poll -> deserialize -> stage (plain Python) -> produce outputs (idempotent producer, acks=all)
         -> when every output of a record is acknowledged, the record is done
         -> commit the highest offset below which every record of that partition is done

This module is the poll loop, the rebalance callbacks and the drain; the rest is in parts with one job each:
streams.work (decode -> stage -> encode, classify, retry, dead letters; no Kafka), streams.executors (where
the work runs: poll thread, thread pool, child processes, asyncio loop or one ordered batch at a time),
streams.outputs (produce, delivery callbacks, redelivery, refused outputs), streams.commits (plain or
transactional), streams.tracker (per-partition offsets: the committed offset never passes an unfinished
record), streams.backpressure (at runner.max_in_flight the worker takes nothing more, and pauses its
partitions if that lasts, so slow work never exceeds max.poll.interval.ms) and streams.sensors (metrics).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams import metrics
from streams.backpressure import Backpressure
from streams.clientlog import ClientLog
from streams.commits import Commits, PlainCommits, TransactionalCommits
from streams.executors import make_executor, make_retry_executor
from streams.lag import ConsumerLag
from streams.originals import open_store
from streams.outputs import Outputs
from streams.records import now_ms
from streams.retry import DelayQueue, RetryLane, RetryTopicMissing, retry_state
from streams.sensors import PrometheusSensor, Sensor
from streams.settings import RuntimeSettings
from streams.stage import Stage
from streams.topics import check_broker_reachable
from streams.tracker import TP, PartitionTracker
from streams.work import Record, RecordWork

log = logging.getLogger("assetstream.runner")

OTHER_PROTOCOLS = {"range": ("cooperative-sticky", "roundrobin"), "roundrobin": ("cooperative-sticky", "range"),
                   "cooperative-sticky": ("range", "roundrobin")}
"""The strategies a group that refuses a member's (INCONSISTENT_GROUP_PROTOCOL) may be using: an eager one (range,
roundrobin) and the cooperative one cannot be mixed in one group, nor in one member's list, and neither can range
and roundrobin; which one the running group uses is not known here (the release it came from is)."""


TANSU_CLUSTER_ID = "tansu_cluster"
"""The cluster id tansu reports unless started with another --cluster-id (CLUSTER_ID)."""


class BrokerNotReached(RuntimeError):
    """A starting worker could not reach the broker (any stage, any runner.retry_mode): nothing accepted a TCP
    connection at the bootstrap servers within kafka.connect_timeout_s, or the broker did not list its topics within
    runner.retry_topic_check_timeout_s (a listener that speaks another security protocol or refuses the SASL
    login). `reason` is the client's own words. The worker refuses to start rather than log the client's error
    every 30 s: exit 1, an orchestrator restarts it and the broker may be up then."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: cannot reach the Kafka broker at start-up: {reason}")
        self.stage, self.reason = stage, reason


def describe(partitions: list[TopicPartition]) -> str:
    """Partitions for a log line, each named by topic and number: `t.raw[0], t.raw[1], t.raw-retry[0]`
    (`none` for an empty list)."""
    return ", ".join(f"{t}[{p}]" for t, p in sorted({(tp.topic, tp.partition) for tp in partitions})) or "none"


def _client_reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if hasattr(error, "str") else str(error)


class StageRunner:
    """Run one stage as one consumer group member. `run()` blocks until `stop()` or SIGTERM/SIGINT."""

    def __init__(self, stage: Stage, settings: RuntimeSettings, *, group_id: str | None = None,
                 install_signal_handlers: bool = False, on_idle: Callable[["StageRunner"], None] | None = None,
                 sensor: Sensor | None = None):
        self.stage = stage
        self.settings = settings
        self.name = stage.name
        self.rs = settings.runner
        self._stop = threading.Event()
        self.sensor = sensor if sensor is not None else PrometheusSensor(self.name)
        self.work = RecordWork(stage, settings, stop=self._stop, on_failed=self.sensor.on_failed,
                               on_retried=self.sensor.on_retried)  # decode -> stage -> encode, no Kafka
        self.names = self.work.names
        self.input_topic = self.names[stage.input_topic]
        # runner.retry_mode=topic/auto: the input's retry topic is consumed too; its records wait here until due
        self.retry_topic: str | None = None  # set once the mode is resolved (_resolve_retry_mode)
        self.delayed = DelayQueue(self.name)
        self._retries_paused = False
        self.group_id = group_id or settings.groups.name(stage.name)
        self.install_signal_handlers = install_signal_handlers
        self.on_idle = on_idle
        self.health = metrics.Health()
        self.health.ready_checks.append(stage.ready)
        self.tracker = PartitionTracker()
        gaps = self.rs.detect_offset_gaps
        self.detect_gaps = (not self.rs.transactional) if gaps is None else gaps
        self.assigned: set[TP] = set()
        self._last_commit = time.monotonic()
        self.metrics_port: int | None = None
        self._http = None
        self.fatal_error: str | None = None
        # librdkafka's log lines and error callbacks, each distinct error logged once per interval
        self.client_log = ClientLog(self.name, self.rs.client_log_interval_s)

        kafka = settings.kafka
        instance = kafka.instance_id(self.group_id)
        cconf: dict[str, Any] = {
            **kafka.client_config(),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": kafka.assignment_strategy,
            "session.timeout.ms": kafka.session_timeout_ms,
            "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
            "max.poll.interval.ms": kafka.max_poll_interval_ms,
            "isolation.level": "read_committed",
            "error_cb": self._on_client_error,
            "logger": self.client_log,
        }
        if instance:
            cconf["group.instance.id"] = instance
        pconf: dict[str, Any] = {
            **kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "error_cb": self._on_client_error,
            "logger": self.client_log,
        }
        if self.rs.transactional:
            pconf["transactional.id"] = f"{self.group_id}-{instance or uuid.uuid4().hex[:12]}"
        self._metadata: Any = None  # the cluster's metadata, asked once at start-up (_reach_broker)
        self.consumer = self._reach_broker(cconf)
        if instance and self._static_members_never_expire():
            self.consumer.close()
            del cconf["group.instance.id"]
            self.consumer = Consumer(cconf)
        self.producer = Producer(pconf)
        settings = self._resolve_retry_mode(settings)
        self.retry_topic = self.work.retry.topic if self.work.retry is not None else None
        self.input_topics = (self.input_topic,) + ((self.retry_topic,) if self.retry_topic else ())
        self.commits: Commits = (
            TransactionalCommits(self.name, self.consumer, self.producer, self.tracker, self.sensor, self._rewind)
            if self.rs.transactional else PlainCommits(self.name, self.consumer, self.tracker, self.sensor))
        self.backpressure = Backpressure(self.name, self.consumer, self.rs, stage.should_pause, self.sensor)
        # records waiting for the schema registry (an owed dead letter among them) pause consumption
        self.work.pause = self.backpressure.requester("schema_registry_waits")
        self.consumer_lag = ConsumerLag(  # its probe logs like the runner's clients (once per interval)
            self.consumer, {**kafka.client_config(), "error_cb": self._on_client_error, "logger": self.client_log},
            self.group_id, self.tracker, self.sensor,
            topics=self.input_topics)
        self.outputs = Outputs(self.producer, self.commits, self.work, self.tracker, self.sensor, self.assigned,
                               fatal=self._fatal, originals=open_store(settings.dead_letters),
                               inline_max_bytes=settings.dead_letters.inline_max_bytes,
                               abandon=lambda rec: self.executor.abandon(rec))
        self.executor = make_executor(
            stage, settings, self.work, self._stop, self.outputs.emit, sensor=self.sensor, tick=self.health.tick,
            fail=self._fail, at_limit=lambda: self.tracker.working() >= self.rs.max_in_flight,
            pause=self.backpressure.requester("batch"))  # a batch's own outage (store, registry), lifted by it
        if self.retry_topic is not None:  # retry records on their own threads / loop
            self.executor = RetryLane(self.executor, make_retry_executor(stage, settings, self.work, self._stop,
                                                                         self.outputs.emit), self.retry_topic)

    def _reach_broker(self, cconf: dict[str, Any]) -> Consumer:
        """Every worker's start-up check, before it subscribes: a TCP connection to a bootstrap server (a refused
        one is said at once), then the cluster's metadata from a new consumer, one request (up to
        runner.retry_topic_check_timeout_s) that the later start-up checks (the retry topic, tansu) share.
        Either failing raises BrokerNotReached with the client's reason; the consumer is closed then."""
        try:
            check_broker_reachable(self.settings.kafka)
        except KafkaException as exc:
            raise BrokerNotReached(self.name, _client_reason(exc)) from exc
        consumer = Consumer(cconf)
        try:
            self._metadata = consumer.list_topics(timeout=self.rs.retry_topic_check_timeout_s)
        except KafkaException as exc:
            consumer.close()
            raise BrokerNotReached(self.name, _client_reason(exc)) from exc
        return consumer

    def _static_members_never_expire(self) -> bool:
        """Whether the broker is tansu (its default cluster id), whose group coordinator keeps a static member
        (group.instance.id) whose session expired: a worker stopped or killed for good keeps its partitions
        and nobody consumes them, for ever (docs/operations.md#scaling-a-group). Such a worker joins as a
        dynamic member instead."""
        cluster = self._metadata.cluster_id
        if cluster != TANSU_CLUSTER_ID:
            return False
        log.warning("%s: the broker is tansu (cluster id %s), which never expires a static member: joining "
                    "without group.instance.id (kafka.static_membership is ignored; see "
                    "docs/operations.md#scaling-a-group)", self.name, cluster)
        return True

    def _resolve_retry_mode(self, settings: RuntimeSettings) -> RuntimeSettings:
        """runner.retry_mode for this worker, from whether its retry topic exists: `topic` without it refuses to
        start (a clear error naming the topic); `auto` falls back to in-place retries with a warning. Returns
        the settings the stage's child processes (runner.processes) are built from, with the mode resolved."""
        retry, mode = self.work.retry, self.rs.retry_mode
        if retry is None:
            return settings
        if retry.topic in self._metadata.topics:
            log.info("%s: transient failures go to the retry topic %s", self.name, retry.topic)
            return settings
        if mode == "topic":
            self.consumer.close()
            raise RetryTopicMissing(f"{self.name}: runner.retry_mode=topic but the retry topic {retry.topic} does "
                                    "not exist; create it with `assetstream topics create` (or set "
                                    "runner.retry_mode=auto or inplace)")
        log.warning("%s: the retry topic %s does not exist; retrying transient failures in place (they hold the "
                    "partition meanwhile). Create it with `assetstream topics create` and restart the worker",
                    self.name, retry.topic)
        self.work.retry = None
        return settings.with_overrides(runner={"retry_mode": "inplace"})

    # ------------------------------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._stop.set()
        self.executor.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        try:
            if self.rs.metrics_port >= 0:
                self._http, self.metrics_port = metrics.serve(self.health, self.rs.metrics_port, self.rs.metrics_host)
            self.executor.start()
            topics = list(self.input_topics)
            self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                    on_lost=self._on_lost)
            self.health.started = True
            log.info("%s: consuming %s as group %s", self.name, " and ".join(topics), self.group_id)
            while not self.stopping:
                self._iteration()
            self._drain()
        finally:
            self._shutdown()

    def _iteration(self) -> None:
        self.health.tick()
        # records being worked: finished ones waiting behind a slow one of their partition, and retry records
        # waiting for their time, hold nothing (counting them let one slow record stop the whole worker)
        working = self.tracker.working() - len(self.delayed)
        self.backpressure.apply(self.assigned, working, self.stopping)
        self.backpressure.hold_windows(self.assigned, self.tracker.in_flight)
        take = self.backpressure.room(working)
        if take is None:  # at the limit: let the work and its acks drain rather than take more
            msgs = None
            self.producer.poll(min(self.rs.poll_timeout_s, 0.01))
        else:
            msgs = self.consumer.consume(num_messages=take, timeout=self.rs.poll_timeout_s)
        accepted = self._accept(msgs) if msgs else []
        if self.retry_topic is not None:
            accepted += self._due_retries()
        if accepted:
            self.executor.submit(accepted)
        self.executor.flush()
        self._pump()
        self._maybe_commit()
        self._update_lag()
        self.sensor.on_in_flight(self.tracker.in_flight())
        if msgs is not None and not msgs and self.on_idle:
            self.on_idle(self)

    def _accept(self, msgs: list[Message]) -> list[Record]:
        """Track what one consume() returned (one pass, no per-record method calls beyond the essentials)."""
        received, epoch, assigned, add = time.monotonic(), self.outputs.epoch, self.assigned, self.tracker.add
        gap = self.tracker.gap if self.detect_gaps else None
        accepted: list[Record] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
                    self._join_refused(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    self.client_log.emit(logging.WARNING, f"consumer error: {err.str()}")
                continue
            ts_type, ts = msg.timestamp()
            rec = Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers() or [],
                         ts if ts_type else None, received, epoch)
            if rec.tp not in assigned:
                continue  # delivered just before a revoke
            if gap is not None and (first := gap(rec.tp, rec.offset)) is not None:
                self._offset_gap(rec.topic, rec.partition, first, rec.offset - 1)
            add(rec.tp, rec.offset)
            if rec.topic == self.retry_topic and (due := retry_state(rec.headers).not_before_ms or 0) > now_ms():
                self.delayed.hold(rec, due)  # tracked (not committed past) but not worked before its time
                continue
            accepted.append(rec)
        if accepted:
            self.sensor.on_records_in(len(accepted))
        return accepted

    def _due_retries(self) -> list[Record]:
        """Held retry records whose time has come; the retry partitions are paused while more than
        runner.retry_held_max records are held (resumed at half)."""
        due = self.delayed.due() if len(self.delayed) else []
        held, limit = len(self.delayed), self.rs.retry_held_max
        if held >= limit or (self._retries_paused and held >= limit // 2):
            tps = [TopicPartition(t, p) for t, p in self.assigned if t == self.retry_topic]
            if tps:
                self.consumer.pause(tps)  # every iteration: a resume by the backpressure must not undo it
            self._retries_paused = True
        elif self._retries_paused:
            self._retries_paused = False
            tps = [TopicPartition(t, p) for t, p in self.assigned
                   if t == self.retry_topic and (t, p) not in self.backpressure.paused_tps
                   and (t, p) not in self.backpressure.window_held]
            if tps:
                self.consumer.resume(tps)
        return due

    def _offset_gap(self, topic: str, partition: int, first: int, last: int) -> None:
        """The broker returned a record past the next offset of its partition: first..last were never returned
        (acknowledged and lost by the broker, or deleted): counted and logged once, with the range."""
        self.sensor.on_offset_gap(topic, partition, first, last)
        log.error("%s: offset gap in %s/%d: offsets %d-%d (%d record(s)) were never returned by the broker; "
                  "consuming on from %d (see docs/monitoring.md#assetstreamoffsetgap)", self.name, topic, partition,
                  first, last, last - first + 1, last + 1)

    def _pump(self) -> None:
        """Produce what workers finished, serve delivery callbacks, finish records."""
        self.executor.pump()
        self.outputs.redeliver_due()
        self.producer.poll(0)
        self.outputs.flush_acked()
        self.sensor.flush()

    def _maybe_commit(self, force: bool = False, tps: set[TP] | None = None) -> None:
        if not force and time.monotonic() - self._last_commit < 1.0:
            return
        self._last_commit = time.monotonic()
        self.commits.commit(tps)

    # ------------------------------------------------------------------------------------------ lag
    def _update_lag(self, force: bool = False) -> None:
        # every partition the consumer does not fetch (paused for all, or held alone by runner.max_uncommitted):
        # its cached high watermark is frozen, so the probe reads its end
        # — and the retry topic's partitions while too many retries are held in memory (runner.retry_held_max)
        unfetched = self.backpressure.paused_tps | self.backpressure.window_held
        if self._retries_paused:
            unfetched = unfetched | {tp for tp in self.assigned if tp[0] == self.retry_topic}
        self.consumer_lag.update(self.assigned, unfetched, force)

    @property
    def lags(self) -> dict[TP, int]:
        return self.consumer_lag.lags

    def lag(self) -> int:
        """Total lag over assigned partitions (poll thread: the consumer is not shared with other threads)."""
        self._update_lag(force=True)
        return self.consumer_lag.total(self.assigned)

    # ------------------------------------------------------------------------------------------ rebalance
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.outputs.assign([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            self.assigned.add((tp.topic, tp.partition))
            self.backpressure.assigned((tp.topic, tp.partition))
        log.info("%s: assigned %s", self.name, describe(partitions))
        if self.health.blocked is not None:
            self.health.blocked = None
            log.info("%s: joined group %s; ready again", self.name, self.group_id)

    def _join_refused(self, err: KafkaError) -> None:
        """The group refuses this member's JoinGroup for its assignment protocol (an old release's members, or
        on tansu the memory of them: it keeps an empty group's protocol). librdkafka retries for ever and the
        worker would look like a healthy standby: log once what to do, and say not ready until it joins."""
        if self.health.blocked is not None:
            return
        ours = self.settings.kafka.assignment_strategy
        self.health.blocked = (
            f"group {self.group_id} refuses this member ({err.str()}): the group's members (or the broker's memory "
            f"of them) use another assignment protocol than kafka.assignment_strategy={ours}: set "
            "kafka.assignment_strategy to the protocol the running group uses ("
            + " or ".join(f"kafka.assignment_strategy={p}" for p in OTHER_PROTOCOLS[ours])
            + ") for this rollout, see docs/operations.md 'Upgrading and rolling back'")
        log.error("%s: %s", self.name, self.health.blocked)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        log.info("%s: revoking %s", self.name, describe(partitions))
        self.delayed.drop(revoked, self.executor.abandon)  # uncommitted: the next owner holds them
        # records not started yet are left to the next owner at once, never worked nor produced here: waiting
        # for them too could outlast the drain timeout, and what finished behind one left unfinished would be
        # output again by the next owner (it starts at the committed offset)
        self.executor.forget(revoked)
        if not self.stopping:  # when stopping, _drain already waited
            self._settle(revoked, self.rs.drain_timeout_s)
        self._maybe_commit(force=True, tps=revoked)
        self._forget(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        log.warning("%s: partitions lost %s (not committing)", self.name, describe(partitions))
        self.delayed.drop(lost, self.executor.abandon)
        self._forget(lost)
        self.commits.lost()

    def _rewind(self) -> None:
        """Exactly-once, after an aborted transaction: forget everything since the last commit and seek every
        assigned partition back to its committed offset."""
        self.outputs.rewind()  # results of older records are ignored from now on
        tps = [TopicPartition(t, p) for t, p in self.assigned]
        for tp in list(self.assigned):
            self.tracker.drop(tp)
        self.delayed.drop(None, self.executor.abandon)
        self.executor.forget(None)
        self.executor.abandoned.clear()  # their offsets are taken again from the committed ones
        if tps:
            for tp in self.consumer.committed(tps, timeout=30):
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else
                                                  -2))  # -2: OFFSET_BEGINNING

    def _forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self.tracker.drop(tp)
            self.assigned.discard(tp)
            self.backpressure.forget(tp)
            self.consumer_lag.forget(tp)
        self.executor.forget(tps)
        # the offsets abandoned here mean nothing once the partition is gone: should it come back, its records
        # are taken again at the same offsets, and the drain must wait for those
        abandoned = self.executor.abandoned
        abandoned.difference_update([k for k in abandoned.copy() if k[0] in tps])

    def _settle(self, tps: set[TP] | None, timeout_s: float) -> None:
        """Let the started records of these partitions finish and their outputs be acknowledged (the ones not
        started were forgotten before: abandoned)."""
        self.executor.flush(force=True)
        deadline = time.monotonic() + timeout_s
        scope = lambda: tps if tps is not None else list(self.tracker.order)  # noqa: E731
        while time.monotonic() < deadline:
            if self.tracker.pending(scope(), self.executor.abandoned) == 0:
                return
            self._pump()
            self.executor.flush(force=True)
            self.producer.poll(0.05)
            self.health.tick()
        log.warning("%s: %d record(s) still in flight after %gs; abandoning them uncommitted", self.name,
                    self.tracker.pending(scope(), self.executor.abandoned), timeout_s)

    # ------------------------------------------------------------------------------------------ shutdown
    def _drain(self) -> None:
        log.info("%s: draining (%d in flight)", self.name, self.tracker.in_flight())
        self.backpressure.apply(self.assigned, self.tracker.in_flight(), self.stopping)
        self.delayed.drop(None, self.executor.abandon)  # waiting retries stay uncommitted, redone after restart
        self.executor.forget(None)  # so do records not started yet: the drain waits for the started ones only
        self._settle(None, self.rs.drain_timeout_s)
        self.producer.flush(10)
        self._pump()
        self._maybe_commit(force=True)

    def _shutdown(self) -> None:
        self.health.started = False
        self.consumer_lag.close()  # before the consumer: its metadata refresh uses it
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("%s: consumer close: %s", self.name, exc)
        self.executor.shutdown()
        self.producer.flush(5)
        self.outputs.flush_acked()  # acknowledgements served by the flush
        self.sensor.flush()
        try:
            self.stage.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: stage close: %s", self.name, exc)
        if self._http is not None:
            self._http.shutdown()
        log.info("%s: stopped", self.name)

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal(err)
        else:
            self.client_log.error(err)  # rate-limited, shared with librdkafka's own line for the same error

    def _fatal(self, err: KafkaError) -> None:
        """A client error librdkafka cannot recover from (e.g. a fenced idempotent producer): drain what can
        be drained and stop; `assetstream worker` then exits 1 so the orchestrator restarts it."""
        self._fail(f"fatal Kafka client error: {err.str()}")

    def _fail(self, message: str) -> None:
        """Something the worker cannot go on without (a fatal client error, a dead child process): stop, and
        `assetstream worker` exits 1; nothing past the last finished record is committed."""
        self.fatal_error = message
        log.critical("%s: %s; stopping (nothing past the last finished record is committed)", self.name, message)
        self.stop()
