"""Calibrated confidence: the probability that an editor accepts a published field (issue 15 item 6).

A model's self-reported scores are not probabilities. Each field validate publishes from a model or a rule is one
piece of *evidence* with a source and a raw score:

    tag           source tag:<group>     raw = the tag's model score   (group: class | color | content | style)
    alt text      source alt:decorative  raw = the enrichment's confidence (an empty alt for a decorative image)
                  source alt:tag         raw = score of the best model tag the alt text names (its subject is backed)
                  source alt:text        raw = OCR mean word confidence (no tag named; it quotes the visible text)
                  source alt:unbacked    raw = the enrichment's confidence (a generic or unsupported description)
    visible text  source ocr             raw = OCR mean word confidence (0..1)

Per evidence source (issue 15 item 6): when the enrichment says what backs a field (Enrichment ScoredTag.evidence
for a tag, subject_evidence for the alt text: e.g. 'detector+classifier', 'classifier', 'ocr', 'face'), the
field's source is '<group>|<origin>' ('tag:class|detector+classifier'; for the alt text what named its subject:
'alt|detector+classifier', 'alt|ocr', 'alt|none') and has its own curve when the fit split has at least
`min_samples` labelled fields of it. Otherwise the origin family's curve ('tag:class|box', 'alt|box': any origin
with the detector in it), else the field's pooled curve ('tag:class', 'alt:tag') is used, as for records that
do not say (older records, cloud providers). calibration.json lists each key it did not fit with its sample
count and the next key it falls back to.

The image kind is part of the evidence: on a drawing (the local provider's ImageFacts.graphic) an origin with a
recogniser in it (detector, classifier, face) comes prefixed, 'graphic:detector+classifier', and its keys are
'<group>|graphic:<origin>' then '<group>|graphic:box', with **no pooled fallback**: the pooled curves were fitted
almost only on photos, where a box means far more than on a drawing (Open Clip Art drawings: 1 of 5 held-out
box subjects right under 'alt|box'). With no graphic curve fitted the field has no calibration: validate sends
the asset to review for such an alt text ("no calibration for evidence ...") and holds such a tag as a suggestion.

A fitted curve per (provider/model, source) maps raw -> calibrated probability. The curves are isotonic
regressions fitted on the labelled part of tests/data/quality (`python bench/quality.py --fit-calibration`; the
other part is held out for the figures) and ship as package data, `calibration.json`, with their version.
Fields a person or the file set are not model evidence and never count against auto-apply. A provider/model
with no fitted curves has no calibrated confidence: validate falls back to the uncalibrated threshold.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")

_CLASS_FACETS = {"color": "color", "colour": "color", "content": "content", "style": "style"}


@dataclass(frozen=True)
class Evidence:
    field: str   # "tags.<tag>" | "alt_text" | "visible_text"
    source: str  # see the module doc: the evidence source with its origin when known, else the pooled source
    raw: float
    chain: tuple[str, ...] = ()  # the curves to fall back on, in order; the last is the field's pooled curve
    # (none for a drawing's recognised origin: its chain ends at its last graphic key)

    @property
    def fallback(self) -> str:
        """The field's last key: its pooled source (a drawing's recognised origin: its last graphic key)."""
        return self.chain[-1] if self.chain else self.source

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.source, *self.chain)


BOX = "box"
"""the origin family of every origin with the detector in it ('detector', 'detector+classifier', 'detector+face'):
a box of the field's class was found; its curve is the fallback of each of them"""


GRAPHIC = "graphic:"
"""the image-kind prefix of an origin a recogniser backs on a drawing ('graphic:detector'; the local provider's
engine.with_kind): such evidence never falls back to a curve fitted on photos"""


def origin_keys(prefix: str, origin: str | None) -> list[str]:
    """'<prefix>|<origin>' then, for a detector origin, '<prefix>|box'; a drawing's origin keeps its kind in both
    ('<prefix>|graphic:detector', '<prefix>|graphic:box')."""
    if not origin:
        return []
    kind = GRAPHIC if origin.startswith(GRAPHIC) else ""
    bare = origin[len(kind):]
    keys = [f"{prefix}|{kind}{bare}"]
    if "detector" in bare.split("+") and bare != BOX:
        keys.append(f"{prefix}|{kind}{BOX}")
    return keys


def is_pooled(key: str) -> bool:
    """A field's pooled curve ('tag:class', 'alt:tag', 'ocr'), not one of an evidence origin ('alt|box')."""
    return "|" not in key


@dataclass(frozen=True)
class Curve:
    """A piecewise-linear monotone map (isotonic regression's thresholds), constant outside its range."""
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    n: int

    def __call__(self, x: float) -> float:
        return float(np.interp(float(x), self.xs, self.ys))


