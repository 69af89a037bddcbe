"""The `assetstream` command line."""
from __future__ import annotations

import importlib
import json
import os
import time
from typing import Any, Optional

import typer
from app.console import (as_text, ask_store, broker_down, console, describe_settings_error, load_settings, out,
                         plain, print_json_out, redact_url, setup_logging, store_down)
from app.kpis import cli as kpis_cli
from app.ops import cli as ops_cli
from app.review import cli as review_cli

# One BLAS thread unless told otherwise, as the Dockerfile sets it (before numpy loads: nothing above imports it). The
# models here run small matrices (a search query embeds a handful of tokens); OpenBLAS's own threads spinning on a
# shared CPU made one query embedding take 690 ms instead of 20 ms (docs/benchmarks.md, issue 17).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="assetstream: a Kafka consumer fleet that turns raw image-asset events into validated, "
                       "searchable, provenance-stamped DAM metadata.")
topics_app = typer.Typer(no_args_is_help=True, help="Provision Kafka topics.")
app.add_typer(topics_app, name="topics")
index_app = typer.Typer(no_args_is_help=True, help="Manage the search index (explicit mappings, read/write aliases, migrations).")
app.add_typer(index_app, name="index")
config_app = typer.Typer(no_args_is_help=True, help="Inspect the effective configuration.")
app.add_typer(config_app, name="config")

STAGES = {
    "preprocess": "consumers.preprocess.stage:PreprocessStage",
    "enrich": "consumers.enrich.stage:EnrichStage",
    "validate": "consumers.validate.stage:ValidateStage",
    "index": "consumers.index.sink:IndexSink",
    "review": "consumers.review.stage:ReviewStage",
    "writeback": "consumers.writeback.sink:WritebackSink",
}


def _print_version(value: bool) -> None:
    if value:
        from app.build import version_line

        out.print(version_line(), highlight=False, soft_wrap=True)
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """assetstream: a Kafka consumer fleet that turns raw image-asset events into validated, searchable,
    provenance-stamped DAM metadata."""


def stage_class(name: str) -> Any:
    """A built-in stage name, or 'package.module:Class' for your own stage."""
    target = STAGES.get(name, name)
    if ":" not in target:
        raise typer.BadParameter(f"unknown stage {name!r}: use one of {', '.join(STAGES)} or module:Class")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


@app.command()
def worker(stage: str = typer.Argument(..., help="preprocess | enrich | validate | index | review | writeback | module:Class"),
           metrics_port: Optional[int] = typer.Option(None, help="override runner.metrics_port (0 = any free)")):
    """Run one consumer group member until SIGTERM (the unit Kubernetes scales).

    Exit code: 0 stopped by a signal after the drain, 1 a fatal error or the broker could not be reached at
    start-up (let the orchestrator restart it), 2 refused to start (invalid settings, a missing API key)."""
    import logging

    from streams.errors import StageError
    from streams.retry import RetryTopicMissing
    from streams.runner import BrokerNotReached, StageRunner

    settings = load_settings()
    refusal = settings.registry.refusal()
    if refusal:
        console.print(f"[red]refusing to start:[/red] {plain(refusal)}", highlight=False)
        raise typer.Exit(2)
    missing = _missing_api_keys(settings, None) if stage == "enrich" else None
    if missing:  # the same check as `run`: one line naming the variable, not the provider's traceback
        console.print(f"[red]refusing to start:[/red] {plain(missing)}", highlight=False)
        raise typer.Exit(2)
    from app.model_check import refusal as models_refusal

    models = models_refusal(settings, [stage])
    if models:  # as `run`: not a transient error per record, retried for minutes, then dead-lettered (trial 32)
        console.print(f"[red]refusing to start:[/red] {stage}: {plain(models)}", highlight=False)
        raise typer.Exit(2)
    setup_logging(settings.log_level, settings.log_levels)
    if metrics_port is not None:
        settings = settings.with_overrides(runner={"metrics_port": metrics_port})
    try:
        built = stage_class(stage)(settings)
    except (StageError, ValueError, OSError, ImportError) as exc:  # found while building the stage: its settings
        logging.getLogger("assetstream.cli").debug("building the %s stage failed", stage, exc_info=True)
        console.print(f"[red]refusing to start:[/red] {stage}: {plain(exc, lines=True)}", highlight=False)
        raise typer.Exit(2) from None
    try:
        runner = StageRunner(built, settings, install_signal_handlers=True)
    except RetryTopicMissing as exc:  # runner.retry_mode=topic without its topic: no silent in-place fallback
        console.print(f"[red]refusing to start:[/red] {plain(exc)}", highlight=False)
        raise typer.Exit(2) from None
    except BrokerNotReached as exc:  # no broker (yet), any stage: exit 1, an orchestrator restarts it and it may be up then
        broker_down(settings, f"{stage}: cannot reach the Kafka broker at start-up", exc.reason, 1,
                    then="start the worker again (exit 1: an orchestrator restarts it)")
    runner.run()
    if runner.fatal_error:
        console.print(f"[red]{plain(runner.fatal_error)}[/red]", highlight=False)
    _exit_now(1 if runner.fatal_error else 0)


