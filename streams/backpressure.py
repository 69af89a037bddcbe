"""When the poll loop takes records, and when it pauses the assigned partitions (and why).

At `runner.max_in_flight` the loop stops taking records and serves acknowledgements while work drains; only
if it stays at the limit for `runner.pause_after_s` are the partitions paused (with hysteresis: resumed at
half the limit). Pausing at once on every brush with the limit halved throughput: librdkafka drops what it
prefetched for a paused partition and fetches it again on resume. Partitions are also paused while the
worker drains, while the work asks for it (`request`, e.g. a store outage seen by a batch) and while the
stage's `should_pause()` gives a reason. The reason is reported to the sensor (`assetstream_paused{reason}`).

Requests are per source (`requester`): the records waiting for the schema registry (RecordWork.registry_down, e.g.
an owed dead letter) and the batch being worked (RecordWork.run_batch) each ask and lift their own, and the
partitions stay paused while any source asks (the reason shown: the request standing longest). So a batch that
succeeds does not lift the pause a dead letter waiting for the registry asked for.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from confluent_kafka import Consumer, TopicPartition

from streams.sensors import Sensor
from streams.tracker import TP

log = logging.getLogger("assetstream.runner")


class Backpressure:
    """The pause state of one worker. Poll thread only, except `request` (from the thread working a batch)."""

    def __init__(self, name: str, consumer: Consumer, rs: Any, should_pause: Callable[[], str | None],
                 sensor: Sensor):
        self.name, self.consumer, self.rs, self.should_pause, self.sensor = name, consumer, rs, should_pause, sensor
        self.paused_tps: set[TP] = set()
        self.current: str | None = None  # what the assigned partitions are paused for
        self.requests: dict[str, str] = {}  # source -> the reason it asks for while it lasts (e.g. the store is down)
        self._requests_lock = threading.Lock()
        self._resume_due: set[TP] = set()  # newly assigned: resumed (or paused) explicitly
        self._full_since: float | None = None  # since when in-flight records have been at max_in_flight
        self.window_held: set[TP] = set()  # paused alone: too many uncommitted records (runner.max_uncommitted)

    def room(self, in_flight: int) -> int | None:
        """How many records to take now, or None to take nothing and let the work and its acks drain."""
        free = self.rs.max_in_flight - in_flight
        if free <= 0 and not self.paused_tps:
            # at the limit: pausing is kept for a stall (runner.pause_after_s), a brief wait is far cheaper
            if self._full_since is None:
                self._full_since = time.monotonic()
            return None
        if free > 0:
            self._full_since = None
        return max(1, min(free, 500))

    def request(self, source: str, reason: str | None) -> None:
        """`source` (a part of the work) asks to pause consumption for this reason until it asks again with None;
        its None lifts only its own request."""
        with self._requests_lock:
            if reason is None:
                self.requests.pop(source, None)
            elif self.requests.get(source) != reason:
                self.requests.pop(source, None)  # a new reason: it stands from now on
                self.requests[source] = reason

    def requester(self, source: str) -> Callable[[str | None], None]:
        """`request` for one source, as the work's `pause(reason)` callables take it."""
        return lambda reason: self.request(source, reason)

    @property
    def requested(self) -> str | None:
        """The reason of the request standing longest, or None when no source asks."""
        with self._requests_lock:
            return next(iter(self.requests.values()), None)

    def apply(self, assigned: set[TP], in_flight: int, stopping: bool) -> None:
        """Pause or resume the assigned partitions according to the current reason, if any."""
        if stopping:
            reason = "draining"
        elif requested := self.requested:
            reason = requested
        elif (stage_reason := self.should_pause()) is not None:
            reason = stage_reason
        elif (in_flight >= self.rs.max_in_flight and self._full_since is not None
              and time.monotonic() - self._full_since >= self.rs.pause_after_s) or (
                self.current == "backpressure" and in_flight > self.rs.max_in_flight // 2):
            reason = "backpressure"  # a stall at the limit; with hysteresis: resume at half the limit
        else:
            reason = None
        if reason:
            todo = assigned - self.paused_tps
            if todo:
                self.consumer.pause([TopicPartition(t, p) for t, p in todo])
                self.paused_tps |= todo
            self._resume_due -= todo
        elif self.paused_tps or self._resume_due:
            tps = (self.paused_tps | self._resume_due) & assigned
            if tps:
                self.consumer.resume([TopicPartition(t, p) for t, p in tps])
            self.paused_tps.clear()
            self._resume_due.clear()
        if reason != self.current:
            self.sensor.on_pause(reason, self.current)
            if reason and reason != "backpressure":  # not the in-flight limit: say it (a stop's drain is no problem)
                log.log(logging.INFO if reason == "draining" else logging.WARNING,
                        "%s: pausing consumption: %s", self.name, reason)
            self.current = reason

    def hold_windows(self, assigned: set[TP], window: Callable[[TP], int]) -> None:
        """A partition whose uncommitted window (its records from the commit position on, finished ones behind
        an unfinished one included) reaches runner.max_uncommitted is paused on its own until the window is down to
        half: a record stuck at its head bounds what a restart would redo there, and the other partitions go on.
        Called after `apply` in every iteration, so a resume of every partition there does not undo it."""
        limit = self.rs.max_uncommitted
        was_held = bool(self.window_held)
        for tp in assigned:
            n = window(tp)
            if n >= limit:
                if tp not in self.window_held:
                    log.info("%s: pausing %s/%d: %d records uncommitted behind its oldest unfinished one "
                             "(runner.max_uncommitted)", self.name, tp[0], tp[1], n)
                self.window_held.add(tp)
            elif tp in self.window_held and n <= limit // 2:
                self.window_held.discard(tp)
                if tp not in self.paused_tps:
                    self.consumer.resume([TopicPartition(*tp)])
        if self.window_held:
            self.consumer.pause([TopicPartition(*tp) for tp in self.window_held & assigned])
        # exported as assetstream_paused{reason="uncommitted_window"} while any partition is held
        if self.window_held and not was_held:
            self.sensor.on_pause("uncommitted_window", None)
        elif was_held and not self.window_held:
            self.sensor.on_pause(None, "uncommitted_window")

    def assigned(self, tp: TP) -> None:
        """librdkafka remembers a pause across revoke and re-assign: decide afresh in the next `apply`."""
        self._resume_due.add(tp)

    def forget(self, tp: TP) -> None:
        self.paused_tps.discard(tp)
        self.window_held.discard(tp)
