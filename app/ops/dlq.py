"""Dead letters: read the DLQ topic (never as a consumer group, never committing), filter, replay.

Reading assigns every partition from the beginning and stops at the end each fetch reported (partition EOF,
i.e. the broker's high watermark seen by the fetcher, not ListOffsets). Replaying produces the ORIGINAL key,
value and headers to the ORIGINAL topic, plus `replayed-from: dlq/<partition>/<offset>`, and waits for the ack.
An original value kept in the sidecar store (`original_value_ref`, `dead_letters.store`) is read back and
checked against the SHA-256 and size in the letter; a letter whose original cannot be restored byte-identical
(cut to fit the broker, missing or changed in the store, no store configured) is refused, never sent.
The dead letter itself stays where it is (Kafka is append-only); a replayed record that fails again is
dead-lettered again by the runner, with the `replayed-from` header among its original headers.
"""
from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from domain.records import asset_of, document_id
from domain.sources import source_label
from streams.avro import OwnSchemaUnavailable, Serde, UnknownSchema, registry_error, topic_names
from streams.originals import OriginalStore, OriginalUnavailable, open_store, sha256
from streams.outputs import CUT_DETAIL
from streams.clientlog import client_logging
from streams.topics import check_broker_reachable
from app.settings import Settings

REPLAYED_FROM = "replayed-from"


class DlqError(Exception):
    """Cannot read the DLQ (no topic, broker unreachable): exit code 2 material."""


class BrokerUnreachable(DlqError):
    """No broker answered (the TCP probe, or its first metadata answer within kafka.connect_timeout_s)."""


