"""Alt-text rules. Deterministic fixes are applied and reported; what cannot be fixed is reported as a problem
(the stage routes the asset to review). Applied to model alt text only: a person's alt text is never changed.

1. decorative images get an empty alt (and keep the flag); a decorative image that shows text is a problem
2. a leading "image of" / "picture of" / "photo of" (and similar) is removed, the first letter capitalised
3. longer than the limit (125): keep the leading whole sentences that fit; no sentence boundary -> cut at the last
   whole word that fits (never published longer) and a problem
4. text visible in the image (OCR / the model's visible_text) that appears nowhere else (alt, caption, title,
   summary) is appended as ` Text: "..."` when it fits; otherwise -> problem
5. no alt text for a non-decorative image -> problem
6. a file name or camera-style name ("IMG_4032.JPG", "DSC_0042", "sunset.webp") is not an alt text -> problem,
   and it is not published as one

`judge` applies the checks that change nothing (2, 3, 6) to an alt text that is not the model's: the file's
embedded XMP/IPTC alt text (validate holds the asset for review with the reason; a file name is not published)
and a person's edit (`assetstream feedback` warns; a person's decision is final and published as written).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from domain.alttext import FILE_NAME, PREFIX, file_name  # noqa: F401 - file_name: validate's callers use it here

_PREFIX, _FILE_NAME = PREFIX, FILE_NAME


def judge(alt_text: str | None, max_chars: int | None = 125) -> list[str]:
    """What the rules find wrong with an alt text they may not change (a file's, a person's): a file name, a
    leading "image of", over `max_chars` (None: length not judged). Empty for an empty text (decorative, or
    none)."""
    text = " ".join((alt_text or "").split())
    if not text:
        return []
    out = []
    if file_name(text):
        out.append(f"alt text \"{short(text)}\" is a file name, not a description of the image")
    if (m := _PREFIX.match(text)) and len(text) > m.end():
        out.append(f"alt text starts with \"{m.group(0).strip()}\": screen readers already announce an image")
    if max_chars is not None and len(text) > max_chars:
        out.append(f"alt text is {len(text)} characters (> {max_chars}): screen readers read it in one go")
    return out


def repeats(alt_text: str | None, caption: str | None) -> bool:
    """Whether a caption repeats the alt text word for word (the whole caption, or its first sentence): published
    as an `<img alt>` next to a `<figcaption>`, a screen reader reads it twice (W3C alt tutorial: redundancy)."""
    alt = _squash(alt_text)
    if not alt or not caption:
        return False
    first = re.split(r"(?<=[.!?])\s+", " ".join(caption.split()), maxsplit=1)[0]
    return alt in (_squash(caption), _squash(first))


@dataclass
class AltResult:
    alt_text: str | None
    decorative: bool
    fixes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.fixes)


def _squash(text: str | None) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", (text or "").lower()).split())


def meaningful_text(text: str | None) -> str | None:
    """Visible text worth mentioning: at least two letters/digits after whitespace is collapsed."""
    if not text:
        return None
    clean = " ".join(text.split())
    return clean if len(re.findall(r"[0-9A-Za-z]", clean)) >= 2 else None


def appears_in(needle: str, haystacks: list[str | None]) -> bool:
    n = _squash(needle)
    return bool(n) and any(n in _squash(h) for h in haystacks if h)


def short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def cut_at_word(text: str, limit: int) -> str:
    """The longest prefix of whole words within `limit` characters, ending in an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[:limit - 1].rstrip()
    if " " in head and not text[limit - 1].isspace():
        head = head[:head.rfind(" ")].rstrip(" ,;:-")
    return head + "…"


def apply_rules(alt_text: str | None, decorative: bool, *, max_chars: int = 125, visible_text: str | None = None,
                elsewhere: list[str | None] | None = None) -> AltResult:
    vt = meaningful_text(visible_text)
    if decorative:
        res = AltResult("", True)
        if alt_text and alt_text.strip():
            res.fixes.append("decorative image: alt text emptied (screen readers skip it)")
        if vt:
            res.problems.append(f"image marked decorative but shows text \"{short(vt)}\"")
        return res
    if not alt_text or not alt_text.strip():
        return AltResult(None, False, problems=["no alt text for a non-decorative image"])

    if file_name(alt_text):  # nothing to keep: not published, a person writes one
        return AltResult(None, False, problems=[f"model alt text \"{short(' '.join(alt_text.split()))}\" is a "
                                                "file name, not a description of the image: not published"])
    res = AltResult(" ".join(alt_text.split()), False)
    if res.alt_text != alt_text:
        res.fixes.append("alt text: whitespace normalised")
    stripped = res.alt_text
    while (m := _PREFIX.match(stripped)) and len(stripped) > m.end():
        stripped = stripped[m.end():]
    if stripped != res.alt_text:
        removed = res.alt_text[: len(res.alt_text) - len(stripped)].strip()
        stripped = stripped[0].upper() + stripped[1:]
        res.fixes.append(f"alt text: removed leading \"{removed}\" (screen readers already announce an image)")
        res.alt_text = stripped

    if len(res.alt_text) > max_chars:
        n = len(res.alt_text)
        sentences = re.split(r"(?<=[.!?])\s+", res.alt_text)
        kept = ""
        for s in sentences:
            candidate = f"{kept} {s}".strip()
            if len(candidate) > max_chars:
                break
            kept = candidate
        if kept:
            res.alt_text = kept
            res.fixes.append(f"alt text was {n} chars (> {max_chars}): kept the leading sentence(s), {len(kept)} chars")
        else:  # never published over the limit: cut at the last word that fits, and a person looks at it
            res.alt_text = cut_at_word(res.alt_text, max_chars)
            res.fixes.append(f"alt text was {n} chars (> {max_chars}) with no sentence boundary: cut at a word to "
                             f"{len(res.alt_text)} chars")
            res.problems.append(f"alt text was {n} chars (> {max_chars}) with no sentence boundary: cut mid-sentence, "
                                "check it reads well")

    if vt and not appears_in(vt, [res.alt_text, *(elsewhere or [])]):
        sep = " " if res.alt_text.endswith((".", "!", "?")) else ". "
        candidate = f"{res.alt_text}{sep}Text: \"{vt}\""
        if len(candidate) <= max_chars and len(res.alt_text) <= max_chars:
            res.alt_text = candidate
            res.fixes.append("alt text: appended the text visible in the image, which appears nowhere else")
        else:
            res.problems.append(f"text visible in the image (\"{short(vt)}\") appears nowhere else and does not fit "
                                f"in the {max_chars}-char alt text")
    return res


def client_rules(max_chars: int = 125) -> dict[str, object]:
    """These rules in a form a browser applies live while a person edits alt text (the review app): the length
    limit, the leading-phrase pattern (valid JavaScript regex syntax, case-insensitive) and the messages, with
    {placeholders} the client fills in. A person's alt text is never changed: the client only shows the messages."""
    return {"max_chars": max_chars, "prefix_pattern": _PREFIX.pattern, "messages": {
        "empty": "no alt text for a non-decorative image (leave it empty only if the image is decorative)",
        "prefix": "starts with \"{match}\": screen readers already announce an image",
        "too_long": "{n} characters (> {max}): keep the leading sentence(s)",
        "visible_text": "text visible in the image (\"{text}\") appears nowhere else: mention it",
        "file_name": "a file name, not a description of the image",
    }, "file_name_pattern": _FILE_NAME.pattern}
