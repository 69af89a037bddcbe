"""What the review app reads from the index (read alias only; it never writes the store).

Queue order: oldest upload first (`event_time`, then `asset_id`); the `all` view lists the assets needing review
first. The reasons an asset needs review are free text
written by the validate stage; REASON_GROUPS sorts them into the groups the queue filters and counts by, with
wildcards on the `reasons` keyword. The confidence shown and filtered on is the one validate's auto-apply decision
used (`decision_confidence`): the weakest judged field's calibrated confidence when the record was calibrated, else
the model's own figure, in both cases over the fields a person has not decided (a field a person edited, rejected
or accepted is judged by the person: an asset whose every judged field a person decided has no model confidence,
"–"). Neither is indexed, so the confidence filter is applied here, over at most
`review.scan_limit` documents.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Callable
from urllib.parse import urlencode

from elasticsearch import Elasticsearch, NotFoundError

from app.review.rights import LABELS, RISKY, USAGE_FIELDS
from domain.events import DEFAULT_TENANT, TENANT_SEPARATOR, scoped_id
from domain.confidence import flat, model_judged, not_judged
from domain.review import IMAGE_CHANGED, NO_ALT_TEXT, REVIEW_REASONS, UNAPPROVED, decided_fields, model_fields, \
    reason_prefix
from domain.store.degraded import query as degraded_query
from domain.store.api import MAX_WINDOW, tenants_filter
from domain.store.management import read_alias
from domain.store.search import broadened, build_filters, coverage_clauses, query_units

STATUSES = ("needs_review", "auto_applied", "approved", "rejected")

#: group -> wildcard patterns on `reasons` (as consumers/validate and domain/review word them)
REASON_GROUPS: dict[str, tuple[str, ...]] = {
    "low confidence": ("confidence * below the review threshold", "confidence *between_policy=review",
                       "calibrated confidence * below the review threshold",
                       "calibrated confidence *between_policy=review"),
    "faces": ("* detected: people in image need consent review",),
    "NSFW": ("NSFW score *",),
    "rights": ("licence restricts use*", "no licence evidence*", "credit must be displayed*",
               "credit required but*"),
    "alt text": ("no alt text for a non-decorative image", reason_prefix(NO_ALT_TEXT) + "*", "alt text is * chars*",
                 "text visible in the image*", "image marked decorative but shows text*",
                 "alt text * is a file name*", "model alt text * is a file name*", "alt text starts with *",
                 "caption repeats the alt text*"),
    "schema": ("model output fails its JSON Schema*", "schema: *"),
    "near-duplicate": ("near-duplicate of *",),
    "changed since approval": tuple(reason_prefix(t) + "*" for t in (UNAPPROVED, IMAGE_CHANGED)),
}

#: reasons validate writes for information only (its `d.reasons`, never what sends an asset to review): the asset
#: page lists them under "Notes", apart from why the asset needs review. Wildcards as REASON_GROUPS'.
NOTE_PATTERNS: tuple[str, ...] = (
    "taxonomy *", "model output matches its prompt schemas*",
    "confidence * >= *", "calibrated confidence * >= *", "*between * and *: between_policy=auto",
    "calibrated on the pooled curve*", "confidence not calibrated: *",
    "no generated field to judge*", "credit text built from the creator *", "OCR text not quoted*",
    "alt text set by * kept (human edits win)", "alt text left empty by a person: decorative image",
    "note: *", "tags: *", "* held as suggestions for review *",
    "a keyword from the * was not promoted to tags*", "usage ok: *")


def _wildcards(patterns: Any) -> re.Pattern[str]:
    return re.compile("|".join(".*".join(map(re.escape, p.split("*"))) for p in patterns), re.DOTALL)


_REVIEW_RE = _wildcards([p for group in REASON_GROUPS.values() for p in group])
_NOTE_RE = _wildcards(NOTE_PATTERNS)


def split_reasons(reasons: Any) -> tuple[list[str], list[str]]:
    """(why the asset needs review, notes), each in the record's order. A note is a reason recognised as
    informational (NOTE_PATTERNS: "taxonomy v2", "calibrated confidence … 0.93 >= 0.85", "model output matches its
    prompt schemas"); one the queue counts in a reason group (REASON_GROUPS) or the review's own (domain/review.py
    REVIEW_REASONS) never is. Anything not recognised stays with the review reasons: none is hidden."""
    review: list[str] = []
    notes: list[str] = []
    for r in reasons or []:
        r = str(r)
        note = (_NOTE_RE.fullmatch(r) is not None and _REVIEW_RE.fullmatch(r) is None
                and not r.startswith(REVIEW_REASONS))
        (notes if note else review).append(r)
    return review, notes


#: what `decision_confidence` reads
CONF_FIELDS = ["enrichment.confidence", "record.field_confidence", "record.calibration", "record.tag_suggestions",
               "record.field_sources", "record.tags.source", "review.fields.field"]
LIST_FIELDS = ["asset_id", "tenant", "title", "alt_text", "status", "reasons", "tags", "event_time", "reviewed_by",
               "reviewed_at", *CONF_FIELDS, "duplicate_of", "degraded_parts", "degraded",
               "family_id", "family_size", "family_canonical", "source_uri", *USAGE_FIELDS,
               "review.decision_ids"]  # the newest one: what a bulk approval's row showed (web.decided_meanwhile)
SORT = [{"event_time": {"order": "asc", "unmapped_type": "date"}},
        {"asset_id": {"order": "asc", "unmapped_type": "keyword"}}]
BIG = ["record", "thumbnail"]
FAMILY_SHOWN = 50  # members listed on the asset page


@dataclass(frozen=True)
class Filters:
    status: str = "needs_review"  # one of STATUSES, or "all"
    reason: str = ""
    min_conf: float | None = None
    max_conf: float | None = None
    prompt: str = ""  # "<prompt_id>@<prompt_version>"
    model: str = ""
    tag: str = ""
    date_from: str = ""  # YYYY-MM-DD (upload time, UTC)
    date_to: str = ""
    degraded: str = ""  # "any" (marked degraded at all) or one part ("ocr", "faces", "text_vector", ...)
    collapse: str = ""  # "1": one row per duplicate family (its first in queue order)
    q: str = ""  # free text: assets whose text matches as keyword search finds them (text_query)
    tag_names: tuple[str, ...] = ()  # `tag` and its names across renames (color:grey, color:gray): all match
    q_units: tuple[tuple[str, tuple[str, ...], int], ...] = ()  # `q` as keyword search reads it (query_units):
    # each word or vocabulary term with the tags it names ("kitty": subject:cat)

    @classmethod
    def from_params(cls, params: Any, taxonomy: Any = None) -> "Filters":
        def num(name: str) -> float | None:
            try:
                v = float(params.get(name) or "")
            except ValueError:
                return None
            return v if 0.0 <= v <= 1.0 else None

        def day(name: str) -> str:
            v = (params.get(name) or "").strip()
            try:
                return dt.date.fromisoformat(v).isoformat()
            except ValueError:
                return ""

        status = params.get("status") or "needs_review"
        tag = (params.get("tag") or "").strip()[:200]
        q = " ".join((params.get("q") or "").split())[:200]
        return cls(status=status if status in (*STATUSES, "all") else "needs_review",
                   reason=params.get("reason") if params.get("reason") in REASON_GROUPS else "",
                   min_conf=num("min_conf"), max_conf=num("max_conf"),
                   prompt=(params.get("prompt") or "").strip()[:200], model=(params.get("model") or "").strip()[:200],
                   tag=tag, date_from=day("date_from"), date_to=day("date_to"),
                   degraded=deg if re.fullmatch(r"[a-z_]{1,40}", deg := params.get("degraded") or "") else "",
                   collapse="1" if params.get("collapse") in ("1", "true", "on") else "",
                   q=q, tag_names=taxonomy.same_tags(tag) if taxonomy is not None and tag else (),
                   q_units=tuple((text, tuple(tags), n) for text, tags, n in
                                 broadened(query_units(q, taxonomy), taxonomy)) if q else ())

    def params(self, **changes: Any) -> dict[str, str]:
        f = replace(self, **changes) if changes else self
        out = {}
        for fd in fields(f):
            v = getattr(f, fd.name)
            if v not in (None, "") and fd.name not in ("tag_names", "q_units"):
                out[fd.name] = str(v)
        return out

    def query_string(self, **changes: Any) -> str:
        return urlencode(self.params(**changes))

    @property
    def conf_filter(self) -> bool:
        return self.min_conf is not None or self.max_conf is not None

    def conf_ok(self, c: "Confidence | None") -> bool:
        if c is None:
            return False
        return (self.min_conf is None or c.value >= self.min_conf) and (self.max_conf is None or c.value <= self.max_conf)


@dataclass(frozen=True)
class Confidence:
    """The confidence validate's auto-apply decision used (`value`), and the model's own figure beside it."""
    value: float
    raw: float | None  # the model's own (uncalibrated) figure, enrichment.confidence
    calibration: str | None = None  # the calibration version when value is calibrated
    field: str | None = None  # the weakest judged field whose calibrated confidence value is

    @property
    def basis(self) -> str:
        if self.calibration is None:
            return "the model's own figure (not calibrated)"
        return f"calibrated: weakest field {self.field}, calibration {self.calibration}"

    @property
    def title(self) -> str:
        """A tooltip: what the figure is, and the model's own figure when it differs."""
        raw = f"; the model's own figure: {self.raw:.2f}" if self.calibration is not None and self.raw is not None \
            else ""
        return f"confidence {self.value:.2f}, {self.basis}{raw}"


