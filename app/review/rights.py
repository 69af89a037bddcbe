"""What the review app says about an asset's usage rights (trial 23, a rights manager's wishes): the file's
special instructions (IPTC 2:40 / XMP photoshop:Instructions: "Embargoed until 5 May", "Do not crop"), the usage
flag in words for the queue's *usage* column, and which assets of a bulk approval have restricted or unknown rights
(the approval asks before approving those; so does approving one such asset from its page).

    instructions(doc)      the special instructions the file carries, or None (untrusted text: autoescaped)
    usage(doc)             {"flag", "label", "risky", "why", "why_beside"}: the usage flag as the queue shows it
    needs_rights_check(d)  usage(d)["risky"]: restricted (editorial only too) or unknown rights
"""
from __future__ import annotations

import re
from typing import Any

#: the usage flags a bulk approval asks about before approving (a person confirms the intended use)
RISKY = ("restricted", "unknown")
#: what the queue's usage column says for each flag (text, never colour alone)
LABELS = {"ok": "ok", "credit_required": "credit required", "restricted": "restricted", "unknown": "unknown"}
# "Editorial use only", "for editorial purposes only", "only for editorial use" (not "editorial and commercial use")
_EDITORIAL = re.compile(r"\beditorial(?:[\s\-]+(?:use|purposes?))?[\s\-]+only\b|\bonly[\s\-]+(?:for[\s\-]+)?editorial\b",
                        re.I)
#: the reasons validate words about the rights (consumers/validate/rights.py and stage.py)
_RIGHTS_REASON = re.compile(r"^(?:usage (?:restricted|ok|terms not understood)|also|licence restricts use|"
                            r"no licence evidence|credit must be displayed)\b", re.I)
#: what the queue reads of each row for its usage column
USAGE_FIELDS = ["usage_flag", "usage_terms", "record.enriched.pre.embedded.instructions"]


def instructions(doc: dict[str, Any]) -> str | None:
    """The special instructions of the file (as preprocess read them into the embedded metadata, kept in the
    document's stored record), stripped; None when the file has none."""
    emb = ((((doc.get("record") or {}).get("enriched") or {}).get("pre") or {}).get("embedded") or {})
    text = str(emb.get("instructions") or "").strip()
    return text or None


def usage(doc: dict[str, Any]) -> dict[str, Any]:
    """The usage flag as the queue's column says it: `label` (restricted assets whose evidence says "editorial"
    read "editorial only"; an asset without a flag reads "unknown"), `risky` (restricted or unknown: a bulk approval
    asks first), `why` (validate's rights reasons) and `why_beside` (those not quoting the special instructions)."""
    flag = str(doc.get("usage_flag") or "unknown")
    why = [str(r) for r in doc.get("reasons") or [] if _RIGHTS_REASON.match(str(r))]
    label = LABELS.get(flag, flag.replace("_", " "))
    if flag == "restricted":
        said = [*[r for r in why if r.lower().startswith(("usage restricted", "also"))],
                str(doc.get("usage_terms") or ""), instructions(doc) or ""]
        if any(_EDITORIAL.search(t) for t in said):
            label = "editorial only"
    # beside the special instructions shown in full, a reason quoting them only repeats them (trial 25 m2)
    beside = [r for r in why if "special instructions:" not in r.lower()]
    return {"flag": flag, "label": label, "risky": flag in RISKY, "why": why, "why_beside": beside}


def needs_rights_check(doc: dict[str, Any]) -> bool:
    return usage(doc)["risky"]
