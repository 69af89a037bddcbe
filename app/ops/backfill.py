"""Backfill: publish a directory of images or a CSV/JSONL manifest to `raw`, rate-limited and resumable.

Resumability: a local state file (JSON lines, append-only) records `asset_id + fingerprint` of every event the
broker acknowledged, written from the delivery callback, i.e. only after the ack. A re-run skips those. The
fingerprint is `size+mtime` of a local file (or its sha256 with --hash), `uri+version` of a remote one, so a
changed file is published again. Killing the process loses at most the acks in flight (their events are
published again on the next run; downstream is idempotent per asset id + version).

With a reachable index, assets already indexed with the current enrichment configuration (prompt hash, model
and model version per task; for local files also the same sha256) are skipped too.

`only_stale=True` re-publishes (event_type `reprocess`, version = indexed version + 1 so the index takes it)
exactly the source's assets whose indexed enrichment came from another prompt hash / model / model version
than the current configuration (the enrich stage's own plan, consumers/enrich/plan.py). Enrich then pays only for
the stale tasks: the others' answers come from its result cache (consumers/enrich/results.py), their inputs being
unchanged. Assets not in the index are left alone. An asset indexed as degraded (validate's review reason
"degraded: ...": a part timed out or failed on every attempt, issue 21) is stale too, whatever its provenance,
so `--only-stale` redoes it when capacity returns; a plain backfill does not skip it as already indexed either.
Not so an asset whose file's metadata was too large to read ("degraded: metadata skipped: ..."): the same file gives
the same record, so it is current (publish a copy with smaller metadata instead).
Each reprocess event carries forward the indexed event's own person-given values (human fields, declared licence,
product context, uploader and notes) that the row does not give (app/ops/carry.py): a reprocess loses nothing.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from confluent_kafka import KafkaError, Producer

from domain.sources import file_path
from streams.avro import Serde, topic_names
from streams.clientlog import client_logging
from app.jsonlines import json_objects
from app.ops import carry
from app.ops.settings import OpsSettings, ops_settings
from consumers.enrich.plan import EnrichPlan
from consumers.enrich.plan import stale_reasons as task_reasons
from app.producer import EventError, asset_id_for, build_event, source_uri_for
from domain.records import document_id
from domain.store.degraded import METADATA_SKIPPED
from app.settings import Settings

log = logging.getLogger("assetstream.backfill")

MANIFEST_FIELDS = ("uri", "asset_id", "license", "sku", "category", "name", "brand", "title", "alt_text",
                   "version", "tenant", "uploader", "notes")


class BackfillError(Exception):
    """A usage / configuration problem (exit code 2)."""


@dataclass
class Item:
    asset_id: str
    uri: str
    fingerprint: str
    local_path: Path | None = None
    version: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    row: str = ""

    def sha256(self) -> str | None:
        if self.local_path is None:
            return None
        h = hashlib.sha256()
        with open(self.local_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()


# ------------------------------------------------------------------------------------------------ sources
def _local_fingerprint(path: Path, use_hash: bool) -> str:
    st = path.stat()
    if use_hash:
        h = hashlib.sha256(path.read_bytes()).hexdigest()
        return f"sha256:{h}"
    return f"size:{st.st_size}:mtime_ns:{st.st_mtime_ns}"


def _local_item(path: Path, use_hash: bool, asset_id: str | None = None, version: int | None = None,
                fields: dict[str, Any] | None = None, row: str = "") -> Item:
    path = path.resolve()
    uri = source_uri_for(path)
    if version is None:
        version = path.stat().st_mtime_ns // 1_000_000  # a changed file gets a higher version
    return Item(asset_id or asset_id_for(uri), uri, _local_fingerprint(path, use_hash), path, version,
                fields or {}, row)


def walk_dir(root: Path, extensions: Iterable[str],
             use_hash: bool = False) -> tuple[list[Item], list[tuple[str, str]]]:
    """(items, skipped): the image files under root by suffix (sorted, hidden directories not searched), and
    every other file found with the reason it is not published — the same discovery `assetstream run` uses."""
    from app.embedded_run import find_images

    files, skipped = find_images([str(root)], list(extensions))
    return [_local_item(p, use_hash, row=str(p)) for p in files], skipped


def _row_item(row: dict[str, Any], where: str, base: Path, use_hash: bool) -> Item:
    row = {k.strip().lower(): v for k, v in row.items() if k}
    uri = str(row.get("uri") or row.get("source_uri") or row.get("url") or "").strip()
    if not uri:
        raise ValueError(f"{where}: no 'uri'")
    unknown = set(row) - set(MANIFEST_FIELDS) - {"source_uri", "url"}
    if unknown:
        raise ValueError(f"{where}: unknown column(s) {sorted(unknown)}; known: {', '.join(MANIFEST_FIELDS)}")
    version = row.get("version")
    if version not in (None, ""):
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: version must be an integer, not {version!r}") from None
        if version < 0:
            raise ValueError(f"{where}: version must be >= 0")
    else:
        version = None
    fields = {k: (str(v) if not isinstance(v, str) else v) for k, v in row.items()
              if k in MANIFEST_FIELDS and k not in ("uri", "asset_id", "version") and v not in (None, "")}
    asset_id = str(row["asset_id"]).strip() if row.get("asset_id") not in (None, "") else None
    if "://" not in uri:  # a local path, relative to the manifest
        path = Path(uri) if Path(uri).is_absolute() else base / uri
        if not path.is_file():
            raise ValueError(f"{where}: no such file {path}")
        return _local_item(path, use_hash, asset_id, version, fields, where)
    if uri.startswith("file://"):
        path = Path(file_path(uri))  # the name's bytes, whatever its encoding (domain.sources)
        if not path.is_file():
            raise ValueError(f"{where}: no such file {path}")
        return _local_item(path, use_hash, asset_id, version, fields, where)
    return Item(asset_id or asset_id_for(uri), uri, f"uri:{uri}|version:{version if version is not None else '-'}",
                None, version, fields, where)


def read_manifest(path: Path, use_hash: bool = False) -> tuple[list[Item], list[str]]:
    """(items, problems) of a .csv (header row) or .jsonl manifest."""
    items: list[Item] = []
    bad: list[str] = []
    base = path.resolve().parent
    suffix = path.suffix.lower()
    with open(path, newline="", encoding="utf-8") as f:
        if suffix == ".csv":
            reader = csv.DictReader(f)
            if not reader.fieldnames or "uri" not in [c.strip().lower() for c in reader.fieldnames]:
                raise BackfillError(f"{path}: the CSV needs a header row with at least a 'uri' column")
            rows: Iterable[tuple[str, Any, str | None]] = ((f"{path.name}:{i + 2}", r, None)
                                                            for i, r in enumerate(reader))
        elif suffix in (".jsonl", ".ndjson"):
            rows = json_objects(f, path.name)
        else:
            raise BackfillError(f"{path}: a manifest must end in .csv or .jsonl (or give a directory)")
        for where, row, problem in rows:
            if problem is not None:
                bad.append(f"{where}: {problem}")
                continue
            try:
                item = _row_item(row, where, base, use_hash)
                build_item_event(item, "created", item.version, None, "backfill")  # the shared entry rules
            except EventError as exc:
                bad.append(f"{where}: {exc}")
            except (ValueError, OSError) as exc:
                bad.append(str(exc))
            else:
                items.append(item)
    return items, bad


def outside_file_roots(items: list[Item], file_roots: Iterable[str]) -> list[Item]:
    """The local files among `items` that preprocess would refuse (`forbidden_url`: not under one of
    preprocess.file_roots, symlinks resolved as preprocess resolves them); none when no roots are configured
    here (the workers' roots are then not known to this process)."""
    roots = [Path(os.path.realpath(r)) for r in file_roots]
    if not roots:
        return []
    return [it for it in items if it.local_path is not None
            and not any(it.local_path == r or it.local_path.is_relative_to(r) for r in roots)]


def enumerate_source(source: Path, ops: OpsSettings,
                     use_hash: bool = False) -> tuple[list[Item], list[str], list[tuple[str, str]]]:
    """(items, bad manifest rows, files of a directory not published with the reason)."""
    if source.is_dir():
        items, skipped = walk_dir(source, ops.image_extensions, use_hash)
        return items, [], skipped
    if source.is_file():
        return (*read_manifest(source, use_hash), [])
    raise BackfillError(f"{source}: no such directory or manifest file")


# ------------------------------------------------------------------------------------------------ state
class StateFile:
    """Append-only JSON lines {"asset_id", "fp", "topic", "at", "event"}; the last line for an asset wins. A torn
    last line (killed mid-write) is ignored. `event` ({"doc", "event_id", "version"}: the acknowledged event) lets
    `--wait` on a re-run wait for what an earlier run published (lines written before it have none)."""

    def __init__(self, path: Path, topic: str):
        self.path = path
        self.topic = topic
        self.done: dict[str, str] = {}
        self.events: dict[str, tuple[str, Sent, int]] = {}
        """state key -> (document id, the acknowledged event, when: ms) of the last line that names its event"""
        self._lock = threading.Lock()
        self._f = None
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and rec.get("topic") == topic and "asset_id" in rec:
                        self.done[rec["asset_id"]] = rec.get("fp", "")
                        self._remember(rec)

    def is_done(self, key: str, fp: str) -> bool:
        return self.done.get(key) == fp

    def _remember(self, rec: dict[str, Any]) -> None:
        self.events.pop(rec["asset_id"], None)
        event = rec.get("event")
        try:
            self.events[rec["asset_id"]] = (str(event["doc"]), Sent(str(event["asset_id"]), str(event["event_id"]),
                                                                    int(event["version"])), int(rec["at"]) * 1000)
        except (TypeError, KeyError, ValueError):
            pass

    def earlier(self, keys: Iterable[str]) -> tuple[dict[str, Sent], int | None, list[str]]:
        """What earlier runs published for these state keys: document id -> event, the earliest time (ms), and
        the keys whose line names no event (written before lines did)."""
        sent, times, unknown = {}, [], []
        for key in keys:
            if key in self.events:
                doc, event, at_ms = self.events[key]
                sent[doc] = event
                times.append(at_ms)
            else:
                unknown.append(key)
        return sent, min(times, default=None), unknown

    def record(self, key: str, fp: str, doc: str | None = None, event: Sent | None = None) -> None:
        rec: dict[str, Any] = {"asset_id": key, "fp": fp, "topic": self.topic, "at": int(time.time())}
        if doc is not None and event is not None:
            rec["event"] = {"doc": doc, "asset_id": event.asset_id, "event_id": event.event_id,
                            "version": event.version}
        with self._lock:
            if self._f is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._f = open(self.path, "a", encoding="utf-8")
            self._f.write(json.dumps(rec) + "\n")
            self._f.flush()
            self.done[key] = fp
            self._remember(rec)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()
                self._f = None


def default_state_path(source: Path) -> Path:
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
    return Path(".assetstream") / f"backfill-{source.stem or 'root'}-{digest}.jsonl"


# ------------------------------------------------------------------------------------------------ rate
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate, self.burst = float(rate), max(1, int(burst))
        self.tokens = float(min(self.burst, max(1.0, rate)))
        self.clock, self.sleep = clock, sleep
        self.last = clock()

    def take(self) -> None:
        while True:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1 - 1e-9:  # float slack: 0.1 s x 10/s may come out as 0.9999999
                self.tokens = max(0.0, self.tokens - 1)
                return
            self.sleep(max((1 - self.tokens) / self.rate, 1e-4))


# ------------------------------------------------------------------------------------------------ index
def current_enrichment(settings: Settings, ops: OpsSettings | None = None) -> dict[str, dict[str, Any]]:
    """task -> {prompt_hash, provider, model, model_version (None = not known ahead)}: the provenance the enrich
    stage records with this configuration (its own plan, consumers.enrich.plan)."""
    ops = ops or ops_settings(settings)
    plan = EnrichPlan.from_settings(settings)
    versions: dict[str, str | None] = {}
    for name, task in plan.tasks.items():
        versions[name] = ops.expected_model_versions.get(name)
        if versions[name] is None and task.spec.provider == "local":
            from consumers.enrich.providers.local import model_version
            versions[name] = model_version()
    return plan.identities(versions)


DEGRADED_PREFIX = "degraded: "
"""validate's review reason for a part that timed out or failed (consumers/validate/stage.py)."""


def degraded_reasons(doc: dict[str, Any]) -> list[str]:
    """The degraded parts of an indexed document that a redo may complete ("degraded: ocr timed out", ...); empty =
    complete, or degraded by the file itself (its metadata too large to read: the same file, the same record)."""
    return [str(r) for r in doc.get("reasons") or [] if str(r).startswith(DEGRADED_PREFIX)
            and not str(r).startswith(DEGRADED_PREFIX + METADATA_SKIPPED)]


def stale_reasons(doc: dict[str, Any], current: dict[str, dict[str, Any]]) -> list[str]:
    """Why an indexed document's enrichment differs from the current configuration or is incomplete (empty =
    current and complete)."""
    return [f"{task}: {why}" for task, why in task_reasons(doc.get("provenance"), current).items()] + \
        degraded_reasons(doc)


class IndexView:
    """Read-only lookups of indexed documents by asset id; `error` is set (and lookups return {}) when the
    store cannot be reached."""

    SOURCE = ["asset_id", "version", "provenance", "hashes.sha256", "source_uri", "reasons", *carry.SOURCE]

    def __init__(self, settings: Settings, url: str | None = None):
        from app.console import redact_url
        from domain.store.client import make_client
        from domain.store.management import read_alias

        s = settings.index if url is None else settings.index.model_copy(update={"url": url})
        self.url = redact_url(s.url)  # for messages: a password inside the URL is never printed
        self.alias = read_alias(s)
        self.error: str | None = None
        self.client = make_client(s.model_copy(update={"request_timeout_s": min(s.request_timeout_s, 10.0)}))
        try:
            self.client.indices.get_alias(name=self.alias)
        except Exception as exc:  # noqa: BLE001 - any failure means "no index to consult"
            self.error = f"{type(exc).__name__}: {str(exc)[:200]}"

    @property
    def available(self) -> bool:
        return self.error is None

    def lookup(self, asset_ids: list[str], chunk: int = 500) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.available:
            return out
        for i in range(0, len(asset_ids), chunk):
            ids = asset_ids[i:i + chunk]
            try:
                res = self.client.search(index=self.alias, query={"ids": {"values": ids}}, size=len(ids),
                                         source=self.SOURCE)
            except Exception as exc:  # noqa: BLE001
                self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                return {}
            for hit in res["hits"]["hits"]:
                out[hit["_id"]] = hit.get("_source") or {}
        return out

    def facts(self, doc_ids: list[str], chunk: int = 500) -> dict[str, dict[str, Any]]:
        """document id -> {event_id, version, decision_ids} of the indexed documents among these: which event the
        document is of, its asset version, and every editor decision its review holds; read in real time (mget, no
        refresh needed); raises when the store does not answer. What `backfill --wait` and `dlq list --open` decide
        from: facts of the records themselves, never a time stamp of one machine against another's."""
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(doc_ids), chunk):
            res = self.client.mget(index=self.alias, ids=doc_ids[i:i + chunk],
                                   source_includes=["event_id", "version", "review.decision_ids"])
            for d in res["docs"]:
                if d.get("found"):
                    src = d.get("_source") or {}
                    out[d["_id"]] = {"event_id": src.get("event_id"), "version": int(src.get("version") or -1),
                                     "decision_ids": list((src.get("review") or {}).get("decision_ids") or [])}
        return out

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass


