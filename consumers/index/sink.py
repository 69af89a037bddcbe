"""The index sink: `validated` -> the write alias, with the bulk API and external versioning.

Per item (in order, one result each):
- indexed / deleted / delete of a missing doc (404) / version conflict (409: the store already has a newer or
  equal version -- a replay or a stale event) -> success (None); the runner may commit it.
- the store rejects the document (400 mapper_parsing_exception, document_parsing_exception,
  illegal_argument_exception, strict_dynamic_mapping_exception, ...) -> PermanentError with the store's error
  type and reason in details; the batch-mates are indexed.
- 429 / 5xx for the item, or the whole request failing (connection refused, timeout, 5xx, 429, auth) ->
  TransientError: the runner retries just those items. Nothing is dropped silently.

The same asset twice in one batch: both are sent, in order; external versioning keeps the highest version
(the lower one comes back as a 409 = success, counted 'conflict').
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import threading
import time
from typing import Any, Sequence

from elasticsearch import ApiError, Elasticsearch, SerializationError, TransportError

from domain.store.client import make_client
from consumers.index import families, propagate
from consumers.index.document import document_from_validated, first_upload
from domain.records import PipelineFacts, asset_of, content_sha256, document_id, is_deleted, record_from_doc
from domain.confidence import ConfidencePolicy
from domain.review import apply_review, merge_reviews, same_review
from domain.store import degraded
from domain.store.management import ensure_index, write_alias
from domain.store.vectors import (add_image_vectors, add_text_vectors, embedding_text, image_vector_model,
                                  vector_model)
from domain.taxonomy import taxonomy_from_settings
from streams.errors import PermanentError, StoreUnavailable, TransientError
from streams.metrics import DEGRADED, INDEX_BULK_SECONDS, INDEX_ITEMS, INDEX_REVIEWS_APPLIED
from streams.stage import RecordContext, Stage, StageResult, final_attempt


log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
_RETRYABLE_REQUEST_STATUS = _RETRYABLE_STATUS | {401, 403}  # credentials/permissions: pause, don't dead-letter


class _Prepared:
    __slots__ = ("pos", "lines", "size", "doc_id", "version", "op")

    def __init__(self, pos: int, lines: list[bytes], doc_id: str, version: int, op: str):
        self.pos, self.lines, self.doc_id, self.version, self.op = pos, lines, doc_id, version, op
        self.size = sum(len(line) + 1 for line in lines)


HUNG_AFTER_S = 0.5
"""A request outstanding this long makes should_pause() ping the store (see there)."""


class IndexSink(PipelineFacts, Stage):
    name = "index"
    input_topic = "validated"
    output_topic = None
    kind = "batch"

    def __init__(self, settings: "Any", client: Elasticsearch | None = None):
        super().__init__(settings)
        self.cfg = settings.index
        self.taxonomy = taxonomy_from_settings(settings)  # labels of tags a person added
        self.policy = ConfidencePolicy.of(settings.validate_)  # the confidence reasons are judged again after review
        self._owns_client = client is None
        self.client = client if client is not None else make_client(self.cfg)
        self._json = self.client.transport.serializers.get_serializer("application/json")
        self._write_alias = write_alias(self.cfg)
        self._ensured = False
        self._lock = threading.Lock()
        self._down_reason: str | None = None
        self._last_probe = 0.0
        self._last_probe_ok = False
        self._busy_since: float | None = None  # when the batch being written started (None: no batch)
        self._recent = families.Recent()  # family fields of what this sink wrote, searchable or not yet

    # --- health -------------------------------------------------------------------------------------------
    def _probe(self) -> bool:
        """Ping the store at most every health_check_interval_s; clears the 'down' state when it answers."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_probe < self.cfg.health_check_interval_s:
                return self._last_probe_ok
            self._last_probe = now
        ok = bool(self.client.options(request_timeout=min(1.0, self.cfg.request_timeout_s)).ping())
        with self._lock:
            self._last_probe_ok = ok
            if ok:
                self._down_reason = None
        return ok

    def _mark_down(self, reason: str) -> None:
        with self._lock:
            if self._down_reason is None:
                log.warning("index store unavailable: %s", reason)
            self._down_reason = reason
            self._last_probe_ok = False
            self._last_probe = time.monotonic()

    def _mark_up(self) -> None:
        with self._lock:
            self._down_reason = None
            self._last_probe_ok = True

    def ready(self) -> bool:
        return self._probe()

    def should_pause(self) -> str | None:
        """'store_unavailable' while the store is down, or hung: a request outstanding for over half a second
        while a ping gets no answer either is the store being unavailable, not a slow batch (the one spelling of
        the pause reason, as StoreUnavailable.pause_reason). Half a second, under the runner's pause_after_s
        (1 s): a batch taken at the in-flight limit starts a little after the limit was reached, and a hung
        store must be named before the runner calls the stall `backpressure`."""
        if self._down_reason is None:
            busy = self._busy_since
            if busy is None or time.monotonic() - busy < HUNG_AFTER_S or self._probe():
                return None
            self._mark_down("no answer (a request has been waiting %.0fs)" % (time.monotonic() - busy))
        self._probe()
        return StoreUnavailable.pause_reason if self._down_reason else None

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    # --- batch --------------------------------------------------------------------------------------------
    def process_batch(self, items: Sequence[tuple[dict[str, Any], RecordContext]]
                      ) -> list[BaseException | StageResult]:
        self._busy_since = time.monotonic()
        try:
            return self._process_batch(items)
        finally:
            self._busy_since = None

    def _process_batch(self, items: Sequence[tuple[dict[str, Any], RecordContext]]
                       ) -> list[BaseException | StageResult]:
        results: list[BaseException | StageResult] = [None] * len(items)
        try:
            if not self._ensured:
                ensure_index(self.client, self.cfg)
                self._ensured = True
            planned = self._reconcile([value for value, _ctx in items])
        except (TransportError, ApiError) as e:
            err = self._request_error(e)
            INDEX_ITEMS.labels(result="retry").inc(len(items))
            return [err] * len(items)
        built: list[tuple[int, str, str, int, dict[str, Any] | None]] = []
        for pos, plan in enumerate(planned):
            try:
                if isinstance(plan, BaseException):
                    raise plan
                value, version_type, uploaded = plan
                built.append((pos, version_type, *document_from_validated(value, synonyms_of=self._synonyms)))
                if built[-1][4] is not None and uploaded:
                    built[-1][4]["uploaded_at"] = uploaded  # in _source (not mapped): the desk's time to publish
            except (KeyError, TypeError, ValueError) as e:
                self._reject(results, pos, e)
        for _pos, _vt, doc_id, _v, body in built:
            if body is None:  # deleted
                self._recent.forget(doc_id)
        # families first: the text vectors below read the alt text and tags propagation gives the batch's bodies
        rewrites = self._families([(doc_id, body) for _pos, _vt, doc_id, _v, body in built if body is not None],
                                  {doc_id for _pos, _vt, doc_id, _v, body in built if body is None})
        if self.cfg.embed_documents:
            built = self._embed(built, items, results)
            self._reembed(rewrites)
        if self.cfg.embed_images:
            from domain.vision.classifier import shared_classifier

            add_image_vectors([b[4] for b in built if b[4] is not None], shared_classifier(),
                              image_vector_model(self.cfg.vector_mode))
        prepared: list[_Prepared] = []
        for pos, version_type, doc_id, version, body in built:
            try:
                prepared.append(self._prepare(pos, doc_id, version, body, version_type))
            except (KeyError, TypeError, ValueError, SerializationError) as e:
                self._reject(results, pos, e)
        for chunk in self._chunks(prepared):
            self._send(chunk, results)
        for pos, _vt, doc_id, _v, body in built:  # remembered once written: a refused one is nobody's member
            if body is not None and not isinstance(results[pos], BaseException):  # None: written (or 409)
                self._recent.add(doc_id, body, body.get("version"))
        if rewrites and not any(isinstance(r, TransientError) for r in results):
            self._rewrite(rewrites)
        return results

    def _embed(self, built: list[tuple[int, str, str, int, dict[str, Any] | None]],
               items: Sequence[tuple[dict[str, Any], RecordContext]],
               results: list[BaseException | StageResult]) -> list[tuple[int, str, str, int, dict[str, Any] | None]]:
        """Give the batch's documents their text vectors. When the embedder fails (out of memory, a starved
        onnx/numpy pass), each document is a TransientError (retried with backoff) until its record's last attempt;
        then it is indexed without a vector, marked degraded `text_vector` (visible in search and the review
        app, counted in assetstream_degraded_total) and `assetstream index embed` gives it its vector later. Its
        metadata is complete, so its status stays what validate decided (issue 21)."""
        bodies = [b[4] for b in built if b[4] is not None]
        if not bodies:
            return built
        try:
            add_text_vectors(bodies, self._embedder(), vector_model(self.cfg.vector_mode))
            return built
        except Exception as exc:  # noqa: BLE001 - any failure of the embedder: retried, then marked degraded
            why = f"text embedder failed ({type(exc).__name__})"
            log.warning("%s: %s: %s", self.name, why, exc)
        kept = []
        for b in built:
            pos, body = b[0], b[4]
            if body is None:
                kept.append(b)
            elif final_attempt(items[pos][1], self.settings):
                degraded.mark(body, degraded.VECTOR_PART, why)
                DEGRADED.labels(self.name, degraded.VECTOR_PART, why).inc()
                kept.append(b)
            else:
                results[pos] = TransientError(why, reason="degraded_text_vector",
                                              details={degraded.VECTOR_PART: why})
        return kept

    def _reembed(self, rewrites: list[tuple[str, int, dict[str, Any], str]]) -> None:
        """New text vectors for the stored family members whose embedded text propagation changed (a propagated
        alt text or tag, or one taken back). When the embedder fails they keep the vector they had (it
        describes their own values; `assetstream index embed` does not see it as stale)."""
        stale = [body for _i, _v, body, old_text in rewrites if embedding_text(body) != old_text]
        if not stale:
            return
        try:
            add_text_vectors(stale, self._embedder(), vector_model(self.cfg.vector_mode))
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
            for body in stale:
                body["indexed_at"] = now  # a search process's vector cache reads what was indexed since
        except Exception as exc:  # noqa: BLE001 - the members are rewritten with their previous vectors
            log.warning("%s: re-embedding %d propagated family member(s) failed: %s", self.name, len(stale),
                        type(exc).__name__)

    # --- duplicate families (consumers/index/families.py) ----------------------------------------------------
    def _families(self, docs: list[tuple[str, dict[str, Any]]],
                  deleted: set[str] = frozenset()) -> list[tuple[str, int, dict[str, Any], str]]:
        """Family fields (and, with index.family_propagation, propagated alt text and tags) on the batch's bodies;
        the stored members to write again: (document id, its version, its new body, the text its stored vector
        was embedded from). A store error here leaves the bodies without family fields for now (the write
        itself reports the store's state)."""
        deleted = set(deleted) - {doc_id for doc_id, _ in docs}  # deleted, then indexed again in one batch
        if not docs and not deleted:
            return []
        latest = dict(docs)  # the same asset twice: its last body speaks for it
        try:
            changed, groups = families.assign_families(self.client, self._write_alias, latest, self._recent)
            # the members the batch's deleted documents leave behind (read before the deletes are sent)
            left = families.after_delete(self.client, self._write_alias, deleted, self._recent,
                                         self.settings.enrich.dedupe_max_distance)
            assigned = {c["asset_id"] for c in changed}
            changed += [c for c in left if c["asset_id"] not in assigned]
            if self.cfg.family_propagation:
                groups = [g for g in groups if len(g) > 1]
            else:
                groups = []
            wanted = {c["asset_id"] for c in changed} | {i for g in groups for i in g if i not in latest}
            stored = self.client.mget(index=self._write_alias, ids=sorted(wanted))["docs"] if wanted else []
        except (TransportError, ApiError) as e:
            log.warning("index: duplicate families not assigned in this batch: %s", type(e).__name__)
            return []
        found = {d["_id"]: d for d in stored if d.get("found") and d.get("_version") is not None}
        out: dict[str, dict[str, Any]] = {}
        for c in changed:
            if c["asset_id"] in found:
                out[c["asset_id"]] = families.apply(dict(found[c["asset_id"]]["_source"]), c)
        threshold = self.cfg.family_apply_threshold
        if threshold is None:
            threshold = self.settings.validate_.auto_apply_threshold
        for group in groups:
            members = {i: latest[i] if i in latest else out.get(i) or copy.deepcopy(found[i]["_source"])
                       for i in group if i in latest or i in found}
            propagate.family(members, self.cfg.family_decay, threshold)
            for i, body in members.items():
                if i not in latest and body != found[i]["_source"]:
                    out[i] = body
        for doc_id, body in docs:
            if body is not latest[doc_id]:
                families.apply(body, {k: latest[doc_id].get(k) for k in families.WRITTEN})
        for doc_id, body in out.items():
            self._recent.add(doc_id, body, int(found[doc_id]["_version"]))
        return [(i, int(found[i]["_version"]), body, embedding_text(found[i]["_source"])) for i, body in out.items()]

    def _rewrite(self, rewrites: list[tuple[str, int, dict[str, Any], str]]) -> None:
        """Write stored family members again at their own version (external_gte): a newer write wins (409)."""
        lines: list[bytes] = []
        for doc_id, version, body, _text in rewrites:
            lines += [self._dumps({"index": {"_index": self._write_alias, "_id": doc_id, "version": version,
                                             "version_type": "external_gte"}}), self._dumps(body)]
        try:
            resp = self.client.bulk(operations=lines, require_alias=True).body
        except (TransportError, ApiError) as e:
            log.warning("index: re-writing %d family member(s) failed: %s", len(rewrites), type(e).__name__)
            return
        for item in resp.get("items") or []:
            res = next(iter(item.values()))
            if int(res.get("status", 0)) >= 300 and int(res.get("status", 0)) != 409:
                log.warning("index: re-writing family member %s: %s", res.get("_id"), res.get("error"))

    # --- human edits win, again at the single writer ------------------------------------------------------
    def _reconcile(self, values: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, str | None] | BaseException]:
        """Each record with every human review of its asset on top, as (value, version_type, uploaded_at: when
        its bytes were first uploaded, document.first_upload).

        The sink is the one writer of an asset's document (one partition of `validated` = one member), so reading
        the indexed review and writing here cannot race. A record's own review (validate applied what enrich read)
        and the indexed one are merged, newest per field. A record that brings a newer review but an older version
        than the document (a decision emitted while a newer pipeline version was on its way) is applied to the
        document's own stored record instead, at the document's version (external_gte: the same version may be
        written again, with the review). Everything else keeps plain external versioning. A verdict recorded
        before reviews kept the image they were given on (`content_sha256`) is dated to the image the document
        holds, so a record of other bytes goes back to review (domain.review.image_changed)."""
        ids = []
        for value in values:
            try:
                if not is_deleted(value):
                    ids.append(document_id(value))
            except (KeyError, TypeError):
                pass  # _prepare reports it
        state = self._indexed(ids, ["version", "review", "hashes", "event_time", "uploaded_at"]) if ids else {}
        out: list[tuple[dict[str, Any], str, str | None] | BaseException] = []
        for value in values:
            try:
                out.append(self._reconcile_one(value, state))
            except (KeyError, TypeError, ValueError) as e:
                out.append(e)
        return out

    def _reconcile_one(self, value: dict[str, Any], state: dict[str, dict[str, Any]]
                       ) -> tuple[dict[str, Any], str, str | None]:
        if is_deleted(value) or value.get("status") == "deleted":
            return value, "external", None
        doc_id, version = document_id(value), int(asset_of(value)["version"])
        doc = state.get(doc_id)
        indexed_review = (doc or {}).get("review")
        merged = merge_reviews(indexed_review, value.get("review"))
        news = not same_review(merged, indexed_review)
        if merged and merged.get("status") and not merged.get("content_sha256"):
            # a verdict recorded before reviews kept their image: it is of the image the index holds now
            merged["content_sha256"] = content_sha256(doc)
        if doc is not None and int(doc.get("version") or -1) > version:
            if not news:
                return value, "external", None  # stale: the store answers 409, a success
            base = record_from_doc(self._indexed([doc_id], ["record", "thumbnail"]).get(doc_id) or {})
            if base is None:
                raise ValueError(f"{doc_id}: the indexed document has no stored record to apply the review to")
            value, version_type = base, "external_gte"
        else:
            version_type = "external_gte" if news and doc is not None and int(doc.get("version") or -1) == version \
                else "external"
        final = apply_review(value, merged, label_of=self.taxonomy.label_if_allowed, policy=self.policy) if merged \
            else value
        uploaded = first_upload(doc, final)
        state[doc_id] = {"version": int(asset_of(final)["version"]), "review": merged,
                         "hashes": {"sha256": content_sha256(final)}, "uploaded_at": uploaded}
        if news:
            INDEX_REVIEWS_APPLIED.inc()
        return final, version_type, uploaded

    def _indexed(self, ids: list[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        resp = self.client.mget(index=self._write_alias, ids=list(dict.fromkeys(ids)), source=fields)
        return {d["_id"]: d.get("_source") or {} for d in resp["docs"] if d.get("found")}

    @staticmethod
    def _reject(results: list[BaseException | StageResult], pos: int, e: BaseException) -> None:
        INDEX_ITEMS.labels(result="rejected").inc()
        results[pos] = PermanentError(f"cannot build the search document: {e!r}",
                                      reason="document_error", details={"error": repr(e)})

    def _synonyms(self, tag: str) -> list[str]:
        entry = self.taxonomy.entries.get(tag)
        return list(entry.synonyms) if entry is not None else []

    @staticmethod
    def _embedder() -> Any:
        from domain.textembed import shared_embedder

        return shared_embedder()

    def _prepare(self, pos: int, doc_id: str, version: int, body: dict[str, Any] | None,
                 version_type: str = "external") -> _Prepared:
        if version < 0:
            raise ValueError(f"external version must be >= 0, got {version}")
        meta = {"_index": self._write_alias, "_id": doc_id, "version": version, "version_type": version_type}
        if body is None:
            return _Prepared(pos, [self._dumps({"delete": meta})], doc_id, version, "delete")
        return _Prepared(pos, [self._dumps({"index": meta}), self._dumps(body)], doc_id, version, "index")

    def _dumps(self, obj: Any) -> bytes:
        out = self._json.dumps(obj)
        return out if isinstance(out, bytes) else out.encode()

    def _chunks(self, prepared: list[_Prepared]):
        chunk: list[_Prepared] = []
        size = 0
        for p in prepared:
            if chunk and (len(chunk) >= self.cfg.bulk_max_actions or size + p.size > self.cfg.bulk_max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(p)
            size += p.size
        if chunk:
            yield chunk

    def _request_error(self, e: Exception) -> TransientError:
        if isinstance(e, ApiError):
            status = e.status_code  # elasticsearch-py's ApiError has status_code, no .status
            reason = f"{status} {e.error}"
            if status in (401, 403):
                self._mark_down(f"store refused the credentials ({status})")
            elif status >= 500 or status == 429:
                self._mark_down(reason)
            retry_after = None
            try:
                retry_after = float(e.meta.headers.get("retry-after"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                pass
            return StoreUnavailable(f"index store answered {status}", reason=str(e.error),
                                    details={"status": status}, retry_after_s=retry_after)
        self._mark_down(type(e).__name__)
        self._ensured = False  # it may come back empty (a new cluster, a restored snapshot): re-check the aliases
        return StoreUnavailable(f"index store unreachable: {type(e).__name__}", reason="store_unavailable",
                                details={"error": type(e).__name__, "url_host": self.cfg.url.split("@")[-1]})

    def _send(self, chunk: list[_Prepared], results: list[BaseException | StageResult]) -> None:
        lines = [line for p in chunk for line in p.lines]
        params: dict[str, Any] = {"require_alias": True}
        if self.cfg.refresh != "false":
            params["refresh"] = self.cfg.refresh
        started = time.perf_counter()
        try:
            resp = self.client.bulk(operations=lines, **params).body
        except ApiError as e:
            INDEX_BULK_SECONDS.observe(time.perf_counter() - started)
            status = e.status_code
            if status in (400, 413) and len(chunk) > 1:
                # the request as a whole was refused (too large, or one action is invalid): bisect
                half = len(chunk) // 2
                self._send(chunk[:half], results)
                self._send(chunk[half:], results)
                return
            if status in _RETRYABLE_REQUEST_STATUS or status == 404:
                if status == 404:
                    self._ensured = False
                err: BaseException = self._request_error(e)
                INDEX_ITEMS.labels(result="retry").inc(len(chunk))
            else:
                err = PermanentError(f"index store refused the request: {status} {e.error}",
                                     reason=str(e.error), details={"status": status, "error": str(e.error)})
                INDEX_ITEMS.labels(result="rejected").inc(len(chunk))
            for p in chunk:
                results[p.pos] = err
            return
        except TransportError as e:  # connection refused/reset, timeout, TLS
            INDEX_BULK_SECONDS.observe(time.perf_counter() - started)
            err = self._request_error(e)
            INDEX_ITEMS.labels(result="retry").inc(len(chunk))
            for p in chunk:
                results[p.pos] = err
            return
        INDEX_BULK_SECONDS.observe(time.perf_counter() - started)
        self._mark_up()
        items = resp.get("items") or []
        if len(items) != len(chunk):  # never expected; never drop silently
            log.error("bulk answered %d items for %d actions", len(items), len(chunk))
        for i, p in enumerate(chunk):
            if i >= len(items):
                results[p.pos] = StoreUnavailable("bulk response is missing this item", reason="missing_item")
                INDEX_ITEMS.labels(result="retry").inc()
                continue
            results[p.pos] = self._item_result(p, next(iter(items[i].values())))

    def _item_result(self, p: _Prepared, res: dict[str, Any]) -> BaseException | None:
        status = int(res.get("status", 0))
        error = res.get("error")
        if 200 <= status < 300:
            INDEX_ITEMS.labels(result="deleted" if p.op == "delete" else "indexed").inc()
            return None
        etype = error.get("type", "") if isinstance(error, dict) else str(error or "")
        ereason = error.get("reason", "") if isinstance(error, dict) else ""
        if status == 409 and (not etype or "version_conflict" in etype):
            INDEX_ITEMS.labels(result="conflict").inc()  # the store already has this or a newer version
            return None
        if status == 404 and p.op == "delete" and not error:
            INDEX_ITEMS.labels(result="not_found").inc()  # already gone; the tombstone still holds the version
            return None
        details = {"status": status, "error_type": etype, "error_reason": ereason, "doc_id": p.doc_id,
                   "version": p.version, "op": p.op, "index": res.get("_index", "")}
        if isinstance(error, dict) and isinstance(error.get("caused_by"), dict):
            details["caused_by"] = f"{error['caused_by'].get('type')}: {error['caused_by'].get('reason')}"
        if status == 404 and "index_not_found" in etype:
            self._ensured = False  # the write alias vanished: recreate on the next batch
            INDEX_ITEMS.labels(result="retry").inc()
            return StoreUnavailable(f"write alias missing: {ereason}", reason=etype, details=details)
        if status in _RETRYABLE_STATUS or status >= 500:
            INDEX_ITEMS.labels(result="retry").inc()
            return StoreUnavailable(f"index store answered {status} {etype} for this item",
                                    reason=etype or str(status), details=details)
        INDEX_ITEMS.labels(result="rejected").inc()
        return PermanentError(f"index store rejected the document: {etype}: {ereason}", reason=etype or str(status),
                              details=details)
