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
   rejected, each with human-readable reasons.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from consumers.validate import alttext, rights
from consumers.validate.schema import Violation, check_enrichment, check_raw_outputs
from domain.taxonomy import Taxonomy, taxonomy_from_settings
from streams.errors import PermanentError
from streams.metrics import DECISIONS
from domain.records import is_deleted
from streams.records import stamp
from streams.stage import Output, RecordContext, Stage

log = logging.getLogger(__name__)

SOURCE_RANK = {"human": 0, "embedded": 1, "model": 2, "rule": 3}
STATUS_HEADER = "assetstream-status"


def _has(value: Any) -> bool:
    return value is not None and (not isinstance(value, str) or value.strip() != "")


def _fmt(x: float) -> str:
    return f"{x:.2f}"


class ValidateStage(Stage):
    name = "validate"
    input_topic = "enriched"
    output_topic = "validated"
    kind = "cpu"
    embeds_input = "enriched"  # the input record, unchanged: its Avro bytes are reused

    def __init__(self, settings, taxonomy: Taxonomy | None = None):
        super().__init__(settings)
        self.cfg = settings.validate_
        self.taxonomy = taxonomy or taxonomy_from_settings(settings)
        prompts_dir = settings.enrich.prompts_dir  # the prompts enrich used: their schemas check its output
        self._prompts = {"prompts_dir": Path(prompts_dir)} if prompts_dir else {}

    # --- Stage API --------------------------------------------------------------------------------------
    def process(self, value: dict[str, Any], ctx: RecordContext | None = None) -> Output:
        record = self.validate(value)
        DECISIONS.labels(status=record["status"], usage_flag=record["usage_flag"]).inc()
        return Output(value=record, headers={STATUS_HEADER: record["status"]})

    # --- the decision -----------------------------------------------------------------------------------
    def validate(self, value: dict[str, Any]) -> dict[str, Any]:
        """EnrichedAsset dict -> ValidatedAsset dict (pure; no metrics). Raises PermanentError only when
        settings.validate.schema_violation == 'dead_letter' and the model output breaks its schema."""
        if is_deleted(value):
            return self._deleted(value)
        cfg = self.cfg
        pre = value["pre"]
        asset = pre["asset"]
        human = asset.get("human_fields") or {}
        emb = pre.get("embedded") or {}
        enr = value.get("enrichment")
        signals = pre.get("signals") or {}
        reasons: list[str] = []
        review: list[str] = []
        sources: dict[str, str] = {}
        suggestions: dict[str, str] = {}
        rejected: list[str] = []

        # 1. schema --------------------------------------------------------------------------------------
        model: dict[str, Any] = {}
        if enr is None:
            review.append("no model output to validate (enrichment missing)")
        else:
            violations = check_enrichment(enr, cfg.alt_text_max_chars)
            checked: list[str] = []
            if cfg.prompt_schemas:
                more, checked = check_raw_outputs(enr, value.get("provenance") or [], **self._prompts)
                violations += more
            hard = [v for v in violations if not v.fixable]
            if hard:
                self._schema_failure(asset, hard, rejected)
            else:
                model = enr
                for v in violations:
                    reasons.append(f"schema: {v.path} {v.keyword} ({v.message[:80]}); repaired by the alt-text rule")
                if checked:
                    reasons.append("model output matches its prompt schemas: " + ", ".join(checked))
        use_model = bool(model) and not rejected

        def m(field: str) -> Any:
            return model.get(field) if use_model else None

        # 2. fields by source priority -------------------------------------------------------------------
        def pick(field: str, candidates: list[tuple[str, Any]]) -> Any:
            chosen_src, chosen = None, None
            for src, val in candidates:
                if _has(val):
                    chosen_src, chosen = src, val
                    break
            if chosen_src is None:
                return None
            sources[field] = chosen_src
            model_val = next((v for s, v in candidates if s == "model"), None)
            if chosen_src in ("human", "embedded") and _has(model_val) and model_val != chosen:
                suggestions[field] = str(model_val)
            return chosen

        title = pick("title", [("human", human.get("title")), ("embedded", emb.get("title")), ("model", m("title"))])
        caption = pick("caption", [("human", human.get("caption")), ("embedded", emb.get("description")),
                                   ("model", m("caption"))])
        summary = pick("summary", [("human", human.get("description")), ("embedded", emb.get("ext_description")),
                                   ("model", m("summary"))])
        ocr = pre.get("ocr") or {}
        ocr_text = None
        if ocr.get("text") and not ocr.get("skipped"):
            conf = ocr.get("mean_confidence")
            conf = None if conf is None else (conf / 100.0 if conf > 1 else conf)
            if conf is None or conf >= cfg.ocr_min_confidence:
                ocr_text = alttext.meaningful_text(ocr["text"])
        if ocr_text and m("visible_text") == "":
            # the model had the OCR text and found nothing in it worth quoting (noise such as "6 @96")
            reasons.append("OCR text not quoted: the model's visible_text is empty")
            ocr_text = None
        visible_text = pick("visible_text", [("model", m("visible_text")), ("rule", ocr_text)])

        # 3. alt text --------------------------------------------------------------------------------------
        alt, decorative = self._alt_text(human, emb, model if use_model else None, visible_text or ocr_text,
                                         [caption, title, summary], sources, suggestions, reasons, review)

        # 4. tags ------------------------------------------------------------------------------------------
        tags, suggested, denied_raw = self._tags(human, emb, (m("tags") or []), reasons)

        # 5. rights ----------------------------------------------------------------------------------------
        decision = rights.decide(rights.evidence_of(asset, emb), model_licensing=m("licensing"),
                                 must_display_credit=bool(m("must_display_credit")),
                                 commercial_use=cfg.commercial_use, owned_markers=cfg.owned_license_markers)
        usage_flag = decision.flag
        reasons.extend(decision.reasons)
        licensing = pick("licensing", [("human", asset.get("declared_license")),
                                       ("embedded", emb.get("usage_terms") or emb.get("license_url")),
                                       ("model", m("licensing") if m("licensing") not in ("unknown", "") else None)])
        credit_text = pick("credit_text", [("human", human.get("credit_line")), ("embedded", emb.get("credit_line")),
                                           ("model", m("credit_text"))])
        if usage_flag == "credit_required" and not _has(credit_text):
            creator = human.get("creator") or emb.get("creator")
            if _has(creator):
                credit_text = f"Photo: {creator}"
                sources["credit_text"] = "rule"
                reasons.append(f"credit text built from the creator \"{creator}\"")
            else:
                review.append("credit required but no credit line or creator is known")

        # 6. policy ----------------------------------------------------------------------------------------
        if use_model:
            c = float(model.get("confidence") or 0.0)
            hi, lo = cfg.auto_apply_threshold, cfg.review_threshold
            if c >= hi:
                reasons.insert(0, f"confidence {_fmt(c)} >= {_fmt(hi)}")
            elif c < lo:
                review.append(f"confidence {_fmt(c)} < {_fmt(lo)}: below the review threshold")
            elif cfg.between_policy == "auto":
                reasons.insert(0, f"confidence {_fmt(c)} between {_fmt(lo)} and {_fmt(hi)}: between_policy=auto")
            else:
                review.append(f"confidence {_fmt(c)} between {_fmt(lo)} and {_fmt(hi)}: between_policy=review")
        faces = int(signals.get("face_count") or 0)
        if faces > 0 and cfg.faces_need_review:
            review.append(f"{faces} face{'s' if faces != 1 else ''} detected: people in image need consent review")
        nsfw = signals.get("nsfw_score")
        if nsfw is not None:
            if cfg.nsfw_reject_threshold is not None and nsfw >= cfg.nsfw_reject_threshold:
                rejected.append(f"NSFW score {_fmt(nsfw)} >= {_fmt(cfg.nsfw_reject_threshold)}: rejected")
            elif nsfw >= cfg.nsfw_review_threshold:
                review.append(f"NSFW score {_fmt(nsfw)} >= {_fmt(cfg.nsfw_review_threshold)}: sensitive content review")
        if usage_flag == "restricted":
            review.append("licence restricts use: a person must confirm the intended use is allowed")
        elif usage_flag == "unknown" and cfg.unknown_rights_need_review:
            review.append("no licence evidence: rights must be confirmed before use")
        elif usage_flag == "credit_required" and cfg.credit_required_needs_review and _has(credit_text):
            review.append(f"credit must be displayed: check the credit text \"{credit_text or ''}\"")
        if value.get("duplicate_of"):
            dist = value.get("duplicate_distance")
            reasons.append(f"near-duplicate of {value['duplicate_of']}"
                           + (f" (pHash distance {dist})" if dist is not None else ""))

        if rejected:
            status = "rejected"
        elif review:
            status = "needs_review"
        else:
            status = "auto_applied"
        reasons = rejected + review + reasons if status != "auto_applied" else reasons
        reasons.append(f"taxonomy {self.taxonomy.version}")
        sources["usage_flag"] = "rule"

        enriched = value
        if denied_raw and self.cfg.scrub_denied_from_raw:
            enriched = _scrub(value, self.taxonomy)
        return {
            "enriched": enriched, "status": status, "reasons": reasons, "usage_flag": usage_flag,
            "title": title, "alt_text": alt, "decorative": decorative, "caption": caption, "summary": summary,
            "visible_text": visible_text, "tags": tags, "suggested_tags": suggested, "credit_text": credit_text,
            "licensing": licensing, "field_sources": sources, "model_suggestions": suggestions,
            "taxonomy_version": self.taxonomy.version, "stamp": stamp(self.name),
        }

    # --- pieces -----------------------------------------------------------------------------------------
    def _deleted(self, value: dict[str, Any]) -> dict[str, Any]:
        asset = value["pre"]["asset"]
        return {"enriched": value, "status": "deleted", "reasons": [f"asset {asset['asset_id']} deleted"],
                "usage_flag": "unknown", "title": None, "alt_text": None, "decorative": False, "caption": None,
                "summary": None, "visible_text": None, "tags": [], "suggested_tags": [], "credit_text": None,
                "licensing": None, "field_sources": {}, "model_suggestions": {},
                "taxonomy_version": self.taxonomy.version, "stamp": stamp(self.name)}

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

    def _alt_text(self, human, emb, model, visible, elsewhere, sources, suggestions, reasons, review):
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
            sources["alt_text"] = src
            sources["decorative"] = src
            who = "a person" if src == "human" else "the file's XMP/IPTC"
            reasons.append(f"alt text set by {who} kept (human edits win)")
            if len(val) > cfg.alt_text_max_chars:
                reasons.append(f"note: alt text from {who} is {len(val)} chars (> {cfg.alt_text_max_chars}); "
                               f"left unchanged")
            if _has(model_alt) and model_alt != val:
                suggestions["alt_text"] = model_alt
            if model_dec:
                suggestions["decorative"] = "true"
            return val, False
        if model is None:
            return None, False
        res = alttext.apply_rules(model_alt, model_dec, max_chars=cfg.alt_text_max_chars, visible_text=visible,
                                  elsewhere=elsewhere)
        src = "rule" if res.changed else "model"
        sources["alt_text"] = src
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

        def put(tag: str, score: float, source: str) -> bool:
            old = chosen.get(tag)
            if old is None:
                chosen[tag] = {"tag": tag, "facet": tag.split(":", 1)[0], "label": tax.label(tag),
                               "score": float(score), "source": source}
                return True
            if SOURCE_RANK[source] < SOURCE_RANK[old["source"]]:
                old["source"] = source
            old["score"] = max(old["score"], float(score))
            return False

        def add(raw: str, score: float, source: str) -> None:
            res = tax.resolve(raw)
            if res.outcome == "mapped":
                assert res.mapped is not None
                if res.mapped.matched == "deprecated":
                    counts["deprecated"] += 1
                put(res.mapped.tag, score, source)
                for parent in res.mapped.parents:
                    if put(parent, score, source):
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
            add(item.get("tag", ""), float(item.get("score") or 0.0), "model")

        ordered = sorted(chosen.values(), key=lambda t: (SOURCE_RANK[t["source"]], -t["score"], t["tag"]))
        keep = [t for t in ordered if t["source"] != "model"]
        room = max(cfg.max_tags - len(keep), 0)
        model_only = [t for t in ordered if t["source"] == "model"]
        counts["dropped"] = max(len(model_only) - room, 0)
        keep += model_only[:room]
        by_src = {s: sum(1 for t in keep if t["source"] == s) for s in ("human", "embedded", "model")}
        parts = [f"{len(keep)} canonical tag{'s' if len(keep) != 1 else ''} "
                 f"({by_src['human']} human, {by_src['embedded']} embedded, {by_src['model']} model"
                 + (f", {counts['parents']} implied parents" if counts["parents"] else "") + ")"]
        if counts["deprecated"]:
            parts.append(f"{counts['deprecated']} deprecated tag(s) mapped to their replacement")
        if counts["unknown"]:
            parts.append(f"{counts['unknown']} unknown model tag(s) "
                         + ("kept as suggestions" if cfg.unknown_tags == "suggest" else "dropped"))
        if counts["denied"]:
            parts.append(f"{counts['denied']} model tag(s) dropped by the deny-list")
        if counts["removed"]:
            parts.append(f"{counts['removed']} tag(s) removed in taxonomy {tax.version} dropped")
        if counts["low"]:
            parts.append(f"{counts['low']} model tag(s) scored below {_fmt(cfg.min_tag_score)} dropped")
        if counts["dropped"]:
            parts.append(f"{counts['dropped']} lowest-scored model tag(s) over the limit of {cfg.max_tags} dropped")
        reasons.append("tags: " + "; ".join(parts))
        return keep, suggested[:50], denied_raw


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
