"""End-to-end count check of the KPI app (issue 22): every record published on `raw` must come out of the
pipeline as a `validated` record or a dead letter. A record lost between hops (a broker that acknowledged a
write and never kept it, a bug that drops a record) shows nowhere else, so this turns it into a number and an
alert: published records older than `kpis.flow_grace_s` that are neither validated nor dead-lettered.

Pure logic, no Kafka. The KPI app's per-topic agents emit small events to its one-partition KPI-event topic,
so one agent sees them all in one order and folds them into the `flow` table:

    p  published on raw        {"t": "p", "at": publish ms, "asset": id, "version": v}
    v  validated (the KPI event of every validated record, with "version")
    x  dead-lettered on the way to validated (original topic raw, preprocessed or enriched)
                               {"t": "x", "at": ms, "asset": id, "version": v or None (original not decodable)}
    xi dead-lettered by the index sink after it was validated (original topic validated, stage index): the same
       fields; counted as `index_dead_lettered`, a part of `validated` (validated, and not in the index)

Table keys: `windows` — the kept window starts; `w:<start ms>` — per 5-minute window (`kpis.flow_window_s`) of publish time: published, validated,
dead_lettered, index_dead_lettered (each outcome counted in the window its record was published in); `a:<asset id>`
— per asset: `pending` [[version, window start, publish ms]] published and not yet seen out, `validated` the same for
the publications validated (kept for their window, so an index letter read later finds the window its record was
published in), `early` [[version, kind, ms]] outcomes that arrived before their publication (or an index letter
before its validated record) (the agents read their topics independently; a redelivered
duplicate stays there too, until the kept windows have passed). Matching is by asset id and version; a dead
letter whose original cannot be decoded (an oversize original kept in the sidecar store) settles the asset's
oldest pending publication. Validated records the review group re-publishes (a person's decision, stamped
`review`) have no raw record behind them and are left out.
"""
from __future__ import annotations

from typing import Any, MutableMapping

from app.kpis.settings import KpiSettings

KINDS = ("validated", "dead_lettered")  # what settles a publication; index_dead_lettered is a part of validated
INDEX = "windows"  # the table key listing the kept window starts


def window_of(ks: KpiSettings, at_ms: int) -> int:
    size = int(ks.flow_window_s * 1000)
    return at_ms - at_ms % size


def _window(table: MutableMapping[str, Any], start: int) -> dict[str, int]:
    return {"published": 0, "validated": 0, "dead_lettered": 0, "index_dead_lettered": 0,
            **(table.get(f"w:{start}") or {})}


def _bump(table: MutableMapping[str, Any], start: int, ks: KpiSettings, *fields: str) -> None:
    w = _window(table, start)
    for f in fields:
        w[f] += 1
    table[f"w:{start}"] = w
    starts = list(table.get(INDEX) or [])
    if start not in starts:  # a new window; the index lists them all, the oldest past the kept ones go
        starts = sorted(starts + [start])
        for gone in starts[:-ks.flow_windows_kept]:
            del table[f"w:{gone}"]
        table[INDEX] = starts[-ks.flow_windows_kept:]


def fold(table: MutableMapping[str, Any], event: dict[str, Any], ks: KpiSettings) -> bool:
    """Fold one KPI event ("p", "v" or "x"; others are ignored) into the flow table. True for the count
    check's own events ("p", "x"), which no other KPI reads; windows past the kept ones are dropped then."""
    kind = {"p": "published", "v": "validated", "x": "dead_lettered", "xi": "index_dead_lettered"}.get(event["t"])
    if kind is None:
        return False
    if event.get("by") != "review":  # a person's decision re-published: no raw record behind it
        _fold(table, event, kind, ks)
    return kind != "validated"


def ignore(table: MutableMapping[str, Any], event: dict[str, Any], ks: KpiSettings) -> bool:
    """`fold` with the count check off (`kpis.flow_enabled=false`): every event is left to the other KPIs."""
    return False


