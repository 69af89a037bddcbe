"""Every Prometheus metric assetstream exports, in one place, so rules and dashboards can be checked against it.

One HTTP port per worker serves /metrics, /healthz (the poll loop is alive) and /readyz (the worker is
running and its stage's dependencies answer; a member without partitions is a healthy standby, so ready, but a
member its group refuses to join is not: 503 with the reason).
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
AGE_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)

# --- runner (every stage) -------------------------------------------------------------------------------
RECORDS_IN = Counter("assetstream_records_in_total", "Records taken from the input topic", ["stage"])
RECORDS_OUT = Counter("assetstream_records_out_total", "Records produced and acknowledged", ["stage", "topic"])
RECORDS_FAILED = Counter("assetstream_records_failed_total", "Failed processing attempts", ["stage", "error_class"])
RECORDS_DEAD_LETTERED = Counter("assetstream_records_dead_lettered_total", "Records sent to the dead-letter topic",
                                ["stage", "error_class"])
RECORDS_RETRIED = Counter("assetstream_records_retried_total", "Retries after a transient error", ["stage"])
PROCESSING_SECONDS = Histogram("assetstream_processing_seconds", "Time from hand-off to the stage until the "
                               "record's outputs are acknowledged", ["stage"], buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("assetstream_in_flight", "Records taken but not yet committed", ["stage"])
CONSUMER_LAG = Gauge("assetstream_consumer_lag", "High watermark minus the next offset to consume (records taken "
                     "and not finished are not counted)", ["stage", "topic", "partition"])
CONSUMER_LAG_COMMITTED = Gauge("assetstream_consumer_lag_committed", "High watermark minus the committed offset: "
                               "the work waiting, records taken but not finished included (what autoscaling and "
                               "'work waiting' alerts use)", ["stage", "topic", "partition"])
PARTITIONS_ASSIGNED = Gauge("assetstream_partitions_assigned", "Partitions of an input topic (the stage's input and "
                            "its retry topic) this worker owns; summed over a stage's workers it should equal "
                            "assetstream_topic_partitions", ["stage", "topic"])
TOPIC_PARTITIONS = Gauge("assetstream_topic_partitions", "Partitions the input topic has (the consumer's metadata, "
                         "refreshed at most every 30 s); no series until the first metadata answer", ["stage", "topic"])
RECORD_AGE = Histogram("assetstream_record_age_seconds", "now - the asset event's event_time when a stage finishes",
                       ["stage"], buckets=AGE_BUCKETS)
PAUSED = Gauge("assetstream_paused", "1 while the worker has paused consumption (backpressure, budget, store down)",
               ["stage", "reason"])
OFFSET_GAPS = Counter("assetstream_offset_gaps_total", "Jumps in a partition a worker reads: the broker returned an "
                      "offset beyond the next one expected (records acknowledged once and never returned)",
                      ["stage", "topic", "partition"])
RETRY_HELD = Gauge("assetstream_retry_held", "Records from the retry topic held in memory until their not-before time "
                   "(runner.retry_mode=topic); at runner.retry_held_max the retry partitions are paused", ["stage"])
COMMITS = Counter("assetstream_offset_commits_total", "Offset commits", ["stage"])
DEGRADED = Counter("assetstream_degraded_total", "Records that went on with a metadata part degraded (it timed out "
                   "or failed on every attempt): marked in the record and sent to review", ["stage", "part", "reason"])

# --- enrich ---------------------------------------------------------------------------------------------
LLM_REQUESTS = Counter("assetstream_llm_requests_total", "Provider requests", ["provider", "model", "task", "outcome"])
LLM_TOKENS = Counter("assetstream_llm_tokens_total", "Tokens used", ["provider", "model", "direction"])
LLM_COST = Counter("assetstream_llm_cost_usd_total", "Spend in USD", ["provider", "model"])
LLM_LATENCY = Histogram("assetstream_llm_request_seconds", "Provider request latency", ["provider", "model"],
                        buckets=LATENCY_BUCKETS)
LLM_BATCHES = Counter("assetstream_llm_batches_total", "Provider batch API batches (backfill)",
                      ["provider", "outcome"])
DEDUPE = Counter("assetstream_dedupe_total", "Dedupe lookups before calling a provider", ["result"])
REVIEW_LOOKUPS = Counter("assetstream_review_lookups_total",
                         "Lookups of an asset's human review before validation", ["result"])
STALE_EVENTS = Counter("assetstream_stale_events_total", "Events older than the version already indexed: skipped "
                       "(no model call, no output, not dead-lettered: a superseded event needs no person)", ["stage"])
RESULT_CACHE = Counter("assetstream_result_cache_total", "Model-result cache lookups per task", ["result"])
CACHE_ERRORS = Counter("assetstream_cache_errors_total", "A cache that could not be read or written (disk full, "
                       "permission denied, store not answering); the work is redone instead (streams/cachelog.py)",
                       ["cache", "op"])
BUDGET_REMAINING = Gauge("assetstream_llm_budget_remaining_usd",
                         "Budget left before consumption pauses; exported only by workers that have a budget "
                         "(no budget: no series, so the budget alerts stay silent)", ["stage"])

# --- validate -------------------------------------------------------------------------------------------
DECISIONS = Counter("assetstream_validation_decisions_total", "Automation decisions", ["status", "usage_flag"])

# --- index ----------------------------------------------------------------------------------------------
INDEX_ITEMS = Counter("assetstream_index_items_total", "Bulk items by outcome", ["result"])
INDEX_BULK_SECONDS = Histogram("assetstream_index_bulk_seconds", "Bulk request latency", buckets=LATENCY_BUCKETS)
INDEX_REVIEWS_APPLIED = Counter("assetstream_index_reviews_applied_total",
                                "Documents written with a human review the index did not have yet")

# --- writeback ------------------------------------------------------------------------------------------
WRITEBACK_ITEMS = Counter("assetstream_writeback_items_total", "Write-back outcomes per target and record: "
                          "written | noop (nothing changed since our last write) | skipped (not approved) | "
                          "conflict (every changed field was a person's) | retry | rejected", ["target", "result"])
WRITEBACK_CONFLICTS = Counter("assetstream_writeback_conflicts_total", "Fields left alone because a person "
                              "changed them in the target after our last write", ["target", "field"])
WRITEBACK_SECONDS = Histogram("assetstream_writeback_request_seconds", "Target request latency (reads and writes)",
                              ["target", "method"], buckets=LATENCY_BUCKETS)
WRITEBACK_BREAKER_OPEN = Gauge("assetstream_writeback_breaker_open", "1 while the target's circuit breaker is "
                               "open (the group's partitions are paused)", ["target"])


class HistogramBatch:
    """Observations for one labelled Histogram, gathered on a hot path and added to it in one step.

    `Histogram.observe` takes two locks and walks the buckets per value (~1.4 µs); the runner observes two
    values per record. This keeps plain per-bucket counts (`bisect`) and `flush()` adds them with one
    increment per touched bucket to the very same Histogram child, so /metrics shows exactly what per-value
    observes would. Single writer: observe and flush from one thread (the runner's poll thread). If the
    prometheus_client internals it relies on are missing it falls back to `observe` per value.
    """

    __slots__ = ("child", "bounds", "counts", "total", "direct")

    def __init__(self, child) -> None:
        self.child = child
        bounds = getattr(child, "_upper_bounds", None)
        self.direct = not (bounds and len(getattr(child, "_buckets", ())) == len(bounds)
                           and hasattr(child, "_sum"))
        self.bounds = list(bounds or ())
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        if self.direct:
            self.child.observe(value)
            return
        i = bisect_left(self.bounds, value)  # first bucket with value <= bound, as Histogram.observe picks
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value

    def flush(self) -> None:
        if self.direct:
            return
        counts, total = self.counts, self.total
        if not total and not any(counts):
            return
        self.counts, self.total = [0] * len(counts), 0.0
        self.child._sum.inc(total)
        for i, n in enumerate(counts):
            if n:
                self.child._buckets[i].inc(n)


class Health:
    """Liveness = the poll loop ticked recently; readiness = running + the stage's dependencies answer."""

    def __init__(self, stale_after_s: float = 60.0):
        self.stale_after_s = stale_after_s
        self.last_tick = time.monotonic()
        self.ready_checks: list[Callable[[], bool]] = []
        self.started = False
        self.blocked: str | None = None
        """Why the worker cannot work though it runs (its group refuses it): not ready, and /readyz says why."""

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_tick < self.stale_after_s

    def ready(self) -> bool:
        return (self.started and self.blocked is None and self.alive()
                and all(check() for check in self.ready_checks))


def serve(health: Health, port: int, host: str = "0.0.0.0") -> tuple[ThreadingHTTPServer, int]:
    """Start the metrics/health server in a daemon thread; returns it and the bound port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            if path == "/metrics":
                body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif path == "/healthz":
                ok = health.alive()
                body, ctype, code = (b"ok\n" if ok else b"stalled\n"), "text/plain", 200 if ok else 503
            elif path == "/readyz":
                ok, blocked = health.ready(), health.blocked
                text = "ready" if ok else f"not ready: {blocked}" if blocked else "not ready"
                body, ctype, code = f"{text}\n".encode(), "text/plain", 200 if ok else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep probes out of the logs
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server, server.server_address[1]
