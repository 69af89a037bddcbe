"""How many CPUs this worker really has, and a process-wide bound on CPU-heavy calls (issue 21).

A pod limited to 2 CPUs on a 32-core node sees 32 in `os.cpu_count()`; running 32 OCR or model calls at once
there only makes each of them slow enough to hit its time limit. `available_cpus()` reads the container's CPU
quota (cgroup v2 `cpu.max`, cgroup v1 `cpu.cfs_quota_us / cpu.cfs_period_us`), rounded up, and never reports more
than the CPUs the process may run on (`sched_getaffinity`). `cpu_slots()` is a semaphore with that many slots:
CPU-heavy work (OCR, local model forward passes) runs inside it, so a busy worker queues and slows down instead of
producing worse answers. `ASSETSTREAM_CPU_SLOTS` overrides the count. `Budget` bounds a quantity (preprocess:
decoded pixels) the way the slots bound CPU.
"""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs granted by the cgroup quota (e.g. 1.5), or None when there is no limit or no cgroup."""
    v2 = _read(root / "cpu.max")  # "max 100000" or "150000 100000"
    if v2:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                quota, period = int(parts[0]), int(parts[1])
                if quota > 0 and period > 0:
                    return quota / period
            except ValueError:
                pass
        return None
    for d in (root / "cpu", root / "cpu,cpuacct", root):  # cgroup v1 mount layouts
        quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            q, p = int(quota), int(period)
        except ValueError:
            return None
        return q / p if q > 0 and p > 0 else None
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process can use: the affinity mask, lowered to the cgroup quota (rounded up), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def slot_count() -> int:
    env = os.environ.get("ASSETSTREAM_CPU_SLOTS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return available_cpus()


def cpu_slots() -> threading.BoundedSemaphore:
    """The process-wide semaphore CPU-heavy calls run inside (`with cpu_slots(): ...`)."""
    global _slots
    if _slots is None:
        with _slots_lock:
            if _slots is None:
                _slots = threading.BoundedSemaphore(slot_count())
    return _slots


class Budget:
    """A weighted semaphore: `with budget.hold(n):` waits until n units fit under the total, first come first served
    (a large request is not starved by a stream of small ones). A request over the total is held as the whole
    total: it runs alone. Preprocess bounds the decoded pixels a worker keeps at once with it (trial 24 F2: 16
    threads each holding an 80 MP image between their CPU slots)."""

    def __init__(self, total: int):
        self.total = max(1, int(total))
        self.used = 0
        self._cond = threading.Condition()
        self._queue: list[object] = []

    def hold(self, amount: int) -> "_Held":
        return _Held(self, min(self.total, max(0, int(amount))))

    def state(self) -> tuple[int, int]:
        """(units held, requests waiting), read together."""
        with self._cond:
            return self.used, len(self._queue)

    def _acquire(self, amount: int) -> None:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self.used + amount > self.total:
                    self._cond.wait()
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may fit too
            self.used += amount

    def _release(self, amount: int) -> None:
        with self._cond:
            self.used -= amount
            self._cond.notify_all()


class _Held:
    def __init__(self, budget: Budget, amount: int):
        self.budget, self.amount = budget, amount

    def __enter__(self) -> "_Held":
        self.budget._acquire(self.amount)
        return self

    def shrink_to(self, amount: int) -> None:
        """Give back what is held above `amount` now (never waits; the next in line may fit). There is no way to
        grow a hold: a holder waiting for more while others hold the rest could wait for ever, so a caller takes at
        once the most it may need and gives back what it turns out not to."""
        give = self.amount - max(0, min(self.amount, int(amount)))
        if give:
            self.amount -= give
            self.budget._release(give)

    def __exit__(self, *exc) -> None:
        self.budget._release(self.amount)
