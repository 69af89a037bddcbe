"""How a worker runs the per-record work (streams.work.RecordWork): one small interface, five strategies.

    Inline        cpu stage, runner.inline: in the poll thread itself, outputs produced right away
    Threads       cpu stage: runner.concurrency threads taking records one at a time from one queue
    Processes     cpu stage, runner.processes: chunks of raw records worked in spawned child processes
    Asyncio       io stage: one asyncio loop, runner.concurrency records at once
    OrderedBatch  batch stage: one ordered batch at a time (runner.batch_max_records/bytes/wait_s)

The poll thread calls `submit` with the records it accepted, `flush` once per loop iteration, and `pump` to
take the finished results (the executors' own threads only append to `completions`). A record the work
abandons (shutdown cut its retries short) is marked and stays uncommitted. Records are started in the order
they were submitted; on a revoke or a stop the runner calls `forget` first: the records of those partitions
that have not started yet are abandoned at once (never worked, never produced, uncommitted), so the drain
waits only for the started ones and what finishes is a run from the committed offset on.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import multiprocessing
import queue
import threading
import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from streams.children import child_chunk, child_init, child_ping
from streams.errors import RegistryUnavailable
from streams.sensors import Sensor
from streams.stage import Stage
from streams.tracker import TP
from streams.work import Abandon, Record, RecordWork, Result

log = logging.getLogger("assetstream.runner")


class Executor:
    """The interface, and what every strategy shares: the completions handed to the poll thread."""

    def __init__(self, work: RecordWork, rs: Any, stop: threading.Event, emit: Callable[[Result], None]):
        self.work, self.rs, self.name = work, rs, work.name
        self.stop_event = stop  # the runner's
        self.emit = emit  # produce a result's outputs (poll thread only)
        self.completions: deque[Result] = deque()
        self.lock = threading.Lock()
        self.abandoned: set[tuple[TP, int]] = set()  # (partition, offset) of records that never finish

    def start(self) -> None:
        """Before the worker joins the group."""

    def submit(self, recs: list[Record]) -> None:
        raise NotImplementedError

    def flush(self, force: bool = False) -> None:
        """Once per poll-loop iteration (and while draining, forced): start work that waits for more."""

    def forget(self, tps: set[TP] | None) -> None:
        """Abandon the records of these partitions (None: all) that were submitted but not started yet: they are
        never worked nor produced, and stay uncommitted (the partition's next owner works them). Poll thread."""

    def stop(self) -> None:
        """The runner is stopping (called from any thread)."""

    def shutdown(self) -> None:
        """After the drain: stop the threads, processes or loop."""

    def pump(self) -> None:
        """Produce what the workers finished (poll thread)."""
        completions, lock, emit = self.completions, self.lock, self.emit
        while True:
            with lock:
                if not completions:
                    return
                res = completions.popleft()
            emit(res)

    def _work_each(self, recs: list[Record], hand_over: Callable[[Result], None]) -> None:
        """A cpu stage's records one after the other (RecordWork.run), each result handed over when done."""
        for rec in recs:
            try:
                result = self.work.run(rec)
            except Abandon:
                self.abandon(rec)
                continue
            hand_over(result)

    def abandon(self, rec: Record) -> None:
        rec.abandoned = True
        self.abandoned.add((rec.tp, rec.offset))  # set.add is atomic; read by the poll thread

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
        with self.lock:
            self.completions.extend(results if isinstance(results, list) else [results])


class Inline(Executor):
    """In the poll thread: no hand-off at all. The poll thread never waits for the schema registry: a record that
    needs it while it cannot serve stays at the head of `backlog` with the records submitted after it (order is
    kept), consumption paused (schema_registry), and is tried again at a later loop turn (capped backoff): only the
    step that met the outage (serializing its outputs or its dead letter), the stage does not run again."""

    def __init__(self, work: RecordWork, rs: Any, stop: threading.Event, emit: Callable[[Result], None]):
        super().__init__(work, rs, stop, emit)
        self.backlog: deque[Record] = deque()
        self.waits = 0  # tries of the head record that found the registry down
        self.due = 0.0  # when to try it again
        self.resume: Callable[[], Result] | None = None  # the head record's step to try again (None: run it)

    def submit(self, recs: list[Record]) -> None:
        self.backlog.extend(recs)
        self._work_backlog()  # produced right away

    def flush(self, force: bool = False) -> None:
        if self.backlog and time.monotonic() >= self.due:
            self._work_backlog()

    def _work_backlog(self) -> None:
        backlog, work = self.backlog, self.work
        while backlog and time.monotonic() >= self.due:
            rec = backlog[0]
            try:
                result = self.resume() if self.resume is not None else work.run(rec, wait=False)
            except Abandon:
                self.abandon(backlog.popleft())
                self._registry_back()
                continue
            except RegistryUnavailable as exc:
                self.resume = exc.resume or self.resume
                self.waits += 1
                if self.waits == 1:
                    work.registry_down(True)
                try:
                    self.due = time.monotonic() + work.registry_delay(rec, self.waits, exc)
                except Abandon:  # stopping: what waits stays uncommitted
                    self.forget(None)
                return
            backlog.popleft().letter_owed = False
            self._registry_back()
            self.emit(result)

    def _registry_back(self) -> None:
        self.resume = None
        if self.waits:
            self.waits, self.due = 0, 0.0
            self.work.registry_down(False)

    def forget(self, tps: set[TP] | None) -> None:
        keep: deque[Record] = deque()
        for rec in self.backlog:
            if tps is None or rec.tp in tps:
                self.abandon(rec)
            else:
                keep.append(rec)
        if self.backlog and (not keep or keep[0] is not self.backlog[0]):
            self._registry_back()  # the waiting record is gone: the next one starts afresh
        self.backlog = keep


class Threads(Executor):
    """runner.concurrency threads (Stage.concurrency by default) taking records one at a time from one queue: a
    record that takes long (a slow fetch) holds its own thread only, never records handed over with it."""

    def __init__(self, work: RecordWork, rs: Any, stop: threading.Event, emit: Callable[[Result], None]):
        super().__init__(work, rs, stop, emit)
        self.workers = concurrency(work.stage, rs)
        self.queue: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        # submitted and not started: a worker thread starts a record only if it pops it from here first, and
        # forget() abandons the ones it pops (dict.pop is atomic: exactly one of the two gets each record)
        self.unstarted: dict[Record, bool] = {}

    def start(self) -> None:
        if self.threads:
            return
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"{self.name}-worker-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def submit(self, recs: list[Record]) -> None:
        if not self.threads:
            self.start()
        put, unstarted = self.queue.put, self.unstarted
        for rec in recs:
            unstarted[rec] = True
            put(rec)

    def _loop(self) -> None:
        get, hand_over, take = self.queue.get, self._hand_over, self.unstarted.pop
        while True:
            rec = get()
            if rec is None:
                return
            if not take(rec, False):
                continue  # forgotten before it started (revoke or stop): already abandoned
            try:
                self._work_each([rec], hand_over)
            except BaseException as exc:  # noqa: BLE001 - a bug in the runner itself: loud, the record stays uncommitted
                log.error("%s: worker crashed: %r", self.name, exc, exc_info=exc)

    def _hand_over(self, result: Result) -> None:
        with self.lock:
            self.completions.append(result)

    def forget(self, tps: set[TP] | None) -> None:
        take = self.unstarted.pop
        for rec in list(self.unstarted.copy()):
            if (tps is None or rec.tp in tps) and take(rec, False):
                self.abandon(rec)  # still queued: the worker thread that gets it skips it

    def shutdown(self) -> None:
        self.forget(None)
        try:  # after the drain: records not started stay uncommitted, as with a cancelled future
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        for _ in self.threads:
            self.queue.put(None)
        self.threads = []


class Processes(Executor):
    """runner.processes: bytes in, serialized outputs (or dead letters) out; the records are finished in the
    poll thread exactly as the ones worked in this process. A child that dies fails the worker (`fail`). While
    records wait for the schema registry in any child, the worker pauses as for its own (`flush`)."""

    def __init__(self, work: RecordWork, rs: Any, stop: threading.Event, emit: Callable[[Result], None], *,
                 stage: Stage, settings: Any, sensor: Sensor, tick: Callable[[], None],
                 fail: Callable[[str], None]):
        super().__init__(work, rs, stop, emit)
        self.processes = rs.processes
        self.sensor, self.tick, self.fail = sensor, tick, fail
        self.record_s: float | None = None  # seconds per record in a child (moving average)
        # spawn, not fork: librdkafka's threads are already running in this process
        mp = multiprocessing.get_context("spawn")
        self.ready = mp.Value("i", 0)  # each child adds 1 once its stage is built
        self.children_stop = mp.Event()  # set with stop(): children abandon retries and unstarted records
        self.registry_waiting = mp.Value("i", 0)  # children whose records wait for the schema registry
        self._registry_paused = False  # whether this executor counts in work.registry_down for them
        self.queued: dict[cf.Future, list[Record]] = {}  # chunks submitted and not finished
        self.pool = cf.ProcessPoolExecutor(
            max_workers=self.processes, mp_context=mp, initializer=child_init,
            initargs=(type(stage), settings, logging.getLevelName(log.getEffectiveLevel()), self.ready,
                      self.children_stop, self.registry_waiting))

    def start(self) -> None:
        """Start the children and build their stages before joining the group: a stage that cannot be built
        fails the worker at start-up, not at its first record."""
        started = time.monotonic()
        futures = [self.pool.submit(child_ping) for _ in range(self.processes)]  # one child spawned per task
        while self.ready.value < self.processes and not self.stop_event.is_set():
            self.tick()  # loading models can take a while: the liveness probe must not fire
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                raise RuntimeError(f"{self.name}: the stage could not be started in a child process "
                                   "(runner.processes); see the child's error above") from failed.exception()
            if time.monotonic() - started > 300:
                raise RuntimeError(f"{self.name}: child processes not ready after 300 s")
            time.sleep(0.05)
        log.info("%s: %d child process(es) ready in %.1fs", self.name, self.processes, time.monotonic() - started)

    def flush(self, force: bool = False) -> None:
        """Every loop turn: the children's wait for the schema registry becomes the worker's pause (as one record
        of this process waiting: RecordWork.registry_down)."""
        waiting = self.registry_waiting.value > 0
        if waiting != self._registry_paused:
            self._registry_paused = waiting
            self.work.registry_down(waiting)

    def submit(self, recs: list[Record]) -> None:
        """Chunks of one partition each, so that forget() can cancel a partition's chunks not started yet."""
        by_tp: dict[TP, list[Record]] = {}
        for rec in recs:
            by_tp.setdefault(rec.tp, []).append(rec)
        size = self._chunk_size()
        for part in by_tp.values():
            n = min(-(-len(part) // self.processes), size)
            for i in range(0, len(part), n):
                self._submit_chunk(part[i:i + n])

    def _chunk_size(self) -> int:
        """Records per chunk: about 50 ms of a child's work, so results of a slow stage come back record by
        record and a fast one is not drowned in round trips."""
        per = self.record_s
        if per is None:
            return 8  # not measured yet
        return max(1, min(10_000, int(0.05 / max(per, 1e-6))))

    def _submit_chunk(self, chunk: list[Record]) -> None:
        items = [(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms) for r in chunk]
        try:
            fut = self.pool.submit(child_chunk, items)
        except (BrokenProcessPool, RuntimeError) as exc:  # RuntimeError: the pool is shut down
            self._child_failed(exc, chunk)
            return
        self.queued[fut] = chunk

        def collect(fut: cf.Future) -> None:  # in the pool's management thread (or forget's, when cancelled)
            self.queued.pop(fut, None)
            if fut.cancelled():
                for rec in chunk:
                    self.abandon(rec)  # shutting down: the records stay uncommitted
                return
            exc = fut.exception()
            if exc is not None:
                self._child_failed(exc, chunk)
                return
            done, failed, retried, seconds = fut.result()
            for cls, n in failed.items():
                self.sensor.on_failed(cls, n)
            if retried:
                self.sensor.on_retried(retried)
            worked = sum(1 for d in done if d is not None)
            if worked:
                per = seconds / worked
                prev = self.record_s
                self.record_s = per if prev is None else 0.8 * prev + 0.2 * per
            results = []
            for rec, d in zip(chunk, done):
                if d is None:
                    self.abandon(rec)  # not started or retries cut short by stop(): left uncommitted
                else:
                    results.append(Result(rec, *d))
            with self.lock:
                self.completions.extend(results)

        fut.add_done_callback(collect)

    def _child_failed(self, exc: BaseException, chunk: list[Record]) -> None:
        """A child process died (killed, out of memory, a crash in native code) or cannot be started: its
        records can never finish, so stop (nothing past them is committed) and let the worker exit 1. The
        chunk's records are abandoned at once, so the drain does not wait for them."""
        for rec in chunk:
            self.abandon(rec)
        if self.stop_event.is_set() and isinstance(exc, RuntimeError) and not isinstance(exc, BrokenProcessPool):
            return
        self.fail(f"a stage child process failed: {exc!r}")

    def forget(self, tps: set[TP] | None) -> None:
        """Cancel the chunks of these partitions still waiting in the pool (their records are abandoned by the
        cancelled future's callback); a chunk already in the pool's call queue (at most processes + 1) runs."""
        for fut, chunk in list(self.queued.copy().items()):
            if tps is None or chunk[0].tp in tps:
                fut.cancel()

    def stop(self) -> None:
        self.children_stop.set()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Asyncio(Executor):
    """One asyncio loop in its own thread, runner.concurrency records at once."""

    loop: asyncio.AbstractEventLoop
    semaphore: asyncio.Semaphore

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.semaphore = asyncio.Semaphore(concurrency(self.work.stage, self.rs))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name=f"{self.name}-loop", daemon=True)
        self.thread.start()
        ready.wait()

    def __init__(self, work: RecordWork, rs: Any, stop: threading.Event, emit: Callable[[Result], None]):
        super().__init__(work, rs, stop, emit)
        self.unstarted: dict[Record, bool] = {}  # waiting for a slot: as in Threads, whoever pops one has it

    def submit(self, recs: list[Record]) -> None:
        unstarted = self.unstarted
        for rec in recs:
            unstarted[rec] = True  # before the task exists: it may get its slot at once
            fut = asyncio.run_coroutine_threadsafe(self._work(rec), self.loop)
            fut.add_done_callback(self._collect)

    async def _work(self, rec: Record) -> Result:
        try:
            async with self.semaphore:
                if not self.unstarted.pop(rec, False):
                    raise Abandon()  # forgotten while it waited for its slot (revoke or stop): never worked
                return await self.work.run_async(rec)
        except Abandon:
            self.abandon(rec)
            raise

    def forget(self, tps: set[TP] | None) -> None:
        take = self.unstarted.pop
        for rec in list(self.unstarted.copy()):
            if (tps is None or rec.tp in tps) and take(rec, False):
                self.abandon(rec)  # its task gives its slot back as soon as it gets it

    def shutdown(self) -> None:
        if getattr(self, "thread", None) is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        self.work.close()


class OrderedBatch(Executor):
    """One batch at a time, in order, in a worker thread (RecordWork.run_batch). A batch starts when it is
    full (records or bytes), has waited runner.batch_max_wait_s, or the worker is at its in-flight limit."""

    def __init__(self, work: RecordWork, rs: Any, stop: threading.Event, emit: Callable[[Result], None], *,
                 at_limit: Callable[[], bool], pause: Callable[[str | None], None]):
        super().__init__(work, rs, stop, emit)
        self.at_limit, self.pause = at_limit, pause
        self.pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-worker")
        self.batch: list[Record] = []
        self.batch_bytes = 0
        self.started = 0.0
        self.future: cf.Future | None = None  # the one batch in the pool

    def submit(self, recs: list[Record]) -> None:
        if not self.batch:
            self.started = recs[0].received
        self.batch.extend(recs)
        self.batch_bytes += sum(len(rec.value or b"") for rec in recs)

    def flush(self, force: bool = False) -> None:
        if not self.batch or (self.future is not None and not self.future.done()):
            return
        full = len(self.batch) >= self.rs.batch_max_records or self.batch_bytes >= self.rs.batch_max_bytes
        due = time.monotonic() - self.started >= self.rs.batch_max_wait_s
        if full or due or force or self.at_limit():
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            self.future = self.pool.submit(self.work.run_batch, batch, self.abandon, self.pause)
            self.future.add_done_callback(self._collect)

    def forget(self, tps: set[TP] | None) -> None:
        """The batch not sent yet loses these partitions' records; the batch being worked runs on."""
        keep = []
        for rec in self.batch:
            if tps is None or rec.tp in tps:
                self.abandon(rec)
            else:
                keep.append(rec)
        self.batch = keep
        self.batch_bytes = sum(len(r.value or b"") for r in keep)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def concurrency(stage: Stage, rs: Any) -> int:
    """runner.concurrency, or the stage's own default (Stage.concurrency)."""
    return max(1, rs.concurrency or stage.concurrency)


def make_retry_executor(stage: Stage, settings: Any, work: RecordWork, stop: threading.Event,
                        emit: Callable[[Result], None]) -> Executor:
    """runner.retry_mode=topic: where retry-topic records run (streams.retry.RetryLane): an asyncio loop for an
    io stage, else a thread pool (also beside child processes or inline work: retries are the few)."""
    if stage.kind == "io":
        return Asyncio(work, settings.runner, stop, emit)
    return Threads(work, settings.runner, stop, emit)


def make_executor(stage: Stage, settings: Any, work: RecordWork, stop: threading.Event,
                  emit: Callable[[Result], None], *, sensor: Sensor, tick: Callable[[], None],
                  fail: Callable[[str], None], at_limit: Callable[[], bool],
                  pause: Callable[[str | None], None]) -> Executor:
    """The strategy for a stage's kind and the runner settings."""
    rs = settings.runner
    if rs.processes and stage.kind != "cpu":
        log.warning("%s: runner.processes applies to cpu stages only; %s stages run in this process",
                    stage.name, stage.kind)
    if stage.kind == "batch":
        return OrderedBatch(work, rs, stop, emit, at_limit=at_limit, pause=pause)
    if stage.kind == "io":
        return Asyncio(work, rs, stop, emit)
    if rs.processes:
        return Processes(work, rs, stop, emit, stage=stage, settings=settings, sensor=sensor, tick=tick,
                         fail=fail)
    if rs.inline:
        return Inline(work, rs, stop, emit)
    return Threads(work, rs, stop, emit)