# ------------------------------------------------------------------------------------------------ run
@dataclass
class Plan:
    """What a run would do: items to publish (with event type / version) and why others are skipped."""

    publish: list[tuple[Item, str, int | None, str, str]] = field(default_factory=list)
    """(item, event_type, version, state key, state fingerprint)"""
    skipped_state: list[str] = field(default_factory=list)
    skipped_state_keys: list[str] = field(default_factory=list)
    """their state keys (what `StateFile.earlier` looks up for `--wait`)"""
    skipped_indexed: list[str] = field(default_factory=list)
    skipped_current: list[str] = field(default_factory=list)
    skipped_missing: list[str] = field(default_factory=list)
    stale: dict[str, list[str]] = field(default_factory=dict)
    carry: dict[str, dict[str, Any]] = field(default_factory=dict)
    """asset id -> the indexed event's values its reprocess event carries forward (app/ops/carry.py)"""
    carried: dict[str, list[str]] = field(default_factory=dict)
    """asset id -> the names of the values carried forward (those the source row does not give)"""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    """(file, why) for every file of a source directory that is not an asset (not an image extension, hidden)"""


@dataclass
class Result:
    plan: Plan
    published: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False

    def summary(self) -> dict[str, Any]:
        p = self.plan
        return {"to_publish": len(p.publish), "published": len(self.published), "failed": len(self.failed),
                "skipped_already_published": len(p.skipped_state), "skipped_already_indexed": len(p.skipped_indexed),
                "skipped_current": len(p.skipped_current), "skipped_not_indexed": len(p.skipped_missing),
                "stale": p.stale, "carried_forward": p.carried, "problems": p.problems, "notes": p.notes, "interrupted": self.interrupted,
                "skipped_files": [{"file": f, "reason": why} for f, why in p.skipped_files],
                "published_ids": self.published, "failed_ids": self.failed,
                "planned_ids": [it.asset_id for it, *_ in p.publish]}


