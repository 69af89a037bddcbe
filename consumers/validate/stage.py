"""The validate consumer group: `enriched` -> `validated`.

For each EnrichedAsset:

1. schema: the model output is checked with jsonschema (consumers/validate/schema.py). A violation that no
   rule can repair makes the record `rejected` (default) or a PermanentError -> dead letter
   (settings.validate.schema_violation), with the failing JSON paths.
2. fields: every output field is taken from the highest-priority source that has a value,
   human (asset.human_fields, declared licence) > embedded (the file's XMP/IPTC) > model > rule.
   A model value that lost to a person's is kept in `model_suggestions`; `field_sources` says who won.
3. alt text rules (consumers/validate/alttext.py) on model alt text; unfixable problems -> review.
4. tags: human and embedded keywords and model tags mapped onto the controlled vocabulary; parents implied;
   unknown model tags -> suggested_tags (or dropped); denied tags never pass.
5. rights: usage_flag from the declared licence, XMP/IPTC and the model's rights summary (rights.py).
6. policy: confidence thresholds, faces, NSFW, rights and alt-text problems -> auto_applied | needs_review |
   rejected, each with human-readable reasons. Confidence is calibrated per field (consumers/validate/calibration.py):
   the asset is auto-applied only when every field a model or rule wrote is likely enough to be accepted
   (the record has one status, so the decision is per asset); `field_confidence` records each field's value.
   Per field for tags: a model tag whose calibrated confidence is under `tag_publish_min` is held in
   `tag_suggestions` (shown in review, never published) and does not hold the asset back.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from consumers.validate import alttext, rights
from consumers.validate.calibration import GRAPHIC, Calibration, curve_for, evidence_of, model_key, ocr_confidence
from consumers.validate.schema import PROMPT_TASKS, Violation, check_enrichment, check_raw_outputs
from domain.taxonomy import Taxonomy, taxonomy_from_settings
from streams.errors import PermanentError
from streams.metrics import DECISIONS
from domain.records import CUT_MARK, MAX_FILE_TEXT, MAX_RIGHTS_TEXT, PipelineFacts, duplicate_reason, is_deleted, rights_text_cut
from domain.confidence import CALIBRATED, UNCALIBRATED, ConfidencePolicy, below_reason, tags_below_reason, \
    threshold_reason
from domain.review import apply_review
from streams.records import stamp
from streams.stage import Output, RecordContext, Stage

log = logging.getLogger(__name__)

SOURCE_RANK = {"human": 0, "embedded": 1, "model": 2, "rule": 3}
STATUS_HEADER = "assetstream-status"


def _has(value: Any) -> bool:
    return value is not None and (not isinstance(value, str) or value.strip() != "")


def _fmt(x: float) -> str:
    return f"{x:.2f}"


class _Decision:
    """One record's validation in progress: its parts, the model output in use, and what the steps decided."""

    def __init__(self, value: dict[str, Any]):
        self.value = value
        self.pre = value["pre"]
        self.asset = self.pre["asset"]
        self.human = self.asset.get("human_fields") or {}
        self.emb = self.pre.get("embedded") or {}
        self.model: dict[str, Any] = {}
        self.use_model = False  # decided once, by the schema step
        self.reasons: list[str] = []
        self.review: list[str] = []
        self.rejected: list[str] = []
        self.sources: dict[str, str] = {}
        self.suggestions: dict[str, str] = {}
        self.confidence: dict[str, float] = {}
        self.evidence: dict[str, str] = {}  # field -> the calibration curve (evidence source) behind its confidence
        self.calibration: str | None = None
        self.held_tags: list[dict[str, Any]] = []  # weak model tags: suggestions for review, never published
        self.pending_tags: list[dict[str, Any]] = []  # tags under auto-apply: held if the asset is auto-applied

    def m(self, field: str) -> Any:
        return self.model.get(field) if self.use_model else None

    def pick(self, field: str, candidates: list[tuple[str, Any]]) -> Any:
        """The first candidate with a value wins; a model value that lost to a person's or the file's is kept."""
        chosen_src, chosen = None, None
        for src, val in candidates:
            if _has(val):
                chosen_src, chosen = src, val
                break
        if chosen_src is None:
            return None
        self.sources[field] = chosen_src
        model_val = next((v for s, v in candidates if s == "model"), None)
        if chosen_src in ("human", "embedded") and _has(model_val) and model_val != chosen:
            self.suggestions[field] = str(model_val)
        return chosen