class Calibration:
    def __init__(self, version: str, curves: dict[str, dict[str, Curve]]):
        self.version = version
        self.curves = curves  # "provider/model" -> source -> curve

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Calibration":
        data = json.loads(Path(path or CALIBRATION_FILE).read_text())
        # entries with "fallback" instead of a curve document a per-source key with too few samples
        curves = {model: {src: Curve(tuple(c["x"]), tuple(c["y"]), int(c.get("n", 0))) for src, c in by_src.items()
                          if "x" in c}
                  for model, by_src in data["models"].items()}
        return cls(str(data["version"]), curves)

    def for_model(self, model_key: str | None) -> dict[str, Curve] | None:
        return self.curves.get(model_key) if model_key else None


def curve_for(curves: dict[str, Curve], e: Evidence) -> tuple[str, Curve] | None:
    """The field's first fitted curve along its keys (per source, origin family, pooled), with the key used;
    None when none is fitted."""
    for key in e.keys:
        if key in curves:
            return key, curves[key]
    return None


def model_key(provenance: list[dict[str, Any]] | None) -> str | None:
    """'provider/model' of the tagging answer (reused answers keep their provenance), None without one. A
    verifier of another model changes what the enrichment's confidence means (their agreement), so its answers
    get their own key ('…+verified-by:provider/model', no curves shipped); the tagger asked again is no second
    opinion and changes nothing."""
    by_task = {p.get("task"): f"{p.get('provider')}/{p.get('model')}" for p in provenance or []
               if p.get("provider") and p.get("model")}
    key = by_task.get("tagging")
    if key and by_task.get("verify", key) != key:
        return f"{key}+verified-by:{by_task['verify']}"
    return key


def tag_group(tag: str) -> str:
    return _CLASS_FACETS.get(tag.split(":", 1)[0], "class")


def _names(alt: str, tag: str, label: str | None) -> bool:
    low = alt.lower()
    words = {tag.split(":", 1)[-1].replace("-", " "), (label or "").lower()} - {""}
    return any(re.search(r"\b" + re.escape(w.lower()) + r"(?:s|es)?\b", low) for w in words)


def _ev(field: str, pooled: str, raw: float, specific: list[str]) -> Evidence:
    """The field's evidence along its keys; a drawing's recognised origin ('…|graphic:…') has no pooled fallback."""
    if specific and GRAPHIC in specific[0]:
        return Evidence(field, specific[0], raw, tuple(specific[1:]))
    return Evidence(field, specific[0], raw, (*specific[1:], pooled)) if specific else Evidence(field, pooled, raw)


def evidence_of(validated: dict[str, Any], *, enrichment_confidence: float, ocr_confidence: float | None,
                subject_evidence: str | None = None) -> list[Evidence]:
    """The model- or rule-made fields of a ValidatedAsset dict (before review) as evidence. A model tag's origin
    is its `evidence`; the alt text's is `subject_evidence` (the enrichment's: what named the subject)."""
    out: list[Evidence] = []
    sources = validated.get("field_sources") or {}
    model_tags = [t for t in validated.get("tags") or [] if t.get("source") == "model"]
    for t in model_tags:
        group = f"tag:{tag_group(t['tag'])}"
        out.append(_ev(f"tags.{t['tag']}", group, float(t.get("score") or 0.0), origin_keys(group, t.get("evidence"))))
    if sources.get("alt_text") in ("model", "rule"):
        alt = validated.get("alt_text") or ""
        # what named the subject decides the alt text's curve ('alt|detector+classifier', 'alt|ocr', 'alt|none');
        # the raw score and the pooled fallback are the kind of backing the text itself shows
        by_subject = origin_keys("alt", subject_evidence)
        if validated.get("decorative") or not alt.strip():
            out.append(_ev("alt_text", "alt:decorative", enrichment_confidence, by_subject))
        else:
            backing = [float(t.get("score") or 0.0) for t in model_tags
                       if tag_group(t["tag"]) == "class" and _names(alt, t["tag"], t.get("label"))]
            if backing:
                out.append(_ev("alt_text", "alt:tag", max(backing), by_subject))
            elif '"' in alt and ocr_confidence is not None:
                out.append(_ev("alt_text", "alt:text", ocr_confidence, by_subject))
            else:
                out.append(_ev("alt_text", "alt:unbacked", enrichment_confidence, by_subject))
    if sources.get("visible_text") in ("model", "rule") and (validated.get("visible_text") or "").strip():
        out.append(Evidence("visible_text", "ocr", 0.0 if ocr_confidence is None else ocr_confidence))
    return out


def ocr_confidence(ocr: dict[str, Any] | None) -> float | None:
    conf = (ocr or {}).get("mean_confidence")
    return None if conf is None else float(conf) / 100.0 if conf > 1 else float(conf)
