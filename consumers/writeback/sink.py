"""The writeback group: `validated` -> every configured target, once per change, never over a person's edit.

Per record and target (docs/writeback.md):
0. a record of a tenant the target does not serve (its `tenants`) -> skipped, never sent, no state;
1. not eligible (status not approved | auto_applied, or needs_review for a `suggest` target; deletions) -> skipped;
2. the fingerprint of what the target should hold equals the one last written -> noop (a reprocess sends nothing);
3. otherwise read the target's current values (`read_current`), keep only fields that differ, leave alone the ones
   a person changed in the target after our last write (conflict: metric, warning, kept on the state document),
   and send the rest in one request; then store the new fingerprint and field values.

Transient failures (target or state store down, 429, 5xx, timeouts) are retried by the runner without limit while
the partitions are paused; a target that answers "not this asset" (404, 400, 422) dead-letters that record only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, Sequence

from elasticsearch import ApiError, TransportError

from consumers.writeback import plan
from consumers.writeback.limits import Pacer
from consumers.writeback.state import MAX_CONFLICTS, StateStore, state_id
from consumers.writeback.files import FilesTarget
from consumers.writeback.http import HttpTarget
from consumers.writeback.webhook import WebhookTarget
from consumers.writeback.wordpress import WordPressTarget
from domain.records import asset_of, document_id, is_deleted, tenant_of
from streams.errors import PermanentError, TransientError
from streams.metrics import WRITEBACK_CONFLICTS, WRITEBACK_ITEMS
from streams.stage import Output, RecordContext, Stage, StageResult

log = logging.getLogger(__name__)

TARGET_TYPES = {"webhook": WebhookTarget, "wordpress": WordPressTarget, "files": FilesTarget}


class WritebackSink(Stage):
    name = "writeback"
    input_topic = "validated"
    output_topic = None
    kind = "batch"

    def __init__(self, settings: Any, state: StateStore | None = None):
        super().__init__(settings)
        self.cfg = settings.writeback
        if not self.cfg.targets:  # the worker refuses to start (exit 2) rather than only move offsets
            raise ValueError("no write-back target configured (writeback.targets, docs/writeback.md): "
                             "configure one, or do not run a writeback worker")
        pacer = Pacer(self.cfg.rate_per_s)
        self.targets = [TARGET_TYPES[t.type](t, pacer) for t in self.cfg.targets]
        self.state = state or StateStore(settings)
        self._store_down: str | None = None
        # conflict audit entries of records still being retried (another target failed transiently): the
        # fingerprint is stored already, so the retry answers noop and would not find the conflict again
        self._pending: dict[tuple[str, int, int], list[Output]] = {}
        self._told: set[tuple[str, str]] = set()  # (target, tenant) skipped and logged once

    def should_pause(self) -> str | None:
        for t in self.targets:
            reason = t.paused()
            if reason:
                return f"writeback target unavailable: {reason}"
        return f"writeback state store unavailable: {self._store_down}" if self._store_down else None

    def close(self) -> None:
        for t in self.targets:
            t.close()
        self.state.close()

    def process_batch(self, items: Sequence[tuple[dict[str, Any], RecordContext]]
                      ) -> list[BaseException | StageResult]:
        values = [value for value, _ in items]
        ids = []
        for v in values:
            try:
                ids.append(document_id(v))  # tenant-scoped: two tenants' "a1" are two states
            except (KeyError, TypeError):
                ids.append(None)
        try:
            known = self.state.get_many([state_id(t.name, a) for a in ids if a for t in self.targets])
            self._store_down = None
        except (TransportError, ApiError) as e:
            return [self._store_error(e)] * len(items)
        results: list[BaseException | StageResult] = []
        for (value, ctx), asset_id in zip(items, ids):
            if asset_id is None:
                results.append(PermanentError("not a ValidatedAsset: no asset id", reason="no_asset_id"))
                continue
            errors = []
            audit = self._pending.setdefault((ctx.topic, ctx.partition, ctx.offset), [])
            for target in self.targets:
                try:
                    audit += self._one(target, value, asset_id, known, ctx)
                except (TransientError, PermanentError) as e:
                    WRITEBACK_ITEMS.labels(target.name, "retry" if isinstance(e, TransientError) else "rejected").inc()
                    errors.append(e)
                except (TransportError, ApiError) as e:
                    errors.append(self._store_error(e))
            # a transient failure wins: the record comes back and the targets already written answer noop
            retry = next((e for e in errors if isinstance(e, TransientError)), None)
            if retry is None:
                audit = self._pending.pop((ctx.topic, ctx.partition, ctx.offset), [])
            results.append(retry or (self._refused(errors) if errors else audit or None))
        return results

    @staticmethod
    def _refused(errors: list[BaseException]) -> BaseException:
        """A record's one dead letter: when several targets refused it, it names each of them (its message, and
        `details.refusals`: a JSON list of {target, reason, message}), not only the first."""
        if len(errors) == 1 or not all(isinstance(e, PermanentError) for e in errors):
            return errors[0]
        first = errors[0]
        refusals = [{"target": e.details.get("target"), "reason": e.reason, "message": str(e)} for e in errors]
        return PermanentError("; ".join(str(e) for e in errors), reason=first.reason,
                              details={**first.details, "refusals": json.dumps(refusals)})

    def _one(self, target: HttpTarget | FilesTarget, value: dict[str, Any], asset_id: str, known: dict[str, dict],
             ctx: RecordContext) -> list[Output]:
        """Write one record to one target; returns the audit entries of its conflicts."""
        cfg = target.cfg
        tenant = tenant_of(value)
        if not cfg.serves(tenant):  # another tenant's record never reaches this target (nor a state document)
            WRITEBACK_ITEMS.labels(target.name, "skipped").inc()
            if (target.name, tenant) not in self._told:
                self._told.add((target.name, tenant))
                log.info("writeback %s: skipping tenant %s's records (the target serves %s: its tenants)",
                         target.name, tenant, ", ".join(cfg.tenants))
            return []
        if is_deleted(value) or not plan.eligible(value, cfg.mode):
            WRITEBACK_ITEMS.labels(target.name, "skipped").inc()
            return []
        wanted = target.as_stored(plan.desired(value, cfg.fields))  # WordPress: text in its HTML fields
        decisions = plan.decided(value, cfg.fields)
        fp = plan.fingerprint(target.name, cfg.url, wanted, decisions)
        sid = state_id(target.name, asset_id)
        prior = known.get(sid) or {}
        if prior.get("fingerprint") == fp:
            WRITEBACK_ITEMS.labels(target.name, "noop").inc()
            return []
        written = dict(prior.get("written") or {})
        try:
            current, etag = target.read(value) if cfg.read_current else (None, None)
            edited = plan.edited_fields(value, cfg.fields) if target.holds_the_original else set()
            edited |= plan.nobodys_fields(current, cfg.fields)  # a file name is nobody's alt text
            decision = plan.decide(wanted, written, current, protect_unknown=cfg.protect_unknown,
                                   merge_lists=target.merges_lists, edited=edited, decisions=decisions)
            new_etag = None
            if decision.send:
                new_etag = target.write(value, decision.send, etag, written)
        finally:
            target.release(value)  # what the read kept for the write (the files target's S3 download)
        conflicts = list(prior.get("conflicts") or [])
        for field, (ours, theirs) in decision.conflicts.items():
            WRITEBACK_CONFLICTS.labels(target.name, field).inc()
            log.warning("writeback %s: %s field %r %s; left alone", target.name, asset_id, field,
                        "was changed in the target after our last write" if field in written else
                        "already holds a value we never wrote (protect_unknown: a person's, or the file's own)")
            conflicts.append({"field": field, "ours": ours, "theirs": theirs, "at": int(time.time() * 1000),
                              "version": int(asset_of(value)["version"])})
        now = int(time.time() * 1000)
        # checked_at: this pass; written_at: the last pass that sent fields (what `assetstream run` calls written)
        doc = {"target": target.name, "asset_id": asset_id, "fingerprint": fp,
               "written": {**written, **decision.owned}, "etag": new_etag or etag,
               "version": int(asset_of(value)["version"]), "checked_at": now,
               "written_at": now if decision.send else prior.get("written_at"),
               "conflicts": conflicts[-MAX_CONFLICTS:]}
        self.state.put(sid, doc)
        known[sid] = doc  # the same asset again in this batch sees it
        result = "written" if decision.send else ("conflict" if decision.conflicts else "noop")
        WRITEBACK_ITEMS.labels(target.name, result).inc()
        return [self._audit(target.name, value, field, theirs, ctx)
                for field, (_ours, theirs) in decision.conflicts.items()]

    @staticmethod
    def _audit(target: str, value: dict[str, Any], field: str, theirs: Any, ctx: RecordContext) -> Output:
        """An AuditEntry: the person's value in the target, which we left alone."""
        asset = asset_of(value)
        text = ", ".join(map(str, theirs)) if isinstance(theirs, list) else (None if theirs is None else str(theirs))
        now = int(time.time() * 1000)
        key = document_id(value)  # the tenant-scoped id, as every audit entry's key
        ident = f"{target}|{key}|{asset['version']}|{field}|{text}"
        return Output(topic="audit", key=key, value={
            "entry_id": "wbc:" + hashlib.sha1(ident.encode()).hexdigest(), "asset_id": asset["asset_id"],
            "kind": "writeback_conflict", "version": int(asset["version"]), "status": value.get("status"),
            "at": now, "actor": f"writeback@{target}",
            "fields": [{"field": field, "value": text, "source": "human", "action": None, "prompt_id": None,
                        "prompt_version": None, "model": None, "editor": None}],
            "provenance": [], "decision_id": None, "source_topic": ctx.topic, "source_partition": ctx.partition,
            "source_offset": ctx.offset, "recorded_at": now, "tenant": asset.get("tenant")})

    def _store_error(self, e: Exception) -> TransientError:
        reason = f"{e.status_code} {e.error}" if isinstance(e, ApiError) else type(e).__name__
        if self._store_down is None:
            log.warning("writeback state store unavailable: %s", reason)
        self._store_down = reason
        self.state.forget()
        return TransientError(f"writeback state store unavailable: {reason}", reason="state_store_unavailable")
