"""`assetstream review`: the review web app against a configured fleet (Typer app merged by app/cli.py)."""
from __future__ import annotations

from typing import Optional

import typer

from app.console import console, describe_settings_error, load_settings, redact_url, setup_logging

app = typer.Typer(add_completion=False)


def announce(url: str) -> None:
    """The one line an editor needs (it carries the login token in token mode)."""
    print(f"review: {url}", flush=True)


TENANT_HELP = ("serve only this tenant's assets: queue, asset pages, decisions and the search API (repeatable; "
               "default review.tenants, empty: every tenant)")


def with_tenants(settings, tenants: Optional[list[str]], option: str = "--tenant"):
    """The settings with review.tenants set to the `--tenant` options given (none given: as configured); a bad
    tenant name is a configuration error naming the option (exit 2)."""
    if not tenants:
        return settings
    try:
        return settings.with_overrides(review={"tenants": tenants})
    except ValueError as exc:
        why = describe_settings_error(exc, origins=False).split(": ", 1)[-1].removeprefix("Value error, ")
        console.print(f"[red]error:[/red] {option}: {why}", highlight=False)
        raise typer.Exit(2) from None


def serving(settings) -> str:
    """Which tenants the review app serves, for its start-up line."""
    tenants = settings.review.tenants
    return f"tenant{'s' if len(tenants) > 1 else ''} {', '.join(tenants)}" if tenants else "every tenant"


@app.command()
def review(host: Optional[str] = typer.Option(None, help="interface to bind (default review.host, 127.0.0.1)"),
           port: Optional[int] = typer.Option(None, help="port (default review.port; 0 = any free port)"),
           tenant: Optional[list[str]] = typer.Option(None, "--tenant", help=TENANT_HELP)):
    """Serve the review web app: the queue of assets to review, the asset view, decisions to `feedback`.

    Reads the index (index.*), publishes EditorDecisions to the `feedback` topic (kafka.*); auth per review.auth.
    With --tenant (or review.tenants) it serves those tenants' assets and no other's (one desk per tenant).
    Prints `review: <URL>` when ready; stops on Ctrl-C."""
    from app.review.server import ReviewServer, serve_until_interrupted

    settings = with_tenants(load_settings(), tenant)
    setup_logging(settings.log_level, settings.log_levels)
    sock = bind_review_port(settings, host, port, loopback_hint="--host 127.0.0.1")
    try:
        server = ReviewServer(settings, host=host, port=port, sock=sock)
    except ValueError as exc:
        sock.close()
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"[dim]index {redact_url(settings.index.url)} · feedback topic {settings.topics.name('feedback')} on "
                  f"{settings.kafka.bootstrap_servers} · auth {settings.review.auth} · {serving(settings)}[/dim]")
    warn_unheld_tenants(server.app.index.unheld_tenants())
    note_unwritten_tenants(settings)
    serve_until_interrupted(server, announce)


def warn_unheld_tenants(unheld: list[tuple[str, list[str]]]) -> None:
    """One warning per served tenant the index has no asset of, with the names it holds (an operator's typo or
    case slip would otherwise be an empty queue and nothing said)."""
    for tenant, known in unheld:
        hint = (f"; the index has {', '.join(known)} (tenant names are case-sensitive)" if known
                else "; the index holds no assets yet")
        console.print(f"[yellow]warning:[/yellow] no asset of tenant {tenant!r} in the index{hint}", highlight=False)


