"""The stage runner: the only code in assetstream that talks to Kafka.

    poll -> deserialize -> stage (plain Python) -> produce outputs (idempotent producer, acks=all)
         -> when every output of a record is acknowledged, the record is done
         -> commit the highest offset below which every record of that partition is done

The per-record work (decode, stage, encode, retries, dead letters) is streams.work.RecordWork; this module
runs it and does everything Kafka. Concurrency is bounded per worker (a thread pool, the poll thread itself
with runner.inline, or child processes with runner.processes for CPU stages; an asyncio loop for I/O stages;
one ordered batch at a time for batch stages); per-partition tracking means the committed offset never passes
an unfinished record; at runner.max_in_flight the worker takes nothing more, and pauses its partitions (not
left unpolled) if that lasts, so slow work never exceeds max.poll.interval.ms. Errors are classified once
(streams.errors): poison and permanent go to the dead-letter topic with the original bytes and full context,
transient ones are retried with exponential backoff and jitter, then dead-lettered. A dead letter is only
committed once the broker acknowledged it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import multiprocessing
import signal
import threading
import time
import uuid
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams import metrics
from streams.errors import PoisonError, StageError, classify
from streams.records import now_ms
from streams.settings import Settings
from streams.stage import Stage
from streams.tracker import PartitionTracker
from streams.work import Abandon, Record, RecordWork, Result, child_chunk, child_init, child_ping

log = logging.getLogger("assetstream.runner")

class StageRunner:
    """Run one stage as one consumer group member. `run()` blocks until `stop()` or SIGTERM/SIGINT."""

    def __init__(self, stage: Stage, settings: Settings, *, group_id: str | None = None,
                 install_signal_handlers: bool = False, on_idle: Callable[["StageRunner"], None] | None = None):
        self.stage = stage
        self.settings = settings
        self.name = stage.name
        self.rs = settings.runner
        self._stop = threading.Event()
        self.work = RecordWork(stage, settings, stop=self._stop)  # decode -> stage -> encode, no Kafka
        self.names = self.work.names
        self.input_topic = self.names[stage.input_topic]
        self.group_id = group_id or settings.groups.name(stage.name)
        self.install_signal_handlers = install_signal_handlers
        self.on_idle = on_idle
        self.health = metrics.Health()
        self.health.ready_checks.append(stage.ready)
        self.tracker = PartitionTracker()
        self.assigned: set[tuple[str, int]] = set()
        self.paused_tps: set[tuple[str, int]] = set()
        self.pause_reason: str | None = None  # set by a batch worker while the store is unavailable
        self._current_pause: str | None = None  # what the assigned partitions are paused for
        self._batch_future: cf.Future | None = None  # the one batch in the pool (batch stages)
        self._completions: deque[Result] = deque()
        self._completion_lock = threading.Lock()
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self.lags: dict[tuple[str, int], int] = {}
        self._batch: list[Record] = []
        self._batch_bytes = 0
        self._batch_started = 0.0
        self._redeliver: list[tuple[float, Record, tuple]] = []  # (due, record, output): owed, produced again
        self.metrics_port: int | None = None
        self._http = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self.transactional = self.rs.transactional
        self._txn_open = False
        self._txn_failed = False
        self._epoch = 0
        self._abandoned: set[tuple[tuple[str, int], int]] = set()
        self._resume_due: set[tuple[str, int]] = set()
        self._full_since: float | None = None  # since when in-flight records have been at max_in_flight
        self.fatal_error: str | None = None

        kafka = settings.kafka
        instance = kafka.instance_id(self.group_id)
        cconf: dict[str, Any] = {
            **kafka.client_config(),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": kafka.session_timeout_ms,
            "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
            "max.poll.interval.ms": kafka.max_poll_interval_ms,
            "isolation.level": "read_committed",
            "error_cb": self._on_client_error,
        }
        if instance:
            cconf["group.instance.id"] = instance
        pconf: dict[str, Any] = {
            **kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "error_cb": self._on_client_error,
        }
        if self.transactional:
            pconf["transactional.id"] = f"{self.group_id}-{instance or uuid.uuid4().hex[:12]}"
        self.consumer = Consumer(cconf)
        self.producer = Producer(pconf)
        if self.transactional:
            self.producer.init_transactions(30)
        self.processes = self.rs.processes if stage.kind == "cpu" else 0
        self._children_stop = None
        self._child_record_s: float | None = None  # seconds per record in a child (moving average)
        if self.rs.processes and not self.processes:
            log.warning("%s: runner.processes applies to cpu stages only; %s stages run in this process",
                        self.name, stage.kind)
        cpu_workers = max(1, self.rs.concurrency) if stage.kind == "cpu" else 1
        self.pool: cf.Executor
        if self.processes:
            # spawn, not fork: librdkafka's threads are already running in this process
            mp = multiprocessing.get_context("spawn")
            self._children_ready = mp.Value("i", 0)  # each child adds 1 once its stage is built
            self._children_stop = mp.Event()  # set with stop(): children abandon retries and unstarted records
            self.pool = cf.ProcessPoolExecutor(
                max_workers=self.processes, mp_context=mp, initializer=child_init,
                initargs=(type(stage), settings, logging.getLevelName(log.getEffectiveLevel()),
                          self._children_ready, self._children_stop))
            cpu_workers = self.processes
        else:
            self.pool = cf.ThreadPoolExecutor(max_workers=cpu_workers, thread_name_prefix=f"{self.name}-worker")
        self._cpu_workers = cpu_workers
        # labelled children looked up once: .labels() costs microseconds on the per-record path
        self._m_in = metrics.RECORDS_IN.labels(self.name)
        self._m_in_flight = metrics.IN_FLIGHT.labels(self.name)
        self._m_seconds = metrics.HistogramBatch(metrics.PROCESSING_SECONDS.labels(self.name))
        self._m_age = metrics.HistogramBatch(metrics.RECORD_AGE.labels(self.name))
        self._m_out: dict[str, Any] = {}
        self._acked: dict[str, int] = {}  # acknowledged outputs per topic since the last metrics flush

    # ------------------------------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        self._stop.set()
        if self._children_stop is not None:
            self._children_stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        try:
            if self.rs.metrics_port >= 0:
                self._http, self.metrics_port = metrics.serve(self.health, self.rs.metrics_port)
            if self.stage.kind == "io":
                self._start_loop()
            if self.processes:
                self._start_children()
            self.consumer.subscribe([self.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                    on_lost=self._on_lost)
            self.health.started = True
            log.info("%s: consuming %s as group %s", self.name, self.input_topic, self.group_id)
            while not self.stopping:
                self._iteration()
            self._drain()
        finally:
            self._shutdown()

    def _iteration(self) -> None:
        self.health.tick()
        self._apply_pause()
        free = self.rs.max_in_flight - self.tracker.in_flight()
        if free <= 0 and not self.paused_tps:
            # at the limit: let the work and its acks drain rather than take more. Pausing is kept for a
            # stall (runner.pause_after_s): librdkafka drops what it prefetched for a paused partition and
            # fetches it again on resume, which costs far more than a brief wait here
            if self._full_since is None:
                self._full_since = time.monotonic()
            msgs = None
            self.producer.poll(min(self.rs.poll_timeout_s, 0.01))
        else:
            if free > 0:
                self._full_since = None
            msgs = self.consumer.consume(num_messages=max(1, min(free, 500)), timeout=self.rs.poll_timeout_s)
        accepted = self._accept(msgs) if msgs else []
        if accepted and self.stage.kind == "cpu" and self.rs.inline:
            self._work_chunk(accepted, inline=True)  # in the poll thread: no hand-off at all
        elif accepted and self.stage.kind == "cpu":
            # hand the pool chunks, not single records: one Future per chunk keeps the overhead per
            # record small, and records of a chunk still finish (and commit) individually
            n = -(-len(accepted) // self._cpu_workers)
            if self.processes:
                n = min(n, self._child_chunk_size())
            for i in range(0, len(accepted), n):
                if self.processes:
                    self._submit_to_child(accepted[i:i + n])
                else:
                    fut = self.pool.submit(self._work_chunk, accepted[i:i + n])
                    fut.add_done_callback(self._collect)
        self._maybe_flush_batch()
        self._pump()
        self._maybe_commit()
        self._update_lag()
        self._m_in_flight.set(self.tracker.in_flight())
        if msgs is not None and not msgs and self.on_idle:
            self.on_idle(self)

    def _accept(self, msgs: list[Message]) -> list[Record]:
        """Track what one consume() returned (one pass, no per-record method calls beyond the essentials)."""
        received, epoch, assigned, add = time.monotonic(), self._epoch, self.assigned, self.tracker.add
        accepted: list[Record] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error: %s", self.name, err)
                continue
            ts_type, ts = msg.timestamp()
            rec = Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers() or [],
                          ts if ts_type else None, received, epoch)
            if rec.tp not in assigned:
                continue  # delivered just before a revoke
            add(rec.tp, rec.offset)
            accepted.append(rec)
        if not accepted:
            return accepted
        self._m_in.inc(len(accepted))
        if self.stage.kind == "batch":
            if not self._batch:
                self._batch_started = received
            self._batch.extend(accepted)
            self._batch_bytes += sum(len(rec.value or b"") for rec in accepted)
        elif self.stage.kind == "io":
            for rec in accepted:
                fut = asyncio.run_coroutine_threadsafe(self._work_async(rec), self._loop)
                fut.add_done_callback(self._collect)
        return accepted

    def _collect(self, fut: cf.Future) -> None:
        try:
            results = fut.result()
        except (Abandon, cf.CancelledError):
            return  # shutting down: the record stays uncommitted and is retried by the next owner
        except BaseException as exc:  # a bug in the runner itself: loud, and the record stays uncommitted
            log.error("%s: worker crashed: %r", self.name, exc, exc_info=exc)
            return
        if results is None:
            return  # a chunk: its records were handed over one by one
        with self._completion_lock:
            self._completions.extend(results if isinstance(results, list) else [results])

    # ------------------------------------------------------------------------------------------ workers
    def _work_chunk(self, recs: list[Record], inline: bool = False) -> None:
        for rec in recs:
            try:
                result = self.work.run(rec)
            except Abandon:
                self._abandon(rec)
                continue
            if inline:
                self._emit(result)  # the poll thread itself: produce right away
                continue
            with self._completion_lock:  # hand each record over as it finishes, not at the end of the chunk
                self._completions.append(result)

    def _start_children(self) -> None:
        """Start the child processes and build their stages before joining the group: a stage that cannot
        be built fails the worker at start-up, not at its first record."""
        started = time.monotonic()
        futures = [self.pool.submit(child_ping) for _ in range(self.processes)]  # one child spawned per task
        while self._children_ready.value < self.processes and not self.stopping:
            self.health.tick()  # loading models can take a while: the liveness probe must not fire
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                raise RuntimeError(f"{self.name}: the stage could not be started in a child process "
                                   "(runner.processes); see the child's error above") from failed.exception()
            if time.monotonic() - started > 300:
                raise RuntimeError(f"{self.name}: child processes not ready after 300 s")
            time.sleep(0.05)
        log.info("%s: %d child process(es) ready in %.1fs", self.name, self.processes, time.monotonic() - started)

    def _submit_to_child(self, chunk: list[Record]) -> None:
        """runner.processes: bytes in, serialized outputs (or dead letters) out; the chunk's records are
        finished here, in the poll thread, exactly as the ones worked in this process."""
        items = [(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms) for r in chunk]
        try:
            fut = self.pool.submit(child_chunk, items)
        except (BrokenProcessPool, RuntimeError) as exc:  # RuntimeError: the pool is shut down
            self._child_failed(exc, chunk)
            return

        def collect(fut: cf.Future) -> None:  # in the pool's management thread
            if fut.cancelled():
                for rec in chunk:
                    self._abandon(rec)  # shutting down: the records stay uncommitted
                return
            exc = fut.exception()
            if exc is not None:
                self._child_failed(exc, chunk)
                return
            done, failed, retried, seconds = fut.result()
            for cls, n in failed.items():
                metrics.RECORDS_FAILED.labels(self.name, cls).inc(n)
            if retried:
                metrics.RECORDS_RETRIED.labels(self.name).inc(retried)
            worked = sum(1 for d in done if d is not None)
            if worked:
                per = seconds / worked
                prev = self._child_record_s
                self._child_record_s = per if prev is None else 0.8 * prev + 0.2 * per
            results = []
            for rec, d in zip(chunk, done):
                if d is None:
                    self._abandon(rec)  # not started or retries cut short by stop(): left uncommitted
                else:
                    results.append(Result(rec, *d))
            with self._completion_lock:
                self._completions.extend(results)

        fut.add_done_callback(collect)

    def _child_chunk_size(self) -> int:
        """Records per chunk: about 50 ms of a child's work, so results of a slow stage come back record by
        record and a fast one is not drowned in round trips."""
        per = self._child_record_s
        if per is None:
            return 8  # not measured yet
        return max(1, min(10_000, int(0.05 / max(per, 1e-6))))

    def _child_failed(self, exc: BaseException, chunk: list[Record]) -> None:
        """A child process died (killed, out of memory, a crash in native code) or cannot be started: its
        records can never finish, so stop (nothing past them is committed) and let the worker exit 1. The
        chunk's records are abandoned at once, so the drain does not wait for them."""
        for rec in chunk:
            self._abandon(rec)
        if self.stopping and isinstance(exc, RuntimeError) and not isinstance(exc, BrokenProcessPool):
            return
        self.fatal_error = f"a stage child process failed: {exc!r}"
        log.critical("%s: %s; stopping (nothing past the last finished record is committed)", self.name,
                     self.fatal_error)
        self.stop()

    def _abandon(self, rec: Record) -> None:
        rec.abandoned = True
        self._abandoned.add((rec.tp, rec.offset))  # set.add is atomic; read by the poll thread

    async def _work_async(self, rec: Record) -> Result:
        try:
            async with self._semaphore:
                return await self.work.run_async(rec)
        except Abandon:
            self._abandon(rec)
            raise

    # ------------------------------------------------------------------------------------------ batches
    def _maybe_flush_batch(self, force: bool = False) -> None:
        if not self._batch or (self._batch_future is not None and not self._batch_future.done()):
            return
        full = (len(self._batch) >= self.rs.batch_max_records or self._batch_bytes >= self.rs.batch_max_bytes)
        due = time.monotonic() - self._batch_started >= self.rs.batch_max_wait_s
        if full or due or force or self.stage_paused_by_inflight():
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self._batch_future = self.pool.submit(self._work_batch, batch)
            self._batch_future.add_done_callback(self._collect)

    def stage_paused_by_inflight(self) -> bool:
        return self.tracker.in_flight() >= self.rs.max_in_flight

    def _work_batch(self, batch: list[Record]) -> list[Result]:
        """One batch at a time, in order. Transient item failures are retried (with backoff) until they
        succeed: a store outage pauses the sink rather than dead-lettering everything."""
        results: list[Result] = []
        todo: list[tuple[Record, dict[str, Any], int, int | None]] = []
        for rec in batch:
            try:
                todo.append((rec, self.work.decode(rec), 1, None))
            except PoisonError as exc:
                self.work.on_failed("poison")
                results.append(self.work.failure(rec, exc, 1, now_ms()))
        while todo:
            items = [(value, rec.context(attempt)) for rec, value, attempt, _ in todo]
            try:
                outcomes = list(self.stage.process_batch(items))
                if len(outcomes) != len(items):
                    raise RuntimeError(f"{self.name}.process_batch returned {len(outcomes)} outcomes for "
                                       f"{len(items)} records")
            except BaseException as exc:  # noqa: BLE001 - the whole batch failed the same way
                outcomes = [exc] * len(items)
            retry: list[tuple[Record, dict[str, Any], int, int | None]] = []
            worst_delay = 0.0
            for (rec, value, attempt, first), (_, ctx), outcome in zip(todo, items, outcomes):
                if isinstance(outcome, BaseException):
                    cls = classify(outcome)
                    self.work.on_failed(cls)
                    first = first or now_ms()
                    if cls == "transient":
                        self.work.on_retried()
                        worst_delay = max(worst_delay, self.work.backoff(min(attempt, 8), outcome))
                        retry.append((rec, value, attempt + 1, first))
                    else:
                        results.append(self.work.failure(rec, outcome, attempt, first))
                else:
                    try:
                        results.append(self.work.success(rec, value, outcome, ctx.trace_id))
                    except Exception as exc:  # noqa: BLE001 - as in the single-record path: that record only
                        self.work.on_failed(classify(exc))
                        results.append(self.work.failure(rec, exc, attempt, first or now_ms()))
            if retry and self.stopping:
                for rec, *_ in retry:
                    self._abandon(rec)  # not committed: the next owner retries
                break
            if retry:
                self.pause_reason = "store_unavailable"
                log.warning("%s: %d item(s) failed transiently; retrying in %.1fs", self.name, len(retry),
                            worst_delay)
                self._stop.wait(worst_delay)
            else:
                self.pause_reason = None if self.pause_reason == "store_unavailable" else self.pause_reason
            todo = retry
        return results

    # ------------------------------------------------------------------------------------------ produce
    def _pump(self) -> None:
        """Produce what workers finished, serve delivery callbacks, finish records."""
        while True:
            with self._completion_lock:
                if not self._completions:
                    break
                res = self._completions.popleft()
            self._emit(res)
        now = time.monotonic()
        if self._redeliver:
            due = [r for r in self._redeliver if r[0] <= now]
            self._redeliver = [r for r in self._redeliver if r[0] > now]
            for _, rec, output in due:
                if not (rec.abandoned or rec.epoch != self._epoch or rec.tp not in self.assigned):
                    self._produce_one(rec, output, counted=True)
        self.producer.poll(0)
        self._flush_metrics()

    def _emit(self, res: Result) -> None:
        rec = res.record
        if rec.abandoned or rec.tp not in self.assigned or rec.epoch != self._epoch:
            return
        rec.event_time_ms = res.event_time_ms
        self._produce_all(rec, [self._letter_output(rec, res)] if res.dead_letter is not None else res.outputs)

    def _produce_all(self, rec: Record, outputs: list) -> None:
        """Produce a record's outputs. `pending_acks` counts this record's outputs not yet acknowledged:
        +1 per produce, -1 per successful delivery; the record finishes when it reaches 0."""
        if self.transactional and not self._txn_open:
            self.producer.begin_transaction()
            self._txn_open = True
        if not outputs:
            if rec.pending_acks == 0:
                self._finish(rec)
            return
        for output in outputs:
            self._produce_one(rec, output)
        if self.transactional and rec.pending_acks == 0:
            self._finish(rec)

    def _produce_one(self, rec: Record, output: tuple, counted: bool = False) -> None:
        """`counted`: the output is already in `pending_acks` (a redelivery of an owed output)."""
        topic, key, value, headers = output
        if not self.transactional and not counted:
            rec.pending_acks += 1
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers,
                                      on_delivery=self._delivery_cb(rec, output))
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: serve callbacks, then try again
            except KafkaException as exc:  # refused before sending, e.g. larger than message.max.bytes
                if not self.transactional:
                    rec.pending_acks -= 1
                self._undeliverable(rec, output, exc.args[0])
                return

    def _undeliverable(self, rec: Record, output: tuple, err: KafkaError) -> None:
        """An output the broker will never take. A stage output: the input is dead-lettered instead.
        A dead letter: it is cut down to fit and produced again (a dead letter is never dropped)."""
        if output[0] != self.names["dead_letter"]:
            exc = StageError(f"output to {output[0]} rejected: {err.str()}", reason="output_rejected",
                             details={"kafka_error": err.name()})
            self._emit_letter(rec, self.work.failure(rec, exc, 1, now_ms()))
            return
        if not rec.letter_truncated and rec.value is not None and len(rec.value) > 1024:
            rec.letter_truncated = True  # once: a cut-down letter that still does not fit is retried below
            exc = StageError(f"dead letter rejected ({err.str()}); original value truncated",
                             reason="dead_letter_too_large")
            self._emit_letter(rec, self.work.failure(rec, exc, 1, now_ms(), max_value_bytes=1024))
            return
        log.error("%s: dead letter for %s/%d@%d cannot be delivered (%s); retrying", self.name, rec.topic,
                  rec.partition, rec.offset, err)
        if not self.transactional:
            rec.pending_acks += 1  # the retry below is still owed
        self._redeliver.append((time.monotonic() + 5.0, rec, output))

    def _letter_output(self, rec: Record, letter: Result) -> tuple:
        metrics.RECORDS_DEAD_LETTERED.labels(self.name, letter.error_class).inc()
        return (self.names["dead_letter"], rec.key, letter.dead_letter,
                [(k, v) for k, v in rec.headers if v is not None] +
                [("dlq-stage", self.name.encode()), ("dlq-error-class", letter.error_class.encode())])

    def _emit_letter(self, rec: Record, letter: Result) -> None:
        self._produce_one(rec, self._letter_output(rec, letter))

    def _delivery_cb(self, rec: Record, output: tuple):
        def cb(err: KafkaError | None, msg: Message) -> None:
            if err is None and not self.transactional:  # the hot path: one acknowledged output
                acked = self._acked
                acked[output[0]] = acked.get(output[0], 0) + 1
                rec.pending_acks -= 1
                if rec.pending_acks == 0:
                    self._finish(rec)
                return
            if self.transactional:
                if err is not None:
                    log.error("%s: transactional produce failed: %s", self.name, err)
                    self._txn_failed = True  # the commit aborts and rewinds
                return
            if err is not None:
                if err.fatal():
                    self._fatal(err)
                    return
                if err.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
                                  KafkaError.INVALID_RECORD, KafkaError.CORRUPT_MESSAGE):
                    rec.pending_acks -= 1  # this output is given up; what replaces it is counted anew
                    self._undeliverable(rec, output, err)
                    return
                # retriable or not, a delivery is tried again (never dropped): non-retriable errors such
                # as an authorization failure show as a stalled partition and in the logs until fixed
                log.warning("%s: delivery to %s failed (%s); producing again", self.name, output[0], err)
                self._redeliver.append((time.monotonic() + (1.0 if err.retriable() else 5.0), rec, output))
        return cb

    def _flush_metrics(self) -> None:
        """Per-record counts and observations are gathered in the poll thread and added once per iteration."""
        if self._acked:
            acked, self._acked = self._acked, {}
            for topic, n in acked.items():
                counter = self._m_out.get(topic)
                if counter is None:
                    counter = self._m_out[topic] = metrics.RECORDS_OUT.labels(self.name, topic)
                counter.inc(n)
        self._m_seconds.flush()
        self._m_age.flush()

    def _finish(self, rec: Record) -> None:
        if rec.abandoned:
            return
        self.tracker.finish(rec.tp, rec.offset)
        self._m_seconds.observe(time.monotonic() - rec.received)
        if rec.event_time_ms:
            self._m_age.observe(max(0.0, (now_ms() - rec.event_time_ms) / 1000))

    # ------------------------------------------------------------------------------------------ commits
    def _maybe_commit(self, force: bool = False, tps: set[tuple[str, int]] | None = None) -> None:
        if not force and time.monotonic() - self._last_commit < 1.0:
            return
        self._last_commit = time.monotonic()
        if self.transactional:
            # the open transaction holds outputs of every partition: commit all positions with it
            offsets = self.tracker.to_commit(None)
            if not self._txn_open and not offsets:
                return
            try:
                if self._txn_failed:
                    raise KafkaException(KafkaError(KafkaError._FAIL, "a produce in this transaction failed"))
                if not self._txn_open:
                    self.producer.begin_transaction()
                    self._txn_open = True
                if offsets:
                    self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
                self.producer.commit_transaction(60)
                self._txn_open = False
                self.tracker.mark_committed(offsets)
                metrics.COMMITS.labels(self.name).inc()
            except KafkaException as exc:
                log.warning("%s: transaction failed (%s): aborting and rewinding to the committed offsets",
                            self.name, exc)
                self._abort_and_rewind()
            return
        offsets = self.tracker.to_commit(tps)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.tracker.mark_committed(offsets)
            metrics.COMMITS.labels(self.name).inc()
        except KafkaException as exc:
            log.warning("%s: commit failed (will retry): %s", self.name, exc)

    # ------------------------------------------------------------------------------------------ pause
    def _apply_pause(self) -> None:
        in_flight = self.tracker.in_flight()
        if self.stopping:
            reason = "draining"
        elif self.pause_reason:  # set by a batch worker while the store is unavailable
            reason = self.pause_reason
        elif (stage_reason := self.stage.should_pause()) is not None:
            reason = stage_reason
        elif (in_flight >= self.rs.max_in_flight and self._full_since is not None
              and time.monotonic() - self._full_since >= self.rs.pause_after_s) or (
                self._current_pause == "backpressure" and in_flight > self.rs.max_in_flight // 2):
            reason = "backpressure"  # a stall at the limit; with hysteresis: resume at half the limit
        else:
            reason = None
        if reason:
            todo = self.assigned - self.paused_tps
            if todo:
                self.consumer.pause([TopicPartition(t, p) for t, p in todo])
                self.paused_tps |= todo
            self._resume_due -= todo
        elif self.paused_tps or self._resume_due:
            tps = (self.paused_tps | self._resume_due) & self.assigned
            if tps:
                self.consumer.resume([TopicPartition(t, p) for t, p in tps])
            self.paused_tps.clear()
            self._resume_due.clear()
        if reason != self._current_pause:
            if self._current_pause:
                metrics.PAUSED.labels(self.name, self._current_pause).set(0)
            if reason:
                metrics.PAUSED.labels(self.name, reason).set(1)
                if reason != "backpressure":
                    log.info("%s: pausing consumption: %s", self.name, reason)
            self._current_pause = reason

    # ------------------------------------------------------------------------------------------ lag
    def _update_lag(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_lag < 2.0:
            return
        self._last_lag = time.monotonic()
        tps = [TopicPartition(t, p) for t, p in self.assigned]
        if not tps:
            return
        try:
            positions = self.consumer.position(tps)
        except KafkaException:
            return
        for tp in positions:
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is None or high < 0:
                continue
            pos = tp.offset if tp.offset >= 0 else self.tracker.committed.get((tp.topic, tp.partition), low)
            lag = max(0, high - max(pos, low))
            self.lags[(tp.topic, tp.partition)] = lag
            metrics.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(lag)

    def lag(self) -> int:
        """Total lag over assigned partitions, from fetch-reported watermarks (ListOffsets is not trusted)."""
        self._update_lag(force=True)
        return sum(self.lags.get(tp, 0) for tp in self.assigned)

    # ------------------------------------------------------------------------------------------ rebalance
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.add((tp.topic, tp.partition))
            # librdkafka remembers a pause across revoke and re-assign: decide afresh in _apply_pause
            self._resume_due.add((tp.topic, tp.partition))
        log.info("%s: assigned %s", self.name, sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        log.info("%s: revoking %s", self.name, sorted(p for _, p in revoked))
        if not self.stopping:  # when stopping, _drain already waited
            self._settle(revoked, self.rs.drain_timeout_s)
        self._maybe_commit(force=True, tps=revoked)
        self._forget(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        log.warning("%s: partitions lost %s (not committing)", self.name, sorted(p for _, p in lost))
        self._forget(lost)
        if self.transactional and self._txn_open:
            self._abort_and_rewind()  # the open transaction holds outputs of the lost partitions too

    def _abort_and_rewind(self) -> None:
        """Exactly-once: throw away the open transaction and everything since the last commit."""
        try:
            self.producer.abort_transaction(30)
        except KafkaException as exc:
            log.error("%s: abort_transaction: %s", self.name, exc)
        self._txn_open = False
        self._txn_failed = False
        self._epoch += 1  # results of older records are ignored from now on
        tps = [TopicPartition(t, p) for t, p in self.assigned]
        for t, p in list(self.assigned):
            self.tracker.drop((t, p))
        self._batch = []
        self._redeliver = []
        if tps:
            for tp in self.consumer.committed(tps, timeout=30):
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else
                                                  -2))  # -2: OFFSET_BEGINNING

    def _forget(self, tps: set[tuple[str, int]]) -> None:
        for tp in tps:
            self.tracker.drop(tp)
            self.assigned.discard(tp)
            self.paused_tps.discard(tp)
            metrics.CONSUMER_LAG.labels(self.name, tp[0], str(tp[1])).set(0)
            self.lags.pop(tp, None)
        self._batch = [r for r in self._batch if r.tp not in tps]

    def _settle(self, tps: set[tuple[str, int]] | None, timeout_s: float) -> None:
        """Let in-flight records of these partitions finish and their outputs be acknowledged."""
        if self._batch:
            self._maybe_flush_batch(force=True)
        deadline = time.monotonic() + timeout_s
        scope = lambda: tps if tps is not None else list(self.tracker.order)  # noqa: E731
        while time.monotonic() < deadline:
            if self.tracker.pending(scope(), self._abandoned) == 0:
                return
            self._pump()
            if self._batch:
                self._maybe_flush_batch(force=True)
            self.producer.poll(0.05)
            self.health.tick()
        log.warning("%s: %d record(s) still in flight after %.0fs; abandoning them uncommitted", self.name,
                    self.tracker.pending(scope(), self._abandoned), timeout_s)

    # ------------------------------------------------------------------------------------------ shutdown
    def _drain(self) -> None:
        log.info("%s: draining (%d in flight)", self.name, self.tracker.in_flight())
        self._apply_pause()
        self._settle(None, self.rs.drain_timeout_s)
        self.producer.flush(10)
        self._pump()
        self._maybe_commit(force=True)

    def _shutdown(self) -> None:
        self.health.started = False
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("%s: consumer close: %s", self.name, exc)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread:
                self._loop_thread.join(5)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.producer.flush(5)
        self._flush_metrics()  # acknowledgements served by the flush
        try:
            self.stage.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: stage close: %s", self.name, exc)
        if self._http is not None:
            self._http.shutdown()
        log.info("%s: stopped", self.name)

    def _start_loop(self) -> None:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._semaphore = asyncio.Semaphore(max(1, self.rs.concurrency))
            ready.set()
            self._loop.run_forever()

        self._loop_thread = threading.Thread(target=run, name=f"{self.name}-loop", daemon=True)
        self._loop_thread.start()
        ready.wait()

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal(err)
        else:
            log.warning("%s: kafka client error: %s", self.name, err)

    def _fatal(self, err: KafkaError) -> None:
        """A client error librdkafka cannot recover from (e.g. a fenced idempotent producer): drain what can
        be drained and stop; `assetstream worker` then exits 1 so the orchestrator restarts it."""
        self.fatal_error = f"fatal Kafka client error: {err.str()}"
        log.critical("%s: %s; stopping (nothing past the last finished record is committed)", self.name,
                     self.fatal_error)
        self.stop()
