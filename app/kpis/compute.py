"""Pure KPI / audit logic of the faust app (no Kafka here): per-asset latest state, the KPI events the per-asset
agents emit, the window aggregates the KPI agent folds them into, KpiSnapshot and AuditEntry records.

Two hops, because global aggregates must live on one partition: the per-asset agents (validated, feedback; keyed
and co-partitioned by asset id) keep `asset-state` and emit small JSON *KPI events* to `<app_id>-kpi-events`
(1 partition, constant key); the KPI agent folds each event into the running total and into its tumbling hour and
day windows (`kpi` table, keys 'total', 'hour:<start ms>', 'day:<start ms>').
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any, Iterable

from app.kpis.settings import KpiSettings
from domain import review
from domain.events import sent_ms
from domain.records import degraded_of

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
STATUSES = ("auto_applied", "needs_review", "rejected", "deleted", "approved")  # every ValidatedAsset status
DECIDED = ("auto_applied", "needs_review", "rejected")  # the pipeline's own decisions (validate), the shares' base
ACTIONS = ("accepted", "edited", "rejected")
AUDITED_FIELDS = ("title", "alt_text", "caption", "summary", "visible_text", "tags", "credit_text", "licensing")
UNKNOWN = "unknown"
WINDOWS = {"hour": HOUR_MS, "day": DAY_MS}
RECENT_WINDOWS = 4  # per asset, window starts remembered for the distinct-asset count and the status counted there
SHOWN_KEPT = 8  # per asset, the newest publications (time, version, provenance, field facts) a decision is matched against
PEOPLE_KEPT = 8  # per asset and field, the newest decisions people sent about it (and "*": the newest approvals)
FOLDED_RUNS_KEPT = 32  # per window aggregate and source partition, the newest runs of consecutive offsets folded
FOLDED_SOURCES_KEPT = 256  # per window aggregate, the source partitions those runs are remembered for

log = logging.getLogger("assetstream.kpis")
_warned_negative = False


def to_ms(value: Any) -> int:
    """timestamp-millis as fastavro hands it out (aware datetime) or as written (int ms)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(round(value.timestamp() * 1000))
    return int(value)


def now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def window_start(kind: str, at_ms: int) -> int:
    size = WINDOWS[kind]
    return at_ms - at_ms % size


def window_keys(at_ms: int) -> list[str]:
    return ["total"] + [f"{kind}:{window_start(kind, at_ms)}" for kind in WINDOWS]


def parse_window_key(key: str) -> tuple[str, int | None, int | None]:
    if key == "total":
        return "total", None, None
    kind, start = key.split(":", 1)
    return kind, int(start), int(start) + WINDOWS[kind]


# --- per-asset state ------------------------------------------------------------------------------------

def field_flags(validated: dict[str, Any]) -> dict[str, bool]:
    return {"title": bool((validated.get("title") or "").strip()),
            "alt_text": bool((validated.get("alt_text") or "").strip()) or bool(validated.get("decorative")),
            "tags": bool(validated.get("tags")),
            "caption": bool((validated.get("caption") or "").strip())}


def provenance_brief(provenance: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"task": p["task"], "prompt_id": p["prompt_id"], "prompt_version": p["prompt_version"],
             "model": p["model"]} for p in provenance]


def prompt_for(field: str, provenance: list[dict[str, str]], ks: KpiSettings) -> tuple[str, str, str]:
    """(prompt_id, prompt_version, model) that suggested `field`, from an asset's last provenance."""
    task = ks.field_tasks.get(field)
    for p in provenance:
        if p["task"] == task:
            return p["prompt_id"], p["prompt_version"], p["model"]
    return UNKNOWN, UNKNOWN, UNKNOWN