def _exit_now(code: int) -> None:
    """The runner has drained, committed and closed its clients: exit now. Records it abandoned after
    runner.drain_timeout_s may still be running in worker threads or child processes (a slow fetch or OCR);
    an ordinary exit would join those threads and wait for them (a worker given SIGTERM with a 10 s drain
    timeout took 31 s to exit), so the children are terminated and the process ends without joining."""
    import logging
    import multiprocessing
    import os
    import sys

    for child in multiprocessing.active_children():
        child.terminate()
    for child in multiprocessing.active_children():
        child.join(2)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@topics_app.command("create")
def topics_create(json_out: bool = typer.Option(False, "--json", help="machine-readable output")):
    """Create all assetstream topics that do not exist yet (idempotent)."""
    from streams.topics import create_topics

    from confluent_kafka import KafkaException

    settings = load_settings()
    try:
        result = create_topics(settings)
    except KafkaException as exc:
        broker_down(settings, "topics not created", exc, 1)
    if json_out:
        out.print_json(json.dumps(result))
    else:
        for topic, state in result.items():
            out.print(f"{state:8} {topic}")


@app.command()
def status(group: Optional[list[str]] = typer.Option(None, "--group", help="a stage name or consumer group id "
                                                      "(repeatable); default: every stage's group (writeback "
                                                      "only with targets configured)"),
           json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
           timeout: float = typer.Option(10.0, help="seconds to wait for each broker answer"),
           rate: Optional[float] = typer.Option(None, "--rate", min=2, max=3600, help="look twice, this many "
                                                "seconds apart: records/s per group, when its lag will be worked "
                                                "off at that rate, and groups that are stalled (records waiting, "
                                                "nothing committed in the window)")):
    """Consumer groups: state, members, offsets, lag, and partitions owned by nobody.

    Each group's state, members and their assignment, committed and end offsets, lag, and partitions owned by
    nobody; with --rate S also each group's throughput, time to drain and stalls. Exit 1 when a group has unowned
    partitions with records waiting (or, with --rate, is stalled), 2 when the broker cannot be reached."""
    from app.status import BrokerUnreachable, GroupInspector, progress, stage_topics

    settings = load_settings()
    try:
        inspector = GroupInspector(settings, timeout_s=timeout)
        by_group = {settings.groups.name(name): name for name in STAGES}
        # by default every stage's group, but writeback without a target (such a worker refuses to start)
        default = [name for name in STAGES if name != "writeback" or settings.writeback.targets]
        wanted = []
        for name in group or default:
            stage = name if name in STAGES else by_group.get(name)
            gid = settings.groups.name(stage) if stage else name
            wanted.append((stage, gid, stage_topics(settings, stage_class(stage), set(inspector.topics))
                           if stage else []))
        groups = inspector.groups(wanted)
        moved = {}
        if rate:
            time.sleep(rate)
            before, groups = groups, inspector.groups(wanted)
            moved = progress(before, groups, rate)
    except BrokerUnreachable as exc:
        console.print(f"[red]error:[/red] {plain(exc)}; check ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(2) from None
    waiting = sum(len(g.waiting) for g in groups)
    stalled = [gid for gid, p in moved.items() if p.stalled]
    if json_out:
        out.print_json(json.dumps({"groups": [{**g.as_dict(), **({"progress": moved[g.group].as_dict()}
                                                                 if g.group in moved else {})} for g in groups],
                                   "unowned_with_lag": waiting, **({"stalled": stalled} if rate else {})}))
    else:
        _print_groups(groups, moved)
    raise typer.Exit(1 if waiting or stalled else 0)


def _print_groups(groups: list[Any], moved: dict[str, Any] | None = None) -> None:
    from rich.table import Table

    for g in groups:
        members = "; ".join(plain(m.label) + " → " + (", ".join(f"{a['topic']}/{a['partition']}" for a in m.assignment) or "-")
                            for m in g.members) or ("none" if g.members_listed else "not listed by the broker")
        pace = f" · {moved[g.group].label()}" if moved and g.group in moved else ""
        table = Table(title=f"{g.stage or 'group'} · {plain(g.group)} · {g.state} · lag {g.lag}{pace}",
                      title_justify="left", caption_justify="left",
                      caption=f"members: {members}" + (f"\n{plain(g.note)}" if g.note else ""))
        for col in ("topic", "partition", "owner", "committed", "end", "lag"):
            table.add_column(col, justify="right" if col in ("partition", "committed", "end", "lag") else "left")
        for p in g.partitions:
            owner = plain(p.owner) if p.owner else ("[red]nobody[/red]" if g.members_listed else "?")
            lag = "?" if p.lag is None else (f"[red]{p.lag}[/red]" if p.lag and p.owner is None and g.members_listed
                                              else str(p.lag))
            table.add_row(p.topic, str(p.partition), owner, "-" if p.committed is None else str(p.committed),
                          "?" if p.end is None else str(p.end), lag)
        out.print(table)
        if g.waiting:
            out.print(f"[red]{len(g.waiting)} partition(s) of {plain(g.group)} owned by nobody with records waiting[/red]")


API_KEYS = {"claude": ("anthropic_api_key", "ASSETSTREAM_ENRICH__ANTHROPIC_API_KEY"),
            "gemini": ("gemini_api_key", "ASSETSTREAM_ENRICH__GEMINI_API_KEY")}


def _missing_api_keys(settings: Any, provider: str | None) -> str | None:
    """Which cloud provider the run would call without its API key (the default provider, or a task's or the
    verifier's "provider:model"), as a sentence naming the variable to set; None when every key is there."""
    enrich = settings.enrich
    named = [provider or enrich.provider, *(m.split(":", 1)[0] for m in enrich.models.values() if ":" in m),
             *([enrich.verifier.split(":", 1)[0]] if enrich.verifier and ":" in enrich.verifier else [])]
    missing = [p for p in dict.fromkeys(named) if p in API_KEYS and getattr(enrich, API_KEYS[p][0]) is None]
    if not missing:
        return None
    return "; ".join(f"the {p} provider needs an API key: {API_KEYS[p][1]} is not set" for p in missing)


@app.command()
def run(paths: list[str] = typer.Argument(..., help="image files, directories or globs"),
        out_dir: str = typer.Option("assetstream-out", "--out", help="where JSON-LD and XMP sidecars go"),
        bootstrap: Optional[str] = typer.Option(None, "--bootstrap", help="use this Kafka cluster instead of "
                                                "starting an embedded broker"),
        registry: Optional[str] = typer.Option(None, "--registry", help="Schema Registry URL (default mock://)"),
        es_url: Optional[str] = typer.Option(None, "--es-url", help="use this Elasticsearch/OpenSearch instead "
                                             "of starting an embedded store (OpenSearch also needs "
                                             "ASSETSTREAM_INDEX__SERVER_MODE=serverless)"),
        provider: Optional[str] = typer.Option(None, "--provider", help="local | claude | gemini"),
        timeout: float = typer.Option(900, help="give up after this many seconds"),
        json_out: bool = typer.Option(False, "--json", help="print the results as JSON: one row per file found "
                                      "(indexed, dead_lettered or skipped, with the reason)"),
        serve: bool = typer.Option(False, "--serve", help="then keep broker, store and workers up and serve the "
                                   "review web app (review.*) until Ctrl-C"),
        writeback_url: Optional[str] = typer.Option(
            None, "--writeback-url", help="also run the writeback group with a generic DAM target, e.g. "
            "'https://dam.example/api/assets/{asset_id}' (docs/writeback.md)"),
        writeback_mode: str = typer.Option("write", "--writeback-mode",
                                           help="write (approved records only) | suggest (also needs_review)"),
        tenant: Optional[list[str]] = typer.Option(None, "--tenant", help="with --serve: the review app serves "
                                                   "only this tenant's assets (repeatable; default review.tenants, "
                                                   "empty: every tenant)")):
    """Run the whole pipeline on some images, on one machine, with nothing configured.

    Starts an embedded Kafka-protocol broker and search store (unless --bootstrap / --es-url), all four
    consumer groups plus the sink with the offline local provider, publishes one event per image, and ends
    with a table plus a JSON-LD file and an XMP sidecar per image in --out. With --serve, everything stays up and
    the review web app is served: it prints an `env: …` line that points the other commands (search, feedback,
    dlq, backfill) at this run, and `review: <URL>` (with the login token) when ready. With
    --writeback-url (or targets in the settings' writeback section) the writeback group runs too, and each row
    says what it did (written, unchanged, skipped, dead_lettered, not_written); a target it cannot reach is named
    after the table once the group has waited ops.run_writeback_wait_s for it (docs/writeback.md).

    Exit code: 0 done, 1 an input was dead-lettered (its row says why; at write-back too) or not written to a
    write-back target, or a worker failed, 2 nothing to publish or a configuration error, 130 interrupted."""
    from pathlib import Path

    from elasticsearch import ApiError, TransportError
    from pydantic import ValidationError

    from app.embedded_run import EmbeddedRun

    if provider and provider not in ("local", "claude", "gemini"):
        raise typer.BadParameter("use local, claude or gemini", param_hint="--provider")
    if writeback_mode not in ("write", "suggest"):
        raise typer.BadParameter("use write or suggest", param_hint="--writeback-mode")
    if tenant and not serve:
        raise typer.BadParameter("it limits the review app to some tenants: use it with --serve", param_hint="--tenant")
    settings = load_settings()
    if tenant:
        from app.review.cli import with_tenants

        settings = with_tenants(settings, tenant)
    missing = _missing_api_keys(settings, provider)
    if missing:  # refused before anything starts, not as a worker's traceback after the broker is up
        console.print(f"[red]error:[/red] {plain(missing)}", highlight=False)
        console.print("[dim]next:[/dim] set it in the environment or the config file (ASSETSTREAM_CONFIG), or "
                      "choose another provider (--provider local runs offline; enrich.models and enrich.verifier "
                      "name providers too)", highlight=False)
        raise typer.Exit(2)
    from app.model_check import refusal as models_refusal

    models = models_refusal(settings.with_overrides(enrich={"provider": provider}) if provider else settings,
                            ("enrich", "index"))
    if models:  # before anything starts (trial 32 F2: two minutes of retries per asset, then a dead letter)
        console.print(f"[red]error:[/red] {plain(models)}", highlight=False)
        raise typer.Exit(2)
    from consumers.preprocess.ocr import tesseract_missing

    no_tesseract = tesseract_missing(settings.preprocess)
    if no_tesseract:  # trial 32 F6: said nowhere, although the README promised it was installed
        console.print(f"[yellow]warning:[/yellow] {plain(no_tesseract)}", highlight=False)
    setup_logging("WARNING")
    job = EmbeddedRun(paths, out_dir=Path(out_dir), bootstrap=bootstrap, registry=registry, es_url=es_url,
                      provider=provider, timeout_s=timeout, console=console, settings=settings,
                      show_progress=not json_out, writeback_url=writeback_url, writeback_mode=writeback_mode)
    reported = []

    def report() -> None:
        reported.append(True)
        _print_run_rows(job.rows, json_out, out_dir, job.skipped, where=False)
        for problem in job.writeback_problems:  # an unreachable write-back target: once, naming it
            console.print(f"[red]write-back:[/red] {plain(problem)}", highlight=False)
        _print_run_end(job, paths, out_dir, json_out, serve)

    review_sock = None
    if serve:  # the review port first: one in use is a clear error before anything starts (exit 2)
        from app.review.cli import bind_review_port

        review_sock = bind_review_port(settings)

    def report_and_serve(running) -> None:
        from app.review.cli import serve_embedded

        report()
        _say_embedded_has_no_login(bootstrap, es_url)
        serve_embedded(running, review_sock)

    try:
        tracker, _ = job.run(after=report_and_serve if serve else None)
    except FileNotFoundError as exc:
        console.print(f"[red]{plain(exc)}[/red]", highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as exc:  # an option that makes the settings invalid, e.g. --writeback-url notaurl
        console.print("[red]configuration error:[/red]")
        console.print(describe_settings_error(exc, origins=False), markup=False, highlight=False)
        raise typer.Exit(2) from None
    except (RuntimeError, TimeoutError) as exc:  # --timeout, or a worker died: the rows as far as the run got
        if not reported:
            _print_run_rows(job.interrupted_rows("the run timed out" if isinstance(exc, TimeoutError)
                                                 else "the run failed"), json_out, out_dir, job.skipped)
        console.print(f"[red]run failed:[/red] {plain(exc, lines=True)}\n[dim]worker logs: {plain(job.workdir)}[/dim]",
                      highlight=False)
        raise typer.Exit(1) from None
    except (ApiError, TransportError) as exc:  # --es-url refused (406: an OpenSearch API) or cannot be reached
        store_down(settings.with_overrides(index={"url": es_url}) if es_url else settings, "run failed", exc)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP: every worker, the broker and the store are stopped
        if not reported:  # what was done so far: every input accounted for (done, skipped, or interrupted)
            rows = job.interrupted_rows()
            _print_run_rows(rows, json_out, out_dir, job.skipped)
            done = sum(r["status"] != "interrupted" for r in rows)
            console.print(f"{done} of {len(rows)} input(s) finished before the interruption; every input's row is "
                          f"in {Path(out_dir).resolve() / 'summary.json'}", highlight=False)
        ours = ["workers", *(["broker"] if not bootstrap else []), *(["store"] if not es_url else [])]
        kept = [*([f"the broker at {bootstrap}"] if bootstrap else []),
                *([f"the store at {redact_url(es_url)}"] if es_url else [])]
        console.print(f"[yellow]interrupted[/yellow]: {', '.join(ours[:-1])}{' and ' if len(ours) > 1 else ''}"
                      f"{ours[-1]} stopped" + (f"; {' and '.join(kept)} (not started by this run) left as "
                                               "they are: run the same command again to finish" if kept else ""),
                      highlight=False)
        raise typer.Exit(130) from None
    finally:
        if review_sock is not None:
            review_sock.close()
    if serve:
        _say_where_decisions_are_kept(job, out_dir, es_url)
        for problem in job.session_writeback_problems:  # trial 35 F2: never dropped silently at Ctrl-C
            console.print(f"[red]write-back:[/red] {plain(problem)}", highlight=False)
    # the run has finished (workers, broker and store are stopped): a Ctrl-C from here on would only lose the
    # rows (typer turns a KeyboardInterrupt into exit 130 with nothing printed), so it waits until they are out
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not reported:
        report()
    from app.run_writeback import failed

    raise typer.Exit(1 if tracker.dead or failed(job.rows) else 0)


def _say_embedded_has_no_login(bootstrap: Optional[str], es_url: Optional[str]) -> None:
    """`run --serve` with the embedded broker or store: the review app asks for a token, they do not (trial 16).
    Neither tansu (its --authentication cannot be given a first user on memory storage) nor osmem-server (no
    authentication at all) can require credentials, so the one thing to do is say so (docs/operations.md)."""
    started = [*(["broker"] if not bootstrap else []), *(["store"] if not es_url else [])]
    if started:
        console.print(f"[yellow]note:[/yellow] the embedded {' and '.join(started)} of this run have no login: "
                      "anyone with an account on this machine can read every asset and send decisions under any "
                      "editor's name; use it on a single-user machine (a shared host: a cluster with its own "
                      "authentication, --bootstrap / --es-url)", highlight=False)


def _say_where_decisions_are_kept(job, out_dir: str, es_url: Optional[str]) -> None:
    """After a `run --serve` session: where the decisions made in it live now. The embedded store (and broker)
    are gone with the session; the sidecars in --out carry each decision, and the next run over the same files
    with the same --out re-applies them (EmbeddedRun.carry_decisions)."""
    from pathlib import Path

    decided = job.decided_assets()
    if not decided:
        return
    where = Path(out_dir).resolve()
    store = (f"the store at {redact_url(es_url)} keeps them too" if es_url else
             "the embedded store and broker of this session are gone")
    console.print(f"{len(decided)} asset(s) carry a person's decision: kept in the sidecars in {plain(where)} "
                  f"(JSON-LD, XMP, summary.json); {store}. `assetstream run` over the same files with "
                  f"--out {plain(where)} re-applies them (those published into the session by URL are published again "
                  "from it), it never overwrites them.", highlight=False)


def _print_run_end(job: Any, paths: list[str], out_dir: str, json_out: bool, serve: bool) -> None:
    """The end of a finished run (trial 32 F4): the count per status, where the sidecars and summary.json are, the
    earlier runs' sidecars still in --out, why the exit code is 1 when it is, and what to do next. After the table
    on stdout; with --json on stderr (stdout is the JSON)."""
    import shlex
    from collections import Counter
    from pathlib import Path

    from app.run_writeback import WRITEBACK_FAILED

    rows, where = job.rows, Path(out_dir).resolve()
    say = console.print if json_out else out.print
    counts = Counter(r["status"] for r in rows)
    skipped = len(job.skipped)
    say(f"{len(rows)} asset(s): " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + (f"; {skipped} file(s) skipped" if skipped else ""), highlight=False)
    say(f"sidecars (JSON-LD, XMP) and summary.json (every row with its reasons) in [bold]{plain(where)}[/bold]",
        highlight=False)
    if job.earlier_files:
        shown = ", ".join(plain(n) for n in job.earlier_files[:4]) + (" …" if len(job.earlier_files) > 4 else "")
        say(f"[yellow]{len(job.earlier_files)} sidecar file(s) there are from an earlier run[/yellow] and not in this "
            f"summary.json ({shown}): kept as they are; use another --out for a folder of this run only",
            highlight=False)
    dead = counts.get("dead_lettered", 0)
    unwritten = sum(any(w["outcome"] in WRITEBACK_FAILED for w in r.get("writeback") or []) for r in rows)
    if (dead or unwritten) and not serve:
        why = [*([f"{dead} input(s) dead-lettered (each row says the stage and reason)"] if dead else []),
               *([f"{unwritten} asset(s) not written to a write-back target"] if unwritten else [])]
        say(f"[red]exit code 1:[/red] {'; '.join(why)}; the workers' logs: {plain(job.workdir.resolve())}",
            highlight=False)
    if not serve:
        command = shlex.join(["assetstream", "run", *paths, "--out", str(where), "--serve"])
        say(f"next: to review and search these assets (this run's broker and store are gone), run "
            f"{plain(command)}", highlight=False)


def _print_run_rows(rows: list[dict[str, Any]], json_out: bool, out_dir: str,
                    skipped: list[tuple[str, str]] = (), where: bool = True) -> None:
    """The run's results: one row per published input, and with --json also one per file found but not
    published (status `skipped`, with the reason), so every input is accounted for in the one output."""
    from pathlib import Path

    from rich.table import Table
    from rich.text import Text

    from app.embedded_run import skipped_rows
    from app.run_writeback import cell
    from domain.sources import shown

    def asset(r: dict[str, Any]) -> Text:  # the id, and below it the file's name (what a person recognises)
        name = Path(r.get("file") or "").name
        return Text(str(r["asset_id"])) + (Text("\n" + shown(name), style="dim") if name else Text())

    if json_out:
        print_json_out([*rows, *skipped_rows(list(skipped))])
    else:
        table = Table(title=f"{len(rows)} asset(s)", show_lines=True)
        writeback = any("writeback" in r for r in rows)  # a column when the run had write-back targets
        for col in ("asset", "title", "alt text", "tags", "status", "usage", "cost $",
                    *(["write-back"] if writeback else [])):
            table.add_column(col, overflow="fold")
        for r in rows:
            if r["status"] == "dead_lettered":
                table.add_row(asset(r), "", f"[red]{plain(r['stage'])}: {plain(r['reason'])}[/red] {plain(r['message'])}", "",
                              "[red]dead letter[/red]", "", "", *([""] if writeback else []))
                continue
            if r["status"] == "interrupted":  # a run stopped before this input was indexed: the reason says where
                table.add_row(asset(r), "", f"[yellow]{plain(r['reason'])}[/yellow]", "", "[yellow]interrupted[/yellow]",
                              "", "", *([""] if writeback else []))
                continue
            # a degraded part (OCR without tesseract, a timed-out task) under the status: why it needs review
            degraded = [x for x in r.get("reasons") or [] if str(x).startswith("degraded: ")]
            status = as_text(r["status"]) + (Text("\n" + shown("; ".join(degraded)), style="yellow") if degraded
                                             else Text())
            table.add_row(asset(r), *(as_text(v) for v in (  # model output and uploads: text
                          r["title"], r["alt_text"], ", ".join(r["tags"][:8]))), status, as_text(r["usage_flag"]),
                          f"{r['cost_usd']:.4f}",
                          *([cell(r.get("writeback") or [])] if writeback else []))
        out.print(table)
        if where:  # a finished run says it in _print_run_end
            out.print(f"JSON-LD and XMP sidecars in [bold]{plain(Path(out_dir).resolve())}[/bold]", highlight=False)


@app.command()
def search(query: Optional[str] = typer.Argument(None, help="free text over title, alt text, caption, OCR"),
           tag: list[str] = typer.Option([], "--tag", help="require this canonical tag (repeatable)"),
           status: Optional[str] = typer.Option(None, help="auto_applied | needs_review | approved | rejected | publishable (approved or auto_applied: what a site may show)"),
           usage: Optional[str] = typer.Option(None, help="ok | credit_required | restricted | unknown"),
           degraded: Optional[str] = typer.Option(None, "--degraded", help="only assets marked degraded: any, or "
                                                  "one part (ocr, faces, nsfw, tagging, alt_text, text_vector, …)"),
           date_from: Optional[str] = typer.Option(None, "--date-from", help="uploaded on or after (YYYY-MM-DD, UTC)"),
           date_to: Optional[str] = typer.Option(None, "--date-to", help="uploaded on or before (YYYY-MM-DD, UTC)"),
           place: Optional[str] = typer.Option(None, help="a city, region, country or ISO country code "
                                               "(any case)"),
           family: Optional[str] = typer.Option(None, help="the duplicate family of this asset (all its members)"),
           tenant: Optional[str] = typer.Option(None, help="only this tenant's assets; with --similar-to ASSET: the "
                                                "tenant of that asset (default: the default tenant)"),
           media: Optional[str] = typer.Option(None, "--media", help="only images or only videos: image | video"),
           collapse: bool = typer.Option(False, "--collapse", help="one hit per duplicate family (its best-ranked "
                                         "member)"),
           size: int = typer.Option(20, help="how many hits per page"),
           page: int = typer.Option(1, help="which page of hits (semantic, hybrid, --similar-to, --collapse: within "
                                    "the first index.rrf_window hits of the ranking)"),
           mode: str = typer.Option("hybrid", help="hybrid = words + meaning (BM25 and MiniLM vectors, fused by "
                                    "reciprocal rank fusion) | keyword = words and vocabulary synonyms only | "
                                    "semantic = meaning only (MiniLM vectors)"),
           similar_to: Optional[str] = typer.Option(None, "--similar-to", help="more like this: an asset id (its "
                                                    "image vector's nearest neighbours, or --by text) or an image "
                                                    "FILE (assets that look like it); the query is ignored"),
           by: str = typer.Option("auto", help="--similar-to ASSET: image | text | auto (image when it has one)"),
           facets: bool = typer.Option(False, "--facets", help="under the table, the result set's most frequent "
                                       "tags, statuses, usage flags, countries and media types with their counts"),
           facet_size: Optional[int] = typer.Option(None, "--facet-size", help="values per facet (default 30, at "
                                                    "most 500; implies --facets); a facet cut short says "
                                                    "'… and N more'"),
           es_url: Optional[str] = typer.Option(None, "--es-url", help="override index.url"),
           json_out: bool = typer.Option(False, "--json", help="print the answer of GET /v1/search as JSON "
                                         "(hits, total, facets with counts, facets_truncated, facets_other)")):
    """Search indexed assets (read alias) and print a table; the same code as the API's GET /v1/search."""
    from pathlib import Path

    from rich.table import Table

    from domain.events import DEFAULT_TENANT
    from domain.store.api import BadRequest, SearchRequest, run_search, run_similar, run_similar_image
    from domain.store.client import make_client

    try:
        req = SearchRequest.from_params({"query": query or "", "mode": mode, "tag": tag, "status": status,
                                         "usage": usage, "date_from": date_from, "date_to": date_to,
                                         "place": place, "family": family, "page": page, "size": size,
                                         "facets": "true" if json_out or facets or facet_size else "false",
                                         "facet_size": facet_size, "by": by,
                                         "collapse": "true" if collapse else "false",
                                         "degraded": degraded, "tenant": tenant, "media": media})
    except BadRequest as exc:
        console.print(f"[red]{plain(exc)}[/red]", highlight=False)
        raise typer.Exit(2) from None
    settings = load_settings()
    if es_url:
        settings = settings.with_overrides(index={"url": es_url})
    if similar_to and (query or "").strip():
        console.print(f"[yellow]--similar-to ranks by {plain(repr(similar_to))} alone: the words {plain(repr(query))} "
                      "are not used (narrow it with --tag, --status, --place, … instead)[/yellow]", highlight=False)

    def ask(settings: Any) -> dict[str, Any]:
        client = make_client(settings)
        if similar_to and Path(similar_to).is_file():
            image = Path(similar_to).read_bytes()
            if not image:  # (the API's own words are about a request body)
                raise BadRequest(f"--similar-to {similar_to}: the file is empty")
            return run_similar_image(client, settings, image, req)
        if similar_to:
            return run_similar(client, settings, similar_to, req)
        return run_search(client, settings, req)

    try:
        answer = ask_store(settings, ask)
    except BadRequest as exc:
        console.print(f"[red]{plain(exc)}[/red]", highlight=False)
        raise typer.Exit(2) from None
    except LookupError as exc:
        if similar_to and not Path(similar_to).is_file() and ("/" in similar_to or os.sep in similar_to or
                                                             Path(similar_to).suffix.lower() in
                                                             {e.lower() for e in settings.ops.image_extensions}):
            console.print(f"[red]--similar-to {plain(similar_to)}: no such file, and no indexed asset has this id[/red]",
                          highlight=False)
        else:
            console.print(f"[red]{plain(exc)}[/red]", highlight=False)
        raise typer.Exit(1) from None
    except Exception as exc:  # connection / missing index: say what to do
        console.print(f"[red]search failed:[/red] {plain(exc)}\n[dim]is the store at {redact_url(settings.index.url)} up, and has "
                      f"the index sink created {settings.index.index}-read?[/dim]")
        raise typer.Exit(1) from None
    if json_out:
        out.print_json(json.dumps(answer, default=str))
        return
    if answer.get("not_searched"):  # nothing was searched: the reason alone, no empty table (trial 33 N6)
        out.print(f"not searched: {plain(answer['not_searched']['message'])}", highlight=False)
        return
    hits = answer["hits"]
    of = f"{'≥ ' if answer.get('total_relation') == 'gte' else ''}{answer['total']}"
    if answer.get("collapse"):
        of += f" famil{'y' if answer['total'] == 1 else 'ies'} ({answer.get('matches', '?')} matching assets)"
    table = Table(title=f"{len(hits)} hit(s) of {of} · {answer['mode']} · page {answer['page']}")
    tenants = any(h.get("tenant") not in (None, DEFAULT_TENANT) for h in hits)  # a column when they differ
    for col in ("asset", *(("tenant",) if tenants else ()), "title", "alt text", "tags", "status", "usage", "source",
                "family", "degraded"):
        table.add_column(col, overflow="fold")
    for h in hits:
        fam = f"{h['family_id']} ({h['family_size']})" if h.get("family_size", 1) > 1 else ""
        table.add_row(*(as_text(v) for v in (  # indexed values are text, never markup
                      h["asset_id"], *((h.get("tenant"),) if tenants else ()), h.get("title"), h.get("alt_text"),
                      ", ".join(h.get("tags") or []), h.get("status"), h.get("usage_flag"), _sources(h), fam,
                      ", ".join(h.get("degraded_parts") or []))))
    out.print(table)
    if answer.get("query_truncated"):
        out.print(f"[dim]the query was cut to its first {len(answer['query'])} characters[/dim]")
    if answer.get("facets"):
        _print_facets(answer)
    window = answer.get("window")
    if window and answer.get("total_relation") == "gte" and (answer["page"] - 1) * answer["size"] + len(hits) >= window:
        out.print(f"[dim]{answer['mode']} answers are the first {window} hits of the ranking (index.rrf_window); "
                  "more may match: --mode keyword pages through every match[/dim]")


def _print_facets(answer: dict[str, Any]) -> None:
    """Each facet's values with their counts, and what the list leaves out: "… and 12 more (their counts add up to
    17); --facet-size 42 lists them all"."""
    from domain.store.api import MAX_FACET_SIZE

    size = answer["request"]["facet_size"]
    over = {"matches": "every match", "ranked": "the ranked window", "nearest": "the nearest window"}
    out.print(f"facets (over {over.get(answer.get('facets_over'), answer.get('facets_over'))}, the {size} most "
              "frequent values of each)", markup=False, highlight=False)
    for name, values in answer["facets"].items():
        if not values:
            continue
        line = ", ".join(f"{v['value']} ({v['count']})" for v in values)
        if name in answer.get("facets_truncated", []):
            other = answer["facets_other"][name]
            listed = len(values) + other["values"]
            more = f"{'≥ ' if other.get('values_relation') == 'gte' else ''}{other['values']}"
            line += f" … and {more} more (their counts add up to {other['count']})"
            if size < MAX_FACET_SIZE:  # (at the cap, there is no larger --facet-size to suggest)
                line += (f"; --facet-size {min(listed, MAX_FACET_SIZE)} lists "
                         f"{'them all' if listed <= MAX_FACET_SIZE else 'more'}")
            else:
                line += f"; {MAX_FACET_SIZE} is the most --facet-size lists: narrow the search with --tag"
        out.print(f"  {name}: {line}", markup=False, highlight=False)


def _sources(hit: dict[str, Any]) -> str:
    """Who set the title, alt text and tags of a hit: `title=human alt_text=human tags=model · maria`."""
    sources = hit.get("field_sources") or {}
    text = " ".join(f"{f}={sources.get(f, 'model')}" for f in ("title", "alt_text", "tags"))
    return text + (f" · {hit['reviewed_by']}" if hit.get("reviewed_by") else "")


@index_app.command("create")
def index_create():
    """Create the index and its read/write aliases if missing (idempotent)."""
    from domain.store.client import make_client
    from domain.store.management import ensure_index

    from elasticsearch import ApiError, TransportError

    settings = load_settings()
    try:
        alias = ensure_index(make_client(settings), settings)
    except (ApiError, TransportError) as exc:
        store_down(settings, "index not created", exc)
    out.print(f"write alias -> {alias}")


@index_app.command("migrate")
def index_migrate(to_version: Optional[int] = typer.Option(None, help="target version (default: next)"),
                  json_out: bool = typer.Option(False, "--json")):
    """Create the next index version with the current mappings, reindex, and swap both aliases.

    Idempotent: an index already at this release's mapping version is left as it is ("already at mapping
    version N", exit 0); --to-version copies anyway."""
    from domain.store.client import make_client
    from domain.store.management import migrate

    from elasticsearch import ApiError, TransportError

    settings = load_settings()
    try:
        summary = migrate(make_client(settings), settings, to_version=to_version)
    except (ApiError, TransportError) as exc:
        store_down(settings, "index not migrated", exc)
    except ValueError as exc:  # --to-version names the current index or one that exists; a newer index
        console.print(f"[red]index not migrated:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if json_out:
        out.print_json(json.dumps(summary, default=str))
    elif not summary["migrated"]:
        out.print(f"{summary['from_index']} is already at mapping version {summary['mapping_version']}: nothing "
                  "to migrate (--to-version copies anyway)", highlight=False)
    else:
        for k, v in summary.items():
            out.print(f"{k}: {plain(v)}", highlight=False)


@index_app.command("embed")
def index_embed(json_out: bool = typer.Option(False, "--json")):
    """Give every document without a current text vector one (MiniLM), at its own version: after
    `index migrate` to mapping version 2, a model upgrade, or when the sink indexed it without its vector because
    the embedder failed on every attempt (marked degraded `text_vector`; the mark is cleared). Idempotent."""
    from domain.store.client import make_client
    from domain.store.vectors import backfill_vectors
    from domain.taxonomy import taxonomy_from_settings

    from elasticsearch import ApiError, TransportError

    settings = load_settings()
    tax = taxonomy_from_settings(settings)
    try:
        counts = backfill_vectors(make_client(settings), settings,
                                  lambda t: tax.entries[t].synonyms if t in tax.entries else [])
    except (ApiError, TransportError) as exc:
        store_down(settings, "vectors not written", exc)
    if json_out:
        out.print_json(json.dumps(counts))
    else:
        out.print(f"embedded: {counts['embedded']}, skipped (rewritten meanwhile): {counts['skipped']}")


@config_app.command("show")
def config_show():
    """Print the effective settings as JSON (secrets redacted)."""
    out.print_json(json.dumps(load_settings().redacted(), default=str))


app.add_typer(ops_cli.app)  # publish, ingest-server, backfill, dlq
app.add_typer(kpis_cli.app)  # streams kpis, feedback, audit
app.add_typer(review_cli.app)  # review


def main() -> None:
    app()


if __name__ == "__main__":
    main()
