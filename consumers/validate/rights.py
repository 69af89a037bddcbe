"""usage_flag: ok | credit_required | restricted | unknown, from every piece of licence evidence we have.

Evidence, strongest first: the uploader's declared licence, the file's XMP/IPTC (usage terms, special
instructions, licence URL, copyright notice; a person's copyright in human_fields), then the model's rights
summary and its must_display_credit flag. Each text is classified; the most restrictive class wins, and a negated
grant ("not CC0", "not royalty-free") is a restriction, never a grant:

    restricted       editorial only, non-commercial (for commercial tenants), rights-managed, "all rights
                     reserved" / a bare copyright notice without any licence grant
    credit_required  CC BY family (BY, BY-SA, BY-ND; BY-NC when the tenant is non-commercial), or the model says
                     a credit must be displayed
    ok               CC0 / public domain / a licence the tenant owns (settings.owned_license_markers)
    unknown          nothing recognisable

The model alone can never make an asset 'ok' (it may hallucinate a free licence); it can only make it stricter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from domain.rights import NON_COMMERCIAL as _NON_COMMERCIAL, RESTRICTED as _RESTRICTED, grants as _grants, negated

_PD = re.compile(r"\bcc0\b|cc[\s\-]?zero|publicdomain|public[\s\-]domain|\bpdm\b|no known copyright", re.I)
_CC_URL = re.compile(r"creativecommons\.org/licenses/([a-z\-]+)", re.I)
_CC_NAME = re.compile(r"\b(?:cc|creative\s+commons)[\s\-]*((?:by|attribution)(?:[\s\-]+(?:nc|nd|sa|non[\s\-]?commercial|"
                      r"no[\s\-]?derivatives|share[\s\-]?alike))*)", re.I)
_RESERVED = re.compile(r"all rights reserved|©|\(c\)|\bcopyright\b", re.I)

RANK = {"unknown": 0, "ok": 1, "credit_required": 2, "restricted": 3}


@dataclass
class RightsDecision:
    flag: str
    reasons: list[str] = field(default_factory=list)
    evidence: list[tuple[str, str, str]] = field(default_factory=list)
    """(source, text, class) for every piece of evidence seen."""
    review: list[str] = field(default_factory=list)
    """reasons a person must look at the rights even when the flag alone would not send the asset to review."""


def classify(text: str, *, commercial_use: bool, owned_markers: Iterable[str]) -> tuple[str, str] | None:
    """One licence text -> (class, short explanation); None when it says nothing recognisable.
    class: ok | credit | restricted | reserved.

    Never wrong in the customer's favour: restrictions are looked for first, and a grant (CC0 / public domain, a
    CC licence, an owned-licence marker) that is negated in its clause ("Not CC0", "not royalty-free") does not
    count: the text then says a licence is needed, which restricts use."""
    t = " ".join(text.split())
    low = t.lower()
    if not low or low in ("unknown", "none", "n/a", "null"):
        return None
    if _RESTRICTED.search(t):
        return "restricted", f"'{_short(t)}' restricts use"
    cc = _CC_URL.search(t)
    parts = None
    if cc:
        parts = set(cc.group(1).lower().split("-"))
    else:
        m = _CC_NAME.search(t)
        if m:
            if negated(t, m.start(), m.end()):
                return "restricted", f"'{_short(t)}' says the Creative Commons licence does not apply"
            s = m.group(1).lower()
            parts = {"by"}
            if re.search(r"\bnc\b|non[\s\-]?commercial", s):
                parts.add("nc")
            if re.search(r"\bnd\b|no[\s\-]?derivatives", s):
                parts.add("nd")
            if re.search(r"\bsa\b|share[\s\-]?alike", s):
                parts.add("sa")
    name = "CC " + "-".join(p.upper() for p in ("by", "nc", "nd", "sa") if p in parts) if parts else ""
    if parts is not None and "by" in parts and "nc" in parts and commercial_use:
        return "restricted", f"{name} is non-commercial only and this tenant uses assets commercially"
    if commercial_use and _NON_COMMERCIAL.search(t):
        return "restricted", f"'{_short(t)}' is non-commercial only and this tenant uses assets commercially"
    if parts is not None and "by" in parts:
        extra = " (no derivatives: do not crop or edit)" if "nd" in parts else ""
        return "credit", f"{name} requires attribution{extra}"
    found, neg = _grants(_PD, t)
    if neg:
        return "restricted", f"'{_short(t)}' says it is NOT public domain / CC0"
    for marker in owned_markers:
        if not marker:
            continue
        m_found, m_neg = _grants(re.compile(r"(?<!\w)" + re.escape(marker.lower()) + r"(?!\w)", re.I), t)
        if m_neg:
            return "restricted", f"'{_short(t)}' says it is NOT {marker}"
    if found:
        return "ok", f"'{_short(t)}' is public domain / CC0"
    for marker in owned_markers:
        if marker and re.search(r"(?<!\w)" + re.escape(marker.lower()) + r"(?!\w)", low):
            return "ok", f"'{_short(t)}' is a licence the tenant holds"
    if _RESERVED.search(t):
        return "reserved", f"'{_short(t)}' reserves all rights"
    return None


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def decide(evidence: list[tuple[str, str | None]], *, model_licensing: str | None, must_display_credit: bool,
           commercial_use: bool, owned_markers: Iterable[str]) -> RightsDecision:
    """evidence: (source label, text) from the declared licence and the file (not the model). The file's and the
    uploader's evidence is reported before the model's whenever it decides (or agrees with) the flag."""
    owned_markers = list(owned_markers)
    seen: list[tuple[str, str, str]] = []
    classes: dict[str, list[str]] = {}
    not_understood: list[tuple[str, str]] = []
    for source, text in evidence:
        if not text:
            continue
        got = classify(text, commercial_use=commercial_use, owned_markers=owned_markers)
        if got:
            seen.append((source, text, got[0]))
            classes.setdefault(got[0], []).append(f"{source}: {got[1]}")
        elif not source.startswith("copyright notice"):
            not_understood.append((source, text))
    model_classes: dict[str, str] = {}
    if model_licensing:
        got = classify(model_licensing, commercial_use=commercial_use, owned_markers=owned_markers)
        if got:
            seen.append(("model rights summary", model_licensing, got[0]))
            model_classes[got[0]] = f"model rights summary: {got[1]}"

    grant = any(c in classes for c in ("ok", "credit"))
    file_restricted = classes.get("restricted", []) + (
        [f"{w} and no licence grant was found" for w in classes.get("reserved", [])[:1]] if not grant else [])
    if file_restricted or "restricted" in model_classes:
        why = file_restricted + ([model_classes["restricted"]] if "restricted" in model_classes else [])
        return RightsDecision("restricted", [f"usage restricted: {why[0]}"] + [f"also: {w}" for w in why[1:2]], seen)
    if "credit" in classes or "credit" in model_classes or must_display_credit:
        why = classes.get("credit") or ([model_classes["credit"]] if "credit" in model_classes else [])
        if not why:
            why = ["model rights check: credit must be displayed"]
        elif must_display_credit:
            why.append("model rights check: credit must be displayed")
        return RightsDecision("credit_required", [f"credit required: {why[0]}"] + [f"also: {w}" for w in why[1:2]],
                              seen)
    if "ok" in classes:
        return RightsDecision("ok", [f"usage ok: {classes['ok'][0]}"], seen)
    if not_understood:
        source, text = not_understood[0]
        return RightsDecision("unknown", [f"rights unknown: {source}: usage terms not understood: "
                                          f"'{_short(' '.join(text.split()), 120)}'"], seen,
                              review=[f"usage terms not understood: '{_short(' '.join(text.split()), 120)}' "
                                      f"({source}): a person must read them"])
    if "ok" in model_classes:
        return RightsDecision("unknown", [f"rights unknown: only the {model_classes['ok']}; no declared or embedded "
                                          f"licence confirms it"], seen)
    return RightsDecision("unknown", ["rights unknown: no declared licence, XMP usage terms or licence URL"], seen)


def evidence_of(asset: dict[str, Any], embedded: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    human = asset.get("human_fields") or {}
    emb = embedded or {}
    return [("declared licence", asset.get("declared_license")),
            ("XMP usage terms", emb.get("usage_terms")),
            ("IPTC special instructions", emb.get("instructions")),
            ("XMP licence URL", emb.get("license_url")),
            ("copyright notice (human)", human.get("copyright")),
            ("copyright notice (file: XMP, IPTC or EXIF)", emb.get("copyright"))]