def _fold(table: MutableMapping[str, Any], event: dict[str, Any], kind: str, ks: KpiSettings) -> None:
    key = f"a:{event['asset']}"
    entry = table.get(key) or {}
    entry = {k: [list(x) for x in entry.get(k) or []] for k in ("pending", "validated", "early")}
    horizon = event["at"] - int(ks.flow_window_s * 1000) * ks.flow_windows_kept
    for k in ("pending", "validated"):
        entry[k] = [p for p in entry[k] if p[1] >= window_of(ks, horizon)]  # its window is gone
    entry["early"] = [e for e in entry["early"] if e[2] >= horizon]
    version = event.get("version")
    if kind == "published":
        start = window_of(ks, event["at"])
        match = next((e for e in entry["early"] if e[1] in KINDS and (e[0] == version or e[0] is None)), None)
        if match is not None:
            entry["early"].remove(match)
            _bump(table, start, ks, "published", match[1])
            if match[1] == "validated":
                _validated(table, entry, [version, start, event["at"]], ks)
        else:
            entry["pending"].append([version, start, event["at"]])
            _bump(table, start, ks, "published")
    elif kind == "index_dead_lettered":
        match = next((p for p in sorted(entry["validated"], key=lambda p: p[2])
                      if version is None or p[0] == version), None)
        if match is not None:
            entry["validated"].remove(match)
            _bump(table, match[1], ks, kind)
        else:  # its validated record (or publication) is still to be read
            entry["early"].append([version, kind, event["at"]])
    else:
        pending = sorted(entry["pending"], key=lambda p: p[2])
        match = next((p for p in pending if version is None or p[0] == version), None)
        if match is not None:
            entry["pending"].remove(match)
            _bump(table, match[1], ks, kind)
            if kind == "validated":
                _validated(table, entry, match, ks)
        else:  # its publication is still to be read (or this is a redelivered duplicate: kept a day at most)
            entry["early"].append([version, kind, event["at"]])
    table[key] = entry


def _validated(table: MutableMapping[str, Any], entry: dict[str, list], publication: list, ks: KpiSettings) -> None:
    """A publication came out validated: an index letter of it read before counts now, else it is kept for one."""
    version = publication[0]
    early = next((e for e in entry["early"] if e[1] == "index_dead_lettered" and (e[0] is None or e[0] == version)),
                 None)
    if early is not None:
        entry["early"].remove(early)
        _bump(table, publication[1], ks, "index_dead_lettered")
    else:
        entry["validated"].append(list(publication))


def report(table: MutableMapping[str, Any], ks: KpiSettings, now_ms: int) -> dict[str, Any]:
    """Per window: published, validated, dead-lettered, unaccounted (published minus both) and whether it is
    settled (its end older than `kpis.flow_grace_s`), and index_dead_lettered (of the validated, those the index
    sink dead-lettered: validated, not in the index); totals over the kept windows; `unaccounted` counts the settled
    windows only — records that should have come out by now."""
    size = int(ks.flow_window_s * 1000)
    windows = []
    for start in table.get(INDEX) or []:
        w = table.get(f"w:{start}") or {}
        settled = start + size + ks.flow_grace_s * 1000 <= now_ms
        open_ = w.get("published", 0) - w.get("validated", 0) - w.get("dead_lettered", 0)
        windows.append({"window_start": start, "window_end": start + size, "settled": settled,
                        "published": w.get("published", 0), "validated": w.get("validated", 0),
                        "dead_lettered": w.get("dead_lettered", 0),
                        "index_dead_lettered": w.get("index_dead_lettered", 0), "unaccounted": open_})
    totals = {f: sum(w[f] for w in windows) for f in ("published", "validated", "dead_lettered", "index_dead_lettered")}
    lost = sum(w["unaccounted"] for w in windows if w["settled"])
    oldest = next((w["window_start"] for w in windows if w["settled"] and w["unaccounted"] > 0), None)
    return {"window_s": ks.flow_window_s, "grace_s": ks.flow_grace_s, **totals, "unaccounted": lost,
            "oldest_unaccounted_window_start": oldest, "windows": windows}


def unaccounted_assets(table: MutableMapping[str, Any], ks: KpiSettings, now_ms: int,
                       limit: int = 100) -> list[dict[str, Any]]:
    """The publications behind `unaccounted`: asset id, version and publish time, oldest first."""
    size = int(ks.flow_window_s * 1000)
    out = []
    for key in list(table.keys()):
        if not key.startswith("a:"):
            continue
        for version, start, at in (table.get(key) or {}).get("pending") or []:
            if start + size + ks.flow_grace_s * 1000 <= now_ms:
                out.append({"asset_id": key[2:], "version": version, "published_at": at})
    out.sort(key=lambda r: r["published_at"])
    return out[:limit]