def config_digest(current: dict[str, dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()[:16]


def make_plan(items: list[Item], state: StateFile | None, index: IndexView | None, *, only_stale: bool,
              current: dict[str, dict[str, Any]] | None) -> Plan:
    plan = Plan()
    if only_stale:
        assert index is not None and current is not None
        digest = config_digest(current)
        docs = index.lookup([it.asset_id for it in items])
        if not index.available:
            raise BackfillError(f"--only-stale needs the index, and it is not reachable at {index.url} "
                                f"({index.error}); pass --es-url or set ASSETSTREAM_INDEX__URL")
        for it in items:
            doc = docs.get(it.asset_id)
            if doc is None:
                plan.skipped_missing.append(it.asset_id)
                continue
            reasons = stale_reasons(doc, current)
            if not reasons:
                plan.skipped_current.append(it.asset_id)
                continue
            version = int(doc.get("version") or 0) + 1
            key, fp = f"reprocess:{it.asset_id}", f"{digest}|v{version}"
            if state is not None and state.is_done(key, fp):
                plan.skipped_state.append(it.asset_id)
                plan.skipped_state_keys.append(key)
                continue
            plan.stale[it.asset_id] = reasons
            plan.carry[it.asset_id] = carry.indexed_values(doc)
            names = carry.carry_forward(item_event_fields(it), plan.carry[it.asset_id])[1]
            if names:
                plan.carried[it.asset_id] = names
            plan.publish.append((it, "reprocess", version, key, fp))
        return plan

    todo = []
    for it in items:
        if state is not None and state.is_done(it.asset_id, it.fingerprint):
            plan.skipped_state.append(it.asset_id)
            plan.skipped_state_keys.append(it.asset_id)
        else:
            todo.append(it)
    docs: dict[str, dict[str, Any]] = {}
    if index is not None and todo:
        docs = index.lookup([it.asset_id for it in todo])
        if not index.available:
            plan.notes.append(f"index not reachable at {index.url} ({index.error}): skipping only what the state "
                              "file records as published")
    for it in todo:
        doc = docs.get(it.asset_id)
        if doc is not None and current is not None and not stale_reasons(doc, current):
            same = ((doc.get("hashes") or {}).get("sha256") == it.sha256() if it.local_path is not None
                    else it.version is None or int(doc.get("version") or -1) >= it.version)
            if same:
                plan.skipped_indexed.append(it.asset_id)
                continue
        plan.publish.append((it, "created", it.version, it.asset_id, it.fingerprint))
    return plan


def item_event_fields(it: Item) -> dict[str, Any]:
    """The person-given values of a source row, as `build_event` takes them."""
    f = it.fields
    product = {k: f[k] for k in ("sku", "category", "name", "brand") if f.get(k)} or None
    human = {k: f[k] for k in ("title", "alt_text") if f.get(k)} or None
    return {"declared_license": f.get("license"), "product_context": product, "human_fields": human,
            "uploader": f.get("uploader"), "uploader_notes": f.get("notes")}


def build_item_event(it: Item, event_type: str, version: int | None, tenant: str | None,
                     source_tag: str, indexed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row's event; `indexed` (carry.indexed_values) fills in what the row does not give."""
    fields = carry.carry_forward(item_event_fields(it), indexed)[0] if indexed else item_event_fields(it)
    return build_event(it.asset_id, it.uri, event_type=event_type, version=version,
                       tenant=it.fields.get("tenant") or tenant or "default",
                       **carry.with_attributes(fields, ingest=source_tag))


@dataclass(frozen=True)
class Sent:
    """An event the broker acknowledged: its asset id, event id and version."""

    asset_id: str
    event_id: str
    version: int


class BackfillPublisher:
    """Produces events, recording each one in the state file from its delivery callback (after the ack)."""

    def __init__(self, settings: Settings, state: StateFile | None):
        self.names = topic_names(settings)
        self.serde = Serde.for_settings(settings)
        self.producer = Producer({**settings.kafka.client_config(), **client_logging("backfill"),
                                  "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                                  "message.timeout.ms": 60000})
        self.state = state
        self.acked: list[str] = []
        self.sent: dict[str, Sent] = {}
        """document id -> the acknowledged event (what `--wait` looks for downstream)"""
        self.failed: list[tuple[str, str]] = []
        self.in_flight = 0

    def send(self, event: dict[str, Any], state_key: str, fp: str, on_ack: Callable[[], None]) -> None:
        data = self.serde.serialize("raw", event)

        def cb(err: KafkaError | None, msg) -> None:
            self.in_flight -= 1
            if err is not None:
                self.failed.append((event["asset_id"], err.str()))
                return
            sent = Sent(event["asset_id"], event["event_id"], int(event["version"]))
            if self.state is not None:
                self.state.record(state_key, fp, document_id(event), sent)
            self.acked.append(event["asset_id"])
            self.sent[document_id(event)] = sent
            on_ack()

        while True:
            try:
                self.producer.produce(self.names["raw"], key=document_id(event).encode(), value=data,
                                      headers=[("ingest", b"backfill")], on_delivery=cb)
                self.in_flight += 1
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def wait(self, timeout_s: float) -> int:
        """Wait for outstanding acks; returns how many are still not acknowledged."""
        return self.producer.flush(timeout_s)


def execute(plan: Plan, publisher: BackfillPublisher, bucket: TokenBucket, *, tenant: str | None = None,
            on_ack: Callable[[], None] = lambda: None, ack_timeout_s: float = 60.0,
            stop: threading.Event | None = None) -> Result:
    """Publish the plan at the bucket's rate. When `stop` is set (the CLI sets it on SIGINT/SIGTERM) or on
    KeyboardInterrupt: stop producing, wait for the acks in flight (so they are recorded), interrupted=True."""
    result = Result(plan)
    try:
        for it, event_type, version, key, fp in plan.publish:
            bucket.take()  # its sleep serves delivery callbacks (see CLI), so acks are recorded promptly
            if stop is not None and stop.is_set():
                result.interrupted = True
                break
            event = build_item_event(it, event_type, version, tenant, "backfill", plan.carry.get(it.asset_id))
            publisher.send(event, key, fp, on_ack)
    except KeyboardInterrupt:
        result.interrupted = True
    left = publisher.wait(ack_timeout_s)
    result.published = list(publisher.acked)
    result.failed = [a for a, _ in publisher.failed]
    if left:
        result.failed.append(f"{left} event(s) not acknowledged within {ack_timeout_s}s")
    return result
