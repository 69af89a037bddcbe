"""What a target should receive for one ValidatedAsset, and which of those fields may be sent. Pure functions.

Only approved metadata leaves: `approved` (a person approved it) and `auto_applied` records for `write` targets;
`suggest` targets also take `needs_review` records (the target shows them to an editor). Per field:

- equal to what the target holds now (when it can be read) or to what we last wrote: nothing to send;
- the target holds something else than what we last wrote: a person changed it there -> a conflict, left alone;
- we never wrote the field and the target already holds a different non-empty value: a person's too
  (`protect_unknown`) -> a conflict, unless the target's values are the original file's own, which the editor
  saw in review and replaced (`edited`: the files target, see `edited_fields`), or an alt text there is only a
  file name ("IMG_0001.jpg": nobody's description, `nobodys_fields`), which our alt text or a decorative
  decision replaces;
- rights words only from the file or a person: `licensing` and `credit_text` are sent only when the record's
  value is the file's own or a person's (domain.render.rights_text); a model's paraphrase is never sent;
- we have no value (None, "", []) and never wrote one: nothing to send (an empty value equals a field the target
  lacks or holds empty, and it is no claim on a field a person filled);
- except a decision (`decided`): a decorative image's alt text is an explicit "" (screen readers skip the image),
  sent like any other value; a decorative image has no extended description (`summary`: none of ours);
- otherwise it is sent.

A write's Idempotency-Key (`write_key`) is unique per intended write and the same for a retry of it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from domain.alttext import file_name
from domain.records import asset_of
from domain.render import rights_text

WRITABLE_STATUSES = {"write": ("approved", "auto_applied"), "suggest": ("approved", "auto_applied", "needs_review")}
MISSING = object()


def eligible(value: dict[str, Any], mode: str) -> bool:
    return value.get("status") in WRITABLE_STATUSES[mode]


def our_value(value: dict[str, Any], name: str) -> Any:
    """A record field in the form a target receives: tags as the sorted list of their labels."""
    if name == "tags":
        return sorted({str(t.get("label") or t["tag"]) for t in value.get("tags") or []})
    if name == "decorative":
        return bool(value.get("decorative"))
    if name in ("licensing", "credit_text"):  # standard rights fields: the file's or a person's words only
        return rights_text(value, name)
    if value.get("decorative") and name in ("alt_text", "summary"):
        # a decorative image: an empty alt (a decision, see `decided`) and no extended description
        return "" if name == "alt_text" else None
    return value.get(name)


def decided(value: dict[str, Any], mapping: dict[str, str]) -> set[str]:
    """Their fields whose empty value of ours is a decision, not a missing value: a decorative image's alt text
    (written as an explicit "" over whatever the target held, e.g. a file name)."""
    return {theirs for ours, theirs in mapping.items() if ours == "alt_text" and value.get("decorative")}


def desired(value: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """{their field: our value} for the mapped fields."""
    return {theirs: our_value(value, ours) for ours, theirs in mapping.items()}


def fingerprint(target: str, url: str, wanted: dict[str, Any], decisions: set[str] = frozenset()) -> str:
    ident = [target, url, wanted] + ([sorted(decisions)] if decisions else [])  # no decision: the earlier form
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def write_key(target: str, value: dict[str, Any], body: bytes, previous: dict[str, Any] | None) -> str:
    """The Idempotency-Key of one write: the target, the asset, its version and latest review decision (a decision
    keeps the version), what we last wrote there and the body. A retry of the same write (the record again, the
    state untouched) has the same key; a value that comes back (X -> Y -> X) does not reuse X's first key."""
    asset = asset_of(value)
    decisions = (value.get("review") or {}).get("decision_ids") or []
    ident = json.dumps([target, asset["asset_id"], asset.get("tenant"), asset.get("version"),
                        decisions[-1] if decisions else None, previous or {}], sort_keys=True, default=str)
    return hashlib.sha256(ident.encode() + b"|" + body).hexdigest()


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return sorted(map(str, a)) == sorted(map(str, b))
    return _blank(a) and _blank(b) or a == b