@dataclass
class DeadLetter:
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    timestamp_ms: int | None
    value: dict[str, Any] | None
    """The decoded io.assetstream.DeadLetter (None when the DLQ record itself cannot be decoded)."""
    decode_error: str | None = None
    source: str | None = None
    """What a person recognises the asset by: its file (relative to its preprocess.file_roots root) or URL without
    login or query (domain.sources.source_label), from the letter's details or its original record; None when
    neither says (a poison record, an original kept in the sidecar store)."""
    record: dict[str, Any] | None = None
    """The AssetEvent inside the original record (an EditorDecision for the review group's letters) when the letter
    holds it and it decodes (original_asset); None otherwise."""
    decision_ids: list[str] | None = None
    """For a record the review group published (a ValidatedAsset stamped `review`: a person's decision applied to
    the document's stored record, so of the document's own event id and version), the decision ids its review
    holds, the newest last (review_decisions); None for any other letter."""

    @property
    def ref(self) -> str:
        return f"{self.partition}/{self.offset}"

    @property
    def asset_id(self) -> str | None:
        if self.value and self.value.get("asset_id"):
            return self.value["asset_id"]
        return self.key

    @property
    def stage(self) -> str | None:
        return (self.value or {}).get("stage") or self.headers.get("dlq-stage")

    @property
    def error_class(self) -> str | None:
        return (self.value or {}).get("error_class") or self.headers.get("dlq-error-class")

    @property
    def reason(self) -> str | None:
        return ((self.value or {}).get("details") or {}).get("reason")

    @property
    def replayed_from(self) -> str | None:
        for h in (self.value or {}).get("original_headers") or []:
            if h["key"] == REPLAYED_FROM and h.get("value") is not None:
                return h["value"].decode("utf-8", "replace")
        return None

    @property
    def original(self) -> tuple[str, int | None, int | None] | None:
        """The original record's (topic, partition, offset), or None for an undecodable letter."""
        v = self.value or {}
        if v.get("original_topic") is None:
            return None
        return v["original_topic"], v.get("original_partition"), v.get("original_offset")

    @property
    def unknown_schema_id(self) -> int | None:
        """For a record dead-lettered because its schema id was unknown ("Schema Not Found"): that id, read from
        the original value's header bytes when the letter holds them (else 0); None for any other letter."""
        v = self.value or {}
        if "Schema Not Found" not in str(v.get("message") or ""):
            return None
        data = v.get("original_value") or b""
        return int.from_bytes(data[1:5], "big") if len(data) >= 5 and data[0] == 0 else 0

    @property
    def hint(self) -> str | None:
        schema_id = self.unknown_schema_id
        if schema_id is None:
            return None
        return (f"schema id {schema_id or '(not in the letter)'} was unknown to the reader: the record was written by a "
                "process with other contract texts (another release, or an edited .avsc). With a real Schema "
                "Registry or the in-process registry's schemas topic (topics.schemas, made by `assetstream topics "
                "create`) this resolves; replay (`assetstream dlq replay --reason deserialize`) once the writer's "
                "schema is known, i.e. once a process with the writer's texts wrote with the schemas topic there")

    def summary(self) -> dict[str, Any]:
        v = self.value or {}
        return {"ref": self.ref, "partition": self.partition, "offset": self.offset, "asset_id": self.asset_id,
                "source": self.source, "stage": self.stage, "error_class": self.error_class, "reason": self.reason,
                "error_type": v.get("error_type"), "message": v.get("message", self.decode_error),
                "attempts": v.get("attempts"), "original": (f"{v['original_topic']}/{v['original_partition']}/"
                                                            f"{v['original_offset']}" if v else None),
                "first_failure": _iso(v.get("first_failure_time")), "last_failure": _iso(v.get("last_failure_time")),
                "replayed_from": self.replayed_from}

    def detail(self) -> dict[str, Any]:
        v = self.value or {}
        return {**self.summary(), "key": self.key, "dlq_headers": self.headers,
                "original_headers": {h["key"]: _text(h.get("value")) for h in v.get("original_headers") or []},
                "original_key": _text(v.get("original_key")),
                "original_value_bytes": (v.get("original_value_size") if v.get("original_value_size") is not None
                                         else len(v["original_value"]) if v.get("original_value") is not None
                                         else None),
                "original_value_ref": v.get("original_value_ref"),
                "details": dict(v.get("details") or {}), "stack": v.get("stack"), "hint": self.hint}


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "replace")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return dt.datetime.fromtimestamp(int(value) / 1000, dt.timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


FILE_REASONS = frozenset({"not_an_image", "unsupported_format", "corrupt_image", "decompression_bomb",
                          "metadata_too_large", "too_large", "empty_content", "unreadable_file", "video_too_large",
                          "video_too_long", "too_many_frames", "no_video_stream"})
"""dead-letter reasons whose cause is the file's own bytes (docs/operations.md, "Dead-letter reasons"): the fix is a
new file, which a backfill publishes as a new version; a replay would send the old event again (trial 33 N5)"""


def next_step(reasons: Iterable[str | None], first_id: str) -> str:
    """What to do about dead letters with these `details.reason`s (the --wait outcome's `next:` line): a file
    replaced and the backfill re-run for causes in the file (FILE_REASONS), `dlq replay` once the cause is fixed
    for the others, both when both kinds are there."""
    reasons = set(reasons)
    look = f"see why with `assetstream dlq show {first_id}` (or `assetstream dlq list --stage STAGE`), "
    files = "replace the file and run this backfill again (a changed file is published as a new version)"
    replay = "fix the cause, then `assetstream dlq replay --asset ID`"
    if reasons <= FILE_REASONS:
        return look + files
    if reasons & FILE_REASONS:
        return (look + f"for {', '.join(sorted(reasons & FILE_REASONS))}: {files}; for the others: {replay}")
    return look + replay


def read_dead_letters(settings: Settings, timeout_s: float = 30.0, *, partial: bool = False) -> list[DeadLetter]:
    """Every record on the DLQ, oldest first. Uses assign() (no group membership, no commits).

    partial=False (`dlq list/show/replay`): no dead-letter topic, or a partition whose end is not reached within
    `timeout_s`, raises DlqError (an operator's listing is complete or says why not). partial=True (`assetstream
    run`'s write-back outcomes, which never fail the run): what was read by then, nothing without the topic.
    A broker that cannot be reached raises DlqError either way."""
    names = topic_names(settings)
    topic = names["dead_letter"]
    serde = Serde.for_settings(settings)
    try:  # a refused connection is said at once, not after the client's metadata wait and its reconnect lines
        check_broker_reachable(settings.kafka)
    except KafkaException as exc:
        raise BrokerUnreachable(str(exc.args[0].str())) from None
    c = Consumer({**settings.kafka.client_config(), **client_logging("dlq"),
                  "group.id": f"assetstream-dlq-reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True, "fetch.wait.max.ms": 100})
    out: list[DeadLetter] = []
    logical_of = logical_topics(settings)
    unreadable: set[tuple[str, int]] = set()  # originals' schema ids the registry could not give: asked once
    try:
        try:
            md = c.list_topics(topic, timeout=settings.kafka.connect_timeout_s)
        except Exception as exc:  # noqa: BLE001
            raise BrokerUnreachable(f"no answer from the broker within kafka.connect_timeout_s "
                                    f"({settings.kafka.connect_timeout_s:g} s): {exc}") from exc
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            if partial:
                return []
            raise DlqError(f"no dead-letter topic {topic!r} on {settings.kafka.bootstrap_servers} "
                           "(run `assetstream topics create`, or check ASSETSTREAM_TOPICS__PREFIX)")
        parts = sorted(tmd.partitions)
        c.assign([TopicPartition(topic, p, -2) for p in parts])  # -2 = OFFSET_BEGINNING
        pending = set(parts)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                if partial:
                    break
                raise DlqError(f"reading {topic} did not reach the end of partitions {sorted(pending)} within "
                               f"{timeout_s}s (raise ops.dlq_read_timeout_s)")
            msg = c.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            try:
                value, derr = serde.deserialize("dead_letter", msg.value()), None
            except Exception as exc:  # noqa: BLE001 - show it, do not stop listing
                value, derr = None, f"cannot decode dead letter: {exc}"
            ts = msg.timestamp()
            original = original_record(value, serde, logical_of, unreadable)
            record = _asset_in(original)
            out.append(DeadLetter(msg.partition(), msg.offset(), _text(msg.key()),
                                  {k: _text(v) or "" for k, v in (msg.headers() or [])},
                                  ts[1] if ts[0] else None, value, derr,
                                  _source_of(value, record, settings.preprocess.file_roots), record,
                                  review_decisions(original)))
    finally:
        c.close()
    out.sort(key=lambda d: (d.timestamp_ms or 0, d.partition, d.offset))  # oldest first
    return out


def logical_topics(settings: Settings) -> dict[str, str]:
    """Physical topic name (and its retry topic) -> logical name, to decode a letter's original record."""
    retry = settings.topics.retry_suffix
    logical_of = {full: logical for logical, full in topic_names(settings).items()}
    logical_of.update({f"{full}{retry}": logical for full, logical in list(logical_of.items())})
    return logical_of


def original_record(value: dict[str, Any] | None, serde: Serde, logical_of: dict[str, str],
                    unreadable: set[tuple[str, int]] | None = None) -> dict[str, Any] | None:
    """A dead letter's original record, decoded (`value`: the decoded letter), when the letter holds the record and
    it decodes (never for a poison record: it did not; not for one kept in the sidecar store); else None.
    `unreadable`: (topic, schema id) pairs the registry could not give (unknown, refused, not answering), filled and
    skipped, so a listing asks the registry at most once per writer's schema id (review 14 L4: one request, up to
    registry.max_retries x registry.timeout_s, per letter)."""
    logical = logical_of.get((value or {}).get("original_topic") or "")
    if not (logical and value and value.get("original_value") and value.get("error_class") != "poison"):
        return None
    data = value["original_value"]
    key = (logical, int.from_bytes(data[1:5], "big"))
    if unreadable is not None and key in unreadable:
        return None
    try:
        return serde.deserialize(logical, data)
    except Exception as exc:  # noqa: BLE001 - the caller says what it can without it
        if unreadable is not None and (registry_error(exc) or isinstance(exc, (UnknownSchema, OwnSchemaUnavailable))):
            unreadable.add(key)
        return None


def original_asset(value: dict[str, Any] | None, serde: Serde, logical_of: dict[str, str],
                   unreadable: set[tuple[str, int]] | None = None) -> dict[str, Any] | None:
    """The AssetEvent inside a dead letter's original record (original_record), or None."""
    return _asset_in(original_record(value, serde, logical_of, unreadable))


def _asset_in(original: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        return None if original is None else asset_of(original)
    except KeyError:  # not a pipeline record
        return None


def review_decisions(original: dict[str, Any] | None) -> list[str] | None:
    """The decision ids (newest last) of a record the review group published (stamp.stage `review`), else None.
    Such a record is the document's stored record with a person's review applied: its AssetEvent is the indexed
    document's own, so only its review tells whether what it carried reached the index (code review 17 F2)."""
    if not original or (original.get("stamp") or {}).get("stage") != "review":
        return None
    return list((original.get("review") or {}).get("decision_ids") or [])


def _source_of(value: dict[str, Any] | None, record: dict[str, Any] | None, roots: Iterable[str]) -> str | None:
    """The source label of a dead letter's asset: the URI its details name (a fetch failure), else the source_uri
    of the original record when the letter holds it and it decodes (original_asset)."""
    if not value:
        return None
    return source_label((value.get("details") or {}).get("uri") or (record or {}).get("source_uri"), roots)


def document_of(d: DeadLetter) -> str | None:
    """The index document id of a letter's asset: from its original record, else its key (every stage keeps the
    input key, the tenant-scoped asset id)."""
    if d.record is not None and d.record.get("asset_id"):
        return document_id(d.record)
    return d.key


def indexed_as(doc: dict[str, Any], event_id: str | None, version: int | None) -> str | None:
    """How the indexed document (IndexView.facts) stands to an asset event: "this event" (the document is of it),
    "newer" (of a later version), "same version" (of the same version from another event: the index keeps the
    version it has), None (older). The one rule `dlq list --open` (closed_by) and `backfill --wait` decide by."""
    if event_id and doc["event_id"] == event_id:
        return "this event"
    if version is not None and doc["version"] > version:
        return "newer"
    if version is not None and doc["version"] == version:
        return "same version"
    return None


def closed_by(d: DeadLetter, doc: dict[str, Any] | None) -> str | None:
    """Why a dead letter needs nothing more, because its asset was processed successfully since, or None while it
    is open. `doc`: the asset's index document facts (IndexView.facts: event_id, version, decision_ids), None when
    the index holds no document of it. Decided from the records' own facts, never from the times they were written
    (a worker's clock against the sink's):

    - a pipeline event's letter (preprocess, enrich, validate, index): closed when the document is this event's (it
      was re-driven and indexed, or a redelivery failed after it was), or of a newer version (a later good record),
      or of the same version from another event (the index keeps the version it has: a replay would not replace
      it); a deletion's letter when the document is gone, or newer than the deletion;
    - the review group's letter (an editor decision): closed when the asset's review holds the decision's id;
    - a pipeline letter of a record the review group published (a person's decision applied to the document's own
      record, so of the indexed event and version): closed only when the asset's review holds the newest decision
      it carried (every record holding it holds the ones before it); otherwise that letter is the decision's only
      trace (code review 17 F2);
    - open whenever it cannot be told: a write-back letter (the asset was indexed before write-back; the write-back
      state records what a target holds, not which record wrote it), a poison record, an original kept in the
      sidecar store or of a schema the registry cannot give (no record to compare)."""
    rec = d.record
    if rec is None or d.stage == "writeback":
        return None
    if rec.get("decision_id"):
        in_review = doc is not None and rec["decision_id"] in doc["decision_ids"]
        return "its decision is in the asset's review" if in_review else None
    if d.decision_ids:
        in_review = doc is not None and d.decision_ids[-1] in doc["decision_ids"]
        return "its decision is in the asset's review" if in_review else None
    version = None if rec.get("version") is None else int(rec["version"])
    if rec.get("event_type") == "deleted":
        if doc is None:
            return "the asset is deleted"
        return "a version newer than the deletion is indexed" if version is not None and doc["version"] > version \
            else None
    if doc is None:
        return None
    return {"this event": "this event is indexed", "newer": "a newer version is indexed",
            "same version": "the same version is indexed from another event",
            None: None}[indexed_as(doc, rec.get("event_id"), version)]


def select(letters: Iterable[DeadLetter], *, stage: str | None = None, error: str | None = None,
           reason: str | None = None, asset: str | None = None, ref: str | None = None) -> list[DeadLetter]:
    """Filter by stage, error class (or error type), details.reason, asset id, or 'P/O' reference."""
    out = []
    for d in letters:
        if stage and d.stage != stage:
            continue
        if error and error not in (d.error_class, (d.value or {}).get("error_type")):
            continue
        if reason and d.reason != reason:
            continue
        if asset and asset not in (d.asset_id, d.key):
            continue
        if ref and not matches_ref(d, ref):
            continue
        out.append(d)
    return out


def distinct_originals(letters: list[DeadLetter], among: list[DeadLetter] | None = None
                       ) -> tuple[list[DeadLetter], list[tuple[DeadLetter, DeadLetter]]]:
    """One letter per event: delivery is at least once, so a record a worker was handling when its partitions
    moved (a rebalance) can be dead-lettered twice, and a replay that fails again earns a new letter that says
    `replayed_from` the one replayed (replayed twice: two such letters) — replaying them all would publish the same
    event several times (trial 17: `--asset` sent it twice). Letters of one original record, and letters linked by
    `replayed_from`, are one event; so are the pipeline letters of one asset and version from different events (a
    run's event and a backfill's of the same unchanged file, trial 33 N4: the index keeps one record per version, so
    one replay is all it takes; asset_version); of each event among the selected `letters`, the newest letter of the whole
    chain (looked up in `among`, every letter read, so a filter that selects only the old letter still finds the
    newer one) is replayed. Returns (to replay, (skipped, replayed instead) pairs). Undecodable letters (no original
    coordinates) are all kept."""
    pool = list(among) if among is not None else list(letters)
    known = {id(d) for d in pool}
    pool += [d for d in letters if id(d) not in known]
    parent = list(range(len(pool)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_ref = {d.ref: i for i, d in enumerate(pool)}
    by_original: dict[Any, int] = {}
    by_version: dict[Any, int] = {}
    for i, d in enumerate(pool):  # one event: the same original record, or a replay of another letter
        if d.original is not None:
            parent[root(i)] = root(by_original.setdefault(d.original, i))
        if (same := asset_version(d)) is not None:  # or another event of the same asset and version
            parent[root(i)] = root(by_version.setdefault(same, i))
        came_from = by_ref.get((d.replayed_from or "").removeprefix("dlq/"), -1)
        if d.replayed_from and came_from >= 0:
            parent[root(i)] = root(came_from)
    newest: dict[int, DeadLetter] = {}
    for i, d in enumerate(pool):
        if d.value is None:
            continue
        r = root(i)
        if r not in newest or (d.timestamp_ms or 0, d.offset) > (newest[r].timestamp_ms or 0, newest[r].offset):
            newest[r] = d
    index = {id(d): i for i, d in enumerate(pool)}
    kept: list[DeadLetter] = []
    taken: set[int] = set()
    skipped: list[tuple[DeadLetter, DeadLetter]] = []
    for d in letters:
        head = newest.get(root(index[id(d)])) if d.value is not None else None
        if head is None:
            kept.append(d)
            continue
        if id(head) not in taken:
            taken.add(id(head))
            kept.append(head)  # when it is not `d`: the chain's newest letter, replayed in this letter's place
        if head is not d:
            skipped.append((d, head))
    return kept, skipped


def asset_version(d: DeadLetter) -> tuple[str | None, int, bool] | None:
    """What makes pipeline letters of different events one for `distinct_originals`: the asset's document id, the
    event's version, and whether it is a deletion; None for a letter without a readable record or version, a
    write-back letter, and a person's decision (the review group's letter, or a record it published), each its own."""
    rec = d.record
    if rec is None or d.stage == "writeback" or rec.get("decision_id") or d.decision_ids or rec.get("version") is None:
        return None
    return document_of(d), int(rec["version"]), rec.get("event_type") == "deleted"


_REF = re.compile(r"^(?:dlq/)?(\d+)[/:](\d+)$")


def matches_ref(d: DeadLetter, ref: str) -> bool:
    m = _REF.match(ref.strip())
    if m:
        return (d.partition, d.offset) == (int(m.group(1)), int(m.group(2)))
    if ref.strip().isdigit() and d.offset == int(ref):
        return True  # a bare offset (any partition); an all-digit asset id still matches below
    return ref in (d.asset_id, d.key)


def replay_headers(d: DeadLetter) -> list[tuple[str, bytes | None]]:
    v = d.value or {}
    hdrs = [(h["key"], h.get("value")) for h in v.get("original_headers") or [] if h["key"] != REPLAYED_FROM]
    return hdrs + [(REPLAYED_FROM, f"dlq/{d.partition}/{d.offset}".encode())]


class NotRestorable(Exception):
    """A dead letter whose original value cannot be given back byte-identical: it is not replayed."""


def original_value(d: DeadLetter, store: OriginalStore | None, store_error: str | None = None) -> bytes | None:
    """The dead letter's original value exactly as it was consumed, or NotRestorable saying why not."""
    v = d.value or {}
    ref, size, digest = v.get("original_value_ref"), v.get("original_value_size"), v.get("original_value_sha256")
    if ref:
        if store is None:
            why = store_error or ("no dead_letters.store is configured (set ASSETSTREAM_DEAD_LETTERS__STORE to "
                                  "the store the workers use)")
            raise NotRestorable(f"its original value is kept at {ref}, but {why}")
        try:
            data = store.get(ref)
        except OriginalUnavailable as exc:
            raise NotRestorable(f"its original value cannot be read back: {exc}") from None
    else:
        data = v.get("original_value")
        details = v.get("details") or {}
        # the runtime's mark (streams.outputs.CUT_DETAIL; letters written before it said `truncated` with the same
        # note); a decoder's `truncated: True` says the upload was cut, not the letter: it replays
        cut = details.get(CUT_DETAIL) or str(details.get("truncated") or "").startswith("original value cut")
        if cut or (size is not None and len(data or b"") != size):
            raise NotRestorable(f"its original value was cut to {len(data or b'')} of "
                                f"{size if size is not None else 'more'} bytes when it was dead-lettered (no "
                                "dead_letters.store was configured); the record cannot be restored")
    if (size is not None and len(data or b"") != size) or (digest is not None and sha256(data or b"") != digest):
        raise NotRestorable(f"the original value at {ref or 'the letter'} does not match the SHA-256 and size the "
                            "letter recorded; not replayed")
    return data


@dataclass
class ReplayOutcome:
    ref: str
    asset_id: str | None
    topic: str | None
    ok: bool
    partition: int | None = None
    offset: int | None = None
    error: str | None = None
    refused: bool = False
    """True when the original could not be restored (nothing was sent); False for a failed or pending send."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def replay(settings: Settings, letters: list[DeadLetter], timeout_s: float = 30.0) -> list[ReplayOutcome]:
    """Produce each dead letter's original record to its original topic; wait for every ack.

    The producer's own size limit is raised to the largest original: the broker took each of them once, so
    the broker (not this client's 1 MB default) decides whether it takes it again."""
    largest = max([_original_size(d) for d in letters] + [0])
    producer = Producer({**settings.kafka.client_config(), **client_logging("dlq replay"),
                         "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                         "message.timeout.ms": int(timeout_s * 1000),
                         "message.max.bytes": min(max(1_000_000, largest + (1 << 20)), 1_000_000_000)})
    outcomes: list[ReplayOutcome] = []
    lock = threading.Lock()
    store, store_error = _store(settings, letters)
    for d in letters:
        v = d.value
        if v is None:
            outcomes.append(ReplayOutcome(d.ref, d.asset_id, None, False, error=d.decode_error or "undecodable",
                                          refused=True))
            continue
        out = ReplayOutcome(d.ref, d.asset_id, v["original_topic"], False)
        outcomes.append(out)
        try:
            value = original_value(d, store, store_error)
        except NotRestorable as exc:
            out.error, out.refused = f"not restorable: {exc}", True
            continue

        def cb(err: KafkaError | None, msg, out: ReplayOutcome = out) -> None:
            with lock:
                if err is not None:
                    out.error = err.str()
                else:
                    out.ok, out.partition, out.offset = True, msg.partition(), msg.offset()

        while True:
            try:
                producer.produce(v["original_topic"], key=v.get("original_key"), value=value,
                                 headers=replay_headers(d), on_delivery=cb)
                break
            except BufferError:
                producer.poll(0.1)
            except KafkaException as exc:  # refused before sending (e.g. larger than the limit above)
                out.error = exc.args[0].str()
                break
        producer.poll(0)
    left = producer.flush(timeout_s)
    for o in outcomes:
        if not o.ok and o.error is None:
            o.error = f"not acknowledged within {timeout_s}s" if left else "not delivered"
    return outcomes


def _original_size(d: DeadLetter) -> int:
    v = d.value or {}
    if v.get("original_value_size") is not None:
        return int(v["original_value_size"])
    return len(v.get("original_value") or b"")


def _store(settings: Settings, letters: list[DeadLetter]) -> tuple[OriginalStore | None, str | None]:
    """The sidecar store, opened only when a selected letter references it; or why it cannot be opened."""
    if not any((d.value or {}).get("original_value_ref") for d in letters):
        return None, None
    try:
        return open_store(settings.dead_letters), None
    except (ValueError, OriginalUnavailable) as exc:
        return None, f"the dead-letter store cannot be opened: {exc}"
