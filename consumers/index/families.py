"""Duplicate families: every document gets `family_id` (the asset id of its family's canonical member),
`family_size` and `family_canonical`, and its `duplicate_of` names that canonical member (none on the canonical).

A family is a connected group of documents joined by
- near-duplicate links (`duplicate_of`, set by enrich's dedupe: same bytes, or pHash/dHash near with the variant
  rules: another colour or another text is never a duplicate), taken as undirected, and
- the same content (`hashes.sha256`, same tenant): byte copies are one family even when enrich linked neither to the
  other (two copies enriched at the same moment both miss the dedupe lookup: the sink links them in this later pass).
Who arrived first, and how often an asset was processed, does not matter: {A, B} is one family whether B links to
A, A to B, both to each other (a rerun) or neither (a race).

The canonical member is the highest-quality one: most pixels, then most bytes (less compression), then the smallest
asset id (a tie broken by the data, never by arrival order; `domain.records.quality_rank`, the order enrich's
dedupe reuses along, so the canonical member's enrichment is its own). The links are then rewritten as a star: every other
member's `duplicate_of` is the canonical member (`duplicate_distance`: 0 for the same bytes, else the pHash
distance to it; its "near-duplicate of" review reason names the same member), the canonical member has none (nor
that reason), so no asset is a duplicate of itself or of a member pointing back, and processing the same assets again computes the same documents. A link to a document that is not indexed yet
(a copy indexed before the asset enrich matched it with) is kept as it is: it is the only trace of that family
until the other document arrives, whose write then finds the link and rebuilds the star. A late original with more pixels re-points the
whole family: the sink rewrites the other members' family and link fields (their stored `_source` at their own
version, `version_type=external_gte`, so a newer write of a member wins and carries its own family).

Documents this sink wrote recently (`Recent`) are found even before the store refreshes (a search does not see a
write until the next refresh): two copies written in consecutive batches are still linked.

A deleted member leaves its family (`after_delete`): the others' `family_size` drops; when it was the canonical
member, the remaining members regroup around the best of them (a member within `max_distance` pHash bits of it, or
with the same bytes, joins it; the others regroup among themselves the same way), so no member keeps a link to a
document that is gone.

Known limits: a family is read up to `MAX_MEMBERS` documents; two sink members indexing two new members of one family at the
same moment may each miss the other (the next write of any member sets it right); near (not byte-identical)
copies enriched at the same moment are linked only by enrich's dedupe, so they stay two families until one of
them is enriched again.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from elasticsearch import Elasticsearch

from domain.events import TENANT_SEPARATOR, scoped_id
from domain.records import quality_rank, relinked_reasons

log = logging.getLogger(__name__)

FIELDS = ["asset_id", "tenant", "version", "duplicate_of", "duplicate_distance", "width", "height", "byte_size",
          "hashes.sha256", "hashes.phash", "family_id", "family_size", "family_canonical", "media_type"]
FAMILY_FIELDS = ("family_id", "family_size", "family_canonical")
LINK_FIELDS = ("duplicate_of", "duplicate_distance")
WRITTEN = FAMILY_FIELDS + LINK_FIELDS
"""what the family pass sets on a document"""
MAX_MEMBERS = 500
MAX_ROUNDS = 6


def _written(doc: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(doc.get(k) for k in WRITTEN)


def apply(body: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Set the family and link fields of `fields` on `body` (a link field that is None is left out, as the
    document builder leaves out every None); returns `body`."""
    for k in WRITTEN:
        if k not in fields:
            continue
        if fields[k] is None and k in LINK_FIELDS:
            body.pop(k, None)
        else:
            body[k] = fields[k]
    if "duplicate_of" in fields and body.get("reasons") is not None:  # the review reasons name the same link
        distance = body.get("duplicate_distance")  # a video's: 0 for the same bytes, else none (`_link_distance`)
        body["reasons"] = relinked_reasons(list(body["reasons"]), body.get("duplicate_of"), distance,
                                           clip=body.get("media_type") == "video" and distance != 0)
    return body