def decision_confidence(doc: dict[str, Any], auto_apply: float, publish_min: float | None) -> Confidence | None:
    """As consumers/validate judged the asset: with a calibration, the weakest calibrated field leaving out model
    tags held as suggestions (`tag_suggestions`) and tags pending between `publish_min` and `auto_apply`; without
    one, the model's own confidence. The thresholds are this deployment's validate settings. A field a person
    decided is not judged by the model's confidence (domain/review.py `rejudge`): None when a person decided every
    field the figure covered."""
    raw = (doc.get("enrichment") or {}).get("confidence")
    raw = float(raw) if isinstance(raw, (int, float)) else None
    record = doc.get("record") or {}
    decided = decided_fields(doc.get("review"))
    fields = flat(record.get("field_confidence") or {})
    if not record.get("calibration") or not fields:
        if decided and not model_fields(record) - decided:
            return None  # the model's own figure is of values a person decided
        return Confidence(raw, raw) if raw is not None else None
    every = {f: c for f, c in fields.items() if f not in not_judged(record, auto_apply, publish_min)}
    judged = model_judged(every, decided)
    if not judged:
        return None if every else Confidence(raw, raw) if raw is not None else None
    weakest = min(judged, key=lambda f: judged[f])
    return Confidence(judged[weakest], raw, str(record["calibration"]), weakest)


