"""What `assetstream run` says about write-back (docs/writeback.md, "assetstream run"): per asset and target the
outcome (written, unchanged, left alone because a person's value is in the target, skipped and why, dead-lettered
with the reason, not written because the target did not take it), read once the writeback group is done or has
been waiting on its target for `ops.run_writeback_wait_s`.

The outcomes come from what the group leaves behind, not from watching it: its dead letters on the dead-letter topic
(stage `writeback`, published since the run started) and the state documents it stores per target and asset after
each pass that read the target (`writeback.state_index`: `written_at` = the last pass that sent fields,
`checked_at` = the last pass, `conflicts[].at` = the fields left alone because a person's value was there)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.settings import Settings

WRITEBACK_FAILED = ("dead_lettered", "not_written")
"""Outcomes that make the run exit 1, like a dead letter of any other stage."""

_PAUSED = re.compile(r"pausing consumption: (writeback (?:target|state store) unavailable: .*)$")


def pause_reason(worker_log: Path, since: int = 0) -> str | None:
    """The writeback worker's latest pause on its target or state store, as it logged it
    (`writeback target unavailable: dam: ConnectError`) after byte `since` of its log, or None."""
    try:
        with worker_log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    found = [m.group(1) for m in map(_PAUSED.search, text.splitlines()) if m]
    return found[-1] if found else None


def target_location(target: Any) -> str:
    """Where a target is, for a message: the origin of its URL (never its path or query), or the files target's
    folder."""
    if target.url:
        parts = urlsplit(target.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return str(target.out_dir)


_UNAVAILABLE = re.compile(r"writeback target unavailable: ([^:]+): (.*)$")


def target_state(why: str, where: str = "") -> str:
    """`answering 503 at …` (an HTTP status), `refusing our credentials (401) at …: check …` or `unreachable at …
    (ConnectError)`: why a target took nothing."""
    if why in ("401", "403"):
        return (f"refusing our credentials ({why}){where}: check the target's password or token (the writeback "
                "worker's log has what the target said)")
    return f"answering {why}{where}" if why.isdigit() else f"unreachable{where} ({why})"


def short_reason(pending: str | None, target: str | None = None) -> str | None:
    """An asset's reason for not being written to `target`, from what stopped the wait: `target unreachable
    (ConnectError)` rather than the worker's whole pause line; when the pause was on another target, that one is
    named (trial 36 N1: a healthy target's assets were said to be refused with the other one's 401)."""
    m = _UNAVAILABLE.match(pending) if pending is not None else None
    if m and target is not None and m.group(1) != target:
        return (f"the writeback group had not handled it: it was paused on target '{m.group(1)}' "
                f"({target_state(m.group(2))})")
    return f"target {target_state(m.group(2))}" if m else pending


def describe_pause(settings: Settings, reason: str, count: int, bootstrap: str | None) -> str:
    """The run's one-line account of a target the writeback group is stuck on, naming it, where it is and why."""
    how = ("`assetstream worker writeback` against the cluster writes them when it returns (their records stay "
           f"uncommitted on {bootstrap}), or run the same command again" if bootstrap else
           "run the same command again when it is back (this run's embedded broker is gone with it)")
    m = _UNAVAILABLE.match(reason)
    if m:
        name, why = m.group(1), m.group(2)
        target = next((t for t in settings.writeback.targets if t.name == name), None)
        where = f" at {target_location(target)}" if target is not None else ""
        return f"write-back target '{name}' {target_state(why, where)}: {count} asset(s) not written; {how}"
    return f"{reason}: {count} asset(s) not written; {how}"


NOT_HANDLED = "the writeback group had not handled it when the session ended"
"""A session's decision whose record the writeback group had not handled at the session's end, for no reason its
worker logged (no pause on a target)."""

_REPLAY = re.compile(r"`?assetstream dlq replay\b[^`;)]*`?")


def without_replay(outcomes_of: dict[str, list[dict[str, Any]]], rerun: str) -> dict[str, list[dict[str, Any]]]:
    """The outcomes of an embedded run (its own broker) as the run shows them once that broker is gone: a dead
    letter's advice to `assetstream dlq replay` (the kses letter's "fix: …, then `assetstream dlq replay`") names
    instead what works then, `rerun` (trial 36 N5: the end of a session told the user to replay letters that were
    gone with its broker). The letter itself, for a fleet, keeps its advice."""
    instead = f"run `{rerun}` (`dlq replay` cannot: the run's broker, with its dead letters, is gone)"
    return {a: [{**w, "message": _REPLAY.sub(instead, w["message"])} if w.get("message") else w for w in rows]
            for a, rows in outcomes_of.items()}


def session_problems(settings: Settings, outcomes_of: dict[str, list[dict[str, Any]]], pending: str | None,
                     bootstrap: str | None, rerun: str = "assetstream run") -> list[str]:
    """What the end of a `--serve` session says about the decisions made in it whose write-back did not happen:
    one line per target and reason naming the assets (not written: the target's state, e.g. refusing our
    credentials; dead-lettered: the letter's reason and message), then what becomes of them: with the embedded
    broker, `rerun` (the session's inputs, --out and write-back target) re-applies them from the sidecars and
    writes them (trial 36 N5: not `dlq replay`, whose letters are gone with that broker)."""
    problems = []
    by_target: dict[tuple[str, str, str], list[str]] = {}
    for asset_id, rows in sorted(outcomes_of.items()):
        for w in rows:
            if w["outcome"] in WRITEBACK_FAILED:
                why = w["reason"] if w["outcome"] == "not_written" else f"{w['reason']}: {w.get('message') or ''}"
                by_target.setdefault((w["target"], w["outcome"], why), []).append(asset_id)
    kept = (f"their records stay on {bootstrap}: `assetstream worker writeback` writes those not written once the "
            "target takes them, `assetstream dlq replay` retries those dead-lettered" if bootstrap else
            "the session's embedded broker, with their records and dead letters, is gone (`assetstream dlq replay` "
            "cannot reach them): the decisions are in the sidecars, and once the target is fixed "
            f"`{rerun}` re-applies and writes them (with the same settings; assets published into the session "
            "by URL are published again from their URL; add --serve to go on reviewing)")
    for (target, outcome, why), ids in by_target.items():
        if outcome == "not_written":
            m = _UNAVAILABLE.match(pending or "")
            if m and m.group(1) == target:
                t = next((x for x in settings.writeback.targets if x.name == target), None)
                why = f"target {target_state(m.group(2), f' at {target_location(t)}' if t is not None else '')}"
            problems.append(f"{len(ids)} decision(s) of this session not written to '{target}' ({why}): "
                            f"{', '.join(ids)}")
        else:
            problems.append(f"{len(ids)} decision(s) of this session dead-lettered by write-back to '{target}' "
                            f"({why.rstrip(': ')}): {', '.join(ids)}")
    return problems + [kept] if problems else []


def read_dead_letters(settings: Settings, stage: str, keys: set[str], since_ms: int) -> dict[str, list[dict]]:
    """asset id -> the dead letters `stage` published for it since `since_ms` (oldest first): the whole
    dead-letter topic up to its current end (`dlq.read_dead_letters`, partial: what was read within 30 s, nothing
    without the topic), read without joining any group."""
    from app.ops.dlq import read_dead_letters as read_all

    letters: dict[str, list[dict]] = {}
    for d in read_all(settings, 30.0, partial=True):
        if d.key in keys and (d.timestamp_ms or 0) >= since_ms and d.value and d.value.get("stage") == stage:
            letters.setdefault(d.key, []).append(d.value)
    return letters


def read_states(settings: Settings, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The writeback group's state documents (`<target>:<asset>`) that exist, by id."""
    from elasticsearch import NotFoundError

    from domain.store.client import make_client

    if not ids:
        return {}
    es = make_client(settings)
    try:
        index = settings.writeback.state_index
        es.indices.refresh(index=index)
        docs = es.mget(index=index, ids=ids)["docs"]
    except NotFoundError:  # nothing was ever written: the group creates its index on its first write
        return {}
    finally:
        es.close()
    return {d["_id"]: d.get("_source") or {} for d in docs if d.get("found")}


def outcomes(settings: Settings, validated: dict[str, dict[str, Any]], letters: dict[str, list[dict]],
             since_ms: int, pending: str | None,
             since_of: dict[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """asset id -> one outcome per configured target: {"target", "outcome", "reason"} (and the letter's
    "message"), for every asset that reached `validated`. `pending`: why the group did not finish (None: it did;
    the worker's pause line, short_reason).
    `since_of`: per asset, from when a write counts (a decision made in a `--serve` session: its time), else
    `since_ms`."""
    from consumers.writeback.plan import eligible
    from consumers.writeback.state import state_id
    from domain.records import document_id, is_deleted, tenant_of
    from streams.records import to_ms

    targets = settings.writeback.targets
    ids = {a: document_id(v) for a, v in validated.items()}
    states = read_states(settings, [state_id(t.name, d) for d in ids.values() for t in targets])
    result: dict[str, list[dict[str, Any]]] = {}
    for asset_id, value in validated.items():
        rows = result[asset_id] = []
        since = (since_of or {}).get(asset_id, since_ms)
        for t in targets:
            state = states.get(state_id(t.name, ids[asset_id])) or {}
            mine = [(x, why) for x in letters.get(asset_id, []) for why in [_refusal(x, t.name, len(targets) == 1)]
                    if why]
            letter, (reason, message) = mine[-1] if mine else (None, (None, None))
            written_at = int(state.get("written_at") or 0)
            checked_at = int(state.get("checked_at") or written_at)  # a state stored before checked_at existed
            failed_at = to_ms(letter["last_failure_time"]) if letter and letter.get("last_failure_time") else since
            kept = sorted({c["field"] for c in state.get("conflicts") or [] if int(c.get("at") or 0) >= since})
            left_alone = f"a person's value in the target kept: {', '.join(kept)}" if kept else None
            if letter is not None and failed_at >= max(written_at, checked_at):
                rows.append({"target": t.name, "outcome": "dead_lettered", "reason": reason, "message": message})
            elif written_at >= since:
                rows.append({"target": t.name, "outcome": "written", "reason": left_alone})
            elif kept:
                rows.append({"target": t.name, "outcome": "left_alone", "reason": left_alone})
            elif not t.serves(tenant_of(value)):
                rows.append({"target": t.name, "outcome": "skipped",
                             "reason": f"tenant {tenant_of(value)}: the target serves {', '.join(t.tenants)}"})
            elif is_deleted(value) or not eligible(value, t.mode):
                takes = "approved and auto_applied" + (" and needs_review" if t.mode == "suggest" else "")
                rows.append({"target": t.name, "outcome": "skipped",
                             "reason": f"status {value.get('status')}: a {t.mode} target takes {takes} records"})
            elif state:
                rows.append({"target": t.name, "outcome": "unchanged",
                             "reason": "the target already holds these values"})
            else:
                rows.append({"target": t.name, "outcome": "not_written",
                             "reason": short_reason(pending, t.name) or "the writeback group recorded no write"})
    return result


def _refusal(letter: dict[str, Any], target: str, only: bool) -> tuple[str | None, str | None] | None:
    """(reason, message) of `target`'s refusal in a write-back dead letter, None when the letter is another
    target's (`only`: the run has one target). Several targets refusing one record share its one letter, which
    names each in `details.refusals`."""
    details = letter.get("details") or {}
    try:
        each = {r["target"]: (r.get("reason"), r.get("message")) for r in json.loads(details["refusals"])}
    except (KeyError, TypeError, ValueError):
        each = {details.get("target"): (_letter_reason(letter), letter.get("message"))}
    if target in each:
        return each[target]
    return next(iter(each.values())) if None in each or only else None


def _letter_reason(letter: dict[str, Any]) -> str | None:
    """A write-back dead letter's reason code: `http_<status>` for a target's refusal (its details' reason is the
    target's own text, which the message carries), else the error's reason (`no_media_item`)."""
    details = letter.get("details") or {}
    if details.get("status"):
        return f"http_{details['status']}"
    return details.get("reason") or letter.get("error_type")


def failed(rows: list[dict[str, Any]]) -> bool:
    """Whether any row's write-back failed (dead-lettered or not written): exit 1."""
    return any(w["outcome"] in WRITEBACK_FAILED for r in rows for w in r.get("writeback") or [])


def cell(outcomes_of_row: list[dict[str, Any]]) -> str:
    """A row's write-back outcomes for the run's table (rich markup)."""
    from app.console import plain

    parts = []
    for w in outcomes_of_row:
        w = {**w, "reason": plain(w["reason"] or "") or None, "message": plain(w.get("message") or "")}
        text = f"{w['target']}: {w['outcome'].replace('_', ' ')}"
        if w["outcome"] == "dead_lettered":
            text = f"[red]{w['target']}: dead letter {w['reason']}[/red] {w.get('message') or ''}".rstrip()
        elif w["outcome"] == "not_written":
            text = f"[yellow]{text}[/yellow] ({w['reason']})"
        elif w["reason"]:
            text += f" ({w['reason']})"
        parts.append(text)
    return "\n".join(parts)
