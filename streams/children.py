"""The child-process side of `runner.processes`: what runs in each spawned child of the runner's process pool.

The runner (streams.executors.Processes) ships chunks of raw records (bytes in, bytes out) to a
ProcessPoolExecutor whose children run these functions: each builds its own stage and RecordWork from the
settings at start-up, then decodes, runs the stage and encodes. Children never talk to Kafka. A child whose
records wait for the schema registry says so in a shared counter (`registry_waiting`), which the runner turns into
its pause (`schema_registry`), as for records waiting in its own process.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from typing import Any

from streams.logs import configure_logging
from streams.stage import Stage
from streams.work import Abandon, Record, RecordWork


_child_work: RecordWork | None = None
_child_failed: Counter[str] = Counter()
_child_retried = 0
_registry_waiting: Any = None  # the runner's shared count of children whose records wait for the schema registry


def _count_failed(cls: str) -> None:
    _child_failed[cls] += 1


def _count_retried() -> None:
    global _child_retried
    _child_retried += 1


def _report_pause(reason: str | None) -> None:
    """RecordWork.pause in a child: called when the first of its records starts waiting for the schema registry
    (a reason) and when the last one stops (None); the runner pauses while the shared count is above 0."""
    if _registry_waiting is not None:
        with _registry_waiting.get_lock():
            _registry_waiting.value += 1 if reason else -1


def _watch_parent(parent: int) -> None:
    """Exit when the runner process is gone (a SIGKILLed runner must not leave its children behind)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def child_init(stage_cls: type[Stage], settings: Any, log_level: str = "INFO", ready: Any = None,
               stop: Any = None, registry_waiting: Any = None) -> None:
    """ProcessPoolExecutor initializer: build this child's stage from the settings, as the worker did, then
    count itself in `ready` (a shared integer the runner waits on). `stop` is the runner's stop event (a
    multiprocessing Event): once set, retries are abandoned and the rest of a chunk is handed back unworked.
    `registry_waiting` (a shared integer): this child adds 1 while any of its records waits for the registry."""
    global _child_work, _registry_waiting
    _registry_waiting = registry_waiting
    # signals are the runner's business: it sets `stop`, drains, then shuts the pool down
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(log_level, getattr(settings, "log_levels", None), suffix="[child]")
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    _child_work = RecordWork(stage_cls(settings), settings, stop=stop, on_failed=_count_failed,
                             on_retried=_count_retried)
    _child_work.pause = _report_pause
    if ready is not None:
        with ready.get_lock():
            ready.value += 1


def child_ping() -> int:
    """A no-op task: the runner submits one per child at start-up so the pool spawns them all (each then
    builds its stage in child_init and counts itself ready)."""
    assert _child_work is not None, "child_init did not run"
    return os.getpid()


def child_chunk(items: list[tuple]) -> tuple[list[tuple | None], dict[str, int], int, float]:
    """Work a chunk of (topic, partition, offset, key, value, headers, timestamp_ms) records in order.

    Returns one (outputs, dead_letter, error_class, event_time_ms) per record, or None for a record
    abandoned because the runner is stopping (it stays uncommitted); the failed-attempt counts by error
    class and the retry count, which the runner adds to its own metrics; and the seconds spent.

    A chunk is started whole or not at all: one taken after the runner's stop is handed back unworked, one
    started before is worked to its end (all its records are one partition's, in order; skipping its rest
    would leave a gap before the records of the partition's next chunk, which another child may have
    finished and the runner output), except after a record whose retries the stop cut short."""
    global _child_retried
    assert _child_work is not None, "child_init did not run"
    started = time.monotonic()
    done: list[tuple | None] = []
    cut = _child_work.stopping
    for topic, partition, offset, key, value, headers, ts in items:
        if cut:
            done.append(None)
            continue
        try:
            res = _child_work.run(Record(topic, partition, offset, key, value, headers, ts, 0.0))
        except Abandon:
            done.append(None)
            cut = True  # the rest would be output past this uncommitted record
            continue
        done.append((res.outputs, res.dead_letter, res.error_class, res.event_time_ms))
    failed, retried = dict(_child_failed), _child_retried
    _child_failed.clear()
    _child_retried = 0
    return done, failed, retried, time.monotonic() - started
