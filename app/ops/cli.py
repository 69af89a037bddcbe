"""Operator commands, a Typer app merged into the `assetstream` CLI by app/cli.py:

    assetstream publish FILES_OR_URLS... [--asset-id ID] [--license L] [--sku S --category C] [--title T] ...
    assetstream publish FILES_OR_URLS... --event-type reprocess [--no-carry]   (keeps the indexed upload values)
    assetstream ingest-server [--host 127.0.0.1] [--port 8080] [--insecure-no-auth]
    assetstream backfill DIR|MANIFEST.csv|MANIFEST.jsonl [--rate 50] [--state FILE] [--only-stale] [--dry-run] [--wait]
    assetstream dlq list|show|replay ...

Exit codes: 0 ok, 1 something failed (not published / not replayed), 2 usage or configuration error.
Standalone: `python -m app.ops.cli --help`.
"""
from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from app.console import as_text, broker_down, console, load_settings, out, plain, setup_logging
from domain.sources import shown



_settings = load_settings  # one place turns a bad configuration into a clear exit 2



def _cut(text: str, limit: int, more: str) -> str:
    """`text`, or its first `limit` characters saying where the rest is (a message's fix hint comes last)."""
    return text if len(text) <= limit else f"{text[:limit]}… (the rest: {more})"

