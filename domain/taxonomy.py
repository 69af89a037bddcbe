"""The controlled vocabulary: versioned taxonomy files, synonym / deprecation mapping, allow- and deny-lists.

    tax = load_taxonomy()                  # bundled latest (domain/taxonomy/v<N>.json)
    tax.version                            # 'v2'
    tax.map("Sneakers")                    # MappedTag(tag='product:sneaker', ..., parents=('product:shoe', 'product:footwear'))
    tax.map("asian")                       # None (denied)  -- tax.resolve(...) says why
    tax.remap(["subject:automobile"])      # ['subject:car']  (v1 tags onto this version)
    tax.vocabulary()                       # [{"tag", "facet", "label", "synonyms", "parent"}, ...]

File format (one self-contained file per version; see docs/validate.md):

    {"version": "v2", "released": "2026-10-15", "facets": {"subject": "..."},
     "tags": [{"tag": "product:sneaker", "label": "sneaker", "synonyms": ["running shoe"], "parent": "product:shoe"}],
     "deprecated": {"product:sneakers": "product:sneaker", "style:hdr": null},
     "deny": {"facets": ["religion", ...], "terms": ["muslim", ...], "patterns": ["^\\\\d+[- ]years?[- ]old$"]}}

The `tags` list is the allow-list: only these canonical tags ever reach `validated.tags`.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal

TAXONOMY_DIR = Path(__file__).resolve().parent / "taxonomy"

Outcome = Literal["mapped", "denied", "removed", "unknown", "empty"]


def normalize(text: str) -> str:
    """Case, width, whitespace, '_' and '-' folded: '  Golden_Retriever ' -> 'golden-retriever'."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    text = re.sub(r"[\s_\-]+", "-", text)
    return text.strip("-.,;!?\"'()[]{}")


def normalize_tag(raw: str) -> tuple[str | None, str]:
    """'Color : Red' -> ('color', 'red'); 'red' -> (None, 'red')."""
    if ":" in raw:
        facet, value = raw.split(":", 1)
        facet, value = normalize(facet), normalize(value)
        if facet:
            return facet, value
    return None, normalize(raw)


@dataclass(frozen=True)
class MappedTag:
    tag: str
    """Canonical 'facet:value' in this taxonomy version."""
    facet: str
    label: str
    matched: str
    """How the raw tag was matched: exact | label | synonym | plural | deprecated."""
    raw: str
    parents: tuple[str, ...] = ()
    """Ancestors, nearest first: a child implies its parents (product:sneaker -> product:shoe -> product:footwear)."""
    replaced: str | None = None
    """The deprecated tag this one replaced, if any."""


@dataclass(frozen=True)
class Resolution:
    outcome: Outcome
    raw: str
    mapped: MappedTag | None = None
    reason: str = ""


@dataclass
class _Entry:
    tag: str
    facet: str
    value: str
    label: str
    synonyms: list[str]
    parent: str | None


