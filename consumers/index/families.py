"""Duplicate families: every document gets `family_id` (the asset id of its family's canonical member),
`family_size` and `family_canonical`.

A family is a connected group of near-duplicate links (`duplicate_of`, set by enrich's dedupe: same bytes, or
pHash/dHash near with the variant rules: another colour or another text is never a duplicate), taken as
undirected, so who arrived first does not matter: {A, B} is one family whether B links to A or A to B. The
canonical member is the highest-quality one: most pixels, then most bytes (less compression), then the smallest
asset id (a tie broken by the data, never by arrival order). A late original with more pixels re-points the
whole family: the sink rewrites the other members' family fields (their stored `_source` at their own version,
`version_type=external_gte`, so a newer write of a member wins and carries its own family).

Known limits: a family is read up to `MAX_MEMBERS` documents; a deleted member leaves the others' family fields
as they were until one of them is indexed again; two sink members indexing two new members of one family at the
same moment may each miss the other (the next write of any member sets it right).
"""
from __future__ import annotations

import logging
from typing import Any

from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

FIELDS = ["asset_id", "duplicate_of", "width", "height", "byte_size", "family_id", "family_size", "family_canonical"]
FAMILY_FIELDS = ("family_id", "family_size", "family_canonical")
MAX_MEMBERS = 500
MAX_ROUNDS = 6


def quality_rank(doc: dict[str, Any]) -> tuple[int, int, str]:
    """Sort key, best first: most pixels, most bytes, smallest asset id."""
    pixels = int(doc.get("width") or 0) * int(doc.get("height") or 0)
    return (-pixels, -int(doc.get("byte_size") or 0), str(doc.get("asset_id")))


def _family_of(doc: dict[str, Any]) -> tuple[Any, Any, Any]:
    return doc.get("family_id"), doc.get("family_size"), doc.get("family_canonical")


def gather(client: Elasticsearch, alias: str, bodies: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The batch's documents and every stored document linked to them (through duplicate_of, either way),
    breadth first, at most MAX_MEMBERS. The batch's bodies win over their stored versions."""
    known: dict[str, dict[str, Any]] = dict(bodies)
    frontier = set(bodies) | {b["duplicate_of"] for b in bodies.values() if b.get("duplicate_of")}
    asked: set[str] = set()
    for _ in range(MAX_ROUNDS):
        ids = sorted(frontier - asked)
        if not ids or len(known) >= MAX_MEMBERS:
            break
        asked |= set(ids)
        resp = client.search(index=alias, size=MAX_MEMBERS, source_includes=FIELDS, version=True, query={
            "bool": {"should": [{"ids": {"values": ids}}, {"terms": {"duplicate_of": ids}}],
                     "minimum_should_match": 1}})
        frontier = set()
        for h in resp["hits"]["hits"]:
            if h["_id"] in known:
                continue
            known[h["_id"]] = {**(h.get("_source") or {}), "asset_id": h["_id"], "_version": h.get("_version")}
            frontier.add(h["_id"])
            if known[h["_id"]].get("duplicate_of"):
                frontier.add(known[h["_id"]]["duplicate_of"])
    return known


def components(docs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The families among `docs`: connected components of the duplicate_of links (links to documents not in
    `docs` are ignored)."""
    parent = {i: i for i in docs}

    def find(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, d in docs.items():
        j = d.get("duplicate_of")
        if j in parent and j != i:
            parent[find(i)] = find(j)
    groups: dict[str, list[str]] = {}
    for i in docs:
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def assign(client: Elasticsearch, alias: str, bodies: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Set family_id / family_size / family_canonical on the batch's bodies (asset id -> document body, changed
    in place) and return the stored members whose family fields must change: [{asset_id, _version, family_id,
    family_size, family_canonical}]."""
    return assign_families(client, alias, bodies)[0]


def assign_families(client: Elasticsearch, alias: str, bodies: dict[str, dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """`assign`, and the families of the batch's bodies (each a list of document ids)."""
    if not bodies:
        return [], []
    known = gather(client, alias, bodies)
    changed: list[dict[str, Any]] = []
    groups = components(known)
    for members in groups:
        canonical = min((known[i] for i in members), key=quality_rank)["asset_id"]
        for i in members:
            fam = {"family_id": canonical, "family_size": len(members), "family_canonical": i == canonical}
            if i in bodies:
                bodies[i].update(fam)
            elif _family_of(known[i]) != _family_of(fam):
                changed.append({"asset_id": i, "_version": known[i].get("_version"), **fam})
    return changed, groups
