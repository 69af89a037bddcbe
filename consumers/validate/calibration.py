"""Calibrated confidence: the probability that an editor accepts a published field (issue 15 item 6).

A model's self-reported scores are not probabilities. Each field validate publishes from a model or a rule is one
piece of *evidence* with a source and a raw score:

    tag           source tag:<group>     raw = the tag's model score   (group: class | color | content | style)
    alt text      source alt:decorative  raw = the enrichment's confidence (an empty alt for a decorative image)
                  source alt:tag         raw = score of the best model tag the alt text names (its subject is backed)
                  source alt:text        raw = OCR mean word confidence (no tag named; it quotes the visible text)
                  source alt:unbacked    raw = the enrichment's confidence (a generic or unsupported description)
    visible text  source ocr             raw = OCR mean word confidence (0..1)

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
    source: str  # see the module doc
    raw: float


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
        curves = {model: {src: Curve(tuple(c["x"]), tuple(c["y"]), int(c.get("n", 0))) for src, c in by_src.items()}
                  for model, by_src in data["models"].items()}
        return cls(str(data["version"]), curves)

    def for_model(self, model_key: str | None) -> dict[str, Curve] | None:
        return self.curves.get(model_key) if model_key else None


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


def evidence_of(validated: dict[str, Any], *, enrichment_confidence: float, ocr_confidence: float | None
                ) -> list[Evidence]:
    """The model- or rule-made fields of a ValidatedAsset dict (before review) as evidence."""
    out: list[Evidence] = []
    sources = validated.get("field_sources") or {}
    model_tags = [t for t in validated.get("tags") or [] if t.get("source") == "model"]
    for t in model_tags:
        out.append(Evidence(f"tags.{t['tag']}", f"tag:{tag_group(t['tag'])}", float(t.get("score") or 0.0)))
    if sources.get("alt_text") in ("model", "rule"):
        alt = validated.get("alt_text") or ""
        if validated.get("decorative") or not alt.strip():
            out.append(Evidence("alt_text", "alt:decorative", enrichment_confidence))
        else:
            backing = [float(t.get("score") or 0.0) for t in model_tags
                       if tag_group(t["tag"]) == "class" and _names(alt, t["tag"], t.get("label"))]
            if backing:
                out.append(Evidence("alt_text", "alt:tag", max(backing)))
            elif '"' in alt and ocr_confidence is not None:
                out.append(Evidence("alt_text", "alt:text", ocr_confidence))
            else:
                out.append(Evidence("alt_text", "alt:unbacked", enrichment_confidence))
    if sources.get("visible_text") in ("model", "rule") and (validated.get("visible_text") or "").strip():
        out.append(Evidence("visible_text", "ocr", 0.0 if ocr_confidence is None else ocr_confidence))
    return out


def ocr_confidence(ocr: dict[str, Any] | None) -> float | None:
    conf = (ocr or {}).get("mean_confidence")
    return None if conf is None else float(conf) / 100.0 if conf > 1 else float(conf)