def _coverage_vector(state: dict[str, Any] | None, ks: KpiSettings) -> dict[str, int]:
    keys = ("active", "complete", *ks.complete_fields)
    if not state or state.get("deleted"):
        return {k: 0 for k in keys}
    flags = state["flags"]
    vec = {"active": 1, "complete": int(all(flags.get(f, False) for f in ks.complete_fields))}
    vec.update({f: int(flags.get(f, False)) for f in ks.complete_fields})
    return vec


def apply_validated(state: dict[str, Any] | None, validated: dict[str, Any],
                    ks: KpiSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """New per-asset state and the KPI event for one validated record.

    Latest-state KPIs (coverage, the provenance editors' decisions are charged to) follow the highest version;
    an older version arriving late still counts as a publication (status, time-to-publish, cost)."""
    asset = validated["enriched"]["pre"]["asset"]
    version = int(asset["version"])
    status = validated["status"]
    at = to_ms(validated["stamp"]["at"])
    people = (state or {}).get("people")
    if state is not None and "v" not in state:  # only what people decided (on_feedback): no publication seen yet
        state = None
    before = _coverage_vector(state, ks)
    new = dict(state) if state else {"v": None, "deleted": False, "flags": {}, "prov": [], "seen": {}}
    if people:
        new["people"] = people
    new["seen"] = {k: list(v) for k, v in (new.get("seen") or {}).items()}
    if new["v"] is None or version >= new["v"]:
        new["v"] = version
        new["deleted"] = status == "deleted"
        new["flags"] = {} if new["deleted"] else field_flags(validated)
        if validated["enriched"].get("provenance"):
            new["prov"] = provenance_brief(validated["enriched"]["provenance"])
    if validated["enriched"].get("provenance"):  # whatever order versions arrive in: what was shown when
        kept = [s for s in new.get("shown") or [] if s[:2] != [at, version]]  # a replayed record: once
        kept.append([at, version, provenance_brief(validated["enriched"]["provenance"]), field_facts(validated)])
        new["shown"] = sorted(kept, key=lambda s: (s[0], s[1]))[-SHOWN_KEPT:]
    after = _coverage_vector(new, ks)
    first = {"total": state is None}
    for kind in WINDOWS:
        start = window_start(kind, at)
        seen = new["seen"].setdefault(kind, [])
        first[kind] = start not in seen
        if first[kind]:
            seen.append(start)
            del seen[:-RECENT_WINDOWS]
    by = validated["stamp"]["stage"]
    new["counted"], moves = _count_status(new.get("counted"), at, version, status, by)
    ttp = None if status == "deleted" else at - sent_ms(asset)  # a reprocess: since it was sent, as before
    event = {"t": "v", "at": at, "asset": asset["asset_id"], "version": version,
             "by": by, "status": status, "ttp_ms": ttp,
             "cost": float(validated["enriched"].get("cost_usd") or 0.0), "first": first,
             "cov": {k: after[k] - before[k] for k in after}, "st": moves}
    return new, event


def _count_status(counted: dict[str, Any] | None, at: int, version: int, status: str,
                  by: str) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, int]]]]:
    """Status counts per distinct asset (trial 27 m2: per record, a redelivered record after a kill -9 counted twice
    and an approval left the asset under `needs_review` too). Per window kind (total, and each hour / day window
    remembered), the asset's slot [version, status, pipeline version, pipeline status]: its latest status (highest
    version; the same version again, e.g. a review group's approval, replaces it) and the pipeline's own latest
    decision (validate's, one of DECIDED; the shares' base). Returns the new slots and the moves per kind
    ({"status": {s: ±1}, "decided": {s: ±1}}) the KPI agent adds to its windows; a redelivered record moves nothing."""
    counted = {k: (v if k == "total" else dict(v)) for k, v in (counted or {}).items()}
    moves: dict[str, dict[str, dict[str, int]]] = {}
    for kind in ("total", *WINDOWS):
        if kind == "total":
            slot = counted.get("total")
        else:
            key = str(window_start(kind, at))
            slots = counted.setdefault(kind, {})
            slot = slots.get(key)
        v, s, pv, ps = slot or (None, None, None, None)
        new_v, new_s, new_pv, new_ps = v, s, pv, ps
        if v is None or version >= v:
            new_v, new_s = version, status
        if by != "review" and (pv is None or version >= pv):
            new_pv, new_ps = version, status if status in DECIDED else None
        move = {"status": _move(s, new_s), "decided": _move(ps, new_ps)}
        moves[kind] = {k: m for k, m in move.items() if m}
        slot = [new_v, new_s, new_pv, new_ps]
        if kind == "total":
            counted["total"] = slot
        else:
            slots[key] = slot
            for old in list(slots)[:-RECENT_WINDOWS]:  # the oldest remembered go, as `seen` does
                del slots[old]
    return counted, moves


