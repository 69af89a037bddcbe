"""What licence texts say, shared by validate's usage flag (consumers/validate/rights.py) and the local rights
model (consumers/enrich/providers/local/engine.py): the restrictive phrases, and whether a grant ("CC0", "public
domain", "royalty-free") is negated in its clause ("Not CC0 and not public domain", "isn't royalty-free").

    RESTRICTED          editorial only, no licence / not licensed, licence fee / licence required, no
                        advertising / merchandising, rights-managed, embargo, …
    NON_COMMERCIAL      non-commercial wording outside a CC licence name (restricts a commercial tenant)
    negated(t, s, e)    is the phrase t[s:e] negated within its clause?
    grants(p, t)        (found, negated) for every occurrence of pattern p in t
"""
from __future__ import annotations

import re

_USES = r"(?:commercial|advertising|advertisement|promotional|promotion|marketing|merchandising|merchandise|resale|sale)"
RESTRICTED = re.compile(r"editorial|personal use only|private use only|"
                        r"no (?:commercial )?re-?use|rights[\s\-]managed|do not (?:use|publish|reproduce)|"
                        r"\brestricted\b|embargo|internal review only|"
                        rf"\bnot (?:to be used )?for (?:any )?{_USES}|\bno {_USES}\b|\bnot (?:be )?used for {_USES}|"
                        r"\bno licen[cs]e|\bnot licen[cs]ed|\bunlicen[cs]ed\b|\bwithout (?:a |any )?licen[cs]e|"
                        r"licen[cs]e (?:fee|is required|required|must be (?:obtained|purchased|acquired))|"
                        r"\bfees? (?:applies|apply|payable|due)|requires? (?:a |an )?(?:paid )?licen[cs]e|"
                        r"permission (?:is )?required", re.I)
# non-commercial wording outside a CC licence name: restricts a tenant that uses assets commercially
NON_COMMERCIAL = re.compile(r"non[\s\-]?commercial|\bno commercial\b|\bnot for commercial", re.I)
# a negation in the same clause before a grant ("not CC0", "isn't royalty-free", "without a public-domain
# dedication", "non-royalty-free") or right after it ("CC0 does not apply"): the grant does not count
_NEGATION_BEFORE = re.compile(r"\b(?:not|no|never|nor|neither|without|cannot)\b|n't\b|\bnon[\s\-]*$", re.I)
_NEGATION_AFTER = re.compile(r"^\W*(?:(?:does|do|did|shall|will|would)\s*(?:not|n't)\s+apply|not applicable|"
                             r"(?:is|are)\s*(?:not|n't)\b|no longer\b|excluded\b)", re.I)
_CLAUSE_END = re.compile(r"[.;:!?\n]")
_NEGATION_WINDOW = 40


def negated(text: str, start: int, end: int) -> bool:
    """Is the phrase text[start:end] negated within its clause?"""
    before = text[max(0, start - _NEGATION_WINDOW):start]
    cut = [m.end() for m in _CLAUSE_END.finditer(before)]
    if cut:
        before = before[cut[-1]:]
    if _NEGATION_BEFORE.search(before):
        return True
    after = _CLAUSE_END.split(text[end:end + _NEGATION_WINDOW], maxsplit=1)[0]
    return bool(_NEGATION_AFTER.search(after))


def grants(pattern: re.Pattern[str], text: str) -> tuple[bool, bool]:
    """(found, negated): whether the pattern occurs and whether any occurrence is negated."""
    found = neg = False
    for m in pattern.finditer(text):
        found = True
        neg = neg or negated(text, m.start(), m.end())
    return found, neg
