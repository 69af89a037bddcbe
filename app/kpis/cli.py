"""CLI commands of the KPI / audit / feedback part, a Typer app merged into the `assetstream` CLI by app/cli.py:

    assetstream streams kpis                                   run the faust KPI + audit app
    assetstream feedback ASSET_ID [--tenant T] --field alt_text=accepted --field title=edited:"New title" --editor NAME
    assetstream feedback --file decisions.jsonl
    assetstream audit ASSET_ID [--tenant T] [--json]   (ASSET_ID: acme::a1, or a1 --tenant acme)
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, List, Optional

import typer
from confluent_kafka import KafkaException
from rich.table import Table

from app.console import as_text, ask_store, broker_down, console, load_settings, out, plain, redact_url



_settings = load_settings  # one place turns a bad configuration into a clear exit 2


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, int):
        return _iso(datetime.fromtimestamp(value / 1000, timezone.utc))
    return "" if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    return value


app = typer.Typer(no_args_is_help=True, add_completion=False, help="assetstream KPI, feedback and audit commands")

streams_app = typer.Typer(no_args_is_help=True, help="Stateful stream apps (faust-streaming).")
app.add_typer(streams_app, name="streams")

@streams_app.command("kpis")
def kpis(web_port: Optional[int] = typer.Option(None, help="override kpis.web_port"),
         data_dir: Optional[str] = typer.Option(None, help="override kpis.data_dir")):
    """Run the KPI + audit app (validated + feedback -> kpis, audit; web view /kpis, /metrics) until SIGTERM."""
    from app.kpis.app import run

    settings = _settings()
    overrides = {k: v for k, v in (("web_port", web_port), ("data_dir", data_dir)) if v is not None}
    if overrides:
        settings = settings.with_overrides(kpis=overrides)
    try:
        run(settings)
    except KafkaException as exc:  # no broker at start (its topics are created first)
        broker_down(settings, "the KPI app cannot start", exc, 1)

@app.command("feedback")
def feedback(asset_id: Optional[str] = typer.Argument(None, help="asset the decision is about: its own id (with "
                                                     "--tenant) or its tenant-scoped id (acme::a1)"),
             tenant: Optional[str] = typer.Option(None, "--tenant", help="the asset's tenant (default: the default "
                                                  "tenant, or the one a scoped ASSET_ID names)"),
             field: List[str] = typer.Option([], "--field", "-f",
                                             help="FIELD=accepted | FIELD=rejected | FIELD=edited:NEW VALUE"),
             editor: Optional[str] = typer.Option(None, help="who decided"),
             approve: bool = typer.Option(False, "--approve", help="publish the asset: approve every value shown "
                                          "(fields not named with --field are accepted as they are)"),
             reject: bool = typer.Option(False, "--reject", help="reject the asset (not publishable)"),
             file: Optional[str] = typer.Option(None, "--file",
                                                help="JSON Lines of EditorDecision records instead"),
             force: bool = typer.Option(False, "--force", help="send an edited alt text longer than "
                                        "validate.alt_text_hard_max_chars (refused without it; never cut)"),
             no_check: bool = typer.Option(False, "--no-check", help="send without checking that the asset is "
                                           "indexed (e.g. one the pipeline is still processing)"),
             json_out: bool = typer.Option(False, "--json", help="print the records as sent")):
    """Report what an editor did with the suggestions for an asset (EditorDecision on `feedback`).

    The decision names the asset's own id and its tenant (`--tenant acme`, or the scoped id `acme::a1`), as
    the review app's decisions do.

    The asset must be indexed (its tenant-scoped id, in the read alias): a decision about an unknown asset is
    refused (exit 1), not sent to be dead-lettered by the review group. When the index cannot be reached the
    decision is sent as before, with a warning that it could not be checked.

    With --file, every line is checked on its own: the valid decisions are sent, each bad line (or unknown
    asset) is reported (file:line: why) and the exit code is 1."""
    from app.kpis.feedback import parse_field_spec, publish_decisions, read_decisions_file
    from domain.events import scoped_id

    problems: list[str] = []
    try:
        if file:
            if asset_id or field:
                raise ValueError("use either --file or ASSET_ID with --field, not both")
            if tenant is not None:
                raise ValueError("--tenant names the tenant of ASSET_ID; with --file each line gives its own "
                                 '"tenant" (or a scoped "asset_id": acme::a1)')
            try:
                decisions, problems = read_decisions_file(file)
            except OSError as exc:
                raise ValueError(f"--file: {exc}") from exc
            decisions, unscoped = _own_ids(decisions)
            problems += unscoped
            for p in problems:
                console.print(f"[yellow]not sent[/yellow] {plain(p)}", highlight=False)
        else:
            if approve and reject:
                raise ValueError("--approve or --reject, not both")
            verdict = "approved" if approve else "rejected" if reject else None
            if not asset_id or not (field or verdict) or not editor:
                raise ValueError("ASSET_ID, --editor and at least one --field (or --approve / --reject) are "
                                 "required (or --file)")
            asset_id, tenant = asset_and_tenant(asset_id, tenant)
            decisions = [{"asset_id": asset_id, "tenant": tenant, "editor": editor, "status": verdict,
                          "fields": [parse_field_spec(spec) for spec in field]}]
        settings = _settings()
        decisions, too_long = _alt_text_lengths(settings, decisions, force)
        if too_long and not file:
            console.print(f"[red]error:[/red] {plain(too_long[0])}; nothing sent (--force sends it as written)",
                          highlight=False)
            raise typer.Exit(1)
        for p in too_long:
            console.print(f"[yellow]not sent[/yellow] {plain(p)} (--force sends it as written)", highlight=False)
        problems += too_long
        if decisions and not no_check:
            decisions, bad_tags = _vocabulary_tags(settings, decisions)
            if bad_tags and not file:
                console.print(f"[red]error:[/red] {plain(bad_tags[0])}; nothing sent (--no-check sends it anyway: the "
                              "review group keeps a tag the asset already has and dead-letters any other)",
                              highlight=False)
                raise typer.Exit(1)
            for p in bad_tags:
                console.print(f"[yellow]not sent[/yellow] {plain(p)}", highlight=False)
            problems += bad_tags
            decisions, unknown = _known_assets(settings, decisions)
            if unknown and not file:
                console.print(f"[red]error:[/red] {plain(unknown[0])}; nothing sent (check the id, its tenant, and "
                              f"that the pipeline has indexed it; --no-check sends it anyway)", highlight=False)
                raise typer.Exit(1)
            for p in unknown:
                console.print(f"[yellow]not sent[/yellow] {plain(p)}", highlight=False)
            problems += unknown
        sent = publish_decisions(settings, decisions) if decisions else []
    except (ValueError, KeyError) as exc:
        console.print(f"[red]error:[/red] {plain(exc)}", highlight=False)
        raise typer.Exit(2) from None
    except (TimeoutError, KafkaException) as exc:  # no broker, or it did not acknowledge: nothing was sent
        broker_down(settings, "editor decisions not sent", exc, 1)
    if json_out:
        out.print_json(json.dumps(sent))
    else:
        for d in sent:
            out.print(plain(f"sent {d['decision_id']} for {scoped_id(d['asset_id'], d.get('tenant'))} by {d['editor']}: "
                            + ", ".join([*(f"{f['field']}={f['action']}" for f in d["fields"]),
                                         *([d["status"]] if d.get("status") else [])])), highlight=False)
    if problems:
        console.print(f"[red]{len(problems)} line(s) not sent[/red], {len(sent)} decision(s) sent; fix those lines "
                      "and send them again")
        raise typer.Exit(1)

def asset_and_tenant(asset_id: str, tenant: str | None) -> tuple[str, str | None]:
    """(the asset's own id, its tenant) of `ASSET_ID [--tenant T]`, the shape the review app sends
    (app/review/decisions.py): a scoped id (`acme::a1`) is split; a scoped id with --tenant too is refused (say it
    once), as the search API refuses it. Both parts are checked like every --tenant and asset id (ValueError)."""
    from domain.events import MAX_ASSET_ID, MAX_TENANT, TENANT_SEPARATOR, identifier_problem

    given = asset_id
    if TENANT_SEPARATOR in asset_id:
        if tenant is not None:
            raise ValueError(f"{asset_id[:80]!r} already names its tenant: give the asset id with --tenant "
                             f"{tenant[:40]}, or the scoped id alone")
        tenant, _, asset_id = asset_id.partition(TENANT_SEPARATOR)
        where = f"the tenant of {given[:80]!r}"
    else:
        where = "--tenant"
    if tenant is not None and (problem := identifier_problem(tenant, MAX_TENANT, scoped=True)) is not None:
        raise ValueError(f"{where}: tenant {problem}")
    if (problem := identifier_problem(asset_id, MAX_ASSET_ID, scoped=True)) is not None:
        raise ValueError(f"asset id {problem}")
    return asset_id, tenant


def _own_ids(decisions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(the --file decisions with a scoped asset_id split into asset_id + tenant, why each other one is not sent)."""
    ok, bad = [], []
    for d in decisions:
        try:
            d["asset_id"], d["tenant"] = asset_and_tenant(d["asset_id"], d.get("tenant"))
        except ValueError as exc:
            bad.append(f"{d['asset_id']}: {str(exc).replace('--tenant', 'tenant')}")
            continue
        ok.append(d)
    return ok, bad


def _alt_text_lengths(settings: Any, decisions: list[dict[str, Any]], force: bool
                      ) -> tuple[list[dict[str, Any]], list[str]]:
    """(the decisions to send, why each other one is not): a warning for each alt text over
    validate.alt_text_max_chars, that is a file name or starts with "image of" (validate's alt-text rules), and a
    decision with one over validate.alt_text_hard_max_chars held back unless --force."""
    from app.kpis.feedback import alt_text_hints, alt_text_length

    v = settings.validate_settings
    ok, refused = [], []
    for d in decisions:
        warnings, refusals = alt_text_length(d, v.alt_text_max_chars, v.alt_text_hard_max_chars)
        warnings = alt_text_hints(d) + warnings
        for w in warnings + (refusals if force else []):
            console.print(f"[yellow]warning:[/yellow] {plain(w)}", highlight=False)
        if refusals and not force:
            refused += refusals
        else:
            ok.append(d)
    return ok, refused


def _vocabulary_tags(settings: Any, decisions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(the decisions whose tags are vocabulary ids, why each other one is not sent)."""
    from consumers.review.stage import renamed_tags_in, tag_problems
    from domain.taxonomy import taxonomy_from_settings

    tax = taxonomy_from_settings(settings)
    ok, bad = [], []
    for d in decisions:
        for old, new in renamed_tags_in(d, tax).items():
            console.print(f"[yellow]note:[/yellow] {plain(d['asset_id'])}: {plain(repr(old))} was renamed in the "
                          f"vocabulary ({tax.version}): it will be recorded as {plain(new)}", highlight=False)
        problems = tag_problems(d, tax)
        if problems:
            bad.append(f"{d['asset_id']}: {'; '.join(problems)}")
        else:
            ok.append(d)
    return ok, bad


def _known_assets(settings: Any, decisions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(the decisions about indexed assets, why each other one is not sent). An index that cannot be asked
    (unreachable, no read alias, refused) checks nothing: every decision goes on, with a warning."""
    from elasticsearch import ApiError

    from domain.events import scoped_id
    from domain.store.api import indexed_ids
    from domain.store.client import make_client

    ids = list(dict.fromkeys(scoped_id(d["asset_id"], d.get("tenant")) for d in decisions))
    quick = settings.with_overrides(index={"max_retries": 0,
                                           "request_timeout_s": min(settings.index.request_timeout_s, 5.0)})
    try:
        found = ask_store(quick, lambda s: indexed_ids(make_client(s), s, ids))
    except Exception as exc:  # noqa: BLE001 - cannot check: send as before, and say so
        why = type(exc).__name__ + (f" {exc.status_code}" if isinstance(exc, ApiError) else "")
        console.print(f"[yellow]warning:[/yellow] could not check that the asset(s) are indexed (the store at "
                      f"{redact_url(settings.index.url)}: {why}); sending anyway — a decision about an unknown "
                      "asset is dead-lettered by the review group")
        return decisions, []
    known = [d for d in decisions if scoped_id(d["asset_id"], d.get("tenant")) in found]
    unknown = [f"asset {scoped_id(d['asset_id'], d.get('tenant'))!r} is not in the index "
               f"({settings.index.index}-read at {redact_url(settings.index.url)})"
               for d in decisions if scoped_id(d["asset_id"], d.get("tenant")) not in found]
    return known, unknown


@app.command("audit")
def audit(asset_id: str = typer.Argument(..., help="asset whose history to print: its tenant-scoped id "
                                           "(acme::a1) or its own id with --tenant (none: the default tenant)"),
          tenant: Optional[str] = typer.Option(None, "--tenant", help="the asset's tenant (default: the default "
                                               "tenant, or the one a scoped ASSET_ID names)"),
          json_out: bool = typer.Option(False, "--json", help="machine-readable output")):
    """Print the asset's audit history in order: every generated field set with provenance, every decision."""
    from app.kpis.audit import history, history_key

    try:
        asset_id = history_key(asset_id, tenant)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {plain(exc)}", highlight=False)
        raise typer.Exit(2) from None
    settings = _settings()
    try:
        entries = history(settings, asset_id)
    except KafkaException as exc:
        broker_down(settings, "cannot read the audit log", exc, 2)
    if json_out:
        out.print_json(json.dumps(_jsonable(entries)))
        return
    if not entries:
        console.print(f"no audit entries for {plain(asset_id)} in {settings.topics.name('audit')}", highlight=False)
        console.print("[dim]next:[/dim] check the asset id (`assetstream search`); the audit log is written by the "
                      "KPI app, `assetstream streams kpis`, which must run against this broker (`assetstream run` "
                      "does not start it)", highlight=False)
        raise typer.Exit(1)
    table = Table(title=f"audit history of {plain(asset_id)}")
    for col in ("at", "kind", "version", "status", "actor", "field", "value", "source / action", "prompt", "model"):
        table.add_column(col, overflow="fold")
    for e in entries:
        rows = e["fields"] or [None]
        for i, f in enumerate(rows):
            status = e["status"] or ""
            if e.get("refused"):  # a decision the review group did not apply
                status = f"refused ({status})" if status else "refused"
            head = (_iso(e["at"]), e["kind"], str(e["version"] or ""), status, e["actor"]) if i == 0 \
                else ("", "", "", "", "")
            if f is None:
                table.add_row(*map(as_text, head), "", "", "", "", "")
                continue
            prompt = f"{f['prompt_id']}@{f['prompt_version']}" if f.get("prompt_id") else ""
            source = f["source"] + (f" / {f['action']}" if f.get("action") else "")
            if f.get("degraded"):
                source += f" (degraded: {f['degraded']})"
            # what people and models wrote is text, never markup
            table.add_row(*map(as_text, (*head, f["field"], f.get("value"), source, prompt, f.get("model"))))
        if e.get("refused"):
            table.add_row("", "", "", "", "", "refused", as_text(e["refused"]), "", "", "")
        for part, why in sorted((e.get("degraded") or {}).items()):  # parts of the asset that are incomplete
            table.add_row("", "", "", "", "", as_text(f"degraded: {part}"), as_text(why), "", "", "")
    out.print(table)