def _blank(v: Any) -> bool:
    return v is None or v == "" or v == []


def get_path(doc: Any, path: str) -> Any:
    """A dotted path in a JSON object; MISSING when absent."""
    node = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'meta.alt': x} -> {'meta': {'alt': x}}."""
    out: dict[str, Any] = {}
    for path, v in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


@dataclass
class Decision:
    send: dict[str, Any] = field(default_factory=dict)
    """their field -> value to write"""
    conflicts: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """their field -> (ours, theirs now)"""
    owned: dict[str, Any] = field(default_factory=dict)
    """their field -> value we now own there (sent, or already equal): the next 'last written'"""


def nobodys_fields(current: dict[str, Any] | None, mapping: dict[str, str]) -> set[str]:
    """Their alt-text fields that hold only a file name ("IMG_0001.jpg"): not a person's alt text, so not
    protected as one (validate does not publish such a text either)."""
    theirs = mapping.get("alt_text")
    now = (current or {}).get(theirs) if theirs else None
    return {theirs} if isinstance(now, str) and file_name(now) else set()


def edited_fields(value: dict[str, Any], mapping: dict[str, str]) -> set[str]:
    """Their fields whose value an editor typed in review (action `edited`) on this record."""
    review = value.get("review") or {}
    return {mapping[f["field"]] for f in review.get("fields") or []
            if f.get("action") == "edited" and f.get("field") in mapping}


def decide(wanted: dict[str, Any], written: dict[str, Any], current: dict[str, Any] | None, *,
           protect_unknown: bool = True, merge_lists: bool = False, edited: set[str] = frozenset(),
           decisions: set[str] = frozenset()) -> Decision:
    """`written`: what we last wrote per field (absent = never); `current`: the target's values now, or None when
    it cannot be read (absent keys = the target does not have that field). `merge_lists`: list fields (keywords)
    are merged into the target's, whose own entries always stay (see _merge). `edited`: fields whose value an
    editor typed over the one the target holds and we never wrote (not protected by `protect_unknown`).
    `decisions`: fields whose empty value of ours is a value to write (`decided`), not "nothing of ours"."""
    d = Decision()
    for name, ours in wanted.items():
        last = written.get(name, MISSING)
        # a decision's "" is a value: only "" equals it (None or a missing field does not)
        eq = (lambda a, b: a == b) if name in decisions else same
        if name not in decisions and _blank(ours) and (last is MISSING or _blank(last)):
            # nothing of ours, now or before: nothing to do
            if current is None or _blank(current.get(name)):
                d.owned[name] = ours
            continue
        if merge_lists and isinstance(ours, list) and current is not None:
            _merge(d, name, ours, last, current.get(name) or [])
            continue
        if current is None:
            if last is MISSING or not eq(last, ours):
                d.send[name] = ours
            d.owned[name] = ours
            continue
        now = current.get(name, MISSING)
        if now is not MISSING and eq(now, ours):
            d.owned[name] = ours
        elif last is not MISSING and now is not MISSING and not same(now, last):
            d.conflicts[name] = (ours, now)
        elif last is MISSING and protect_unknown and now is not MISSING and not _blank(now) and name not in edited:
            d.conflicts[name] = (ours, now)
        else:
            d.send[name] = ours
            d.owned[name] = ours
    return d


def _merge(d: Decision, name: str, ours: list, last: Any, now: list) -> None:
    """A merged list field: nothing to do when all of ours are there and none we dropped since; a conflict when a
    person removed one we wrote (we do not add it again); else send ours (the target keeps its own entries)."""
    mine = set(map(str, last)) if last is not MISSING and last else set()
    have, want = set(map(str, now)), set(map(str, ours))
    if mine - have:
        d.conflicts[name] = (ours, now)
    elif want <= have and not (mine - want) & have:
        d.owned[name] = ours
    else:
        d.send[name] = ours
        d.owned[name] = ours
