"""`assetstream review`: the review web app against a configured fleet (Typer app merged by app/cli.py)."""
from __future__ import annotations

from typing import Optional

import typer

from app.console import console, load_settings, redact_url, setup_logging

app = typer.Typer(add_completion=False)


def announce(url: str) -> None:
    """The one line an editor needs (it carries the login token in token mode)."""
    print(f"review: {url}", flush=True)


@app.command()
def review(host: Optional[str] = typer.Option(None, help="interface to bind (default review.host, 127.0.0.1)"),
           port: Optional[int] = typer.Option(None, help="port (default review.port; 0 = any free port)")):
    """Serve the review web app: the queue of assets to review, the asset view, decisions to `feedback`.

    Reads the index (index.*), publishes EditorDecisions to the `feedback` topic (kafka.*); auth per review.auth.
    Prints `review: <URL>` when ready; stops on Ctrl-C."""
    from app.review.server import ReviewServer, serve_until_interrupted

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_levels)
    sock = bind_review_port(settings, host, port)
    try:
        server = ReviewServer(settings, host=host, port=port, sock=sock)
    except ValueError as exc:
        sock.close()
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"[dim]index {redact_url(settings.index.url)} · feedback topic {settings.topics.name('feedback')} on "
                  f"{settings.kafka.bootstrap_servers} · auth {settings.review.auth}[/dim]")
    serve_until_interrupted(server, announce)


def fleet_env(settings) -> str:
    """The variables that point the other commands (search, feedback, dlq, audit, backfill) at this run's broker,
    store and dead-letter originals, as one line to `export` or put in front of a command."""
    import shlex

    env = {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "ASSETSTREAM_INDEX__URL": redact_url(settings.index.url), "ASSETSTREAM_INDEX__SERVER_MODE": settings.index.server_mode}
    if not settings.registry.url.startswith("mock://"):  # the in-process registry needs no address
        env["ASSETSTREAM_REGISTRY__URL"] = redact_url(settings.registry.url)
    if settings.dead_letters.store:
        env["ASSETSTREAM_DEAD_LETTERS__STORE"] = settings.dead_letters.store
    return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())


def bind_review_port(settings, host: Optional[str] = None, port: Optional[int] = None):
    """The review app's listening socket (review.host / review.port unless given), bound now: a port in use is
    one clear error and exit 2 before anything starts (`run --serve` used to process every image, print its
    `env:` line and then fail with a traceback)."""
    import socket

    from app.review.server import bind_socket

    host = host or settings.review.host
    port = settings.review.port if port is None else port
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
    serve_until_interrupted(ReviewServer(settings, sock=sock), announce)
    console.print("[dim]review app stopped; stopping the workers (and the broker and store the run started)[/dim]")