def reason_query(group: str) -> dict[str, Any]:
    return {"bool": {"should": [{"wildcard": {"reasons": {"value": p}}} for p in REASON_GROUPS[group]],
                     "minimum_should_match": 1}}


def text_query(f: Filters) -> dict[str, Any] | None:
    """The free-text filter: every word of `q` (stopwords aside) must match, as keyword search's coverage clauses
    read a word (domain/store/search.py coverage_clauses: the text fields hold it, or the tags hold the vocabulary
    tag it names, "kitty": subject:cat). All words, not any: the queue keeps its own order, so "red poster" must
    narrow the list to red posters, not widen it to everything red (keyword search ranks instead). None without
    text."""
    if not f.q:
        return None
    return {"bool": {"filter": coverage_clauses([(t, list(tags), n) for t, tags, n in f.q_units], 1.0)}}


def clauses(f: Filters, *, with_status: bool = True, with_reason: bool = True,
            with_degraded: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if with_status and f.status != "all":
        out.append({"term": {"status": f.status}})
    if with_reason and f.reason:
        out.append(reason_query(f.reason))
    if (text := text_query(f)) is not None:
        out.append(text)
    if f.tag:  # a renamed tag matches documents indexed under either name
        out += build_filters([f.tag_names or (f.tag,)])
    if with_degraded and f.degraded:
        out.append(degraded_query(f.degraded))
    prov: list[dict[str, Any]] = []
    if f.model:
        prov.append({"term": {"provenance.model": f.model}})
    if f.prompt:
        pid, _, pver = f.prompt.partition("@")
        prov.append({"term": {"provenance.prompt_id": pid}})
        if pver:
            prov.append({"term": {"provenance.prompt_version": pver}})
    if prov:
        out.append({"nested": {"path": "provenance", "query": {"bool": {"filter": prov}}}})
    if f.date_from or f.date_to:
        rng: dict[str, str] = {}
        if f.date_from:
            rng["gte"] = f"{f.date_from}T00:00:00.000Z"
        if f.date_to:
            rng["lt"] = (dt.date.fromisoformat(f.date_to) + dt.timedelta(days=1)).isoformat() + "T00:00:00.000Z"
        out.append({"range": {"event_time": rng}})
    return out


def _query(filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"filter": filters}} if filters else {"match_all": {}}


def parts(f: Filters) -> list[list[dict[str, Any]]]:
    """The queue in order, as filter lists: one status, or for `all` the assets needing review first, then the rest
    (each part oldest upload first)."""
    if f.status != "all":
        return [clauses(f)]
    base = clauses(f, with_status=False)
    waiting = {"term": {"status": "needs_review"}}
    return [[*base, waiting], [*base, {"bool": {"must_not": [waiting]}}]]