def note_unwritten_tenants(settings) -> None:
    """A note (not a failure) when the desk serves tenants that none of the configured write-back targets serves:
    their approvals reach the index and search, never a DAM or site (trial 31: an upgraded multi-tenant fleet's
    targets serve the default tenant only). Nothing when no target is configured here or the desk serves every
    tenant (which tenants exist is not known)."""
    unserved = settings.writeback.unserved(settings.review.tenants) if settings.writeback.targets else []
    if not unserved:
        return
    serve = "; ".join(f"{t.name} serves {', '.join(t.tenants)}" for t in settings.writeback.targets)
    console.print(f"[cyan]note:[/cyan] no write-back target serves tenant {' or '.join(map(repr, unserved))} "
                  f"({serve}): approvals on this desk reach the index and search, but no DAM or site; add the "
                  "tenant to a target's tenants if its approvals should be written there (docs/writeback.md, "
                  "Tenants)", highlight=False)


def fleet_env(settings) -> str:
    """The variables that point the other commands (search, feedback, dlq, audit, backfill) at this run's broker,
    store and dead-letter originals, as one line to `export` or put in front of a command."""
    import json
    import shlex

    env = {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "ASSETSTREAM_INDEX__URL": redact_url(settings.index.url), "ASSETSTREAM_INDEX__SERVER_MODE": settings.index.server_mode}
    if not settings.registry.url.startswith("mock://"):  # the in-process registry needs no address
        env["ASSETSTREAM_REGISTRY__URL"] = redact_url(settings.registry.url)
    if settings.dead_letters.store:
        env["ASSETSTREAM_DEAD_LETTERS__STORE"] = settings.dead_letters.store
    if settings.preprocess.file_roots:  # the folders the run's preprocess reads: `backfill` refuses others up front
        env["ASSETSTREAM_PREPROCESS__FILE_ROOTS"] = json.dumps(list(settings.preprocess.file_roots))
    return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())


def bind_review_port(settings, host: Optional[str] = None, port: Optional[int] = None,
                     loopback_hint: str = "ASSETSTREAM_REVIEW__HOST=127.0.0.1"):
    """The review app's listening socket (review.host / review.port unless given), bound now: a port in use is
    one clear error and exit 2 before anything starts (`run --serve` used to process every image, print its
    `env:` line and then fail with a traceback). So is header auth on an address other machines reach without
    review.trusted_proxies (header_exposure_problem; `loopback_hint`: how this command sets the address, the
    variable by default: `run --serve` has no --host, trial 19 finding 5)."""
    import socket

    from app.review.auth import header_exposure_problem
    from app.review.server import bind_socket

    host = host or settings.review.host
    port = settings.review.port if port is None else port
    exposed = header_exposure_problem(settings.review, host, loopback_hint)
    if exposed:
        console.print(f"[red]error:[/red] {exposed}", highlight=False)
        raise typer.Exit(2)
    try:
        return bind_socket(host, port)
    except (OSError, OverflowError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, socket.gaierror):
            why = f"unknown host ({why})"
        console.print(f"[red]error:[/red] the review app cannot listen on {host}:{port}: {why}", highlight=False)
        console.print("[dim]next:[/dim] stop what listens there, or use another port: ASSETSTREAM_REVIEW__PORT=0 "
                      "(any free port) or e.g. ASSETSTREAM_REVIEW__PORT=8078 (`assetstream review --port`)",
                      highlight=False)
        raise typer.Exit(2) from None


def serve_embedded(settings, sock=None) -> None:
    """`assetstream run DIR --serve`: name the embedded broker and store (and the `env:` line that points the other
    commands at them), then serve the review app until Ctrl-C (the run stops its workers, broker and store
    afterwards). `sock`: the review port, bound before the run started (`bind_review_port`)."""
    from app.review.server import ReviewServer, serve_until_interrupted

    print(f"broker: {settings.kafka.bootstrap_servers}", flush=True)
    print(f"store: {redact_url(settings.index.url)}", flush=True)
    print(f"env: {fleet_env(settings)}", flush=True)
    if settings.review.tenants:
        console.print(f"[dim]review app: {serving(settings)} only[/dim]")
    serve_until_interrupted(ReviewServer(settings, sock=sock), announce)
    console.print("[dim]review app stopped; stopping the workers (and the broker and store the run started)[/dim]")