def _move(old: str | None, new: str | None) -> dict[str, int]:
    if old == new:
        return {}
    return {**({old: -1} if old else {}), **({new: 1} if new else {})}


def _shown_entry(state: dict[str, Any] | None, at: int) -> list[Any] | None:
    """The publication an editor was shown at `at`: of the asset's publications at or before it, the highest
    version (as the index keeps it; of one version, the newest record, e.g. the review group's), or None."""
    before = [s for s in (state or {}).get("shown") or [] if s[0] <= at]
    return max(before, key=lambda s: (s[1], s[0])) if before else None


def shown(state: dict[str, Any] | None, decided_at: Any) -> tuple[int | None, list[dict[str, str]]]:
    """(version, provenance) of the record an editor was shown: of the asset's publications at or before the
    decision, the highest version (as the index keeps it), never one published after it (e.g. by a later prompt,
    and a re-run that re-applies the decision), whatever order the app read them in. None known (the decision
    predates every publication the app has seen): (None, []), the prompt is unknown. A state written before
    publications were kept: its latest version's."""
    if not state:
        return None, []
    if "shown" not in state:
        return state.get("v"), state.get("prov") or []
    entry = _shown_entry(state, to_ms(decided_at))
    return (entry[1], entry[2]) if entry else (None, [])


def _digest(value: str | None) -> str:
    return hashlib.sha1(str(value).encode()).hexdigest()[:12]


def field_facts(validated: dict[str, Any]) -> dict[str, list[Any]]:
    """What a published record says of each reviewable field, for charging decisions about it: [its source
    (`field_sources`: model | human | embedded | rule | propagated; a value without one is the model's, an empty
    field nobody filled has none), a digest of the model's value (to tell it from another value a person
    accepted), whether a person decided on it already (the record's review)]."""
    decided = review.decided_fields(validated.get("review"))
    out: dict[str, list[Any]] = {}
    for name in review.FIELDS:
        source = review.source_of(validated, name)
        if source is None and name not in decided:
            continue
        out[name] = [source, _digest(review.current_value(validated, name)) if source == "model" else None,
                     int(name in decided)]
    return out


def note_decision(state: dict[str, Any] | None, decision: dict[str, Any]) -> dict[str, Any]:
    """The asset's state with what a person decided (on_feedback): per field the newest PEOPLE_KEPT decisions
    [decided_at, decision id, action], and under "*" the approvals (an approval judges every field shown). The
    `feedback` records of an asset are read in order, so a decision is known here before the next one, even when
    the review group's record of it is read later (the app reads `validated` and `feedback` independently)."""
    new = dict(state or {})
    people = {k: [list(x) for x in v] for k, v in (new.get("people") or {}).items()}
    at, ident = to_ms(decision["decided_at"]), decision["decision_id"]
    marks = [(fd["field"], fd["action"]) for fd in decision["fields"]]
    if decision.get("status") == "approved":
        marks.append(("*", "approved"))
    for name, action in marks:
        kept = [x for x in people.get(name, []) if x[1] != ident]  # a redelivered decision: once
        kept.append([at, ident, action])
        people[name] = sorted(kept)[-PEOPLE_KEPT:]
    new["people"] = people
    return new