@dataclass(frozen=True)
class Scope:
    """The tenants the app serves (review.tenants; empty: every tenant). Every read of the index goes through it:
    a query gets `filters`, a document fetched by id is shown only when the scope `holds` its tenant."""
    tenants: tuple[str, ...] = ()

    @property
    def filters(self) -> list[dict[str, Any]]:
        """The store clause for the scope (domain.store.api.tenants_filter: documents without a `tenant` are the
        default tenant's), or none."""
        return [tenants_filter(self.tenants)] if self.tenants else []

    def holds(self, tenant: str | None) -> bool:
        return not self.tenants or (tenant or DEFAULT_TENANT) in self.tenants

    def holds_id(self, doc_id: str) -> bool:
        """Whether a document id (tenant-scoped, domain.events.scoped_id: `acme::a1`, or `a1` for the default
        tenant) names an asset of a tenant in the scope."""
        tenant, sep, _ = doc_id.partition(TENANT_SEPARATOR)
        return self.holds(tenant if sep else None)

    @property
    def label(self) -> str:
        """What the app's header says it serves."""
        return ", ".join(self.tenants) if self.tenants else "every tenant"


class Index:
    """Reads of the read alias for one request or one process (the Elasticsearch client is thread-safe), limited to
    the tenants the app serves (`scope`, review.tenants)."""

    def __init__(self, client: Elasticsearch, settings: Any):
        self.es = client
        self.settings = settings
        self.alias = read_alias(settings)
        self.cfg = settings.review
        self.scope = Scope(tuple(self.cfg.tenants or ()))

    def _q(self, filters: list[dict[str, Any]]) -> dict[str, Any]:
        """A query of these filters within the app's tenants."""
        return _query([*filters, *self.scope.filters])

    def confidence(self, doc: dict[str, Any]) -> Confidence | None:
        v = self.settings.validate_settings
        return decision_confidence(doc, v.auto_apply_threshold, v.tag_publish_min)

    def _conf_ok(self, f: Filters, doc: dict[str, Any]) -> bool:
        return not f.conf_filter or f.conf_ok(self.confidence(doc))

    # --- queue ---------------------------------------------------------------------------------------------
    def queue(self, f: Filters, page: int) -> dict[str, Any]:
        """One page of the queue, its counts, and `selection`: the digest of what "Approve all" would approve (the
        ids `matching` returns), which the page posts back so the approval covers exactly what the editor confirmed.
        `capped`: a part was read only up to review.scan_limit (collapse and confidence filter), so the counts cover
        the first scan_limit assets of it."""
        size = self.cfg.page_size
        page = max(1, page)
        start, rows, total = (page - 1) * size, [], 0
        if f.collapse:  # one row per family over the whole queue (each part read up to review.scan_limit)
            scanned, capped = self._scanned_capped(f, LIST_FIELDS)
            rows = collapse_families(scanned)
            chosen = _doc_ids(rows[: self.cfg.scan_limit])
            return {"rows": rows[start: start + size], "total": len(rows), "page": page,
                    "pages": max(1, math.ceil(len(rows) / size)), "capped": capped,
                    "assets": sum(r["family_in_queue"] for r in rows), "approvable": min(len(rows), self.cfg.scan_limit),
                    "selection": selection_digest(chosen), "rights_check": self.rights_count(chosen)}
        # the ids "Approve all" covers: the queue's first review.scan_limit, in order
        if f.conf_filter:  # the confidence is not indexed: filtered here, over each part's first scan_limit
            matching, capped = self._scanned_capped(f, LIST_FIELDS)
            rows, total = matching[start: start + size], len(matching)
            chosen = _doc_ids(matching[: self.cfg.scan_limit])
        else:
            chosen, capped = [], False
            for part in parts(f):
                query = self._q(part)
                first, want = max(0, start + len(rows) - total), size - len(rows)  # this part's share of the page
                room = self.cfg.scan_limit - len(chosen)
                n, wanted = self.es.count(index=self.alias, query=query)["count"], []
                if want > 0 and first < n:
                    resp = self.es.search(index=self.alias, query=query, sort=SORT, from_=first, size=want,
                                          source_includes=LIST_FIELDS)
                    wanted = [h["_source"] for h in resp["hits"]["hits"]]
                if n and room > 0:  # ids only (no _source): measured in bench/review_queue.py
                    resp = self.es.search(index=self.alias, query=query, sort=SORT, size=min(n, room), source=False)
                    chosen += [h["_id"] for h in resp["hits"]["hits"]]
                rows += wanted
                total += n
        return {"rows": rows, "total": total, "page": page, "pages": max(1, math.ceil(total / size)),
                "assets": total, "approvable": min(total, self.cfg.scan_limit), "capped": capped,
                "selection": selection_digest(chosen), "rights_check": self.rights_count(chosen)}

    def _scanned(self, f: Filters, includes: list[str]) -> list[dict[str, Any]]:
        """Every asset the filters select, queue order, each part read up to review.scan_limit."""
        return self._scanned_capped(f, includes)[0]

    def _scanned_capped(self, f: Filters, includes: list[str]) -> tuple[list[dict[str, Any]], bool]:
        """`_scanned`, and whether a part reached review.scan_limit (there may be more than were read)."""
        docs, capped = [], False
        for part in parts(f):
            scanned = self._scan(self._q(part), includes)
            capped |= len(scanned) >= self.cfg.scan_limit
            docs += [d for d in scanned if self._conf_ok(f, d)]
        return docs, capped

    def _scan(self, query: dict[str, Any], includes: list[str]) -> list[dict[str, Any]]:
        resp = self.es.search(index=self.alias, query=query, sort=SORT, size=self.cfg.scan_limit,
                              source_includes=includes)
        return [h["_source"] for h in resp["hits"]["hits"]]

    def matching(self, f: Filters) -> list[tuple[str, str | None]]:
        """(asset id, tenant) of what "Approve all matching" approves: the queue's rows in queue order, at most
        review.scan_limit (the figure the queue's button and dialog show, `approvable`). With one row per family
        (`collapse`) that is each family's row, the asset shown: its other members in the queue were not seen and
        stay in the queue (docs/review.md)."""
        docs = self._scanned(f, ["asset_id", "tenant", "family_id", *CONF_FIELDS])
        if f.collapse:
            docs = collapse_families(docs)
        return [(d["asset_id"], d.get("tenant")) for d in docs[: self.cfg.scan_limit]]

    def tenants(self, ids: list[str]) -> list[tuple[str, str | None]]:
        """(asset id, tenant) of the given documents (ids: tenant-scoped document ids) that are in the index, of
        the tenants the app serves."""
        if not ids:
            return []
        docs = self.es.mget(index=self.alias, ids=ids, source_includes=["asset_id", "tenant"])["docs"]
        return [(d["_source"].get("asset_id") or d["_id"], d["_source"].get("tenant")) for d in docs
                if d.get("found") and d.get("_source") is not None and self.scope.holds(d["_source"].get("tenant"))]

    def reviews(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Document id (tenant-scoped) -> its review (decision ids, verdict, editor; {} for none), of those in the
        index. Read by id (real-time on Elasticsearch too)."""
        if not ids:
            return {}
        docs = self.es.mget(index=self.alias, ids=ids, source_includes=["review"])["docs"]
        return {d["_id"]: (d["_source"].get("review") or {}) for d in docs if d.get("found") and d.get("_source")
                is not None}

    def titles(self, ids: list[str]) -> list[str]:
        """What a person recognises each of the given documents (tenant-scoped ids) by: "title (asset id)", or the
        asset id alone when it has no title; in the given order, those in the index of the tenants served."""
        if not ids:
            return []
        docs = self.es.mget(index=self.alias, ids=ids, source_includes=["asset_id", "tenant", "title"])["docs"]
        out = []
        for d in docs:
            src = d.get("_source") if d.get("found") else None
            if src is not None and self.scope.holds(src.get("tenant")):
                name, title = src.get("asset_id") or d["_id"], " ".join(str(src.get("title") or "").split())[:80]
                out.append(f"{title} ({name})" if title and title != name else name)
        return out

    def rights_count(self, ids: list[str]) -> int:
        """How many of the given documents (tenant-scoped ids) `rights_to_check` would list: the queue's "Approve
        all" asks no question of its own when the rights check will (trial 32 F10: it asked twice)."""
        return sum(self.es.count(index=self.alias, query=self._rights_query(ids[at:at + MAX_WINDOW]))["count"]
                   for at in range(0, len(ids), MAX_WINDOW))

    def _rights_query(self, ids: list[str]) -> dict[str, Any]:
        known_fine = [flag for flag in LABELS if flag not in RISKY]
        return {"bool": {"filter": [{"ids": {"values": ids}}, *self.scope.filters],
                         "must_not": [{"terms": {"usage_flag": known_fine}}]}}

    def rights_to_check(self, ids: list[str]) -> list[dict[str, Any]]:
        """Of the given documents (tenant-scoped ids), those whose usage rights a person must confirm before a bulk
        approval (app/review/rights.py RISKY: restricted, or unknown, or no usage flag at all), queue order, with
        what the confirmation shows of each (id, title, usage, reasons). Every one of them, however many: the ids
        are asked for MAX_WINDOW at a time (one search returns at most that many; code review 14 L5: the rest were
        left out and then approved as "others")."""
        out: list[dict[str, Any]] = []
        for at in range(0, len(ids), MAX_WINDOW):
            part = ids[at:at + MAX_WINDOW]
            resp = self.es.search(index=self.alias, query=self._rights_query(part), sort=SORT, size=len(part),
                                  source_includes=["asset_id", "tenant", "title", "reasons", "degraded", *USAGE_FIELDS])
            out += [h["_source"] for h in resp["hits"]["hits"]]
        return out

    def propagated(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Document id -> {asset_id, alt_text, tags, propagated} of those documents holding values propagated from
        their duplicate family (for bulk approval)."""
        if not ids:
            return {}
        docs = self.es.mget(index=self.alias, ids=ids, source_includes=["asset_id", "alt_text", "tags",
                                                                         "propagated"])["docs"]
        return {d["_id"]: d["_source"] for d in docs if d.get("found") and (d.get("_source") or {}).get("propagated")}

    def status_counts(self) -> dict[str, int]:
        resp = self.es.search(index=self.alias, size=0, query=self._q([]),
                              aggs={"s": {"terms": {"field": "status", "size": 20}}})
        got = {b["key"]: b["doc_count"] for b in resp["aggregations"]["s"]["buckets"]}
        return {s: got.get(s, 0) for s in STATUSES}

    def unheld_tenants(self) -> list[tuple[str, list[str]]]:
        """For the operator at start-up (never shown on a page: it names other tenants): each tenant the app serves
        that has no document in the index, with the index's tenant names it may have meant (the same name in
        another case, else every name, at most 10). Tenant names are case-sensitive: a desk started with `ACME`
        for `acme`'s assets would otherwise serve an empty queue without a word. Empty when the index is not
        there yet or cannot be read."""
        if not self.scope.tenants:
            return []
        served = {f"s{i}": {"filter": tenants_filter((t,))} for i, t in enumerate(self.scope.tenants)}
        try:  # each served tenant counted exactly (a filter each); the names held, for the hint, the most frequent
            resp = self.es.search(index=self.alias, size=0, query={"match_all": {}},
                                  aggs={"t": {"terms": {"field": "tenant", "size": 1000}},
                                        "default": {"filter": tenants_filter((DEFAULT_TENANT,))}, **served})
        except Exception:  # noqa: BLE001 - a hint only: the app reports an unreachable index on its pages
            return []
        aggs = resp.get("aggregations") or {}
        known = {b["key"]: b["doc_count"] for b in aggs.get("t", {}).get("buckets", [])}
        if aggs.get("default", {}).get("doc_count"):
            known[DEFAULT_TENANT] = aggs["default"]["doc_count"]
        unheld = []
        for i, tenant in enumerate(self.scope.tenants):
            if (aggs.get(f"s{i}") or {}).get("doc_count"):
                continue
            same = [t for t in known if t.casefold() == tenant.casefold()]
            unheld.append((tenant, sorted(same or known)[:10]))
        return unheld

    def reason_counts(self, f: Filters) -> dict[str, int]:
        """Assets per reason group within the current filters (except the reason itself)."""
        resp = self.es.search(index=self.alias, size=0, query=self._q(clauses(f, with_reason=False)),
                              aggs={"r": {"filters": {"filters": {g: reason_query(g) for g in REASON_GROUPS}}}})
        buckets = resp["aggregations"]["r"]["buckets"]
        return {g: buckets.get(g, {}).get("doc_count", 0) for g in REASON_GROUPS}

    def degraded_counts(self, f: Filters) -> dict[str, int]:
        """Assets marked degraded within the current filters (except the degraded filter itself): "any", then per
        part (domain/store/degraded.py; issue 21)."""
        resp = self.es.search(index=self.alias, size=0, query=self._q(clauses(f, with_degraded=False)),
                              aggs={"any": {"filter": degraded_query()},
                                    "parts": {"terms": {"field": "degraded_parts", "size": 50}}})
        aggs = resp["aggregations"]
        return {"any": aggs["any"]["doc_count"], **{b["key"]: b["doc_count"] for b in aggs["parts"]["buckets"]}}

    def choices(self) -> dict[str, list[str]]:
        """Models and prompt versions seen in provenance, for the filter menus."""
        aggs = {"p": {"nested": {"path": "provenance"}, "aggs": {
            "m": {"terms": {"field": "provenance.model", "size": 100}},
            "p": {"terms": {"field": "provenance.prompt_id", "size": 50},
                  "aggs": {"v": {"terms": {"field": "provenance.prompt_version", "size": 50}}}}}}}
        resp = self.es.search(index=self.alias, size=0, query=self._q([]), aggs=aggs)
        agg = resp["aggregations"]["p"]
        prompts = sorted(f"{b['key']}@{v['key']}" for b in agg["p"]["buckets"] for v in b["v"]["buckets"])
        return {"models": sorted(b["key"] for b in agg["m"]["buckets"]), "prompts": prompts}

    # --- one asset ------------------------------------------------------------------------------------------
    def asset(self, asset_id: str) -> dict[str, Any] | None:
        """The document, or None when the index does not hold it or it is another tenant's than the app serves
        (the same None: the app does not tell them apart)."""
        if not self.scope.holds_id(asset_id):
            return None
        try:
            doc = self.es.get(index=self.alias, id=asset_id, source_excludes=["thumbnail"])["_source"]
        except NotFoundError:
            return None
        return doc if self.scope.holds(doc.get("tenant")) else None

    def wait_applied(self, asset_id: str, decision_id: str, timeout_s: float,
                     until: Callable[[], bool] | None = None) -> bool:
        """Wait up to `timeout_s` for the review group to have applied this decision to the asset's document
        (its id among the review's decision ids), or for `until()` (e.g. it refused it); whether it applied it."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.asset(asset_id)
            if decision_id in (((doc or {}).get("review") or {}).get("decision_ids") or []):
                return True
            if time.monotonic() >= deadline or (until is not None and until()):
                return False
            time.sleep(0.15)

    def wait_decided(self, decisions: dict[str, str], timeout_s: float) -> tuple[int, int]:
        """Wait up to `timeout_s` for the review group to have applied these decisions (document id, tenant-scoped
        -> decision id) to their documents; (how many are not applied yet, how many were applied but kept in
        review: an approval the review group keeps in `needs_review`, e.g. an image changed since or without alt
        text, domain/review.py). Read by id (real-time on Elasticsearch too)."""
        deadline = time.monotonic() + timeout_s
        while True:
            docs = self.es.mget(index=self.alias, ids=list(decisions), source_includes=["status", "review"])["docs"]
            applied = {d["_id"]: d["_source"].get("status") for d in docs if d.get("found") and d.get("_source")
                       and decisions[d["_id"]] in ((d["_source"].get("review") or {}).get("decision_ids") or [])}
            if len(applied) >= len(decisions) or time.monotonic() >= deadline:
                return len(decisions) - len(applied), sum(1 for status in applied.values() if status != "approved")
            time.sleep(0.15)

    def thumbnail(self, asset_id: str) -> dict[str, Any] | None:
        if not self.scope.holds_id(asset_id):
            return None
        try:
            src = self.es.get(index=self.alias, id=asset_id, source_includes=["thumbnail", "tenant"])["_source"]
        except NotFoundError:
            return None
        return src.get("thumbnail") if self.scope.holds(src.get("tenant")) else None

    def neighbour(self, f: Filters, doc: dict[str, Any], after: bool = True) -> str | None:
        """The asset after (or before) `doc` in queue order under the filters."""
        ordered = parts(f)
        here = 0 if len(ordered) == 1 or doc.get("status") == "needs_review" else 1
        found = self._neighbour_in(f, ordered[here], doc, after)
        further = ordered[here + 1:] if after else list(reversed(ordered[:here]))
        for part in further:  # past the end of its part: the first (or last) of the next (or previous) part
            if found is not None:
                break
            found = self._neighbour_in(f, part, None, after)
        return found

    def _neighbour_in(self, f: Filters, part: list[dict[str, Any]], doc: dict[str, Any] | None,
                      after: bool) -> str | None:
        order = "asc" if after else "desc"
        sort = [{"event_time": {"order": order, "unmapped_type": "date"}},
                {"asset_id": {"order": order, "unmapped_type": "keyword"}}]
        size = self.cfg.scan_limit if f.conf_filter else 1
        position = [self._after(doc, after)] if doc is not None else []
        resp = self.es.search(index=self.alias, query=self._q([*part, *position]), sort=sort, size=size,
                              source_includes=["asset_id", *CONF_FIELDS])
        for h in resp["hits"]["hits"]:
            if self._conf_ok(f, h["_source"]):
                return h["_id"]  # the document id (tenant-scoped), as the asset view's URL takes it
        return None

    @staticmethod
    def _after(doc: dict[str, Any], after: bool) -> dict[str, Any]:
        """Assets after (or before) `doc` in (event_time, asset_id) order."""
        t, aid = doc.get("event_time"), doc["asset_id"]
        op = "gt" if after else "lt"
        if t is None:
            return {"range": {"asset_id": {op: aid}}}
        return {"bool": {"should": [
            {"range": {"event_time": {op: t}}},
            {"bool": {"filter": [{"term": {"event_time": t}}, {"range": {"asset_id": {op: aid}}}]}}],
            "minimum_should_match": 1}}

    def duplicate_family(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The asset's duplicate family (consumers/index/families.py): the canonical member first, then by quality.
        A document indexed before families (no family_id): the original it duplicates and every asset that names
        it (or this asset) as original. Empty for an asset alone in its family."""
        # the document's own tenant (no `tenant` field: the default tenant's, tenants_filter's rule), never a
        # namesake of another tenant (review 12: a default-tenant page could list acme's `a1`)
        tenant = [tenants_filter((doc.get("tenant") or DEFAULT_TENANT,))]
        if doc.get("family_id"):
            query: dict[str, Any] = {"bool": {"filter": [{"term": {"family_id": doc["family_id"]}}, *tenant]}}
        else:
            root = doc.get("duplicate_of") or doc["asset_id"]
            query = {"bool": {"should": [{"term": {"asset_id": root}}, {"term": {"duplicate_of": root}}],
                              "filter": tenant, "minimum_should_match": 1}}
        resp = self.es.search(index=self.alias, size=FAMILY_SHOWN, sort=SORT, query=query, source_includes=[
            "asset_id", "tenant", "title", "status", "duplicate_of", "duplicate_distance", "width", "height",
            "byte_size", "family_id", "family_canonical", "propagated"])
        family = [h["_source"] for h in resp["hits"]["hits"]]
        family.sort(key=lambda m: (not m.get("family_canonical"), -int(m.get("width") or 0) * int(m.get("height") or 0),
                                   -int(m.get("byte_size") or 0), str(m.get("asset_id"))))
        return family if len(family) > 1 else []

    # --- figures for the header and /metrics ---------------------------------------------------------------
    def time_to_publish(self) -> dict[str, Any]:
        """Upload -> approval (`reviewed_at`) of approved assets: count, median, p90 (seconds, nearest rank), over
        the newest review.ttp_sample approvals (`sampled`). The upload is when the asset's bytes were first
        uploaded (`uploaded_at`: a DAM's re-send of the same file keeps it; a document indexed before it: its
        `event_time`). `left_out`: those of them that cannot be timed, said rather than dropped: an approval given
        before that upload (a decision re-applied from the sidecars by a re-run whose index did not hold the asset
        before: the wait from the first upload is not known here; a reprocess keeps the upload time,
        app/ops/carry.py), or one without either time."""
        resp = self.es.search(index=self.alias, size=self.cfg.ttp_sample,
                              query=self._q([{"term": {"status": "approved"}}]),
                              sort=[{"reviewed_at": {"order": "desc", "unmapped_type": "date"}}],
                              source_includes=["event_time", "uploaded_at", "reviewed_at"])
        hits = resp["hits"]["hits"]
        samples = []
        for h in hits:
            s = h["_source"]
            start, end = _parse(s.get("uploaded_at") or s.get("event_time")), _parse(s.get("reviewed_at"))
            if start and end and end >= start:
                samples.append((end - start).total_seconds())
        samples.sort()
        return {"count": len(samples), "p50": nearest_rank(samples, 0.5), "p90": nearest_rank(samples, 0.9),
                "sampled": len(hits), "left_out": len(hits) - len(samples)}


def carried_over(doc: dict[str, Any]) -> bool:
    """The asset's review is older than its current upload event (`reviewed_at` < `event_time`): the decision was
    carried over to a later event of the asset (re-applied from the sidecars by a re-run with the same --out, or
    kept through a DAM's later event; a reprocess keeps the upload time), so `event_time` is not when the asset
    was first uploaded."""
    start, end = _parse(doc.get("event_time")), _parse(doc.get("reviewed_at"))
    return bool(start and end and end < start)


def collapse_families(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per duplicate family, the family's first in the given (queue) order; `family_in_queue` counts the
    family's rows this stands for. A document without a family_id is its own family."""
    first: dict[str, dict[str, Any]] = {}
    for d in docs:
        key = d.get("family_id") or d.get("asset_id")
        if key in first:
            first[key]["family_in_queue"] += 1
        else:
            first[key] = {**d, "family_in_queue": 1}
    return list(first.values())


def _doc_ids(docs: list[dict[str, Any]]) -> list[str]:
    return [scoped_id(d.get("asset_id"), d.get("tenant")) for d in docs]


def selection_digest(doc_ids: list[str]) -> str:
    """What a bulk approval covers, as the page confirmed it: sha256 over the sorted document ids (tenant-scoped).
    The queue page renders it, the approval recomputes it from the same filters and refuses on a mismatch."""
    return hashlib.sha256("\n".join(sorted(doc_ids)).encode()).hexdigest()


def nearest_rank(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _parse(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