def _ops(settings):
    from app.ops.settings import ops_settings

    try:
        return ops_settings(settings)
    except Exception as exc:
        console.print(f"[red]configuration error (ASSETSTREAM_OPS__*):[/red] {plain(exc, lines=True)}")
        raise typer.Exit(2) from None


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def _fail(message: str, hint: str | None = None, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {plain(message, lines=True)}")  # names, paths and errors from outside
    if hint:
        console.print(f"[dim]next:[/dim] {plain(hint, lines=True)}")
    raise typer.Exit(code)


def _is_uri(text: str) -> bool:
    return "://" in text


app = typer.Typer(no_args_is_help=True, add_completion=False, help="assetstream operator commands")


# -------------------------------------------------------------------------------------------- publish
@app.command("publish")
def publish(
    files_or_urls: List[str] = typer.Argument(..., help="local image paths (sent as file:// URIs) and/or "
                                              "http(s):// or s3:// URLs"),
    asset_id: Optional[str] = typer.Option(None, "--asset-id", help="asset id (only with one source); "
                                           "default: derived from the URI"),
    event_type: str = typer.Option("created", "--event-type", help="created | updated | reprocess"),
    delete: bool = typer.Option(False, "--delete", help="publish a deletion of these assets instead "
                                "(give asset ids or the URIs they were published with)"),
    version: Optional[int] = typer.Option(None, help="the DAM's revision counter (default: now in ms)"),
    license_: Optional[str] = typer.Option(None, "--license", help="declared licence, e.g. CC-BY-4.0"),
    notes: Optional[str] = typer.Option(None, help="uploader notes (shown to the models as untrusted data)"),
    uploader: Optional[str] = typer.Option(None, help="who uploaded it"),
    tenant: str = typer.Option("default", help="tenant id"),
    sku: Optional[str] = typer.Option(None, help="product context: SKU"),
    category: Optional[str] = typer.Option(None, help="product context: category"),
    product_name: Optional[str] = typer.Option(None, "--product-name", help="product context: name"),
    brand: Optional[str] = typer.Option(None, help="product context: brand"),
    title: Optional[str] = typer.Option(None, help="human-entered title (wins over model output)"),
    alt_text: Optional[str] = typer.Option(None, "--alt-text", help="human-entered alt text (wins)"),
    no_carry: bool = typer.Option(False, "--no-carry", help="reprocess: do not carry the indexed asset's "
                                  "upload values (title, alt text, licence, product context, notes) forward; "
                                  "the event has only what this command gives"),
    es_url: Optional[str] = typer.Option(None, "--es-url", help="search store URL for a reprocess (default "
                                         "index.url)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
):
    """Publish asset events to `raw` and wait for the broker's acknowledgement; prints the asset ids.

    A reprocess event carries forward, from the index, what the asset's indexed event got from a person
    (human fields, declared licence, product context, uploader, notes) unless this command gives it."""
    from app.ops.carry import carry_forward, with_attributes
    from app.producer import AssetPublisher, PublishError, asset_id_for, build_event, source_uri_for

    if asset_id and len(files_or_urls) > 1:
        _fail("--asset-id names one asset, but several sources were given", "publish them one by one", 2)
    settings = _settings()
    product = {k: v for k, v in (("sku", sku), ("category", category), ("name", product_name),
                                 ("brand", brand)) if v} or None
    human = {k: v for k, v in (("title", title), ("alt_text", alt_text)) if v} or None
    given = {"declared_license": license_, "uploader": uploader, "uploader_notes": notes,
             "product_context": product, "human_fields": human}
    specs = []
    for src in files_or_urls:
        if delete:
            uri = src if _is_uri(src) else (source_uri_for(src) if Path(src).exists() else None)
            aid = asset_id or (asset_id_for(uri) if uri else src)
            uri = None
            etype = "deleted"
        else:
            if _is_uri(src):
                uri = src
            else:
                if Path(src).is_dir():
                    _fail(f"{src} is a directory: publish takes image files and URLs",
                          f"`assetstream backfill {src}` publishes every image under it (rate-limited, resumable)", 2)
                if not Path(src).is_file():
                    _fail(f"{src}: no such file", "give an existing image path or a URL", 2)
                uri = source_uri_for(src)
            aid = asset_id or asset_id_for(uri)
            etype = event_type
        specs.append((aid, uri, etype))
    indexed = _indexed_values(settings, es_url, [aid for aid, _, etype in specs if etype == "reprocess"],
                              tenant) if not no_carry else {}
    events, carried = [], {}
    for aid, uri, etype in specs:
        fields, carried[aid] = carry_forward(given, indexed[aid]) if aid in indexed else (given, [])
        try:
            events.append(build_event(aid, uri, event_type=etype, version=version, tenant=tenant,
                                      **with_attributes(fields, ingest="cli")))
        except ValueError as exc:
            _fail(str(exc), "see `assetstream publish --help`", 2)
    try:
        pub = AssetPublisher(settings)
        pub.publish_events(events)
    except PublishError as exc:
        _fail(f"not published: {exc}", f"check the broker at {settings.kafka.bootstrap_servers} "
              "(ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS) and that `assetstream topics create` ran; re-running "
              "is safe")
    if json_out:
        _print_json([{"asset_id": e["asset_id"], "event_id": e["event_id"], "event_type": e["event_type"],
                      "source_uri": e["source_uri"], "version": e["version"],
                      "carried_forward": carried[e["asset_id"]]} for e in events])
    else:
        for e in events:
            out.print(plain(e["asset_id"]))
    _say_carried({a: names for a, names in carried.items() if names})


def _indexed_values(settings, es_url: str | None, asset_ids: list[str], tenant: str) -> dict[str, dict[str, Any]]:
    """asset id -> the values its indexed event got from a person (app/ops/carry.py), for reprocess events.
    An unreachable store is an error: the reprocess would drop those values (--no-carry says to)."""
    from app.ops.backfill import IndexView
    from app.ops.carry import indexed_values
    from domain.events import scoped_id

    if not asset_ids:
        return {}
    index = IndexView(settings, es_url)
    try:
        docs = index.lookup([scoped_id(a, tenant) for a in asset_ids])
    finally:
        index.close()
    if not index.available:
        _fail(f"a reprocess event replaces the indexed one, and the index is not reachable at {index.url} "
              f"({index.error}) to carry forward the values a person gave at upload",
              "pass --es-url or set ASSETSTREAM_INDEX__URL; or --no-carry to publish only what this command "
              "gives (the indexed title, alt text, licence, product context and notes are then lost)", 2)
    missing = [a for a in asset_ids if scoped_id(a, tenant) not in docs]
    if missing:
        console.print(f"[yellow]note:[/yellow] not in the index, nothing to carry forward: {plain(', '.join(missing[:10]))}"
                      + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""), highlight=False)
    return {a: indexed_values(docs[scoped_id(a, tenant)]) for a in asset_ids if scoped_id(a, tenant) in docs}


def _say_carried(carried: dict[str, list[str]], limit: int = 20) -> None:
    """On stderr (stdout stays ids / JSON): which reprocess events kept which indexed values."""
    for aid, names in list(carried.items())[:limit]:
        console.print(f"{plain(aid)}: carried forward from the index: {', '.join(names)}", highlight=False)
    if len(carried) > limit:
        console.print(f"... and {len(carried) - limit} more asset(s) (--json lists them)")

# -------------------------------------------------------------------------------------------- webhook
@app.command("ingest-server")
def ingest_server(
    host: Optional[str] = typer.Option(None, help="bind address (default ops.webhook_host = 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, help="port (default ops.webhook_port = 8080; 0 = any free)"),
    insecure_no_auth: bool = typer.Option(False, "--insecure-no-auth",
                                          help="accept UNSIGNED requests (local experiments only)"),
):
    """Serve the signed DAM upload webhook (POST /v1/assets -> `raw`, 202 after the broker's ack).

    Body: one JSON event or a list; GET /healthz for probes. See docs/operations.md for the contract.
    The shared secret comes from ASSETSTREAM_OPS__WEBHOOK_SECRET (or ops.webhook_secret in the config file)."""
    from app.ops.ingest import PATH, IngestServer

    settings = _settings()
    setup_logging(settings.log_level, settings.log_levels)
    ops = _ops(settings)
    try:
        server = IngestServer(settings, host=host, port=port, insecure_no_auth=insecure_no_auth, ops=ops)
    except ValueError as exc:
        _fail(str(exc), code=2)
    except OSError as exc:
        _fail(f"cannot listen: {exc}", "pick another --port, or stop what uses it", 2)
    if insecure_no_auth:
        console.print("[yellow]warning:[/yellow] --insecure-no-auth: unsigned requests are accepted")
    console.print(f"listening on {server.url}{PATH} (GET /healthz); publishing to "
                  f"{settings.topics.name('raw')}")

    def stop(*_):
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.httpd.server_close()
        server.publisher.close(ops.webhook_ack_timeout_s)
    console.print("stopped")

# -------------------------------------------------------------------------------------------- backfill
@app.command("backfill")
def backfill(
    source: Path = typer.Argument(..., help="a directory (walked for image files) or a manifest .csv / "
                                  ".jsonl with at least a `uri` column (optional: asset_id, license, sku, "
                                  "category, name, brand, title, alt_text, version, tenant, uploader, notes)"),
    rate: Optional[float] = typer.Option(None, help="events per second (default ops.backfill_rate = 50)"),
    state: Optional[Path] = typer.Option(None, help="resume state file (default .assetstream/backfill-"
                                         "<name>-<hash>.jsonl in the current directory)"),
    only_stale: bool = typer.Option(False, "--only-stale", help="re-publish (event_type reprocess) only "
                                    "assets whose indexed enrichment used another prompt hash / model / "
                                    "model version than the current configuration, or was marked degraded "
                                    "(a part timed out or failed under load)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be published; publish nothing"),
    es_url: Optional[str] = typer.Option(None, "--es-url", help="search store URL (default index.url)"),
    no_index: bool = typer.Option(False, "--no-index", help="do not consult the index (state file only)"),
    use_hash: bool = typer.Option(False, "--hash", help="fingerprint local files by sha256 instead of "
                                  "size+mtime"),
    tenant: Optional[str] = typer.Option(None, help="tenant for rows without one (default 'default')"),
    json_out: bool = typer.Option(False, "--json", help="print a JSON summary on stdout"),
    wait: bool = typer.Option(False, "--wait", help="after publishing, wait until every published asset is "
                              "indexed or dead-lettered (progress on stderr), and those an earlier run published "
                              "(state file: a re-run after a timeout or Ctrl-C waits for them); exit 1 if any was "
                              "dead-lettered or --wait-timeout passed"),
    wait_timeout: Optional[float] = typer.Option(None, "--wait-timeout", min=1, help="seconds --wait waits "
                                                 "(default ops.backfill_wait_timeout_s = 3600)"),
):
    """Publish a directory or manifest to `raw`: rate-limited, progress on stderr, resumable.

    With --wait, until the pipeline has indexed or dead-lettered every published asset. Assets the broker already acknowledged (state file) or already indexed with the current enrichment
    configuration are skipped. Ctrl-C / SIGTERM stop cleanly: re-run the same command to continue."""
    from app.ops import backfill as bf
    from app.ops.progress import progress

    settings = _settings()
    ops = _ops(settings)
    if only_stale and no_index:
        _fail("--only-stale needs the index; drop --no-index", code=2)
    if wait and no_index:
        _fail("--wait watches the index for the published assets; drop --no-index", code=2)
    rate = rate if rate is not None else ops.backfill_rate
    if rate <= 0:
        _fail("--rate must be > 0", code=2)
    try:
        items, problems, skipped_files = bf.enumerate_source(source, ops, use_hash)
    except bf.BackfillError as exc:
        _fail(str(exc), "give a directory of images or a .csv/.jsonl manifest", 2)
    for name, why in skipped_files:  # never silently: as `assetstream run` reports them
        console.print(f"[yellow]skipped[/yellow] {plain(name)}: {plain(why)}", highlight=False)
    for p in problems[:20]:
        console.print(f"[yellow]skipping row[/yellow] {plain(p)}")
    if len(problems) > 20:
        console.print(f"[yellow]... and {len(problems) - 20} more bad rows[/yellow]")
    outside = bf.outside_file_roots(items, settings.preprocess.file_roots)
    if outside:  # preprocess would dead-letter each as forbidden_url: refused before anything is published
        roots = ", ".join(settings.preprocess.file_roots)
        _fail(f"{len(outside)} file(s) are outside preprocess.file_roots ({roots}), which preprocess would refuse "
              f"(forbidden_url), e.g. {shown(str(outside[0].local_path))}; nothing was published",
              "add the folder to preprocess.file_roots (an `assetstream run --serve` session admits only the "
              "folders given to `run`: start it with this folder too)", 2)
    seen: dict[str, str] = {}
    for it in items:
        if it.asset_id in seen and seen[it.asset_id] != it.uri:
            _fail(f"asset id {it.asset_id!r} is used for two sources ({seen[it.asset_id]} and {it.uri})",
                  "give each row its own asset_id", 2)
        seen[it.asset_id] = it.uri
    state_path = state or bf.default_state_path(source)
    state_file = bf.StateFile(state_path, settings.topics.name("raw"))
    index = current = None
    if not no_index:
        try:
            current = bf.current_enrichment(settings, ops)
        except Exception as exc:  # noqa: BLE001 - a broken prompt setup should not block a plain backfill
            if only_stale:
                _fail(f"cannot compute the current prompt hashes: {exc}", "check enrich.* settings", 2)
            console.print(f"[yellow]note:[/yellow] cannot compute current prompt hashes ({plain(exc)}); "
                          "not consulting the index")
        if current is not None:
            index = bf.IndexView(settings, es_url)
    try:
        plan = bf.make_plan(items, state_file, index, only_stale=only_stale, current=current)
    except bf.BackfillError as exc:
        _fail(str(exc), code=2)
    finally:
        if index is not None:
            index.close()
    plan.problems[:0] = problems  # the rows not published, in the summary (--json) as well as on stderr
    plan.skipped_files = skipped_files
    for note in plan.notes:
        console.print(f"[yellow]note:[/yellow] {plain(note)}")
    skipped = len(plan.skipped_state) + len(plan.skipped_indexed) + len(plan.skipped_current) + \
        len(plan.skipped_missing)
    console.print(f"{len(items)} asset(s) in {plain(source)}: {len(plan.publish)} to publish, {skipped} skipped "
                  f"(already published {len(plan.skipped_state)} (state file: not looked up in the index), "
                  f"already indexed {len(plan.skipped_indexed)}"
                  + (f", current {len(plan.skipped_current)}, not indexed {len(plan.skipped_missing)}"
                     if only_stale else "") + f"); state {state_path}"
                  + (f"; {len(skipped_files)} file(s) not assets, listed above" if skipped_files else ""),
                  highlight=False)
    if dry_run:
        result = bf.Result(plan)
        if json_out:
            _print_json({"dry_run": True, **result.summary()})
        else:
            for it, etype, _version, *_ in plan.publish:
                why = "; ".join(plan.stale.get(it.asset_id, []))
                keeps = ", ".join(plan.carried.get(it.asset_id, []))
                out.print(f"would publish {etype:9} {plain(it.asset_id)}  {plain(it.uri)}"
                          + (f"  ({plain(why)})" if why else "") + (f"  (keeps {keeps})" if keeps else ""),
                          highlight=False)
        raise typer.Exit(1 if problems else 0)

    watch_index = _wait_index(settings, es_url) if wait else None
    earlier, since_ms = _published_earlier(state_file, plan) if wait else ({}, int(time.time() * 1000))
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    waited = None
    try:
        publisher = bf.BackfillPublisher(settings, state_file)
        bucket = bf.TokenBucket(rate, ops.backfill_burst, sleep=lambda t: publisher.producer.poll(t))
        with progress(console, "backfill", "published", len(plan.publish), ops.progress_interval_s) as bar:
            result = bf.execute(plan, publisher, bucket, tenant=tenant, stop=stop, on_ack=bar.advance)
        state_file.close()
        if watch_index is not None and not result.interrupted and (publisher.sent or earlier):
            waited = _wait_for_pipeline(settings, watch_index, {**earlier, **publisher.sent}, since_ms, stop,
                                        wait_timeout or ops.backfill_wait_timeout_s, ops.progress_interval_s,
                                        len(set(earlier) - set(publisher.sent)))
    finally:
        state_file.close()
        if watch_index is not None:
            watch_index.close()
        for s, h in previous.items():
            signal.signal(s, h)
    _finish_backfill(result, waited, bool(problems), json_out)


def _published_earlier(state_file, plan) -> tuple[dict, int]:
    """`--wait` on a re-run (after a timeout, Ctrl-C, a dead letter): the events earlier runs published for the
    assets the state file skipped (document id -> event), waited for too, and the time the wait's dead letters are
    read from (the earliest of them, else now)."""
    now_ms = int(time.time() * 1000)
    earlier, earliest_ms, unknown = state_file.earlier(plan.skipped_state_keys)
    if unknown:
        console.print(f"[yellow]note:[/yellow] {len(unknown)} asset(s) the state file says were published (by a "
                      "version that did not record the event) cannot be waited for; `--state NEW_FILE` "
                      "publishes what the index does not hold yet", highlight=False)
    return earlier, min(now_ms, earliest_ms or now_ms)


def _finish_backfill(result, waited, bad_rows: bool, json_out: bool) -> None:
    """The backfill's summary (--json on stdout, the rest on stderr) and its exit code."""
    summary = result.summary()
    if waited is not None:
        summary["wait"] = waited.summary()
    if json_out:
        _print_json(summary)
    _say_carried(result.plan.carried)
    console.print(f"published {len(result.published)}, failed {len(result.failed)}"
                  + (" (interrupted: re-run the same command to continue)" if result.interrupted else ""))
    if result.failed:
        console.print(f"[red]not acknowledged:[/red] {plain(', '.join(result.failed[:10]))}", highlight=False)
        console.print("[dim]next:[/dim] check the broker, then re-run: acknowledged assets are skipped")
    if waited is not None:
        _say_waited(waited)
    if result.interrupted or (waited is not None and waited.interrupted):
        raise typer.Exit(130)
    raise typer.Exit(1 if result.failed or bad_rows or (waited is not None and not waited.ok) else 0)


def _wait_index(settings, es_url: str | None):
    """The index --wait watches; exit 2 before anything is published when it cannot be reached."""
    from app.ops.backfill import IndexView

    index = IndexView(settings, es_url)
    if not index.available:
        index.close()
        _fail(f"--wait watches the index for the published assets, and it is not reachable at {index.url} "
              f"({index.error}); nothing was published", "pass --es-url or set ASSETSTREAM_INDEX__URL, or drop --wait "
              "and follow the pipeline with `assetstream status --rate 30`", 2)
    return index


def _wait_for_pipeline(settings, index, sent, since_ms: int, stop: threading.Event, timeout_s: float,
                       interval_s: float, earlier: int = 0):
    """Wait (with progress) until every acknowledged event is indexed or dead-lettered (app/ops/waiting.py)."""
    from app.ops.progress import progress
    from app.ops.waiting import PipelineWatch, wait_for_pipeline

    watch = PipelineWatch(settings, index, sent, since_ms)
    console.print(f"waiting up to {timeout_s:g} s for {len(sent)} asset(s)"
                  + (f" ({earlier} published by an earlier run of this state file)" if earlier else "")
                  + " to be indexed or dead-lettered "
                  "(Ctrl-C stops waiting; what was published stays published)", highlight=False)
    try:
        with progress(console, "pipeline", "through", len(sent), interval_s, detail=watch.detail) as bar:
            return wait_for_pipeline(watch, timeout_s, stop=stop, on_check=lambda: bar.update(watch.done))
    finally:
        watch.close()


def _say_waited(w) -> None:
    """The --wait outcome on stderr: how many came through, and what to do about the rest."""
    console.print(f"pipeline: {len(w.indexed) + len(w.superseded)} of {w.total} indexed"
                  + (f" ({len(w.superseded)} already with a newer version)" if w.superseded else "")
                  + f", {len(w.dead)} dead-lettered, {len(w.waiting)} still in the pipeline after {w.seconds:.0f} s",
                  highlight=False)
    if w.not_newer:
        console.print(f"[yellow]note:[/yellow] {len(w.not_newer)} asset(s) were already indexed at the same version "
                      f"({plain(', '.join(w.not_newer[:5]))}{' …' if len(w.not_newer) > 5 else ''}): the index keeps its "
                      "document (only a newer version replaces it), so they were not waited for; `backfill "
                      "--only-stale` re-enriches such assets with a newer version", highlight=False)
    if w.also_dead:  # both are true: the event is indexed, and a delivery of it failed (a redelivery, or since replayed)
        ids = list(w.also_dead)
        refs = plain(", ".join(f"{a} (dlq {d['ref']}, {d['stage']}/{d['reason'] or d['error_class']})"
                               for a, d in list(w.also_dead.items())[:5]))
        console.print(f"[yellow]note:[/yellow] {len(ids)} indexed asset(s) also have a dead letter of the same event: "
                      f"{refs}{' …' if len(ids) > 5 else ''}; the index holds the event (a redelivery failed, or the "
                      "letter was replayed since), so there is nothing to replay; `assetstream dlq list --open` leaves "
                      "such letters out", highlight=False)
    if w.dead:
        ids = list(w.dead)
        reasons = Counter(f"{d['stage']}/{d['reason'] or d['error_class']}" for d in w.dead.values())
        counts = plain(", ".join(f"{k} ×{n}" for k, n in reasons.most_common(5)))
        console.print(f"[red]{len(w.dead)} dead-lettered[/red] ({counts}): {plain(', '.join(ids[:10]))}"
                      f"{f' and {len(ids) - 10} more' if len(ids) > 10 else ''}", highlight=False)
        from app.ops.dlq import next_step

        console.print(f"[dim]next:[/dim] {plain(next_step((d['reason'] for d in w.dead.values()), ids[0]))}",
                      highlight=False)
    if w.timed_out:
        console.print(f"[red]timed out:[/red] {len(w.waiting)} asset(s) not indexed nor dead-lettered after "
                      f"{w.seconds:.0f} s: {plain(', '.join(w.waiting[:10]))}{' …' if len(w.waiting) > 10 else ''}",
                      highlight=False)
        console.print("[dim]next:[/dim] `assetstream status --rate 30` shows which group they wait in and whether it "
                      "moves; a longer --wait-timeout waits longer", highlight=False)
    if w.index_error:
        console.print(f"[yellow]the index did not answer at the last look:[/yellow] {plain(w.index_error)}",
                      highlight=False)
    if w.interrupted:
        console.print(f"stopped waiting: {len(w.waiting)} asset(s) still in the pipeline (they go on without us)")

# -------------------------------------------------------------------------------------------- dlq
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead letters (the `dlq` topic); "
                      "reads never commit, replays never delete.")
app.add_typer(dlq_app, name="dlq")

def _read(settings) -> list:
    from app.ops.dlq import BrokerUnreachable, DlqError, read_dead_letters

    try:
        return read_dead_letters(settings, _ops(settings).dlq_read_timeout_s)
    except BrokerUnreachable as exc:  # as feedback and audit say it: where the broker is and what to check
        broker_down(settings, "cannot read the dead letters", exc, 2)
    except DlqError as exc:
        _fail(str(exc), code=2)

def _say_unknown_reason(letters: list[Any], reason: str | None) -> bool:
    """A --reason that no dead letter has (a typo, or a reason from another stage): say which reasons there are
    (on stderr, so --json stays clean). True when said."""
    if not reason:
        return False
    present = sorted({d.reason for d in letters if d.reason})
    if reason in present:
        return False
    console.print(f"no dead letter has reason {plain(repr(reason))}; reasons present: "
                  f"{plain(', '.join(present)) or 'none'} (docs/operations.md lists every stage's reasons)",
                  highlight=False)
    return True


@dlq_app.command("list")
def dlq_list(
    stage: Optional[str] = typer.Option(None, help="only this stage (preprocess, enrich, validate, index)"),
    error: Optional[str] = typer.Option(None, help="only this error class (poison, permanent, "
                                        "transient_exhausted) or error type (e.g. PermanentError)"),
    reason: Optional[str] = typer.Option(None, help="only this reason (details.reason, e.g. not_found)"),
    asset: Optional[str] = typer.Option(None, help="only this asset id"),
    limit: int = typer.Option(50, help="show the newest N (oldest first); 0 = all"),
    open_only: bool = typer.Option(False, "--open", help="only letters whose asset has not been processed since "
                                   "(looked up in the index: its document is not this event's nor newer)"),
    es_url: Optional[str] = typer.Option(None, "--es-url", help="search store URL for --open (default index.url)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
):
    """List dead letters and why they failed (oldest first).

    Columns: partition/offset, asset, source (the file relative to its preprocess.file_roots root, or the URL
    without login or query), stage, error class, reason, message, attempts, when. With --open, only the letters
    still needing someone: their asset's index document is not of the letter's event nor of a newer version (a
    review letter: its decision is not in the asset's review); write-back letters and letters whose record cannot
    be read are always open; one line per event and per asset and version, the newest letter, naming the older
    ones folded into it (docs/operations.md#dead-letters)."""
    from app.ops.dlq import select

    settings = _settings()
    everything = _read(settings)
    letters = select(everything, stage=stage, error=error, reason=reason, asset=asset)
    _say_unknown_reason(everything, reason)
    folded: dict[int, list[str]] = {}
    if open_only:
        letters, folded = _fold(_still_open(settings, es_url, letters))
    total = len(letters)
    if limit > 0:
        letters = letters[-limit:]
    if json_out:
        _print_json([{**d.summary(), **({"folded": folded.get(id(d), [])} if open_only else {})} for d in letters])
        return
    table = Table(title=f"{settings.topics.name('dead_letter')}: {total} {'open' if open_only else 'matching'}"
                  + (f", showing {len(letters)}" if len(letters) < total else ""))
    for col in ("p/offset", "asset", "source", "stage", "class", "reason", "message", "tries", "when"):
        table.add_column(col, overflow="fold")
    for d in letters:
        s = d.summary()
        # what a letter says is text, never markup (trial 27 m1: a store's `[source_uri]` vanished from the message)
        older = folded.get(id(d))
        table.add_row(d.ref + (f" (+{len(older)} older: {', '.join(older)})" if older else ""), *(as_text(v) for v in (
                      s["asset_id"], s["source"], s["stage"], s["error_class"], s["reason"],
                      _cut(s["message"] or "", 300, f"dlq show {d.ref}"), s["attempts"], s["last_failure"])))
    out.print(table)
    if total:
        out.print("[dim]details: assetstream dlq show P/OFFSET   replay: assetstream dlq replay --asset ID[/dim]")

def _fold(letters: list) -> tuple[list, dict[int, list[str]]]:
    """`dlq list --open`: one line per event, and per asset and version (trial 33 N4: a still-broken file showed
    twice, the run's letter and the backfill's), the newest letter, as `dlq replay` sends it (distinct_originals);
    returns the letters and, per shown letter (by id), the refs of the older ones folded into it, said on stderr."""
    from app.ops.dlq import distinct_originals

    kept, skipped = distinct_originals(letters)
    order = {id(d): n for n, d in enumerate(letters)}
    kept.sort(key=lambda d: order[id(d)])  # oldest first, as listed
    folded: dict[int, list[str]] = {}
    for d, newest in skipped:
        folded.setdefault(id(newest), []).append(d.ref)
    if skipped:
        console.print(f"{len(skipped)} older letter(s) folded into the newest of the same asset and version (one line "
                      "each; `dlq replay --asset ID` replays the newest once)", highlight=False)
    return kept, folded


def _still_open(settings, es_url: str | None, letters: list) -> list:
    """`dlq list --open`: the letters whose asset the index does not show processed since (app/ops/dlq.closed_by);
    says on stderr how many were left out and why. Exit 2 when the index cannot be reached."""
    from app.ops.backfill import IndexView
    from app.ops.dlq import closed_by, document_of

    index = IndexView(settings, es_url)
    try:
        if not index.available:
            _fail(f"--open looks each letter's asset up in the index, and it is not reachable at {index.url} "
                  f"({index.error})", "pass --es-url or set ASSETSTREAM_INDEX__URL, or list without --open", 2)
        try:
            docs = index.facts(sorted({i for i in map(document_of, letters) if i}))
        except Exception as exc:  # noqa: BLE001 - answered the alias check, then stopped answering
            _fail(f"--open: the index at {index.url} did not answer: {type(exc).__name__}: {str(exc)[:200]}", code=2)
    finally:
        index.close()
    why = {id(d): closed_by(d, docs.get(document_of(d) or "")) for d in letters}
    closed = Counter(w for w in why.values() if w)
    if closed:
        console.print(f"{sum(closed.values())} letter(s) left out, their asset processed since: "
                      + plain(", ".join(f"{k} ×{n}" for k, n in closed.most_common())), highlight=False)
    return [d for d in letters if not why[id(d)]]


@dlq_app.command("show")
def dlq_show(
    ref: str = typer.Argument(..., help="PARTITION/OFFSET (as in `dlq list`), a bare offset, or an asset id"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
):
    """Show dead letters in full: original topic/partition/offset, headers, details, stack trace."""
    from app.ops.dlq import select

    settings = _settings()
    letters = select(_read(settings), ref=ref)
    if not letters:
        _fail(f"no dead letter matches {ref!r}", "list them with `assetstream dlq list`")
    if json_out:
        _print_json([d.detail() for d in letters])
        return
    for d in letters:
        det = d.detail()
        out.rule(f"dlq {d.ref}  asset {plain(det['asset_id'])}")
        for k in ("stage", "error_class", "error_type", "reason", "message", "attempts", "original",
                  "first_failure", "last_failure", "replayed_from", "original_key", "original_value_bytes",
                  "original_value_ref"):
            out.print(f"[bold]{k}:[/bold] {plain(det[k])}", highlight=False)  # the store's `[field]` stays
        out.print(f"[bold]details:[/bold] {plain(json.dumps(det['details']))}", highlight=False)
        out.print(f"[bold]original headers:[/bold] {plain(json.dumps(det['original_headers']))}", highlight=False)
        if det["hint"]:
            out.print(f"[bold]hint:[/bold] {plain(det['hint'])}", highlight=False)
        if det["stack"]:
            out.print("[bold]stack:[/bold]")
            out.print(plain(det["stack"], lines=True), highlight=False)

@dlq_app.command("replay")
def dlq_replay(
    stage: Optional[str] = typer.Option(None, help="only dead letters of this stage"),
    error: Optional[str] = typer.Option(None, help="only this error class or error type"),
    reason: Optional[str] = typer.Option(None, help="only this reason"),
    asset: Optional[str] = typer.Option(None, help="only this asset id"),
    ref: Optional[str] = typer.Option(None, "--ref", help="only this PARTITION/OFFSET"),
    all_: bool = typer.Option(False, "--all", help="replay every dead letter (required without a filter)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be replayed"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
):
    """Send selected dead letters back to their original topic and wait for the broker's ack.

    Original key, value and headers, plus `replayed-from: dlq/P/O`. Fix the cause first; a record that
    fails again is dead-lettered again. The dead letters themselves are never removed."""
    from app.ops.dlq import distinct_originals, replay, select

    if not (stage or error or reason or asset or ref or all_):
        _fail("no selection", "filter with --stage/--error/--reason/--asset/--ref, or pass --all", 2)
    settings = _settings()
    everything = _read(settings)
    letters, twice = distinct_originals(select(everything, stage=stage, error=error, reason=reason,
                                               asset=asset, ref=ref), everything)
    for d, kept in twice:
        if kept.original == d.original:
            console.print(f"skipped dlq {d.ref}: the same record ({d.summary()['original']}) as dlq {kept.ref}, "
                          "dead-lettered twice (at-least-once delivery, e.g. during a rebalance); it is replayed once",
                          highlight=False)
        elif (d.record or {}).get("event_id") != (kept.record or {}).get("event_id"):
            console.print(f"skipped dlq {d.ref}: another event of the same asset and version as dlq {kept.ref} (e.g. a "
                          "run's and a backfill's); the index keeps one record per version, so the newest letter is "
                          "replayed once", highlight=False)
        else:
            console.print(f"skipped dlq {d.ref}: it was replayed before and failed again as dlq {kept.ref}; the same "
                          "event is replayed once, from the newer letter", highlight=False)
    if not letters:
        if json_out:
            _print_json([])
        if not _say_unknown_reason(everything, reason):
            console.print("nothing matches; see `assetstream dlq list`")
        return
    if dry_run:
        if json_out:
            _print_json([{**d.summary(), "to": (d.value or {}).get("original_topic")} for d in letters])
        else:
            for d in letters:
                out.print(f"would replay dlq {d.ref} asset {plain(d.asset_id)} -> {(d.value or {}).get('original_topic')}",
                          highlight=False)
        return
    _say_unknown_schemas(settings, letters)
    outcomes = replay(settings, letters)
    if json_out:
        _print_json([o.as_dict() for o in outcomes])
    else:
        for o in outcomes:
            if o.ok:
                out.print(f"replayed dlq {o.ref} asset {plain(o.asset_id)} -> {o.topic} [{o.partition}] @{o.offset}",
                          highlight=False)
            else:
                label = "REFUSED" if o.refused else "FAILED"
                out.print(f"[red]{label}[/red] dlq {o.ref} asset {plain(o.asset_id)}: {plain(o.error)}", highlight=False)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        console.print(f"[red]{len(failed)} not replayed[/red] (their dead letters are untouched)")
        if any(o.refused for o in failed):
            console.print("[dim]next:[/dim] a refused letter's original cannot be restored as it was; republish "
                          "that asset from its source (e.g. `assetstream publish`)")
        if any(not o.refused for o in failed):
            console.print("[dim]next:[/dim] check the broker, then run the same replay again")
        raise typer.Exit(1)


def _say_unknown_schemas(settings, letters: list[Any]) -> None:
    """Letters of records whose schema id is still unknown will only be dead-lettered again: say so (stderr)."""
    ids = {d.ref: d.unknown_schema_id for d in letters if d.unknown_schema_id}
    if not ids:
        return
    from streams.avro import Serde

    try:  # advisory only: the replay copies bytes and needs no registry, so nothing here may stop it
        serde = Serde.for_settings(settings)
    except Exception as exc:  # noqa: BLE001
        console.print(f"could not check the letters' schema ids: {type(exc).__name__}: {plain(exc)}", highlight=False)
        return
    for ref, schema_id in ids.items():
        try:
            known = serde.knows(schema_id)
        except Exception as exc:  # noqa: BLE001 - registry unreachable, 5xx, 401...: say so and replay anyway
            console.print(f"dlq {ref}: could not check schema id {schema_id}: {type(exc).__name__}: {plain(exc)}",
                          highlight=False)
            continue
        if not known:
            console.print(f"dlq {ref}: schema id {schema_id} is still unknown to the registry (and its schemas "
                          "topic): replayed now, it fails again (see `assetstream dlq show`)", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