def _before(state: dict[str, Any] | None, name: str, at: int, ident: str, actions: tuple[str, ...]) -> int | None:
    """decided_at of the newest decision people sent on field `name` (one of `actions`) before this one."""
    times = [x[0] for x in ((state or {}).get("people") or {}).get(name, [])
             if x[2] in actions and x[1] != ident and x[0] <= at]
    return max(times) if times else None


def _model_value(state: dict[str, Any] | None, entry: list[Any] | None, fd: dict[str, Any], at: int,
                 ident: str) -> bool:
    """Whether a field decision is about the model's value (charged to its prompt): not when the record shown
    gave it another source (a person's, the DAM's, the file's, a rule's, the family's), nor when a person's edit
    or rejection of it came after that record (its own record not read yet), nor when a person accepted a value
    other than the model's. A field the record left empty is the model's to fill: an edit there is charged to it."""
    facts = entry[3] if entry and len(entry) > 3 else {}
    person = _before(state, fd["field"], at, ident, ("edited", "rejected"))
    if person is not None and (entry is None or person > entry[0]):
        return False
    source, digest, _ = facts.get(fd["field"]) or (None, None, 0)
    if source not in (None, "model"):
        return False
    return not (fd["action"] == "accepted" and fd.get("value") is not None and digest is not None
                and _digest(fd["value"]) != digest)


def charged_fields(state: dict[str, Any] | None, decision: dict[str, Any],
                   ks: KpiSettings) -> list[tuple[str, str, tuple[str, str, str] | None]]:
    """(field, action, (prompt_id, prompt_version, model) or None) for what a decision says about each prompt's
    output: every field it names, charged to the prompt that wrote the value the editor was shown, or to none when
    that value was not the model's (`_model_value`); and for an approval every other field the record shown holds
    a model value in, `accepted` as shown — unless a person decided on that field before (their own value, or a
    judgement already counted, e.g. an asset approved again). A decision about an asset the app saw no
    publication of before it is charged to `unknown`, as before."""
    at, ident = to_ms(decision["decided_at"]), decision["decision_id"]
    entry = _shown_entry(state, at) if state and "shown" in state else None
    prov = entry[2] if entry else shown(state, at)[1]
    out: list[tuple[str, str, tuple[str, str, str] | None]] = []
    for fd in decision["fields"]:
        model = _model_value(state, entry, fd, at, ident)
        out.append((fd["field"], fd["action"], prompt_for(fd["field"], prov, ks) if model else None))
    if decision.get("status") != "approved" or not entry or len(entry) < 4:
        return out
    named = {fd["field"] for fd in decision["fields"]}
    for name, (source, _, decided) in entry[3].items():
        if name in named or source != "model" or decided or \
                _before(state, name, at, ident, review.ACTIONS) is not None or \
                _before(state, "*", at, ident, ("approved",)) is not None:
            continue
        prompt = prompt_for(name, prov, ks)
        if prompt[0] != UNKNOWN:
            out.append((name, "accepted", prompt))
    return out


def decision_event(state: dict[str, Any] | None, decision: dict[str, Any], ks: KpiSettings) -> dict[str, Any]:
    """The KPI event of an editor decision: `n`, the decisions it counts (one per field decided; a verdict on the
    whole asset without fields, `feedback --approve` / "fields": [], is one: trial 27 m3), and a row per field
    charged to a prompt (`charged_fields`: a model value decided on, and the model values an approval accepted as
    shown; trial 34 F5: approvals counted no acceptance, decisions on a person's value counted for the model)."""
    rows = [[name, *prompt, action] for name, action, prompt in charged_fields(state, decision, ks) if prompt]
    return {"t": "d", "at": to_ms(decision["decided_at"]), "asset": decision["asset_id"], "rows": rows,
            "n": len(decision["fields"]) or int(bool(decision.get("status")))}