DEGRADED_REASON_PREFIX = "degraded: "
"""The review reason of a degraded part; dedupe (consumers/enrich/dedupe.py) never reuses an asset indexed with it."""


class ValidateStage(PipelineFacts, Stage):
    name = "validate"
    input_topic = "enriched"
    output_topic = "validated"
    kind = "cpu"
    embeds_input = "enriched"  # the input record, unchanged: its Avro bytes are reused

    def __init__(self, settings, taxonomy: Taxonomy | None = None):
        super().__init__(settings)
        self.cfg = settings.validate_
        self.taxonomy = taxonomy or taxonomy_from_settings(settings)
        cal = self.cfg.calibration
        self.calibration = None if cal in (None, "", "off") else Calibration.load(None if cal == "bundled" else cal)
        self.policy = ConfidencePolicy.of(self.cfg)
        prompts_dir = settings.enrich.prompts_dir  # the prompts enrich used: their schemas check its output
        self._prompts = {"prompts_dir": Path(prompts_dir)} if prompts_dir else {}

    # --- Stage API --------------------------------------------------------------------------------------
    def process(self, value: dict[str, Any], ctx: RecordContext | None = None) -> Output:
        # human edits win: what people decided (enrich read it from the index) goes on top of everything
        record = apply_review(self.validate(value), value.get("review"), label_of=self.taxonomy.label_if_allowed,
                              policy=self.policy)
        DECISIONS.labels(status=record["status"], usage_flag=record["usage_flag"]).inc()
        return Output(value=record, headers={STATUS_HEADER: record["status"]})

    # --- the decision -----------------------------------------------------------------------------------
    def validate(self, value: dict[str, Any]) -> dict[str, Any]:
        """EnrichedAsset dict -> ValidatedAsset dict (pure; no metrics). Raises PermanentError only when
        settings.validate.schema_violation == 'dead_letter' and the model output breaks its schema."""
        return self.decide(value)[0]

    def decide(self, value: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """`validate` and what kept the record from `auto_applied`: its rejection and review reasons, in the order
        `reasons` starts with them (empty for an auto-applied or deleted record). For reports (bench/quality.py
        --details): the record's `reasons` mixes them with the informational ones."""
        if is_deleted(value):
            return self._deleted(value), []
        d = _Decision(value)
        self._check_schema(d)                     # 1. schema
        fields = self._texts(d)                   # 2. fields by source priority, 3. alt text
        tags, suggested, denied_raw = self._tags(d.human, d.emb, (d.m("tags") or []), d.reasons)  # 4. tags
        fields.update(self._rights(d))            # 5. rights
        self._policy(d, fields, tags)             # 6. policy
        self._degraded(d)                         # 7. degraded parts: never auto-applied
        self._settle_pending_tags(d, tags)        # 8. per-field tags: weak ones wait as suggestions
        status = "rejected" if d.rejected else "needs_review" if d.review else "auto_applied"
        held_by = d.rejected + d.review if status != "auto_applied" else []
        reasons = held_by + d.reasons
        reasons.append(f"taxonomy {self.taxonomy.version}")
        d.sources["usage_flag"] = "rule"
        enriched = value
        if denied_raw and self.cfg.scrub_denied_from_raw:
            enriched = _scrub(value, self.taxonomy)
        return {
            "enriched": enriched, "status": status, "reasons": reasons, **fields,
            "tags": tags, "suggested_tags": suggested, "field_sources": d.sources,
            "model_suggestions": d.suggestions, "taxonomy_version": self.taxonomy.version,
            "stamp": stamp(self.name), "review": None, "field_confidence": d.confidence,
            "calibration": d.calibration, "tag_suggestions": d.held_tags, "field_evidence": d.evidence,
        }, held_by

    @staticmethod
    def _degraded(d: "_Decision") -> None:
        """A part that timed out or failed on every attempt (preprocess OCR, an enrich task's template answer)
        left the metadata incomplete: the asset goes to review, reason "degraded: <why>" (issue 21)."""
        parts = {**(d.pre.get("degraded") or {}), **(d.value.get("degraded") or {})}
        d.review[:0] = [DEGRADED_REASON_PREFIX + (why if why.startswith(part) else f"{part}: {why}")
                        for part, why in sorted(parts.items())]

    def _check_schema(self, d: "_Decision") -> None:
        enr = d.value.get("enrichment")
        if enr is None:
            d.review.append("no model output to validate (enrichment missing)")
            return
        violations = check_enrichment(enr, self.cfg.alt_text_max_chars)
        checked: list[str] = []
        if self.cfg.prompt_schemas:
            more, checked = check_raw_outputs(enr, d.value.get("provenance") or [], **self._prompts)
            violations += more
        hard = [v for v in violations if not v.fixable]
        if hard:
            self._schema_failure(d.asset, hard, d.rejected)
            return
        d.model, d.use_model = enr, bool(enr)
        for v in violations:
            d.reasons.append(f"schema: {v.path} {v.keyword} ({v.message[:80]}); left to the alt-text rule")
        if checked:
            d.reasons.append("model output matches its prompt schemas: " + ", ".join(checked))
        if self.cfg.prompt_schemas:  # a prompt version validate has no schema for is not checked: say so
            raw = enr.get("raw_outputs") or {}
            produced = {f"{p.get('task')}@{p.get('prompt_version')}" for p in d.value.get("provenance") or []
                        if p.get("task") in PROMPT_TASKS and p.get("task") in raw and p.get("prompt_version")}
            for name in sorted(produced - set(checked)):
                d.review.append(f"model output of {name} not checked: no output schema for that prompt version here "
                                "(validate runs other prompts than enrich?)")

    def _texts(self, d: "_Decision") -> dict[str, Any]:
        human, emb, m = d.human, d.emb, d.m
        title = d.pick("title", [("human", human.get("title")), ("embedded", emb.get("title")), ("model", m("title"))])
        caption = d.pick("caption", [("human", human.get("caption")), ("embedded", emb.get("description")),
                                     ("model", m("caption"))])
        summary = d.pick("summary", [("human", human.get("description")), ("embedded", emb.get("ext_description")),
                                     ("model", m("summary"))])
        ocr = d.pre.get("ocr") or {}
        ocr_text = None
        if ocr.get("text") and not ocr.get("skipped"):
            conf = ocr.get("mean_confidence")
            conf = None if conf is None else (conf / 100.0 if conf > 1 else conf)
            if conf is None or conf >= self.cfg.ocr_min_confidence:
                ocr_text = alttext.meaningful_text(ocr["text"])
        if ocr_text and m("visible_text") == "":
            # the model had the OCR text and found nothing in it worth quoting (noise such as "6 @96")
            d.reasons.append("OCR text not quoted: the describer found no words in it clear enough to quote (the "
                             "text read from the image looked like misreads or noise)")
            ocr_text = None
        for name, value in (("caption", caption), ("summary", summary)):
            if d.sources.get(name) == "embedded" and rights_text_cut(value, MAX_FILE_TEXT):
                d.reasons.append(f"note: the file's {name} is longer than {MAX_FILE_TEXT} characters and was cut "
                                 f"there (it ends in \"{CUT_MARK}\"); the original file keeps the whole text")
        visible_text = d.pick("visible_text", [("model", m("visible_text")), ("rule", ocr_text)])
        alt, decorative = self._alt_text(human, emb, d.model if d.use_model else None, visible_text or ocr_text,
                                         [caption, title, summary], d.sources, d.suggestions, d.reasons, d.review,
                                         video=d.pre.get("media_type") == "video")
        if alttext.repeats(alt, caption) and {d.sources.get("alt_text"), d.sources.get("caption")} != {"human"}:
            d.review.append("caption repeats the alt text word for word: a screen reader reads it twice (the caption "
                            "should add to the alt text, or the alt text be shorter)")
        return {"title": title, "alt_text": alt, "decorative": decorative, "caption": caption, "summary": summary,
                "visible_text": visible_text}

    def _rights(self, d: "_Decision") -> dict[str, Any]:
        cfg, human, emb, m = self.cfg, d.human, d.emb, d.m
        decision = rights.decide(rights.evidence_of(d.asset, emb), model_licensing=m("licensing"),
                                 must_display_credit=bool(m("must_display_credit")),
                                 commercial_use=cfg.commercial_use, owned_markers=cfg.owned_license_markers)
        d.reasons.extend(decision.reasons)
        d.review.extend(decision.review)  # usage terms nobody could classify: a person reads them
        for name, label in (("copyright", "copyright notice"), ("usage_terms", "usage terms"),
                            ("instructions", "special instructions")):
            if rights_text_cut(emb.get(name)):
                d.reasons.append(f"note: the file's {label} is longer than {MAX_RIGHTS_TEXT} characters and was cut "
                                 f"there (it ends in \"{CUT_MARK}\"); the original file keeps the whole text")
        licensing = d.pick("licensing", [("human", d.asset.get("declared_license")),
                                         ("embedded", emb.get("usage_terms") or emb.get("license_url")),
                                         ("model", m("licensing") if m("licensing") not in ("unknown", "") else None)])
        credit_text = d.pick("credit_text", [("human", human.get("credit_line")), ("embedded", emb.get("credit_line")),
                                             ("model", m("credit_text"))])
        if decision.flag == "credit_required" and not _has(credit_text):
            creator = human.get("creator") or emb.get("creator")
            if _has(creator):
                credit_text = f"Photo: {creator}"
                d.sources["credit_text"] = "rule"
                d.reasons.append(f"credit text built from the creator \"{creator}\"")
            else:
                d.review.append("credit required but no credit line or creator is known")
        return {"usage_flag": decision.flag, "licensing": licensing, "credit_text": credit_text}

    def _policy(self, d: "_Decision", fields: dict[str, Any], tags: list[dict[str, Any]]) -> None:
        cfg, review = self.cfg, d.review
        if d.use_model:
            key = model_key(d.value.get("provenance"))
            curves = self.calibration.for_model(key) if self.calibration else None
            if curves is not None:
                self._calibrated(d, fields, tags, curves)
            else:
                if self.calibration is not None:
                    d.reasons.append(f"confidence not calibrated: calibration {self.calibration.version} has no "
                                     f"curves for {key or 'this answer'}")
                self._threshold(d, float(d.model.get("confidence") or 0.0), UNCALIBRATED)
        signals = d.pre.get("signals") or {}
        faces = int(signals.get("face_count") or 0)
        if faces > 0 and cfg.faces_need_review:
            review.append(f"{faces} face{'s' if faces != 1 else ''} detected: people in image need consent review")
        nsfw = signals.get("nsfw_score")
        if nsfw is not None:
            if cfg.nsfw_reject_threshold is not None and nsfw >= cfg.nsfw_reject_threshold:
                d.rejected.append(f"NSFW score {_fmt(nsfw)} >= {_fmt(cfg.nsfw_reject_threshold)}: rejected")
            elif nsfw >= cfg.nsfw_review_threshold:
                review.append(f"NSFW score {_fmt(nsfw)} >= {_fmt(cfg.nsfw_review_threshold)}: sensitive content review")
        usage_flag, credit_text = fields["usage_flag"], fields["credit_text"]
        if usage_flag == "restricted":
            review.append("licence restricts use: a person must confirm the intended use is allowed")
        elif usage_flag == "unknown" and cfg.unknown_rights_need_review and not any(
                r.startswith("usage terms not understood") for r in review):
            review.append("no licence evidence: rights must be confirmed before use")
        elif usage_flag == "credit_required" and cfg.credit_required_needs_review and _has(credit_text):
            review.append(f"credit must be displayed: check the credit text \"{credit_text or ''}\"")
        if d.value.get("duplicate_of"):
            dist = d.value.get("duplicate_distance")
            exact = any(p.get("task") == "dedupe" and p.get("prompt_version") == "exact"
                        for p in d.value.get("provenance") or [])
            clip = d.pre.get("media_type") == "video" and not exact  # a video: linked by its keyframes
            d.reasons.append(duplicate_reason(d.value["duplicate_of"], dist, clip=clip))
        cut = (d.pre.get("video") or {}).get("truncated_by")
        if cut == "max_keyframes":  # more shots than keyframes: some were not read nor described
            d.reasons.append("note: more scene changes than keyframes (the preprocess.video_max_keyframes cap): "
                             "some shots of the video were not looked at (their text not read, not described)")
        elif cut:  # the run's rows and the review app's notes say what the keyframes may have missed
            d.reasons.append(f"note: keyframe selection stopped early (the preprocess.video_{cut} cap): later parts "
                             "of the video were not looked at")

    def _threshold(self, d: "_Decision", c: float, what: str) -> None:
        """The auto-apply / review thresholds on one confidence value (domain/confidence.py words it)."""
        to_review, reason = threshold_reason(c, what, self.policy)
        if to_review:
            d.review.append(reason)
        else:
            d.reasons.insert(0, reason)

    def _calibrated(self, d: "_Decision", fields: dict[str, Any], tags: list[dict[str, Any]], curves) -> None:
        """Each field a model or rule wrote gets the calibrated probability that an editor accepts it. Tags are
        handled per field (`_hold_weak_tags`); the asset is judged by its weakest other field (one status per
        record)."""
        assert self.calibration is not None
        d.calibration = self.calibration.version
        partial = {**fields, "tags": tags, "field_sources": d.sources}
        evidence = evidence_of(partial, enrichment_confidence=float(d.model.get("confidence") or 0.0),
                               ocr_confidence=ocr_confidence(d.pre.get("ocr")),
                               subject_evidence=d.model.get("subject_evidence"))
        unfitted = [e for e in evidence if curve_for(curves, e) is None]
        # a tag a model recognised on a drawing with no curve fitted on drawings: held as a suggestion (below); with
        # per-field tags off (tag_publish_min None) every tag judges the asset, so it sends the asset to review
        drawn_tags = [e for e in unfitted if e.field.startswith("tags.") and GRAPHIC in e.source
                      and self.cfg.tag_publish_min is not None]
        unknown = sorted({e.fallback for e in unfitted if e not in drawn_tags})
        pooled = set()
        for e in evidence:
            found = curve_for(curves, e)
            if found is not None:
                d.evidence[e.field] = found[0]
                d.confidence[e.field] = round(found[1](e.raw), 4)
                if found[0] != e.source:
                    pooled.add(e.source)
        if pooled:
            d.reasons.append("calibrated on the pooled curve (no curve of its own: too few labelled samples): "
                             + ", ".join(sorted(pooled)))
        if unknown:
            drawn = any(GRAPHIC in k for k in unknown)
            d.review.append("no calibration for evidence " + ", ".join(unknown) + f" (calibration {d.calibration}"
                            + ("; a subject a model recognised on a drawing is never judged by a curve fitted on "
                               "photos" if drawn else "") + ")")
        self._hold_weak_tags(d, tags)
        self._hold_drawn_tags(d, tags, drawn_tags)
        judged = {f: c for f, c in d.confidence.items()
                  if f not in {f"tags.{t['tag']}" for t in d.held_tags + d.pending_tags}}
        if not judged:
            if not unknown:
                d.reasons.append("no generated field to judge: every published field comes from a person or the file")
            return
        weakest = min(judged, key=lambda f: judged[f])
        self._threshold(d, judged[weakest], CALIBRATED.format(field=weakest, calibration=d.calibration))
        below = below_reason(judged, self.policy)
        if below and d.review:
            d.review.append(below)

    def _hold_weak_tags(self, d: "_Decision", tags: list[dict[str, Any]]) -> None:
        """Per-field tags (issue 15 item 6). A model tag whose calibrated confidence is under `tag_publish_min`
        leaves `tags` (in place) for `d.held_tags`: a suggestion an editor sees in review, never published. A model
        tag between that and `auto_apply_threshold` is *pending*: it does not decide the asset's status; if the
        asset is auto-applied it is held as a suggestion too (`_settle_pending_tags`), if the asset goes to review
        it stays a tag for the editor to confirm. A person's or the file's tags are never held."""
        floor = self.cfg.tag_publish_min
        if floor is None:
            return
        conf = {t["tag"]: d.confidence.get(f"tags.{t['tag']}") for t in tags if t.get("source") == "model"}
        weak = [t for t in tags if conf.get(t["tag"]) is not None and conf[t["tag"]] < floor]
        d.pending_tags = [t for t in tags if conf.get(t["tag"]) is not None
                          and floor <= conf[t["tag"]] < self.cfg.auto_apply_threshold]
        if weak:
            self._hold(d, tags, weak, f"calibrated confidence < {_fmt(floor)}")

    @staticmethod
    def _hold_drawn_tags(d: "_Decision", tags: list[dict[str, Any]], drawn: list[Any]) -> None:
        """Model tags a recogniser backs on a drawing ('graphic:detector', calibration.py) with no curve fitted on
        drawings have no calibrated confidence: each is held as a suggestion for review, never published, and, like
        a weak tag, does not hold the asset back (the alt text, one per asset, does: "no calibration for ...")."""
        fields = {e.field for e in drawn}
        which = [t for t in tags if f"tags.{t['tag']}" in fields]
        if not which:
            return
        d.held_tags += [dict(t) for t in which]
        tags[:] = [t for t in tags if t not in which]
        keys = ", ".join(sorted({e.fallback for e in drawn}))
        d.reasons.append(f"{len(which)} model tag{'s' if len(which) != 1 else ''} held as suggestions for review "
                         f"(recognised on a drawing: no calibration for evidence {keys}, calibration {d.calibration}): "
                         + ", ".join(t["tag"] for t in which[:6]) + (" …" if len(which) > 6 else ""))

    def _settle_pending_tags(self, d: "_Decision", tags: list[dict[str, Any]]) -> None:
        """After the policy: on an asset that goes to review the pending tags stay (the editor confirms them);
        on an auto-applied one they are held as suggestions, so only strong fields are applied."""
        if not d.pending_tags:
            return
        if d.review or d.rejected:
            d.review.append(tags_below_reason([(t["tag"], d.confidence["tags." + t["tag"]]) for t in d.pending_tags]))
            return
        self._hold(d, tags, d.pending_tags,
                   f"calibrated confidence < {_fmt(self.cfg.auto_apply_threshold)}: the strong fields are auto-applied")

    @staticmethod
    def _hold(d: "_Decision", tags: list[dict[str, Any]], which: list[dict[str, Any]], why: str) -> None:
        d.held_tags += [dict(t) for t in which]
        tags[:] = [t for t in tags if t not in which]
        listed = ", ".join(f"{t['tag']} {_fmt(d.confidence['tags.' + t['tag']])}" for t in which[:6])
        d.reasons.append(f"{len(which)} model tag{'s' if len(which) != 1 else ''} held as suggestions for review "
                         f"({why}): {listed}" + (" …" if len(which) > 6 else ""))

    # --- pieces -----------------------------------------------------------------------------------------
    def _deleted(self, value: dict[str, Any]) -> dict[str, Any]:
        asset = value["pre"]["asset"]
        return {"enriched": value, "status": "deleted", "reasons": [f"asset {asset['asset_id']} deleted"],
                "usage_flag": "unknown", "title": None, "alt_text": None, "decorative": False, "caption": None,
                "summary": None, "visible_text": None, "tags": [], "suggested_tags": [], "credit_text": None,
                "licensing": None, "field_sources": {}, "model_suggestions": {},
                "taxonomy_version": self.taxonomy.version, "stamp": stamp(self.name), "review": None,
                "field_confidence": {}, "calibration": None, "tag_suggestions": [], "field_evidence": {}}

    def _schema_failure(self, asset: dict[str, Any], hard: list[Violation], rejected: list[str]) -> None:
        if self.cfg.schema_violation == "dead_letter":
            details = {"asset_id": asset.get("asset_id"), "failing_paths": ", ".join(v.path for v in hard)}
            for v in hard[:20]:
                details[v.path] = f"{v.keyword}: {v.message}"
            raise PermanentError(f"model output fails its JSON Schema at {hard[0].path}: {hard[0].message}",
                                 reason="schema_violation", details=details)
        rejected.append(f"model output fails its JSON Schema at {len(hard)} path(s); model output not applied")
        for v in hard[:10]:
            rejected.append(f"schema: {v.path}: {v.message}")

    def _alt_text(self, human, emb, model, visible, elsewhere, sources, suggestions, reasons, review,
                  video: bool = False):
        cfg = self.cfg
        model_alt = model.get("alt_text") if model else None
        model_dec = bool(model.get("decorative")) if model else False
        for src, val in (("human", human.get("alt_text")), ("embedded", emb.get("alt_text"))):
            if val is None:
                continue
            if val.strip() == "":
                if src == "human":  # a person explicitly set an empty alt: decorative
                    sources["alt_text"] = sources["decorative"] = "human"
                    reasons.append("alt text left empty by a person: decorative image")
                    if _has(model_alt):
                        suggestions["alt_text"] = model_alt
                    return "", True
                continue
            if src == "embedded" and alttext.file_name(val):
                # a file's alt text that is its file name: no description, not published (held for review)
                review.append(f"alt text from the file's XMP/IPTC \"{alttext.short(val)}\" is a file name, not a "
                              "description of the image: not published")
                continue
            sources["alt_text"] = src
            sources["decorative"] = src
            who = "a person" if src == "human" else "the file's XMP/IPTC"
            reasons.append(f"alt text set by {who} kept (human edits win)")
            if src == "embedded":  # the rules that change nothing: a file's alt text is held for review
                review.extend(f"{p} (from the file's XMP/IPTC)" for p in alttext.judge(val, None))  # length: below
            if len(val) > cfg.alt_text_hard_max_chars and src == "embedded":
                # a file's alt text is no person's decision here: never published over the hard cap
                cut = alttext.cut_at_word(val, cfg.alt_text_hard_max_chars)
                review.append(f"alt text from {who} was {len(val)} chars (> {cfg.alt_text_hard_max_chars}): cut to "
                              f"{len(cut)}, check it reads well")
                val = cut
            elif len(val) > cfg.alt_text_hard_max_chars:
                review.append(f"alt text set by {who} is {len(val)} chars (> {cfg.alt_text_hard_max_chars}): too "
                              "long for screen readers; shorten it")
            elif len(val) > cfg.alt_text_max_chars:
                reasons.append(f"note: alt text from {who} is {len(val)} chars (> {cfg.alt_text_max_chars}); "
                               f"left unchanged")
            if _has(model_alt) and model_alt != val:
                suggestions["alt_text"] = model_alt
            if model_dec:
                suggestions["decorative"] = "true"
            return val, False
        if model is None:
            return None, False
        if model_dec and video:  # a video carries information (WCAG): a model's "decorative" is never taken for it
            model_dec = False
            suggestions["decorative"] = "true"
            review.append("the model called the video decorative: a video is never decorative, it needs an alt text")
        res = alttext.apply_rules(model_alt, model_dec, max_chars=cfg.alt_text_max_chars, visible_text=visible,
                                  elsewhere=elsewhere)
        if model_alt is not None or model_dec:  # no alt_text answer (task degraded or not run): no source claimed
            sources["alt_text"] = "rule" if res.changed else "model"
            sources["decorative"] = "model"
        reasons.extend(res.fixes)
        review.extend(res.problems)
        return res.alt_text, res.decorative

    def _tags(self, human, emb, model_tags, reasons):
        tax, cfg = self.taxonomy, self.cfg
        chosen: dict[str, dict[str, Any]] = {}
        suggested: list[str] = []
        denied_raw: list[str] = []
        counts = {"unknown": 0, "denied": 0, "removed": 0, "low": 0, "deprecated": 0, "parents": 0, "dropped": 0}

        def put(tag: str, score: float, source: str, evidence: str | None) -> bool:
            old = chosen.get(tag)
            if old is None:
                chosen[tag] = {"tag": tag, "facet": tag.split(":", 1)[0], "label": tax.label(tag),
                               "score": float(score), "source": source,
                               "evidence": evidence if source == "model" else None}
                return True
            if SOURCE_RANK[source] < SOURCE_RANK[old["source"]]:
                old["source"] = source
                old["evidence"] = None
            elif source == "model" and old["source"] == "model" and float(score) > old["score"]:
                old["evidence"] = evidence  # the tag's score (and so its calibration) comes from the stronger one
            old["score"] = max(old["score"], float(score))
            return False

        def add(raw: str, score: float, source: str, evidence: str | None = None) -> None:
            res = tax.resolve(raw)
            if res.outcome == "mapped":
                assert res.mapped is not None
                if res.mapped.matched == "deprecated":
                    counts["deprecated"] += 1
                put(res.mapped.tag, score, source, evidence)
                for parent in res.mapped.parents:
                    if put(parent, score, source, evidence):
                        counts["parents"] += 1
            elif res.outcome == "denied":
                denied_raw.append(raw)
                if source == "model":
                    counts["denied"] += 1
                else:
                    # the term itself is not repeated: reasons are indexed and shown
                    reasons.append(f"a keyword from the {'person' if source == 'human' else 'file'} was not "
                                   f"promoted to tags: it is on the taxonomy deny-list")
            elif res.outcome == "removed":
                counts["removed"] += 1
            elif res.outcome == "unknown":
                # a person's keywords are never dropped: unknown ones are kept as suggestions
                if source != "model" or cfg.unknown_tags == "suggest":
                    text = " ".join(raw.split())
                    if text.lower() not in (s.lower() for s in suggested):
                        suggested.append(text)
                if source == "model":
                    counts["unknown"] += 1

        for kw in human.get("keywords") or []:
            add(kw, 1.0, "human")
        for kw in emb.get("keywords") or []:
            add(kw, 1.0, "embedded")
        for item in sorted(model_tags, key=lambda t: -float(t.get("score") or 0.0)):
            if float(item.get("score") or 0.0) < cfg.min_tag_score:
                if not tax.is_denied(item.get("tag", "")):
                    counts["low"] += 1
                else:
                    denied_raw.append(item.get("tag", ""))
                    counts["denied"] += 1
                continue
            add(item.get("tag", ""), float(item.get("score") or 0.0), "model", item.get("evidence"))

        ordered = sorted(chosen.values(), key=lambda t: (SOURCE_RANK[t["source"]], -t["score"], t["tag"]))
        keep = [t for t in ordered if t["source"] != "model"]
        room = max(cfg.max_tags - len(keep), 0)
        model_only = [t for t in ordered if t["source"] == "model"]
        counts["dropped"] = max(len(model_only) - room, 0)
        keep += model_only[:room]
        reasons.append("tags: " + _tag_summary(keep, counts, self.cfg, tax.version))
        return keep, suggested[:50], denied_raw


def _tag_summary(keep: list[dict[str, Any]], counts: dict[str, int], cfg: Any, taxonomy_version: str) -> str:
    """The tags reason: how many canonical tags from which sources, and what was mapped or dropped and why."""
    by_src = {s: sum(1 for t in keep if t["source"] == s) for s in ("human", "embedded", "model")}
    parts = [f"{len(keep)} canonical tag{'s' if len(keep) != 1 else ''} "
             f"({by_src['human']} human, {by_src['embedded']} embedded, {by_src['model']} model"
             + (f", {counts['parents']} implied parents" if counts["parents"] else "") + ")"]
    unknown = "kept as suggestions" if cfg.unknown_tags == "suggest" else "dropped"
    for key, text in (("deprecated", "deprecated tag(s) mapped to their replacement"),
                      ("unknown", f"unknown model tag(s) {unknown}"),
                      ("denied", "model tag(s) dropped by the deny-list"),
                      ("removed", f"tag(s) removed in taxonomy {taxonomy_version} dropped"),
                      ("low", f"model tag(s) scored below {_fmt(cfg.min_tag_score)} dropped"),
                      ("dropped", f"lowest-scored model tag(s) over the limit of {cfg.max_tags} dropped")):
        if counts[key]:
            parts.append(f"{counts[key]} {text}")
    return "; ".join(parts)


def _scrub(value: dict[str, Any], tax: Taxonomy) -> dict[str, Any]:
    """A copy of the enriched record without deny-listed model tags (enrichment.tags and raw_outputs)."""
    out = dict(value)
    enr = dict(out["enrichment"])
    enr["tags"] = [t for t in enr.get("tags") or [] if not tax.is_denied(t.get("tag", ""))]
    raw = dict(enr.get("raw_outputs") or {})
    for task, text in raw.items():
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("tags"), list):
            def keep(item: Any) -> bool:
                name = item if isinstance(item, str) else (item.get("tag") or item.get("name") or item.get("label")
                                                           if isinstance(item, dict) else None)
                return not (isinstance(name, str) and tax.is_denied(name))
            data = copy.copy(data)
            data["tags"] = [t for t in data["tags"] if keep(t)]
            raw[task] = json.dumps(data, ensure_ascii=False)
    enr["raw_outputs"] = raw
    out["enrichment"] = enr
    return out
