"""Decisions the review group refused, as this desk learns of them: from the dead-letter topic, where the review
group puts every decision it does not apply (`stale_decision`: another editor's decision came between; also
`invalid_decision`, `tenant_mismatch`, `asset_not_indexed`, …), with the decision's id, editor and the reason.

Each desk process reads the dead-letter topic itself (no consumer group, nothing committed): from
`review.refusals_lookback_s` back when it starts (the broker's offsets for that time: a broker that answers them
imprecisely, as tansu does, makes it read more, never less), then as letters arrive. So every replica knows every
refusal, whichever replica sent the decision: the editor sees it on the asset's page (and at once after a Save,
when the review group refuses it within `review.apply_wait_s`); a decision this desk sent and the review group
refused no longer counts as pending (app/review/inflight.py).

    refusals = Refusals(settings)        # the thread starts on first use
    refusals.of_decision(decision_id)    # {decision_id, doc_id, editor, reason, message, meanwhile, at, …} or None
    refusals.of_asset(doc_id)            # the asset's refusals, oldest first
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)

KEPT = 10_000  # refusals remembered (the oldest are forgotten first)


class Refusals:
    def __init__(self, settings: Any, lookback_s: float | None = None):
        self.settings = settings
        self.lookback_s = settings.review.refusals_lookback_s if lookback_s is None else lookback_s
        self._mu = threading.Lock()
        self._by_id: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._mu:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="review-refusals", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def of_decision(self, decision_id: str) -> dict[str, Any] | None:
        self.start()
        with self._mu:
            return self._by_id.get(decision_id)

    def of_asset(self, doc_id: str) -> list[dict[str, Any]]:
        self.start()
        with self._mu:
            return [r for r in self._by_id.values() if r["doc_id"] == doc_id]

    def refused_ids(self, decision_ids: Any) -> set[str]:
        self.start()
        with self._mu:
            return {i for i in decision_ids if i in self._by_id}

    def add(self, letter: dict[str, Any]) -> None:
        """A dead letter, kept when it is the review group's refusal of a decision."""
        details = letter.get("details") or {}
        decision_id = details.get("decision_id")
        if letter.get("stage") != "review" or not decision_id:
            return
        entry = {"decision_id": decision_id, "doc_id": letter.get("asset_id") or details.get("asset_id") or "",
                 "editor": details.get("editor") or "", "reason": details.get("reason") or letter.get("error_type"),
                 "message": letter.get("message") or "", "meanwhile": details.get("meanwhile") or "",
                 "fields": [f for f in (details.get("fields") or "").split(",") if f],
                 "status": details.get("status") or None, "at": _ms(letter.get("last_failure_time")),
                 "decided_at": int(details["decided_at"]) if (details.get("decided_at") or "").isdigit() else None}
        with self._mu:
            self._by_id[decision_id] = entry
            self._by_id.move_to_end(decision_id)
            while len(self._by_id) > KEPT:
                self._by_id.popitem(last=False)

    # --- the reading thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        told = False
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # noqa: BLE001 - no broker, no topic yet: the desk works on, and tries again
                if not told:
                    log.warning("review: cannot read the review group's refusals from the dead-letter topic (%s: %s); "
                                "retrying: until then a refused decision is not shown to its editor",
                                type(exc).__name__, exc)
                    told = True
                self._stop.wait(5.0)

    def _follow(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

        from streams.avro import Serde, topic_names

        topic = topic_names(self.settings)["dead_letter"]
        serde = Serde.for_settings(self.settings)
        consumer = Consumer({**self.settings.kafka.client_config(),
                             "group.id": f"assetstream-review-refusals-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            meta = consumer.list_topics(topic, timeout=self.settings.kafka.connect_timeout_s).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise LookupError(f"no topic {topic}")
            since = int((time.time() - self.lookback_s) * 1000)
            wanted = [TopicPartition(topic, p, since) for p in sorted(meta.partitions)]
            try:
                found = consumer.offsets_for_times(wanted, timeout=self.settings.kafka.connect_timeout_s)
                starts = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                          for tp in found]
            except Exception:  # noqa: BLE001 - a broker without time lookups: read the partitions whole
                starts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
            consumer.assign(starts)
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                try:
                    letter = serde.deserialize("dead_letter", msg.value())
                except Exception:  # noqa: BLE001 - not a letter this desk can read: not a refusal it can show
                    continue
                if _ms(letter.get("last_failure_time")) >= since:
                    self.add(letter)
        finally:
            consumer.close()


def _ms(value: Any) -> int:
    from streams.records import to_ms

    return to_ms(value) or 0 if value is not None else 0