# --- window aggregates ------------------------------------------------------------------------------------

def new_aggregate(key: str) -> dict[str, Any]:
    agg: dict[str, Any] = {"records": 0, "assets": 0, "status": {s: 0 for s in STATUSES},
                           "decided": {s: 0 for s in DECIDED}, "ttp": {}, "cost": 0.0, "decisions": 0, "edits": {}}
    if key == "total":
        agg["cov"] = {}
    return agg


def with_source(event: dict[str, Any], source: tuple[str, int, int]) -> dict[str, Any]:
    """The KPI event with its stable id: the position (topic, partition, offset) of the record it was made from,
    the same when that record is redelivered."""
    return {**event, "src": list(source)}


def already_folded(agg: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether the aggregate has folded this event (its source position) already; if not, remember it as folded.
    Remembered per source partition as runs of consecutive offsets ([first, last]), the newest FOLDED_RUNS_KEPT
    runs of the newest FOLDED_SOURCES_KEPT partitions: a redelivery after a kill -9 (the events since the last
    commit, consecutive) is recognised whatever the throughput. An event without a position (written before) is
    folded as it comes."""
    if not event.get("src"):
        return False
    topic, partition, offset = event["src"]
    runs_by_source = agg.setdefault("folded", {})
    source = f"{topic}:{partition}"
    runs = runs_by_source.pop(source, [])
    runs_by_source[source] = runs  # the most recently used last
    if any(first <= offset <= last for first, last in runs):
        return True
    if runs and runs[-1][1] == offset - 1:
        runs[-1][1] = offset
    else:
        runs.append([offset, offset])
        del runs[:-FOLDED_RUNS_KEPT]
    for old in list(runs_by_source)[:-FOLDED_SOURCES_KEPT]:
        del runs_by_source[old]
    return False


def _add_counts(counts: dict[str, int], delta: dict[str, int], key: str) -> None:
    """Add status moves; a count never goes below 0 (a move folded twice by a version without the ids above, or
    one folded after its window's aggregate was rebuilt): clamped, with one warning per process."""
    global _warned_negative
    for s, n in delta.items():
        counts[s] = counts.get(s, 0) + n
        if counts[s] < 0:
            if not _warned_negative:
                log.warning("KPI window %s: the %s count would go below 0 (%d); clamped at 0 (a status move was "
                            "folded twice or its earlier move is missing; warned once)", key, s, counts[s])
                _warned_negative = True
            counts[s] = 0


def fold(agg: dict[str, Any], key: str, event: dict[str, Any], ks: KpiSettings) -> dict[str, Any]:
    """Fold one KPI event into the aggregate of window `key` (mutates and returns agg); an event this aggregate
    folded already (the same source position, redelivered on the KPI events topic) changes nothing."""
    kind = parse_window_key(key)[0]
    if already_folded(agg, event):
        return agg
    if event["t"] == "v":
        agg["records"] += 1
        agg["assets"] += int(bool(event["first"].get(kind)))
        if "st" in event:  # distinct assets by their latest status, and the pipeline's decisions (_count_status)
            if "decided" not in agg:  # an aggregate from before: its per-record counts are where it starts
                agg["decided"] = {s: agg["status"].get(s, 0) for s in DECIDED}
            for counts, delta in ((agg["status"], event["st"].get(kind, {}).get("status", {})),
                                  (agg["decided"], event["st"].get(kind, {}).get("decided", {}))):
                _add_counts(counts, delta, key)
        else:  # an event written before: per record
            agg["status"][event["status"]] = agg["status"].get(event["status"], 0) + 1
        if event["ttp_ms"] is not None:
            res = max(1, ks.ttp_resolution_ms)
            bucket = str((max(0, event["ttp_ms"]) + res // 2) // res * res)
            agg["ttp"][bucket] = agg["ttp"].get(bucket, 0) + 1
        agg["cost"] += event["cost"]
        if "cov" in agg:
            for k, d in event["cov"].items():
                agg["cov"][k] = agg["cov"].get(k, 0) + d
    elif event["t"] == "d":
        # `n`: the decisions it counts; an event written before it: one per row and its `whole`
        agg["decisions"] += event["n"] if "n" in event else event.get("whole", 0) + len(event["rows"])
        for field, prompt_id, prompt_version, model, action in event["rows"]:
            row = agg["edits"].setdefault("\x1f".join((field, prompt_id, prompt_version, model)),
                                          {a: 0 for a in ACTIONS})
            row[action] = row.get(action, 0) + 1
    return agg


def nearest_rank(counts: dict[str, int], pct: int) -> int | None:
    """Nearest-rank percentile over a value -> count map: the smallest value with >= pct% of samples <= it."""
    n = sum(counts.values())
    if n == 0:
        return None
    rank = -(-pct * n // 100)  # ceil(pct * n / 100)
    seen = 0
    for value in sorted(counts, key=int):
        seen += counts[value]
        if seen >= rank:
            return int(value)
    return int(max(counts, key=int))


def _share(num: int, den: int) -> float | None:
    return num / den if den else None


def _edit_row(field: str, prompt_id: str, prompt_version: str, model: str, c: dict[str, int]) -> dict[str, Any]:
    n = sum(c.get(a, 0) for a in ACTIONS)
    return {"field": field, "prompt_id": prompt_id, "prompt_version": prompt_version, "model": model,
            "decisions": n, "accepted": c.get("accepted", 0), "edited": c.get("edited", 0),
            "rejected": c.get("rejected", 0), "edit_rate": c.get("edited", 0) / n if n else 0.0,
            "override_rate": (c.get("edited", 0) + c.get("rejected", 0)) / n if n else 0.0}


def snapshot(key: str, agg: dict[str, Any], app_id: str, ks: KpiSettings, computed_at: int | None = None) -> dict[str, Any]:
    """The KpiSnapshot record (ints for timestamps) of one window aggregate."""
    kind, start, end = parse_window_key(key)
    st = agg["status"]
    pipeline = agg.get("decided") or st  # an aggregate from before: its status counts
    decided = sum(pipeline.get(s, 0) for s in DECIDED)
    coverage = None
    if "cov" in agg:
        cov = agg["cov"]
        active = cov.get("active", 0)
        coverage = {"active_assets": active, "complete": cov.get("complete", 0),
                    "complete_share": _share(cov.get("complete", 0), active),
                    "title_share": _share(cov.get("title", 0), active),
                    "alt_text_share": _share(cov.get("alt_text", 0), active),
                    "tags_share": _share(cov.get("tags", 0), active)}
    ttp = agg["ttp"]
    by_prompt: dict[tuple[str, str, str], dict[str, int]] = {}
    rows = []
    for k in sorted(agg["edits"]):
        field, prompt_id, prompt_version, model = k.split("\x1f")
        rows.append(_edit_row(field, prompt_id, prompt_version, model, agg["edits"][k]))
        tot = by_prompt.setdefault((prompt_id, prompt_version, model), {a: 0 for a in ACTIONS})
        for a in ACTIONS:
            tot[a] += agg["edits"][k].get(a, 0)
    rows += [_edit_row("*", *p, c) for p, c in sorted(by_prompt.items())]
    return {
        "window": kind, "window_start": start, "window_end": end,
        "computed_at": computed_at if computed_at is not None else now_ms(), "app_id": app_id,
        "validated_records": agg["records"], "assets": agg["assets"],
        "auto_applied": st.get("auto_applied", 0), "needs_review": st.get("needs_review", 0),
        "rejected": st.get("rejected", 0), "deleted": st.get("deleted", 0),
        "auto_apply_share": _share(pipeline.get("auto_applied", 0), decided),
        "review_share": _share(pipeline.get("needs_review", 0), decided),
        "coverage": coverage,
        "time_to_publish": {"count": sum(ttp.values()), "p50_ms": nearest_rank(ttp, 50),
                            "p90_ms": nearest_rank(ttp, 90), "p99_ms": nearest_rank(ttp, 99),
                            "max_ms": max((int(v) for v in ttp), default=None)},
        "cost": {"total_usd": agg["cost"], "per_asset_mean_usd": agg["cost"] / agg["assets"] if agg["assets"] else None},
        "decisions": agg["decisions"],
        "edit_rates": rows,
        "approved": st.get("approved", 0),
    }


def expired_windows(keys: Iterable[str], ks: KpiSettings) -> list[str]:
    """Window keys beyond the newest hour_windows_kept / day_windows_kept of their kind."""
    keep = {"hour": ks.hour_windows_kept, "day": ks.day_windows_kept}
    by_kind: dict[str, list[tuple[int, str]]] = {}
    for key in keys:
        kind, start, _ = parse_window_key(key)
        if start is not None:
            by_kind.setdefault(kind, []).append((start, key))
    out = []
    for kind, items in by_kind.items():
        items.sort(reverse=True)
        out += [key for _, key in items[keep[kind]:]]
    return out


# --- audit entries ------------------------------------------------------------------------------------------

def _field_value(validated: dict[str, Any], field: str) -> str | None:
    value = validated.get(field)
    if field == "tags":
        return ", ".join(t["tag"] for t in value) if value else None
    return value if value else None


def generated_entry_id(validated: dict[str, Any]) -> str:
    """Stable id of a validated record's generated field set: the same record replayed gets the same id."""
    asset = validated["enriched"]["pre"]["asset"]
    ident = {"asset": asset["asset_id"], "version": asset["version"], "event": asset.get("event_id"),
             "status": validated["status"], "stamp": [validated["stamp"]["stage"], to_ms(validated["stamp"]["at"])],
             "prov": [[p["task"], p["request_id"], to_ms(p["timestamp"]), p["prompt_hash"]]
                      for p in validated["enriched"].get("provenance") or []]}
    return "gen:" + hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def audit_for_validated(validated: dict[str, Any], ks: KpiSettings, source: tuple[str, int, int] | None = None,
                        recorded_at: int | None = None) -> dict[str, Any]:
    asset = validated["enriched"]["pre"]["asset"]
    provenance = list(validated["enriched"].get("provenance") or [])
    brief = provenance_brief(provenance)
    sources = validated.get("field_sources") or {}
    reviewed = {f["field"]: f for f in (validated.get("review") or {}).get("fields") or []}
    degraded = degraded_of(validated)
    fields = []
    deleted = validated["status"] == "deleted"
    for field in () if deleted else AUDITED_FIELDS:
        value = _field_value(validated, field)
        if value is None:
            continue
        source_kind = sources.get(field, "model")
        prompt = prompt_for(field, brief, ks) if source_kind == "model" else (None, None, None)
        person = reviewed.get(field)  # a reviewer's value (not the DAM's), or a value a reviewer accepted
        if person and source_kind != "human" and person["action"] != "accepted":
            person = None
        fields.append({"field": field, "value": value, "source": source_kind,
                       "action": person["action"] if person else None, "prompt_id": prompt[0],
                       "prompt_version": prompt[1], "model": prompt[2], "editor": person["editor"] if person else None,
                       "degraded": degraded.get(ks.field_tasks.get(field) or "") if source_kind == "model" else None})
    stamp = validated["stamp"]
    return {"entry_id": generated_entry_id(validated), "asset_id": asset["asset_id"],
            "kind": "deleted" if deleted else "generated", "version": int(asset["version"]),
            "status": validated["status"], "at": to_ms(stamp["at"]),
            "actor": f"{stamp['stage']}@{stamp.get('worker') or '?'} {stamp['version']}",
            "fields": fields, "provenance": [{**p, "timestamp": to_ms(p["timestamp"])} for p in provenance],
            "decision_id": None, "source_topic": source[0] if source else None,
            "source_partition": source[1] if source else None, "source_offset": source[2] if source else None,
            "recorded_at": recorded_at if recorded_at is not None else now_ms(),
            "degraded": {} if deleted else degraded, "tenant": asset.get("tenant")}


def audit_for_refusal(letter: dict[str, Any], decision: dict[str, Any] | None,
                      source: tuple[str, int, int] | None = None, recorded_at: int | None = None) -> dict[str, Any] | None:
    """A decision the review group refused (its dead letter, `letter`; `decision`: the EditorDecision it holds, when
    it can be decoded) as an audit entry beside the decision's own: `ref:<decision_id>`, the decision's fields and
    verdict, `refused` = why (e.g. "stale_decision: … alice changed the alt text at …"). None for any other letter."""
    details = letter.get("details") or {}
    decision_id = details.get("decision_id") or (decision or {}).get("decision_id")
    if letter.get("stage") != "review" or not decision_id:
        return None
    d = decision or {}
    editor = d.get("editor") or details.get("editor") or "?"
    fields = [{"field": f["field"], "value": f.get("value"), "source": "editor", "action": f["action"],
               "prompt_id": None, "prompt_version": None, "model": None, "editor": editor}
              for f in d.get("fields") or []]
    return {"entry_id": "ref:" + decision_id, "asset_id": d.get("asset_id") or details.get("asset_id")
            or letter.get("asset_id") or "", "kind": "editor_decision", "version": None,
            "status": d.get("status") or details.get("status") or None, "at": to_ms(letter["last_failure_time"]),
            "actor": editor, "fields": fields, "provenance": [], "decision_id": decision_id,
            "source_topic": source[0] if source else None, "source_partition": source[1] if source else None,
            "source_offset": source[2] if source else None,
            "recorded_at": recorded_at if recorded_at is not None else now_ms(), "tenant": d.get("tenant"),
            "refused": f"{details.get('reason') or letter.get('error_type')}: {letter.get('message')}"}


def audit_for_decision(decision: dict[str, Any], state: dict[str, Any] | None, ks: KpiSettings,
                       source: tuple[str, int, int] | None = None, recorded_at: int | None = None) -> dict[str, Any]:
    """The decision as an audit entry: its verdict (approved / rejected, or none for field decisions only) as the
    entry's status, each field charged to the prompt of the version the editor was shown (`shown`; none when the
    app has seen no version of the asset published before the decision: an unknown prompt is left empty, not
    printed as 'unknown@unknown'), or to no prompt when the value decided on was not the model's
    (`charged_fields`: e.g. another editor's title)."""
    version = shown(state, decision["decided_at"])[0]
    charged = {name: prompt for name, _, prompt in charged_fields(state, decision, ks)}
    fields = []
    for fd in decision["fields"]:
        prompt = tuple(None if p == UNKNOWN else p for p in charged[fd["field"]] or (None, None, None))
        fields.append({"field": fd["field"], "value": fd.get("value"), "source": "editor", "action": fd["action"],
                       "prompt_id": prompt[0], "prompt_version": prompt[1], "model": prompt[2],
                       "editor": decision["editor"]})
    return {"entry_id": "dec:" + decision["decision_id"], "asset_id": decision["asset_id"], "kind": "editor_decision",
            "version": version, "status": decision.get("status"), "at": to_ms(decision["decided_at"]),
            "actor": decision["editor"], "fields": fields, "provenance": [],
            "decision_id": decision["decision_id"], "source_topic": source[0] if source else None,
            "source_partition": source[1] if source else None, "source_offset": source[2] if source else None,
            "recorded_at": recorded_at if recorded_at is not None else now_ms(), "tenant": decision.get("tenant")}
