"""feedback -> validated: apply an editor's decision to the asset's published record.

For each EditorDecision (key = asset id): read the asset's document from the index (its stored ValidatedAsset,
preview and HumanReview), merge the decision into the review (`domain.review.merge_decision`: idempotent, newest
per field wins, an approval pins every value the person saw; an accepted value keeps its source, a value from
the duplicate family `propagated`), apply it (`domain.review.apply_review`) and emit
the result to `validated` with the document's own asset version. The index sink writes it through the same
externally versioned path as every pipeline record and applies the review again at write time, so a pipeline
event racing the decision cannot drop it (see IndexSink._reconcile). The KPI app sees the decision on `feedback`
and the published record on `validated`: its audit entry credits each field to the person who set it.

Errors: a decision for an asset the index does not hold (yet) is transient (retried with backoff, then dead-
lettered as `asset_not_indexed`); a decision that names an unknown field, action or verdict, a tag that is
neither a vocabulary id nor already on the asset (a renamed id counts as its current name: `current_tag_names`),
or another tenant's asset, is permanent (`invalid_decision`, `tenant_mismatch`). So is a stale decision
(`stale_decision`, `domain.review.stale`): one whose `base_decision_id` (the newest decision the editor's page knew
of) is followed by another editor's applied decision that changed a field it decides on (for a verdict: any), the
desk's own rule, here where every decision on the asset is serialised: two desk replicas that each sent one of two
decisions made on the same view get one applied and one refused; the desk reads the refusal from the dead-letter
topic and shows it to its editor (app/review/refusals.py).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from domain.events import scoped_id
from domain.records import document_id, record_from_doc
from domain.confidence import ConfidencePolicy
from domain.review import (apply_review, merge_decision, merge_reviews, parse_tags_value, propagated_applied,
                           propagated_shown, renamed_tags, said_applied, stale, tags_value)
from domain.store.client import make_client
from domain.store.management import read_alias
from domain.taxonomy import taxonomy_from_settings
from streams.errors import PermanentError, TransientError
from streams.records import stamp, to_ms
from streams.stage import Output, RecordContext, Stage


def current_tag_names(decision: dict[str, Any], taxonomy: Any, have: set[str] = frozenset(),
                      given: set[str] = frozenset()) -> dict[str, Any]:
    """The decision with each renamed (deprecated) tag id it sets replaced by its current name, unless the record
    holds that id (`have`); a removed id the duplicate family gave the document (`given`) is dropped. A person who
    approves what they were shown approves the family's `color:grey` as today's `color:gray`
    (`domain.review.renamed_tags`)."""
    fields = []
    for f in decision.get("fields") or []:
        if f.get("field") == "tags" and f.get("action") != "rejected" and f.get("value") is not None:
            ids = parse_tags_value(f["value"])
            renamed = renamed_tags(ids, taxonomy.current_name, have, given)
            if renamed != ids:
                f = {**f, "value": tags_value(renamed)}
        fields.append(f)
    return {**decision, "fields": fields}


def _set_tags(decision: dict[str, Any]) -> list[str]:
    """The tag ids a decision sets (its tags fields that are not rejected)."""
    return [tag for f in decision.get("fields") or [] if f.get("field") == "tags" and f.get("action") != "rejected"
            for tag in parse_tags_value(f.get("value"))]


def renamed_tags_in(decision: dict[str, Any], taxonomy: Any) -> dict[str, str]:
    """Each renamed (deprecated) id the decision sets -> the current name the review group records it under
    (`current_tag_names`; an asset that already has the old id keeps it)."""
    out = {}
    for tag in _set_tags(decision):
        new = taxonomy.current_name(tag) if tag in taxonomy.deprecated else None
        if new is not None and taxonomy.allowed(new):
            out[tag] = new
    return out


def tag_problems(decision: dict[str, Any], taxonomy: Any, have: set[str] = frozenset()) -> list[str]:
    """Why the tags a decision sets cannot be published: each id that is neither in the vocabulary, nor renamed to
    a vocabulary id (`renamed_tags_in`: recorded under its current name by `current_tag_names`, for every
    sender), nor already on the asset (`have`: e.g. a DAM keyword a person set), with the vocabulary id it probably
    means. The review app maps labels and deprecated ids before it sends; `assetstream feedback` and the SDK send
    what they are given."""
    problems = []
    renamed = renamed_tags_in(decision, taxonomy)
    for tag in _set_tags(decision):
        if tag in taxonomy.entries or tag in have or tag in renamed:
            continue
        res = taxonomy.resolve(tag)
        hint = f": did you mean {res.mapped.tag}?" if res.outcome == "mapped" and res.mapped else ""
        problems.append(f"{tag!r} is not in the vocabulary ({taxonomy.version}){hint}")
    return problems


class ReviewStage(Stage):
    name = "review"
    input_topic = "feedback"
    output_topic = "validated"
    kind = "cpu"

    concurrency = 1
    """one decision at a time, in the order they came (decisions are keyed by asset id, so an asset's decisions
    arrive in order on one partition): with several threads an Approve all could be worked before the Save it
    follows and pin the values that Save replaced (trial 15). Decisions come at a person's pace: one thread keeps
    up (runner.concurrency, when set, overrides this for every stage of the worker: leave it unset here)."""
    PENDING_MAX = 10_000
    """assets whose last output this worker keeps until the index shows it (`_pending`)"""

    def __init__(self, settings: Any, client: Any = None):
        super().__init__(settings)
        self.cfg = settings.index
        self._owns_client = client is None
        self.client = client if client is not None else make_client(self.cfg)
        self.alias = read_alias(self.cfg)
        self.taxonomy = taxonomy_from_settings(settings)
        self.policy = ConfidencePolicy.of(settings.validate_)  # the confidence reasons are judged again after review
        # document id -> (the record this worker last emitted for it, its review), until the index shows that
        # review: two decisions on one asset in quick succession (Save, then Approve all) must build on each
        # other, and the index holds the first only once the index worker wrote it. Decisions are keyed by asset
        # id, so one worker sees every decision on an asset (across a rebalance the index is read as before)
        self._pending: OrderedDict[str, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()

    def ready(self) -> bool:
        try:
            return bool(self.client.options(request_timeout=min(1.0, self.cfg.request_timeout_s)).ping())
        except Exception:  # noqa: BLE001 - not ready is the answer
            return False

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def process(self, decision: dict[str, Any], ctx: RecordContext | None = None) -> Output:
        asset_id = decision["asset_id"]
        doc_id = scoped_id(asset_id, decision.get("tenant"))  # no tenant: the default tenant
        doc = self._document(doc_id)
        record, before = self._latest(doc_id, doc)
        if record is None:
            raise PermanentError(f"{asset_id}: its index document predates stored records; reprocess the asset, "
                                 "then decide again", reason="no_stored_record", details=self._whose(decision))
        tenant = decision.get("tenant")
        if tenant and doc.get("tenant") and tenant != doc["tenant"]:
            raise PermanentError(f"decision for tenant {tenant!r} on an asset of tenant {doc['tenant']!r}",
                                 reason="tenant_mismatch", details=self._whose(decision))
        meanwhile = stale(before, decision)
        if meanwhile:  # another editor's decision, applied after the page this one was made on, changed its fields
            said = said_applied(meanwhile)
            raise PermanentError(
                f"{asset_id}: decision {decision['decision_id']} by {decision['editor']} refused: {said}, after the "
                f"page it was made on (base decision {decision.get('base_decision_id') or 'none'}); not applied",
                reason="stale_decision", details={
                    **self._whose(decision), "base_decision_id": decision.get("base_decision_id") or "",
                    "meanwhile": said, "meanwhile_ids": ",".join(a["decision_id"] for a in meanwhile)})
        have = {t["tag"] for t in record.get("tags") or []}
        given = set(propagated_applied(doc).get("tags") or [])
        decision = current_tag_names(decision, self.taxonomy, have, given)
        problems = tag_problems(decision, self.taxonomy, have)
        if problems:
            raise PermanentError(f"{asset_id}: {'; '.join(problems)}", reason="invalid_decision",
                                 details=self._whose(decision))
        try:
            # the values the person saw that the record does not hold: those the duplicate family gave it
            shown = propagated_shown(doc, lambda ids: renamed_tags(ids, self.taxonomy.current_name, have, given))
            review = merge_decision(before, decision, record, shown)
        except ValueError as e:
            raise PermanentError(f"{asset_id}: {e}", reason="invalid_decision",
                                 details=self._whose(decision)) from e
        out = apply_review(record, review, label_of=self.taxonomy.label_if_allowed, policy=self.policy)
        self._pending[doc_id] = (out, review)
        self._pending.move_to_end(doc_id)
        while len(self._pending) > self.PENDING_MAX:
            self._pending.popitem(last=False)
        return Output(value={**out, "stamp": stamp(self.name)}, key=document_id(out))

    @staticmethod
    def _whose(decision: dict[str, Any]) -> dict[str, Any]:
        """A refused decision's dead-letter details: the desk shows the refusal to its editor (app/review/refusals.py)."""
        return {"asset_id": decision["asset_id"], "decision_id": decision.get("decision_id") or "",
                "editor": decision.get("editor") or "", "status": decision.get("status") or "",
                "fields": ",".join(f["field"] for f in decision.get("fields") or []),
                "decided_at": str(to_ms(decision["decided_at"])) if decision.get("decided_at") is not None else ""}

    def _latest(self, doc_id: str, doc: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(record, review) a decision builds on: the index's, or this worker's last output for the asset while
        the index does not show it yet (its newest decision is not among the index review's), with the index's
        review merged in (merge_reviews: newest per field)."""
        index_review = doc.get("review")
        pending = self._pending.get(doc_id)
        if pending is not None:
            emitted, review = pending
            if review["decision_ids"][-1:] and review["decision_ids"][-1] not in \
                    ((index_review or {}).get("decision_ids") or []):
                return emitted, merge_reviews(index_review, review)
            del self._pending[doc_id]  # the index caught up: it is the newer source from here on
        return record_from_doc(doc), index_review

    def _document(self, asset_id: str) -> dict[str, Any]:
        try:
            res = self.client.options(request_timeout=self.cfg.request_timeout_s).search(
                index=self.alias, query={"ids": {"values": [asset_id]}}, size=1,
                source=["record", "thumbnail", "review", "tenant", "version", "propagated", "alt_text", "tags"])
        except Exception as e:  # noqa: BLE001 - the store is down or slow: retry, never drop a decision
            raise TransientError(f"index store unavailable: {type(e).__name__}", reason="store_unavailable") from e
        hits = res.get("hits", {}).get("hits", [])
        if not hits:
            raise TransientError(f"{asset_id} is not in the index (yet)", reason="asset_not_indexed",
                                 details={"asset_id": asset_id})
        return hits[0].get("_source") or {}
