"""A long operator command's progress on stderr: a bar on a terminal, a plain line every few seconds elsewhere.

Trial 22: a 1,500-image backfill run from a CI job / `| tee` / a Kubernetes Job showed no progress at all (rich
draws its bar only on a terminal), so nobody could tell a slow run from a stuck one. Off a terminal each line is
complete and stands alone (`backfill: published 120/1500 (8%) · 11.9/s · ETA 2 min`), printed every
`ops.progress_interval_s` whether or not anything moved (a stall shows as 0.0/s), and once more at the end.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from app.status import duration_text


class PlainProgress:
    """`label: <verb> done/total (pct) · rate/s · ETA`, plus `detail()`, every `interval_s` from a timer thread.

    `detail()` reads the caller's state (the pipeline watch's counts), which the caller's thread changes: it is
    called in that thread, at each `update`/`advance`, and the timer prints the count and detail last handed over
    together, under a lock (review 14 L7: the timer read them while the caller was half-way through a change,
    so a line could say `through 0/1 (1 indexed)`)."""

    def __init__(self, console: Any, label: str, verb: str, total: int, interval_s: float,
                 detail: Callable[[], str] | None = None, clock: Callable[[], float] = time.monotonic):
        self.console, self.label, self.verb, self.total = console, label, verb, total
        self.interval_s, self.detail, self.clock = interval_s, detail, clock
        self.done = 0
        self._extra = ""
        self._lock = threading.Lock()
        self.started = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"progress-{label}")

    def line(self) -> str:
        with self._lock:
            done, extra = self.done, self._extra
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = done / elapsed
        pct = f" ({100 * done // self.total}%)" if self.total else ""
        left = self.total - done
        eta = "done" if left <= 0 else (f"ETA {duration_text(left / rate)}" if rate > 0 else "ETA unknown")
        return (f"{self.label}: {self.verb} {done}/{self.total}{pct}{f' {extra}' if extra else ''} · "
                f"{rate:.1f}/s · {eta} · {duration_text(elapsed)} elapsed")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.console.print(self.line(), markup=False, highlight=False)

    def update(self, done: int) -> None:
        """In the caller's thread (the only one changing what `detail()` reads)."""
        extra = self.detail() if self.detail is not None else ""
        with self._lock:
            self.done, self._extra = done, extra

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def __enter__(self) -> "PlainProgress":
        self.update(self.done)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        self.update(self.done)
        self.console.print(self.line(), markup=False, highlight=False)


class BarProgress:
    """The same interface over rich's bar (a terminal)."""

    def __init__(self, console: Any, label: str, verb: str, total: int, detail: Callable[[], str] | None = None):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.detail = detail
        self.done = 0
        self._progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                                  TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("ETA"),
                                  TimeRemainingColumn(), console=console)
        self._task = self._progress.add_task(verb, total=total)
        self.verb = verb

    def _show(self) -> None:
        extra = self.detail() if self.detail is not None else ""
        self._progress.update(self._task, completed=self.done, description=f"{self.verb} {extra}".strip())

    def update(self, done: int) -> None:
        self.done = done
        self._show()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def __enter__(self) -> "BarProgress":
        self._progress.start()
        self._show()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._show()
        self._progress.stop()


def progress(console: Any, label: str, verb: str, total: int, interval_s: float,
             detail: Callable[[], str] | None = None) -> PlainProgress | BarProgress:
    """A bar when stderr is a terminal, else plain lines every `interval_s`."""
    if console.is_terminal:
        return BarProgress(console, label, verb, total, detail)
    return PlainProgress(console, label, verb, total, interval_s, detail)
