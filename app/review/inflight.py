"""Decisions this review app sent that the index does not show yet, and a lock per asset (trial 34 F1: two saves of
one field 100 ms apart were both checked against the index before either was applied, both sent, one lost).

A decision is checked and published under its asset's lock, so a second decision on the asset from this process is
checked after the first was sent; a decision sent but not applied yet counts as another editor's for the conflict
check (decisions.from_form's `pending`) until the index shows it, the review group refused it (app/review/refusals.py),
or for `review.unapplied_hold_s` (30 s) at most (code review 18 F7: a decision never applied, no review worker
running, held the asset's other decisions back for 10 minutes). After that the other decisions are sent: the review
group, which applies an asset's decisions in the order they were sent, refuses the later of two made on one view
(`stale_decision`, domain.review.stale). Per process: replicas of the app do not see each other's pending decisions;
the review group's check covers them (docs/review.md)."""
from __future__ import annotations

import threading
import time
import zlib
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from app.review.decisions import DecisionError

LOCK_WAIT_S = 30.0
"""how long a decision waits for another one on the same asset (or a bulk approval holding it) to be checked and
sent; then it is refused, nothing sent (a DecisionError: the page keeps the editor's form)"""


class InFlight:
    def __init__(self, hold_s: float = 30.0, stripes: int = 64):
        self.hold_s = hold_s
        self._locks = [threading.Lock() for _ in range(stripes)]
        self._mu = threading.Lock()
        self._sent: dict[str, list[dict[str, Any]]] = {}
        self._prune_at = 1000  # amortised: the expired are forgotten when the table doubles (code review 18 F1)

    def _stripe(self, doc_id: str) -> int:
        return zlib.crc32(doc_id.encode()) % len(self._locks)

    @contextmanager
    def holding(self, doc_ids: Iterable[str]) -> Iterator[None]:
        """These assets' locks (document ids), taken in one order so two bulk approvals cannot wait on each other."""
        stripes = sorted({self._stripe(d) for d in doc_ids})
        taken: list[int] = []
        try:
            deadline = time.monotonic() + LOCK_WAIT_S
            for i in stripes:
                if not self._locks[i].acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise DecisionError("nothing was sent: another decision on this asset is still being checked and "
                                        "sent; try again in a moment")
                taken.append(i)
            yield
        finally:
            for i in reversed(taken):
                self._locks[i].release()

    def add(self, doc_id: str, decision: dict[str, Any]) -> None:
        entry = {"decision_id": decision["decision_id"], "editor": decision.get("editor"),
                 "status": decision.get("status"), "fields": [f["field"] for f in decision.get("fields") or []],
                 "at": time.monotonic(), "sent_at": time.time()}
        with self._mu:
            if len(self._sent) > self._prune_at:  # assets nobody decided on again since: forget the expired
                now = entry["at"]
                self._sent = {k: v for k, v in self._sent.items() if any(now - e["at"] < self.hold_s for e in v)}
                self._prune_at = max(1000, 2 * len(self._sent))
            self._sent.setdefault(doc_id, []).append(entry)

    def others(self, doc_id: str, doc: dict[str, Any] | None, editor: str,
               refused: Callable[[list[str]], set[str]] | None = None) -> list[dict[str, Any]]:
        """The decisions other editors than `editor` sent on this asset in the last `hold_s` that `doc` (its index
        document) does not show applied and the review group did not refuse (`refused`: of these decision ids, the
        refused ones). An editor's own are not counted until applied (then the page's `mine` tells them apart):
        their approval, then Back and a decision on the same asset, is theirs to make."""
        applied = set(((doc or {}).get("review") or {}).get("decision_ids") or [])
        now = time.monotonic()
        with self._mu:
            ids = [e["decision_id"] for e in self._sent.get(doc_id, [])]
        gone = refused(ids) if refused is not None and ids else set()
        with self._mu:
            left = [e for e in self._sent.get(doc_id, []) if e["decision_id"] not in applied
                    and e["decision_id"] not in gone and now - e["at"] < self.hold_s]
            if left:
                self._sent[doc_id] = left
            else:
                self._sent.pop(doc_id, None)
        return [e for e in left if e["editor"] != editor]
