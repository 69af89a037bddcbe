"""The enrich consumer group: preprocessed -> enriched.

Per asset: dedupe lookup (exact sha256 / near pHash) -> reuse, or run the configured tasks (tagging, alt_text,
rights; optional verifier) concurrently through `Caller` (bounded in-flight, rate limits, retries, one repair),
then an EnrichedAsset with provenance and cost. See docs/enrich.md.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Callable

from consumers.enrich.batching import BatchCollector, is_backfill, make_batch_journal
from consumers.enrich.calling import EVIDENCE_KEY, Caller, PriceTable, SpendLedger, TaskResult
from consumers.enrich.dedupe import (DedupeIndex, DedupeMatch, ElasticsearchDedupeIndex, Indexed, InFlight,
                                    InMemoryDedupeIndex, Look, clip_rule)
from consumers.enrich.plan import EnrichPlan
from consumers.enrich.results import make_result_cache, result_key
from consumers.enrich.providers import make_provider
from consumers.enrich.providers.base import Provider
from streams import metrics
from streams.errors import PermanentError, TransientError
from domain.events import TENANT_SEPARATOR
from domain.records import PipelineFacts, document_id, is_deleted
from streams.records import now_ms, stamp
from streams.stage import Output, RecordContext, Stage, final_attempt


log = logging.getLogger(__name__)

UNVERIFIED_CONFIDENCE_FACTOR = 0.8
"""Without a verifier, confidence = mean self-reported tag score x this: self-reported scores are not
calibrated, so an unverified answer never reaches a 0.85 auto-apply threshold on its own."""
VERIFY_MIN_SCORE = 0.5

PRE_FIELDS = ("image", "thumbnail", "exif", "place", "embedded", "ocr", "hashes", "signals")
DEDUPE_MODEL = {"exact": "sha256", "near": "phash", "clip": "keyframes"}
"""what a dedupe match compared (its provenance entry's model)"""
RIGHTS_FIELDS = ("licensing", "must_display_credit", "credit_text")
"""What the rights task answers: a near copy keeps its own (EnrichStage._own_rights)."""


def _same_model(a: TaskResult, b: TaskResult) -> bool:
    pa, pb = a.provenance or {}, b.provenance or {}
    return (pa.get("provider"), pa.get("model")) == (pb.get("provider"), pb.get("model"))


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


ENRICHMENT_DEFAULTS: dict[str, Any] = {
    "tags": [], "alt_text": None, "decorative": False, "caption": None, "title": None, "summary": None,
    "visible_text": None, "licensing": None, "must_display_credit": False, "credit_text": None, "confidence": 0.0,
    "raw_outputs": {}, "subject_evidence": None}


def normalise_enrichment(e: dict[str, Any]) -> dict[str, Any]:
    """An enrichment reused from the store in the Avro Enrichment shape (older documents may lack fields)."""
    out = {**ENRICHMENT_DEFAULTS, **{k: v for k, v in e.items() if k in ENRICHMENT_DEFAULTS and v is not None}}
    out["tags"] = [{"tag": str(t["tag"]), "score": float(t.get("score", 0.0)), "evidence": t.get("evidence")}
                   for t in out["tags"] if "tag" in t]
    out["raw_outputs"] = {str(k): str(v) for k, v in (out["raw_outputs"] or {}).items()}
    out["confidence"] = float(out["confidence"])
    return out


def video_keyframes(pre: dict[str, Any], most: int) -> list[tuple[str, bytes]]:
    """A video's keyframes other than its poster frame, as (label, JPEG) for one multi-image model call: at most
    `most`, spread evenly over the video when it has more; [] for an image."""
    video = pre.get("video") or {}
    poster = video.get("poster_offset_s")
    frames = [k for k in video.get("keyframes") or [] if k.get("thumbnail") and k.get("offset_s") != poster]
    if most <= 0 or not frames:
        return []
    if len(frames) > most:
        frames = [frames[round(i * (len(frames) - 1) / max(1, most - 1))] for i in range(most)]
    return [(f"Keyframe at {k['offset_s']:.1f} s", k["thumbnail"]) for k in frames]


def minimal_pre(value: dict[str, Any]) -> dict[str, Any]:
    return {"asset": value["asset"], **{k: None for k in PRE_FIELDS}, "stamp": value["stamp"]}


class EnrichStage(PipelineFacts, Stage):
    name = "enrich"
    input_topic = "preprocessed"
    output_topic = "enriched"
    kind = "io"

    def __init__(self, settings: "Any", provider_factory: Callable[[str, Any], Provider] | None = None,
                 dedupe: DedupeIndex | None = None):
        super().__init__(settings)
        self.enrich = settings.enrich
        self.prices = PriceTable(self.enrich)
        self.ledger = SpendLedger(self.enrich.budget_usd)
        self.plan = EnrichPlan.from_settings(settings)
        for spec in self.plan.specs:
            if not self.prices.has(spec):
                raise ValueError(f"enrich: no price for {spec.key}; add enrich.prices[{spec.key!r}] "
                                 "(budget and cost accounting need it)")
        factory = provider_factory or make_provider
        self.providers: dict[str, Provider] = {}
        for spec in self.plan.specs:
            if spec.provider not in self.providers:
                self.providers[spec.provider] = factory(spec.provider, settings)
        self.caller = Caller(self.enrich, self.providers, ledger=self.ledger, prices=self.prices)
        if dedupe is None:
            if self.enrich.dedupe == "elasticsearch":
                dedupe = ElasticsearchDedupeIndex(settings)
            elif self.enrich.dedupe == "memory":
                dedupe = InMemoryDedupeIndex(self.enrich.dedupe_max_distance, self.enrich.dedupe_lru_size,
                                             self.enrich.dedupe_confirm_distance, clip_rule(self.enrich))
        self.dedupe = dedupe
        self.in_flight = InFlight(self.enrich.dedupe_max_distance, self.enrich.dedupe_confirm_distance,
                                  clip_rule(self.enrich))  # copies enriched at the same moment in this worker
        self.results = make_result_cache(settings, getattr(dedupe, "client", None))
        # backfill through the providers' batch APIs (enrich.batch): live records stay synchronous
        self.batcher = BatchCollector.from_settings(
            self.enrich, self.providers, make_batch_journal(settings, getattr(dedupe, "client", None))) \
            if self.enrich.batch != "off" else None
        slots = min(settings.runner.concurrency or self.concurrency, settings.runner.max_in_flight)
        if self.batcher is not None and slots * len(self.plan.tasks) < self.enrich.batch_max_requests:
            log.warning("enrich.batch=backfill with %d record slots (runner.concurrency / max_in_flight): batches "
                        "will hold about %d of enrich.batch_max_requests=%d requests, and live records wait for "
                        "free slots; raise both to about %d", slots, slots * len(self.plan.tasks),
                        self.enrich.batch_max_requests, -(-self.enrich.batch_max_requests // len(self.plan.tasks)))
        self._identities = self.plan.identities()  # dedupe reuses only enrichments this plan would make
        # task results of records that failed part-way, so a runner retry does not pay twice
        self._partial: OrderedDict[tuple[str, str, str], TaskResult] = OrderedDict()

    # --- runner hooks -------------------------------------------------------------------------------------
    def should_pause(self) -> str | None:
        if self.ledger.exhausted:
            return "budget"
        return None

    @property
    def spent_usd(self) -> float:
        return self.ledger.spent_usd

    async def aclose(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()
        for p in self.providers.values():
            try:
                await p.aclose()
            except Exception:  # closing must not fail shutdown
                log.debug("provider close failed", exc_info=True)
        if self.dedupe is not None:
            await self.dedupe.aclose()

    def close(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                asyncio.run(self.aclose())
            except Exception:
                log.debug("enrich close failed", exc_info=True)

    # --- processing ---------------------------------------------------------------------------------------
    async def aprocess(self, value: dict[str, Any], ctx: RecordContext) -> Output | None:
        if is_deleted(value):  # no copy may be linked to it from this worker's memory any more
            asset = value["asset"]
            self.in_flight.forget(asset["asset_id"], asset.get("tenant"))
            if self.dedupe is not None:
                self.dedupe.forget(asset["asset_id"], asset.get("tenant"))
            return Output(value=self._record(minimal_pre(value), None, [], 0.0))
        pre = {**{k: None for k in PRE_FIELDS}, **value}  # the thumbnail rides on: the index keeps it for review
        if (pre.get("video") or {}).get("data") is not None:  # the file was for the model: not on to later topics
            pre["video"] = {**pre["video"], "data": None}
        asset = value["asset"]
        hashes = value.get("hashes") or {}
        indexed = await self.dedupe.indexed(document_id(value)) if self.dedupe is not None else None
        if self._stale(asset, indexed):
            return None
        review = indexed.review if indexed is not None else None

        look = Look.of(value, self._identities) if self.dedupe is not None and hashes else None
        larger_than: DedupeMatch | None = None  # a copy linked to, not reused (a smaller one; other text inputs)
        if self.dedupe is not None and hashes and asset.get("event_type") != "reprocess":
            match = await self.dedupe.lookup(hashes.get("sha256"), hashes.get("phash"), hashes.get("phash_bands"),
                                             tenant=asset.get("tenant"), exclude_asset_id=asset["asset_id"],
                                             dhash_hex=hashes.get("dhash"), look=look)
            if match is None or not match.reusable:  # a copy being enriched in this worker right now: its answer
                waited = await self.in_flight.wait(hashes.get("sha256"), hashes.get("phash"),  # not a second call
                                                   hashes.get("phash_bands"), tenant=asset.get("tenant"),
                                                   exclude_asset_id=asset["asset_id"], dhash_hex=hashes.get("dhash"),
                                                   look=look)
                if waited is not None and (match is None or waited.reusable):
                    match = waited
            if match is not None and match.reusable:
                metrics.DEDUPE.labels(match.kind).inc()
                enrichment, prov, cost, degraded = normalise_enrichment(match.enrichment), match.provenance, 0.0, {}
                if match.own_rights and "rights" in self.plan.tasks:
                    enrichment, prov, cost, degraded = await self._own_rights(value, ctx, enrichment, prov)
                prov = [*prov, {
                    "task": "dedupe", "provider": "dedupe", "model": DEDUPE_MODEL[match.kind],
                    "model_version": None, "prompt_id": "dedupe", "prompt_version": match.kind,
                    "prompt_hash": "", "request_id": match.asset_id, "timestamp": now_ms(), "input_tokens": 0,
                    "output_tokens": 0, "latency_ms": 0.0, "cost_usd": 0.0, "reused_from": None}]
                link, distance = self._link(match, asset, value)
                return Output(value=self._record(pre, enrichment, prov, cost, duplicate_of=link,
                                                 duplicate_distance=distance, review=review, degraded=degraded))
            larger_than = match
            metrics.DEDUPE.labels("miss" if match is None else match.refused or "larger").inc()
            claim = self.in_flight.claim(asset["asset_id"], hashes.get("sha256"), hashes.get("phash"),
                                         hashes.get("phash_bands"), tenant=asset.get("tenant"),
                                         dhash=hashes.get("dhash"), look=look)
        else:
            claim = None
        reusable: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        try:
            final = final_attempt(ctx, self.settings)
            results = await self._run_tasks(value, final=final, attempt=ctx.attempt if ctx is not None else 1)
            enrichment = self._merge(results)
            provenance = [r.provenance for r in results.values()]
            cost = sum(r.cost_usd for r in results.values())
            degraded = {name: r.degraded for name, r in results.items() if r.degraded}
            for name, why in degraded.items():
                metrics.DEGRADED.labels(self.name, name, why).inc()
            # a degraded answer (or one made from a degraded preprocess) is never reused for another copy
            if self.dedupe is not None and hashes and not degraded and not value.get("degraded"):
                await self.dedupe.remember(asset["asset_id"], hashes.get("sha256"), hashes.get("phash"),
                                           hashes.get("phash_bands"), enrichment, provenance,
                                           tenant=asset.get("tenant"), dhash=hashes.get("dhash"), look=look)
                reusable = (enrichment, provenance)
            link, distance = self._link(larger_than, asset, value) if larger_than is not None else (None, None)
            return Output(value=self._record(pre, enrichment, provenance, cost, review=review, degraded=degraded,
                                             duplicate_of=link, duplicate_distance=distance))
        finally:  # copies waiting for this answer get it, or (failed, degraded) ask on their own
            self.in_flight.resolve(claim, *(reusable or (None, None)))

    async def _own_rights(self, value: dict[str, Any], ctx: RecordContext | None, enrichment: dict[str, Any],
                          provenance: list[dict[str, Any]]
                          ) -> tuple[dict[str, Any], list[dict[str, Any]], float, dict[str, str]]:
        """A near copy's reused enrichment with this asset's own rights answer: credit, licence and usage come from
        each upload's embedded metadata, which a web copy or a crop often lacks (trial 9: a copy without XMP was
        `restricted` with the original's credit when it came second, `unknown` when it came first). Only the same
        bytes (sha256) carry the same metadata, and they too ask when their rights text differs (another declared
        licence: `DedupeMatch.own_rights`). A rights answer that failed leaves the fields empty, never the match's.
        Returns (enrichment, provenance, cost, degraded)."""
        results = await self._run_tasks(value, final=final_attempt(ctx, self.settings),
                                        attempt=ctx.attempt if ctx is not None else 1, only=("rights",))
        own = self._merge(results)
        rights = results["rights"]
        enrichment = {**enrichment, **{k: own[k] for k in RIGHTS_FIELDS},
                      "raw_outputs": {**(enrichment.get("raw_outputs") or {}), "rights": rights.raw_text}}
        provenance = [*(p for p in provenance if p.get("task") != "rights"), rights.provenance]
        if not rights.degraded:
            return enrichment, provenance, rights.cost_usd, {}
        metrics.DEGRADED.labels(self.name, "rights", rights.degraded).inc()
        return enrichment, provenance, rights.cost_usd, {"rights": rights.degraded}

    @staticmethod
    def _link(match: DedupeMatch, asset: dict[str, Any], value: dict[str, Any]) -> tuple[str | None, int | None]:
        """(duplicate_of, duplicate_distance) of a copy: the match's family canonical member, none when that is
        this asset (a rerun of the canonical member finds its own copies: linking to them would make a loop); the
        distance only when the link names the matched asset itself."""
        link = match.link
        if link and link.startswith(f"{asset.get('tenant')}{TENANT_SEPARATOR}"):
            link = link.split(TENANT_SEPARATOR, 1)[1]  # an asset id, as every other link (the store's
            # family ids are document ids: scoped for a tenant's assets)
        link = None if link in (asset["asset_id"], document_id(value)) else link
        return link, (match.distance if link == match.asset_id else None)

    def _stale(self, asset: dict[str, Any], indexed: Indexed | None) -> bool:
        """An event older than the version already indexed is not enriched (no model call) and produces nothing:
        the index would refuse its result anyway (external versioning), and a superseded event is not an error
        that needs a person, so it is no dead letter either. Counted in assetstream_stale_events_total and
        logged; an equal version (a replay, a reprocess) is enriched as usual."""
        version = asset.get("version")
        if indexed is None or indexed.version is None or version is None or int(version) >= indexed.version:
            return False
        metrics.STALE_EVENTS.labels(self.name).inc()
        log.debug("%s: %s version %s is older than the indexed version %s: skipped (no model call)", self.name,
                 asset.get("asset_id"), version, indexed.version)
        return True

    def _record(self, pre: dict[str, Any], enrichment: dict[str, Any] | None, provenance: list[dict[str, Any]],
                cost: float, *, duplicate_of: str | None = None, duplicate_distance: int | None = None,
                review: dict[str, Any] | None = None, degraded: dict[str, str] | None = None) -> dict[str, Any]:
        return {"pre": pre, "enrichment": enrichment, "provenance": provenance, "cost_usd": float(cost),
                "duplicate_of": duplicate_of, "duplicate_distance": duplicate_distance, "stamp": stamp(self.name),
                "review": review, "degraded": degraded or {}}

    GEMINI_VIDEO_TYPES = {"MP4": "video/mp4", "MOV": "video/mov", "WEBM": "video/webm"}
    """containers Gemini takes as video input, with the mime types its API lists (no Matroska)"""

    def _video_input(self, value: dict[str, Any]) -> tuple[str, bytes] | None:
        """(mime type, file) when the video itself goes to Gemini (enrich.gemini_video, the record carries it,
        within gemini_video_max_bytes, a container Gemini takes), else None (its keyframes are sent)."""
        video = value.get("video") or {}
        data, mime = video.get("data"), self.GEMINI_VIDEO_TYPES.get(str(video.get("container") or "").upper())
        if not (self.enrich.gemini_video and self.enrich.send_image and data and mime) \
                or len(data) > self.enrich.gemini_video_max_bytes:
            return None
        return mime, data

    async def _run_tasks(self, value: dict[str, Any], final: bool = True, attempt: int = 1,
                         only: tuple[str, ...] | None = None) -> dict[str, TaskResult]:
        """Every planned task's answer: from the result cache when the same question was asked before (same
        image, task, model, prompt and rendered context), else from the model (and then cached). A degraded
        answer (the provider's template fallback) raises TransientError unless this is the `final` attempt
        (the record is retried; finished tasks are kept); it is never cached. On the `final` attempt a provider
        call that still fails transiently is a degraded task without an answer (Caller.run's `degrade_after`):
        the record goes on, the other tasks are not cancelled. `only`: just these planned tasks."""
        asset = value["asset"]
        thumb = value.get("thumbnail") or {}
        image = thumb.get("data") if self.enrich.send_image else None
        media_type = thumb.get("media_type") or "image/jpeg"
        extra = video_keyframes(value, self.enrich.video_max_images - 1) if image else []
        jobs = {name: task for name, task in self.plan.tasks.items() if only is None or name in only}
        video = self._video_input(value)
        sends = {name: video if video is not None and task.spec.provider == "gemini" else None
                 for name, task in jobs.items()}  # Gemini takes the video itself; the others its keyframes
        context = {"preprocessed": value, "vocabulary": self.plan.vocabulary,
                   "taxonomy_version": self.plan.taxonomy_version, "parents": self.plan.parents}
        key_base = (asset["asset_id"], str(asset.get("event_id")))
        results: dict[str, TaskResult] = {}
        prompts = {name: self.plan.render(task, value) for name, task in jobs.items()}
        keys = {name: result_key(name, task.spec, prompts[name], image,
                                 [(f"video {sends[name][0]}", sends[name][1])] if sends[name] else extra,
                                 getattr(self.caller.providers.get(task.spec.provider), "answer_revision", ""))
                for name, task in jobs.items()}
        if self.results is not None:
            hits = await self.results.get_many(list(keys.values()))
            results.update({name: hits[k] for name, k in keys.items() if k in hits})
        pending: dict[asyncio.Task, str] = {}
        batcher = self.batcher if self.batcher is not None and is_backfill(asset) else None
        for name, task in jobs.items():
            if name in results:
                continue
            cached = self._partial.get((*key_base, name))
            if cached is not None:
                results[name] = cached
                continue
            coro = self.caller.run(task.spec, prompts[name], image=image, media_type=media_type, context=context,
                                   batcher=batcher if batcher is not None and batcher.supports(task.spec.provider)
                                   else None, extra_images=[] if sends[name] else extra, video=sends[name],
                                   degrade_after=attempt if final else None)
            pending[asyncio.ensure_future(coro)] = name
        error: BaseException | None = None
        if pending:
            # every task runs to its end even when another fails: a request already sent is paid for, so its
            # answer is kept for the retry (cancelling it paid twice: once now, once on the next attempt)
            done, _ = await asyncio.wait(pending)
            for t in done:
                name = pending[t]
                if t.exception() is not None:
                    exc = t.exception()
                    if error is None or (isinstance(exc, PermanentError) and not isinstance(error, PermanentError)):
                        error = exc
                else:
                    results[name] = t.result()
        bad = {name: r.degraded for name, r in results.items() if r.degraded}
        if error is None and bad and not final:
            for name in bad:
                results.pop(name)
            error = TransientError(f"degraded answer: {bad}", reason="degraded_answer", details=bad)
        if error is not None:
            if not isinstance(error, PermanentError):  # keep finished tasks for the runner's retry
                for name, r in results.items():
                    self._partial[(*key_base, name)] = r
                while len(self._partial) > 4096:
                    self._partial.popitem(last=False)
            else:
                self._drop_partial(key_base, jobs)
            raise error
        self._drop_partial(key_base, jobs)
        if "verify" in results:
            results["verify"].provenance["task"] = "verify"
        if self.results is not None:
            for name in pending.values():  # newly paid answers only, never a degraded one
                if not results[name].degraded and not value.get("degraded"):
                    await self.results.put(keys[name], results[name], asset["asset_id"])
        return {name: results[name] for name in jobs}  # stable order: tagging, alt_text, rights, verify

    def _drop_partial(self, key_base: tuple[str, str], jobs: dict[str, Any]) -> None:
        for name in jobs:
            self._partial.pop((*key_base, name), None)

    def _merge(self, results: dict[str, TaskResult]) -> dict[str, Any]:
        """The enrichment of the tasks that answered: a task whose call failed on every attempt (degraded, no
        answer) writes no field and no raw output; its fields keep their empty defaults, nothing is invented."""
        results = {name: r for name, r in results.items() if r.answered}
        e: dict[str, Any] = {**ENRICHMENT_DEFAULTS, "tags": [], "raw_outputs": {}}
        for name, r in results.items():
            e["raw_outputs"][name] = r.raw_text
        if "tagging" in results:
            tags = sorted(results["tagging"].data.get("tags", []), key=lambda t: -float(t["score"]))
            origin = results["tagging"].data.get(EVIDENCE_KEY) or {}  # what backs each tag, when the provider says
            e["tags"] = [{"tag": str(t["tag"]), "score": float(t["score"]), "evidence": origin.get(f"tags.{t['tag']}")}
                         for t in tags]
        if "alt_text" in results:
            d = results["alt_text"].data
            e.update(alt_text=d["alt_text"], decorative=bool(d["decorative"]), caption=d["caption"],
                     title=d["title"], summary=d["summary"], visible_text=d["visible_text"],
                     subject_evidence=(d.get(EVIDENCE_KEY) or {}).get("alt_text"))
        if "rights" in results:
            d = results["rights"].data
            e.update(licensing=d["licensing"], must_display_credit=bool(d["must_display_credit"]),
                     credit_text=d.get("credit_text"))
        e["confidence"] = round(self._confidence(results), 4)
        return e

    @staticmethod
    def _confidence(results: dict[str, TaskResult]) -> float:
        if "tagging" not in results:
            return 0.0
        tags = results["tagging"].data.get("tags", [])
        if "verify" in results and _same_model(results["tagging"], results["verify"]):
            pass  # the tagger asked again is no second opinion (it agrees with itself): unverified
        elif "verify" in results:
            first = {t["tag"] for t in tags if float(t["score"]) >= VERIFY_MIN_SCORE}
            second = {t["tag"] for t in results["verify"].data.get("tags", []) if float(t["score"]) >= VERIFY_MIN_SCORE}
            return _jaccard(first, second)
        if not tags:
            return 0.0
        return UNVERIFIED_CONFIDENCE_FACTOR * sum(float(t["score"]) for t in tags) / len(tags)