@dataclass
class Taxonomy:
    version: str
    released: str | None
    facets: dict[str, str]
    entries: dict[str, _Entry]
    deprecated: dict[str, str | None]
    deny_facets: frozenset[str]
    deny_terms: frozenset[str]
    deny_patterns: tuple[re.Pattern[str], ...]
    path: str | None = None
    changes: list[str] = field(default_factory=list)
    _global: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict, repr=False)
    _scoped: dict[tuple[str, str], tuple[int, str, str]] = field(default_factory=dict, repr=False)
    _ends: dict[str, str] = field(default_factory=dict, repr=False)
    """Each deprecated id -> where its renames end: a current tag, or the removed id (replacement null)."""
    _names: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    """Each end -> every name that ends there (the end itself included), sorted."""

    # --- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | None = None) -> "Taxonomy":
        facets = dict(data.get("facets") or {})
        entries: dict[str, _Entry] = {}
        for item in data["tags"]:
            facet, value = normalize_tag(item["tag"])
            if not facet or not value:
                raise ValueError(f"taxonomy {path}: tag {item['tag']!r} is not facet:value")
            if facet not in facets:
                raise ValueError(f"taxonomy {path}: tag {item['tag']!r} uses undeclared facet {facet!r}")
            tag = f"{facet}:{value}"
            if tag in entries:
                raise ValueError(f"taxonomy {path}: duplicate tag {tag}")
            entries[tag] = _Entry(tag, facet, value, item.get("label") or value.replace("-", " "),
                                  list(item.get("synonyms") or []), item.get("parent"))
        for entry in entries.values():
            if entry.parent and entry.parent not in entries:
                raise ValueError(f"taxonomy {path}: {entry.tag} has unknown parent {entry.parent}")
        deprecated = {":".join(normalize_tag(k)): v for k, v in (data.get("deprecated") or {}).items()}  # type: ignore[arg-type]
        for old, new in deprecated.items():
            if new is not None and new not in entries and new not in deprecated:
                raise ValueError(f"taxonomy {path}: deprecated {old} -> unknown tag {new}")
        deny = data.get("deny") or {}
        tax = cls(version=str(data["version"]), released=data.get("released"), facets=facets, entries=entries,
                  deprecated=deprecated,
                  deny_facets=frozenset(normalize(f) for f in deny.get("facets", [])),
                  deny_terms=frozenset(normalize(t) for t in deny.get("terms", [])),
                  deny_patterns=tuple(re.compile(p) for p in deny.get("patterns", [])),
                  path=path, changes=list(data.get("changes") or []))
        tax._index()
        tax._index_renames()
        for entry in entries.values():  # no cycles
            tax.ancestors(entry.tag)
        return tax

    def _index(self) -> None:
        # priority: 0 = the canonical value, 1 = label, 2 = synonym; ties broken by facet order then file order
        facet_rank = {f: i for i, f in enumerate(self.facets)}
        for order, entry in enumerate(self.entries.values()):
            keys = [(0, entry.value), (1, normalize(entry.label))] + [(2, normalize(s)) for s in entry.synonyms]
            for prio, key in keys:
                if not key:
                    continue
                rank = (prio * 10_000 + facet_rank.get(entry.facet, 99) * 1000 + order)
                kind = ("exact", "label", "synonym")[prio]
                self._global.setdefault(key, []).append((rank, entry.tag, kind))
                scoped = self._scoped.get((entry.facet, key))
                if scoped is None or rank < scoped[0]:
                    self._scoped[(entry.facet, key)] = (rank, entry.tag, kind)
        for key in self._global:
            self._global[key].sort()

    def _index_renames(self) -> None:
        """Walk every rename chain once. A deprecated id is never current, even when the tags list still names it:
        its chain goes on to its replacement and ends at the first id that is not deprecated (a current tag) or at
        an id deprecated without a replacement (removed). A chain that comes back to itself is an error."""
        for old in self.deprecated:
            chain = [old]
            while (new := self.deprecated[chain[-1]]) is not None and new in self.deprecated:
                if new in chain:
                    raise ValueError(f"taxonomy {self.path}: deprecation cycle {' -> '.join([*chain, new])}")
                chain.append(new)
            self._ends[old] = chain[-1] if new is None else new
        names: dict[str, set[str]] = {}
        for old, end in self._ends.items():
            names.setdefault(end, {end}).add(old)
        self._names = {end: tuple(sorted(group)) for end, group in names.items()}

    # --- queries --------------------------------------------------------------------------------------
    def vocabulary(self) -> list[dict[str, Any]]:
        """Allowed, non-deprecated canonical tags, for prompts and label mapping (a deprecated id that the tags list
        still names is left out: its rename wins)."""
        return [{"tag": e.tag, "facet": e.facet, "label": e.label, "synonyms": list(e.synonyms),
                 "parent": e.parent} for e in self.entries.values() if e.tag not in self._ends]

    def tags(self) -> list[str]:
        return list(self.entries)

    def allowed(self, tag: str) -> bool:
        """True for a canonical tag of this version (the allow-list) that is not denied nor deprecated."""
        return tag in self.entries and tag not in self._ends and self.deny_reason(tag) is None

    def label(self, tag: str) -> str:
        return self.entries[tag].label

    def label_if_allowed(self, tag: str) -> str | None:
        """The label of an allowed tag, else None (what `domain.review.apply_review` takes as `label_of`)."""
        return self.label(tag) if self.allowed(tag) else None

    def ancestors(self, tag: str) -> list[str]:
        out: list[str] = []
        parent = self.entries[tag].parent
        while parent:
            if parent in out or parent == tag:
                raise ValueError(f"taxonomy {self.path}: parent cycle at {tag}")
            out.append(parent)
            parent = self.entries[parent].parent
        return out

    def deny_reason(self, raw: str) -> str | None:
        """Why a raw tag is on the deny-list, or None. Checked before any mapping."""
        facet, value = normalize_tag(raw)
        if facet and facet in self.deny_facets:
            return f"facet '{facet}' is denied"
        whole = normalize(raw.replace(":", " "))
        for candidate in {value, whole, value.replace("-", " "), whole.replace("-", " ")}:
            if normalize(candidate) in self.deny_terms:
                return f"term '{value}' is denied"
        spaced = value.replace("-", " ")
        for pattern in self.deny_patterns:
            if pattern.search(value) or pattern.search(spaced):
                return f"term '{value}' matches a denied pattern"
        return None

    def is_denied(self, raw: str) -> bool:
        return self.deny_reason(raw) is not None

    def resolve(self, raw: str) -> Resolution:
        """Map one raw model tag: mapped | denied | removed (deprecated without replacement) | unknown | empty."""
        if not raw or not normalize(raw.replace(":", "")):
            return Resolution("empty", raw, reason="empty tag")
        why = self.deny_reason(raw)
        if why:
            return Resolution("denied", raw, reason=why)
        facet, value = normalize_tag(raw)
        if facet is not None:
            tag = f"{facet}:{value}"
            if tag in self.deprecated:
                return self._follow(raw, tag)
            if tag in self.entries:
                return self._mapped(raw, tag, "exact")
            if facet in self.facets:
                hit = self._scoped.get((facet, value)) or self._scoped.get((facet, _singular(value) or ""))
                if hit:
                    return self._mapped(raw, hit[1], hit[2] if self._scoped.get((facet, value)) else "plural")
                return Resolution("unknown", raw, reason=f"'{tag}' is not in taxonomy {self.version}")
            # unknown facet prefix ("object:dog"): fall through to a facet-less lookup of the value
        for key, kind in ((value, None), (_singular(value), "plural")):
            if not key:
                continue
            hits = self._global.get(key)
            if hits:
                _, tag, how = hits[0]
                return self._mapped(raw, tag, kind or how)
            for old in (f"{f}:{key}" for f in self.facets):  # a bare deprecated value: 'automobile'
                if old in self.deprecated:
                    return self._follow(raw, old)
        return Resolution("unknown", raw, reason=f"'{normalize(raw)}' is not in taxonomy {self.version}")

    def narrower(self, tag: str) -> list[str]:
        """The tags below `tag` in the hierarchy (its children, their children, ...), vocabulary order: a child
        implies its parents (product:sneaker -> product:shoe -> product:footwear), so each of these is a `tag` too.
        [] for a tag with none or not in the vocabulary."""
        return [t for t in self.entries if t != tag and tag in self.ancestors(t)] if tag in self.entries else []

    def same_tags(self, tag: str) -> tuple[str, ...]:
        """`tag` and every name of the same tag across renames: the canonical tag a deprecated name was replaced
        by, and the deprecated names replaced by it (`color:grey` -> (color:grey, color:gray); `color:gray` ->
        (color:gray, color:grey)). Documents indexed before a rename still carry the old name, so a filter on
        either name must match both. A removed tag (deprecated, no replacement) has only older names."""
        end = self._ends.get(tag, tag)
        return (tag, *(name for name in self._names.get(end, (end,)) if name != tag))

    def current_name(self, tag: str) -> str | None:
        """The name a tag id has in this version: its replacement's (following renames) when it was renamed, None
        when it was removed (deprecated without a replacement), else the id itself."""
        if tag not in self._ends:
            return tag
        end = self._ends[tag]
        return None if end in self.deprecated else end

    def map(self, raw_tag: str) -> MappedTag | None:
        """The canonical tag for a raw tag, or None (unknown, denied or removed)."""
        return self.resolve(raw_tag).mapped

    def remap(self, tags: Iterable[str | dict[str, Any]]) -> list[Any]:
        """Bring tags stamped with an older taxonomy version onto this one.

        Strings come back as canonical strings; CanonicalTag dicts come back as dicts with tag/facet/label
        rewritten (score/source kept). Removed and denied tags are dropped; duplicates are merged (first wins).
        Parents are not added here (they already travelled with the record when it was validated).
        """
        out: list[Any] = []
        seen: set[str] = set()
        for item in tags:
            raw = item["tag"] if isinstance(item, dict) else item
            mapped = self.map(raw)
            if mapped is None or mapped.tag in seen:
                continue
            seen.add(mapped.tag)
            if isinstance(item, dict):
                out.append({**item, "tag": mapped.tag, "facet": mapped.facet, "label": mapped.label})
            else:
                out.append(mapped.tag)
        return out

    # --- helpers --------------------------------------------------------------------------------------
    def _mapped(self, raw: str, tag: str, how: str, replaced: str | None = None) -> Resolution:
        if tag in self._ends:  # still in the tags list, but deprecated: its rename wins (found by label/synonym)
            return self._follow(raw, tag)
        entry = self.entries[tag]
        return Resolution("mapped", raw, MappedTag(tag=tag, facet=entry.facet, label=entry.label, matched=how, raw=raw,
                                                   parents=tuple(self.ancestors(tag)), replaced=replaced))

    def _follow(self, raw: str, old: str) -> Resolution:
        end = self._ends[old]
        if end in self.deprecated:
            return Resolution("removed", raw, reason=f"'{old}' was removed in taxonomy {self.version}")
        return self._mapped(raw, end, "deprecated", replaced=old)