def _content(doc: dict[str, Any]) -> tuple[str, str] | None:
    sha = (doc.get("hashes") or {}).get("sha256")
    return (str(doc.get("tenant") or ""), sha) if sha else None


def _phash(doc: dict[str, Any]) -> str | None:
    return (doc.get("hashes") or {}).get("phash")


class Recent:
    """The family-relevant fields of the documents this sink wrote last (a search sees a write only after the
    store's next refresh). One process; bounded."""

    def __init__(self, max_size: int = 5000):
        self.max_size = max_size
        self._docs: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._docs)

    def add(self, doc_id: str, body: dict[str, Any], version: int | None) -> None:
        doc = {k: body.get(k) for k in ("asset_id", "tenant", *WRITTEN, "width", "height", "byte_size", "media_type")}
        doc["hashes"] = {k: (body.get("hashes") or {}).get(k) for k in ("sha256", "phash")}
        doc["_version"] = version
        held = self._docs.get(doc_id)
        if held is not None and version is not None and (held.get("_version") or 0) > version:
            return  # an older event, which the store refuses: the newer entry stays
        self._docs.pop(doc_id, None)
        self._docs[doc_id] = doc
        while len(self._docs) > self.max_size:
            self._docs.popitem(last=False)

    def forget(self, doc_id: str) -> None:
        """A deleted document is nobody's family member any more."""
        self._docs.pop(doc_id, None)

    def matching(self, ids: set[str], contents: set[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """Documents named by `ids`, linked to one of them, or of one of `contents` ((tenant, sha256))."""
        return {i: dict(d) for i, d in self._docs.items()
                if i in ids or d.get("duplicate_of") in ids or _content(d) in contents}


def _same_image(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ha, hb = a.get("hashes") or {}, b.get("hashes") or {}
    if ha.get("sha256") and hb.get("sha256"):
        return ha["sha256"] == hb["sha256"]
    return bool(ha.get("phash")) and ha.get("phash") == hb.get("phash")


def _keep_link(body: dict[str, Any], stored: dict[str, Any]) -> None:
    """A new version of the same image that brings no link of its own (a reprocess, which skips the dedupe
    lookup; a rerun whose lookup missed) stays in its family: it keeps its stored link. A new image (other
    bytes) is linked only by what enrich found for it."""
    if not body.get("duplicate_of") and stored.get("duplicate_of") and stored["duplicate_of"] != stored.get(
            "asset_id") and _same_image(body, stored):
        body["duplicate_of"] = stored["duplicate_of"]


def _query(ids: list[str], contents: set[tuple[str, str]]) -> dict[str, Any]:
    should: list[dict[str, Any]] = []
    if ids:
        should += [{"ids": {"values": ids}}, {"terms": {"duplicate_of": ids}}]
    by_tenant: dict[str, list[str]] = {}
    for tenant, sha in sorted(contents):
        by_tenant.setdefault(tenant, []).append(sha)
    for tenant, shas in by_tenant.items():
        same_tenant = {"term": {"tenant": tenant}} if tenant else {"bool": {"must_not": {"exists": {"field": "tenant"}}}}
        should.append({"bool": {"filter": [same_tenant, {"terms": {"hashes.sha256": shas}}]}})
    return {"bool": {"should": should, "minimum_should_match": 1}}


def _read(client: Elasticsearch, alias: str, query: dict[str, Any], recent: Recent | None, ids: set[str],
          contents: set[tuple[str, str]], skip: set[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """The stored documents `query` finds (id -> family fields, asset_id and _version), with what this sink wrote
    that the search may not show yet (`recent.matching(ids, contents)`, less `skip`): the newer version wins, and a
    tie is this sink's own rewrite of that version (same _version), which the search still shows as it was."""
    resp = client.search(index=alias, size=MAX_MEMBERS, source_includes=FIELDS, version=True, query=query)
    found = {h["_id"]: {**(h.get("_source") or {}), "asset_id": h["_id"], "_version": h.get("_version")}
             for h in resp["hits"]["hits"]}
    if recent is not None:
        for i, d in recent.matching(ids, contents).items():
            if i not in skip and (i not in found or (d.get("_version") or 0) >= (found[i].get("_version") or 0)):
                found[i] = {**d, "asset_id": i}
    return found


def gather(client: Elasticsearch, alias: str, bodies: dict[str, dict[str, Any]],
           recent: Recent | None = None) -> dict[str, dict[str, Any]]:
    """The batch's documents and every stored document linked to them (through duplicate_of, either way, or the
    same content), breadth first, at most MAX_MEMBERS. The batch's bodies win over their stored versions; a
    batch document's stored links and family are followed too (its former family is recomputed when it leaves)."""
    for b in bodies.values():  # enrich names an asset; families name documents (a tenant's are scoped)
        if b.get("duplicate_of") and TENANT_SEPARATOR not in b["duplicate_of"]:
            b["duplicate_of"] = scoped_id(b["duplicate_of"], b.get("tenant"))
    known: dict[str, dict[str, Any]] = dict(bodies)
    frontier = set(bodies) | {b["duplicate_of"] for b in bodies.values() if b.get("duplicate_of")}
    contents = {c for c in map(_content, bodies.values()) if c}
    asked: set[str] = set()
    asked_contents: set[tuple[str, str]] = set()
    for _ in range(MAX_ROUNDS):
        ids = sorted(frontier - asked)
        new_contents = contents - asked_contents
        if (not ids and not new_contents) or len(known) >= MAX_MEMBERS:
            break
        asked |= set(ids)
        asked_contents |= new_contents
        found = _read(client, alias, _query(ids, new_contents), recent, set(ids), new_contents)
        frontier = set()
        for i, doc in found.items():
            if i in known:
                if i in bodies:  # its stored links: the family it may be leaving, or staying in
                    frontier |= {x for x in (doc.get("duplicate_of"), doc.get("family_id")) if x and x != i}
                    _keep_link(bodies[i], doc)
                continue
            known[i] = doc
            frontier.add(i)
            frontier |= {x for x in (doc.get("duplicate_of"), doc.get("family_id")) if x}
            if _content(doc):
                contents.add(_content(doc))
    return known


def components(docs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The families among `docs`: connected components of the duplicate_of links and of same-content documents
    (links to documents not in `docs` are ignored)."""
    parent = {i: i for i in docs}

    def find(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of: dict[tuple[str, str], str] = {}
    for i, d in docs.items():
        j = d.get("duplicate_of")
        if j in parent and j != i:
            parent[find(i)] = find(j)
        c = _content(d)
        if c is not None:
            parent[find(i)] = find(first_of.setdefault(c, i))
    groups: dict[str, list[str]] = {}
    for i in docs:
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _distance(doc: dict[str, Any], canonical: dict[str, Any]) -> int | None:
    """A member's distance to its canonical member: 0 for the same bytes, else the pHash distance (None: unknown)."""
    if _content(doc) is not None and _content(doc) == _content(canonical):
        return 0
    a, b = _phash(doc), _phash(canonical)
    return (int(a, 16) ^ int(b, 16)).bit_count() if a and b else None


def _link_distance(doc: dict[str, Any], canonical: dict[str, Any]) -> int | None:
    """The `duplicate_distance` a member's link carries: `_distance`, but none for a video that is not the same
    bytes (its link is the same-clip match of its keyframes; its poster's distance says nothing about it: a
    trimmed copy's poster is another frame)."""
    same_bytes = _content(doc) is not None and _content(doc) == _content(canonical)
    if not same_bytes and "video" in (doc.get("media_type"), canonical.get("media_type")):
        return None  # (a re-encode's poster may even be within 0 bits: still not the same bytes)
    return _distance(doc, canonical)


def after_delete(client: Elasticsearch, alias: str, deleted: set[str], recent: Recent | None = None,
                 max_distance: int = 6) -> list[dict[str, Any]]:
    """The stored members whose fields change because the documents `deleted` leave their families (the same
    entries as `assign`'s). Reads the deleted documents' own family fields first: call before they are deleted."""
    if not deleted:
        return []
    ids = sorted(deleted)
    gone = {d["_id"]: d.get("_source") or {} for d in client.mget(index=alias, ids=ids, source_includes=FIELDS)["docs"]
            if d.get("found")}
    fams = {f for f in (g.get("family_id") for g in gone.values()) if f} | set(ids)
    query = {"bool": {"should": [{"terms": {"family_id": sorted(fams)}}, {"terms": {"duplicate_of": ids}}],
                       "minimum_should_match": 1, "must_not": [{"ids": {"values": ids}}]}}
    left = _read(client, alias, query, recent, set(ids), set(), skip=deleted)
    groups: dict[str, list[str]] = {}
    for i, d in left.items():
        fam = d.get("family_id") if d.get("family_id") in fams else d.get("duplicate_of")
        groups.setdefault(fam or i, []).append(i)
    changed: list[dict[str, Any]] = []
    for fam, members in groups.items():
        remaining = sorted(members, key=lambda i: quality_rank(left[i]))
        while remaining:  # the best left is canonical; what is near it joins it; the rest regroup the same way
            canonical = remaining[0] if fam in deleted or fam not in left else fam
            near = [i for i in remaining if i == canonical or (d := _distance(left[i], left[canonical])) is not None
                    and d <= max_distance]
            if fam not in deleted and fam in left:
                near = list(remaining)  # its canonical is still there: the family only shrinks
            for i in near:
                fields = {"family_id": canonical, "family_size": len(near), "family_canonical": i == canonical,
                          "duplicate_of": None if i == canonical else canonical,
                          "duplicate_distance": None if i == canonical else _link_distance(left[i], left[canonical])}
                if _written(left[i]) != _written(fields):
                    changed.append({"asset_id": i, "_version": left[i].get("_version"), **fields})
            remaining = [i for i in remaining if i not in near]
    return changed


def assign(client: Elasticsearch, alias: str, bodies: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Set the family and link fields on the batch's bodies (asset id -> document body, changed in place) and
    return the stored members whose fields must change: [{asset_id, _version, family_id, family_size,
    family_canonical, duplicate_of, duplicate_distance}]."""
    return assign_families(client, alias, bodies)[0]


def assign_families(client: Elasticsearch, alias: str, bodies: dict[str, dict[str, Any]],
                    recent: Recent | None = None) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """`assign`, and the families of the batch's bodies (each a list of document ids)."""
    if not bodies:
        return [], []
    known = gather(client, alias, bodies, recent)
    changed: list[dict[str, Any]] = []
    groups = components(known)
    for members in groups:
        canonical = min(members, key=lambda i: quality_rank({**known[i], "asset_id": i}))
        for i in members:
            own = known[i].get("duplicate_of")
            if own and own not in known:  # a link to a document not indexed yet (or not read): the only trace
                link, distance = own, known[i].get("duplicate_distance")  # of that family until it arrives
            elif i == canonical:
                link, distance = None, None
            else:
                link, distance = canonical, _link_distance(known[i], known[canonical])
            fam = {"family_id": canonical, "family_size": len(members), "family_canonical": i == canonical,
                   "duplicate_of": link, "duplicate_distance": distance}
            if i in bodies:
                apply(bodies[i], fam)
            elif _written(known[i]) != _written(fam):
                changed.append({"asset_id": i, "_version": known[i].get("_version"), **fam})
    return changed, groups