def _singular(value: str) -> str | None:
    if len(value) <= 3:
        return None
    if value.endswith("ies"):
        return value[:-3] + "y"
    if value.endswith(("ches", "shes", "sses", "xes")):
        return value[:-2]
    if value.endswith("s") and not value.endswith("ss"):
        return value[:-1]
    return None


def available_versions(directory: Path = TAXONOMY_DIR) -> list[str]:
    """Bundled versions, oldest first: ['v1', 'v2']."""
    found = [p.stem for p in directory.glob("v*.json") if re.fullmatch(r"v\d+", p.stem)]
    return sorted(found, key=lambda v: int(v[1:]))


@lru_cache(maxsize=16)
def _load(path: str) -> Taxonomy:
    with open(path, encoding="utf-8") as fh:
        return Taxonomy.from_dict(json.load(fh), path=path)


def load_taxonomy(path: str | None = None, version: str | None = None) -> Taxonomy:
    """A taxonomy file: `path` if given, else bundled `version` ('v1', 'v2'), else the bundled latest.
    Loaded once per process (cached); treat the result as read-only."""
    if path is None:
        versions = available_versions()
        if not versions:
            raise FileNotFoundError(f"no taxonomy files in {TAXONOMY_DIR}")
        if version is None:
            version = versions[-1]
        if version not in versions:
            raise FileNotFoundError(f"taxonomy version {version!r} not bundled (have {versions})")
        path = str(TAXONOMY_DIR / f"{version}.json")
    tax = _load(str(Path(path).resolve()))
    if version is not None and tax.version != version:
        raise ValueError(f"{path} holds taxonomy {tax.version}, not {version}")
    return tax


def taxonomy_from_settings(settings: Any) -> Taxonomy:
    """The taxonomy a deployment uses: settings.validate.taxonomy_path / taxonomy_version (default: bundled
    latest). Enrich and validate must call this so prompts and validation agree on one version."""
    cfg = settings.validate_
    return load_taxonomy(cfg.taxonomy_path, cfg.taxonomy_version)
