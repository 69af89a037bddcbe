"""Backfill on a real broker (and a real search store for --only-stale): resume after an interruption without
re-publishing, skip what is indexed and current, re-publish exactly the stale assets."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import typer
from typer.testing import CliRunner

from domain.store.management import read_alias
from streams.records import to_ms
from consumers.index.sink import IndexSink
from app.ops.backfill import current_enrichment
from app.ops import cli as ops_cli
from app.producer import asset_id_for
from tests.kafka_support import REPO, env_for, make_settings, provision, read_topic
from tests.store_support import as_items, settings_for, validated_asset

N = 24


def _app() -> typer.Typer:
    app = ops_cli.app
    return app


def _images(root: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"img-{i:03d}.jpg"
        p.write_bytes(b"\xff\xd8\xff" + os.urandom(64))
        paths.append(p)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.jpg").write_bytes(b"\xff\xd8")
    return paths


def _state_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


def test_backfill_resumes_after_interruption_without_republishing(broker, unique, tmp_path):
    s = make_settings(broker, f"bf{unique}")
    provision(s)
    paths = _images(tmp_path / "lib", N)
    expected = {asset_id_for(p.resolve().as_uri()) for p in paths}
    state = tmp_path / "state.jsonl"
    cmd = [sys.executable, "-m", "app.ops.cli", "backfill", str(tmp_path / "lib"), "--rate", "8",
           "--state", str(state), "--no-index"]
    env = {**env_for(s), "ASSETSTREAM_OPS__BACKFILL_BURST": "1", "ASSETSTREAM_OPS__PROGRESS_INTERVAL_S": "0.2"}

    # 1. interrupted like Ctrl-C, a few assets in
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while _state_lines(state) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    first = _state_lines(state)
    assert 4 <= first < N, err.decode()
    assert b"re-run the same command" in err
    # stderr is a pipe here (as in CI or a pod's log): whole progress lines at the interval, never a bar (trial 22)
    lines = [ln for ln in err.decode().splitlines() if ln.startswith("backfill: published ")]
    assert len(lines) >= 3 and all(re.match(r"backfill: published \d+/24 \(\d+%\) · [\d.]+/s · ETA ", ln)
                                   for ln in lines), err.decode()
    assert lines[-1].startswith(f"backfill: published {first}/24") and "━" not in err.decode()
    after_ctrl_c = read_topic(s, "raw", first)  # exactly what the state file records (it lingers for extras)
    assert len(after_ctrl_c) == len({r["key"] for r in after_ctrl_c}) == first

    # 2. killed outright (no chance to clean up)
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while _state_lines(state) < first + 4 and time.monotonic() < deadline + 30:
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    second = _state_lines(state)
    assert first < second < N, (first, second)

    # 3. the re-run finishes the rest
    done = subprocess.run(cmd + ["--rate", "200", "--json"], env=env, cwd=str(REPO), capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert summary["skipped_already_published"] == second and summary["published"] == N - second

    recs = read_topic(s, "raw", N, distinct_keys=True)
    per_asset = Counter(r["key"] for r in recs)
    assert set(per_asset) == expected  # no loss, nothing else (notes.txt, hidden dirs)
    dupes = {k: c for k, c in per_asset.items() if c > 1}
    # the clean interruption never re-publishes; a SIGKILL can lose at most the one ack it was recording
    assert sum(c - 1 for c in dupes.values()) <= 1, dupes
    assert all(r["value"]["source_uri"].startswith("file:///") for r in recs)
    assert all(r["value"]["event_type"] == "created" for r in recs)

    # 4. a fourth run publishes nothing; a changed file is published again
    paths[0].write_bytes(b"\xff\xd8\xff changed")
    again = CliRunner().invoke(_app(), ["backfill", str(tmp_path / "lib"), "--state", str(state), "--no-index",
                                        "--json"], env=env)
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout[again.stdout.index("{"):])
    assert summary["published_ids"] == [asset_id_for(paths[0].resolve().as_uri())]


def _doc(asset_id: str, version: int, provenance: list[dict]) -> dict:
    v = validated_asset(asset_id, version)
    v["enriched"]["provenance"] = provenance
    v["enriched"]["pre"]["asset"]["source_uri"] = f"https://cdn.example.com/{asset_id}.jpg"
    return v


def test_only_stale_republishes_exactly_the_stale_assets(broker, unique, store, tmp_path):  # noqa: F811
    s = make_settings(broker, f"stale{unique}")
    provision(s)
    idx = settings_for(store.url)
    s = s.with_overrides(index=idx.index.model_dump(mode="json") | {"url": store.url})
    current = current_enrichment(s)
    assert set(current) == {"tagging", "alt_text", "rights"}

    def prov(**override) -> list[dict]:
        out = []
        for task, want in current.items():
            p = {"task": task, "provider": want["provider"], "model": want["model"],
                 "model_version": want["model_version"], "prompt_id": task, "prompt_version": "v1",
                 "prompt_hash": want["prompt_hash"], "request_id": None, "timestamp": 1_700_000_000_000,
                 "input_tokens": 1, "output_tokens": 1, "latency_ms": 1.0, "cost_usd": 0.0}
            p.update(override.get(task, {}))
            out.append(p)
        return out

    docs = {
        "fresh-1": _doc("fresh-1", 3, prov()),
        "fresh-2": _doc("fresh-2", 9, prov()),
        "old-prompt": _doc("old-prompt", 5, prov(alt_text={"prompt_hash": "0" * 64})),
        "old-model": _doc("old-model", 2, prov(tagging={"model_version": "efficientnet==0.9"})),
        "other-model": _doc("other-model", 4, prov(rights={"provider": "claude", "model": "claude-haiku-4-5"})),
        "degraded": _doc("degraded", 6, prov()),  # current provenance, but OCR timed out under load (issue 21)
    }
    docs["degraded"].update(status="needs_review", reasons=["degraded: ocr timed out", "taxonomy 1"])
    # the file's own metadata too large to read (pixels15): the same file gives the same record, nothing to redo
    docs["metadata-skipped"] = _doc("metadata-skipped", 7, prov())
    docs["metadata-skipped"].update(status="needs_review", reasons=[
        "degraded: metadata skipped: an XMP/text chunk inflates past 1 MiB; not read: XMP (any creator, "
        "credit or rights the file states are unknown)"])
    sink = IndexSink(idx)
    try:
        assert sink.process_batch(as_items(list(docs.values()))) == [None] * len(docs)
        sink.client.indices.refresh(index=read_alias(sink.cfg))
    finally:
        sink.close()
    manifest = tmp_path / "m.jsonl"
    rows = [{"uri": f"https://cdn.example.com/{a}.jpg", "asset_id": a} for a in [*docs, "never-indexed"]]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    env = {**env_for(s), "ASSETSTREAM_INDEX__URL": store.url, "ASSETSTREAM_INDEX__INDEX": idx.index.index,
           "ASSETSTREAM_INDEX__SERVER_MODE": "serverless"}
    state = tmp_path / "state.jsonl"
    args = ["backfill", str(manifest), "--only-stale", "--state", str(state), "--json"]

    dry = CliRunner().invoke(_app(), args + ["--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert sorted(json.loads(dry.stdout[dry.stdout.index("{"):])["planned_ids"]) == [
        "degraded", "old-model", "old-prompt", "other-model"]

    run = CliRunner().invoke(_app(), args + ["--rate", "100"], env=env)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout[run.stdout.index("{"):])
    assert summary["skipped_current"] == 3 and summary["skipped_not_indexed"] == 1
    assert "prompt" in summary["stale"]["old-prompt"][0] and "model version" in summary["stale"]["old-model"][0]
    assert summary["stale"]["degraded"] == ["degraded: ocr timed out"]

    recs = read_topic(s, "raw", 4)
    assert sorted(r["key"] for r in recs) == ["degraded", "old-model", "old-prompt", "other-model"]
    for r in recs:
        assert r["value"]["event_type"] == "reprocess"
        # the upload time is the indexed one (trial 26 F4), the version the next
        assert to_ms(r["value"]["event_time"]) == to_ms(docs[r["key"]]["enriched"]["pre"]["asset"]["event_time"])
        assert r["value"]["version"] == docs[r["key"]]["enriched"]["pre"]["asset"]["version"] + 1  # index takes it
        # the indexed event's upload values ride along (the manifest row gives none of them)
        assert r["value"]["declared_license"] == "CC-BY-4.0" and r["value"]["uploader"] == "alice@example.com"
        assert r["value"]["product_context"]["category"] == "footwear"
    assert "declared_license" in summary["carried_forward"]["old-prompt"]

    # resumable too: the same command again publishes nothing (the pipeline has not re-indexed them yet)
    rerun = CliRunner().invoke(_app(), args, env=env)
    assert rerun.exit_code == 0 and json.loads(rerun.stdout[rerun.stdout.index("{"):])["published"] == 0
    assert len(read_topic(s, "raw", 5, timeout_s=2)) == 4

    # a plain backfill skips assets already indexed with the current configuration
    plain = CliRunner().invoke(_app(), ["backfill", str(manifest), "--state", str(tmp_path / "s2"), "--json",
                                        "--dry-run"], env=env)
    assert plain.exit_code == 0, plain.output
    assert sorted(json.loads(plain.stdout[plain.stdout.index("{"):])["planned_ids"]) == [
        "degraded", "never-indexed", "old-model", "old-prompt", "other-model"]


def test_index_unreachable_degrades_with_a_note(broker, unique, tmp_path):
    s = make_settings(broker, f"noes{unique}")
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri,asset_id,sku\nhttps://cdn.example.com/a.jpg,a-1,SKU-1\n,missing-uri,\n")
    env = {**env_for(s), "ASSETSTREAM_INDEX__URL": "http://127.0.0.1:9"}
    r = CliRunner().invoke(_app(), ["backfill", str(manifest), "--dry-run", "--state", str(tmp_path / "st")],
                           env=env)
    assert "index not reachable" in r.output and "would publish" in r.output
    assert "m.csv:3: no 'uri'" in r.output
    assert r.exit_code == 1  # a bad row is a failure to report
    stale = CliRunner().invoke(_app(), ["backfill", str(manifest), "--only-stale"], env=env)
    assert stale.exit_code == 2 and "--es-url" in stale.output


def test_reprocess_keeps_the_values_a_person_gave_at_upload(broker, unique, store, tmp_path):  # noqa: F811
    """Trial 18, finding 7: `publish --event-type reprocess` without --title/--alt-text/--license kept none of
    them, and the pipeline re-ran the asset as if no person had described it."""
    s = make_settings(broker, f"keep{unique}")
    provision(s)
    idx = settings_for(store.url)
    s = s.with_overrides(index=idx.index.model_dump(mode="json") | {"url": store.url})
    env = {**env_for(s), "ASSETSTREAM_INDEX__URL": store.url, "ASSETSTREAM_INDEX__INDEX": idx.index.index,
           "ASSETSTREAM_INDEX__SERVER_MODE": "serverless"}
    img = tmp_path / "brick_human.jpg"
    img.write_bytes(b"\xff\xd8\xff" + os.urandom(64))
    first = CliRunner().invoke(_app(), ["publish", str(img), "--alt-text", "Grey brick wall texture", "--title",
                                        "Brick wall", "--license", "CC0-1.0", "--sku", "B-1"], env=env)
    assert first.exit_code == 0, first.output
    upload = read_topic(s, "raw", 1)[0]["value"]
    # as a DAM's event would be: its media id (write-back finds the DAM's record by it), and an older reprocess's time
    upload["attributes"] |= {"media_id": "42", "reprocessed_at": "1000"}
    v = validated_asset(upload["asset_id"])
    v["enriched"]["pre"]["asset"] = upload  # indexed as the pipeline indexes that event
    sink = IndexSink(idx)
    try:
        assert sink.process_batch(as_items([v])) == [None]
        sink.client.indices.refresh(index=read_alias(sink.cfg))
    finally:
        sink.close()

    again = CliRunner().invoke(_app(), ["publish", str(img), "--event-type", "reprocess", "--sku", "B-2",
                                        "--json"], env=env)
    assert again.exit_code == 0, again.output
    event = read_topic(s, "raw", 2)[1]["value"]
    assert event["event_type"] == "reprocess"
    assert event["human_fields"] == upload["human_fields"]
    assert event["declared_license"] == "CC0-1.0"
    assert event["product_context"]["sku"] == "B-2"  # a value given on the command line wins
    assert sorted(json.loads(again.stdout)[0]["carried_forward"]) == ["alt_text", "attributes.media_id",
                                                                      "declared_license", "title"]
    # trial 26: the event's attributes are carried (after a reprocess WordPress write-back lost the media id)
    assert event["attributes"]["media_id"] == "42"

    # trial 26 F4: the reprocess keeps the upload time (the review queue's "uploaded", its oldest-first order, its
    # date filter and the time to publish showed the reprocess's time); it is newer (the index takes it) and says
    # when it was sent, which is what the pipeline's record age is measured from
    assert event["event_time"] == upload["event_time"] and event["version"] > upload["version"]
    sent = int(event["attributes"]["reprocessed_at"])
    assert sent > to_ms(upload["event_time"]) and event["attributes"]["ingest"] == "cli"
    v2 = validated_asset(upload["asset_id"], 2)
    v2["enriched"]["pre"]["asset"] = event
    sink = IndexSink(idx)
    try:
        assert sink.output_facts(v2).event_time_ms == sent
        assert sink.process_batch(as_items([v2])) == [None]
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        doc = sink.client.get(index=read_alias(sink.cfg), id=upload["asset_id"])["_source"]
    finally:
        sink.close()
    assert doc["version"] == event["version"] and to_ms(dt.datetime.fromisoformat(doc["event_time"])) == \
        to_ms(upload["event_time"])

    # no index to read them from: refused (exit 2), unless --no-carry says to publish without them
    down = {**env, "ASSETSTREAM_INDEX__URL": "http://127.0.0.1:9"}
    refused = CliRunner().invoke(_app(), ["publish", str(img), "--event-type", "reprocess"], env=down)
    assert refused.exit_code == 2 and "--no-carry" in refused.output
    assert len(read_topic(s, "raw", 3, timeout_s=1)) == 2


def test_a_field_reviewed_after_the_upload_is_left_to_the_review():
    """The review is re-applied by the pipeline; the same upload value in a newer event would beat it."""
    from app.ops.carry import indexed_values

    asset = {"event_time": 1000, "declared_license": "CC0-1.0", "uploader_notes": None, "product_context": None,
             "human_fields": {"title": "Brick wall", "alt_text": "Grey bricks", "keywords": [], "creator": None}}
    doc = {"record": {"enriched": {"pre": {"asset": asset}}},
           "review": {"fields": [{"field": "title", "action": "edited", "value": "Red brick wall", "at": 2000},
                                 {"field": "alt_text", "action": "edited", "value": "older", "at": 500}]}}
    assert indexed_values(doc) == {"human_fields": {"alt_text": "Grey bricks"}, "declared_license": "CC0-1.0",
                                   "event_time_ms": 1000}  # and the upload time (trial 26 F4)


def test_token_bucket_holds_the_rate():
    from app.ops.backfill import TokenBucket

    now = [0.0]
    bucket = TokenBucket(10, burst=5, clock=lambda: now[0], sleep=lambda t: now.__setitem__(0, now[0] + t))
    for _ in range(5):
        bucket.take()
    assert now[0] == 0.0  # the burst goes out at once
    for _ in range(30):
        bucket.take()
    assert 2.9 <= now[0] <= 3.1  # then 10 per second


def _wait_settings(broker, prefix: str, url: str):
    return make_settings(broker, prefix, index={"url": url, "server_mode": "serverless", "number_of_replicas": 0,
                                                "index": f"{prefix}-assets", "request_timeout_s": 5.0},
                         runner={"batch_max_wait_s": 0.2})


def test_a_plain_progress_line_never_shows_a_count_half_way_through_a_change():
    """Review 14 L7: off a terminal the progress timer thread called `detail()` (the pipeline watch's counts) and read
    the done count while the caller's thread was changing them, so a line could say `through 0/1 (1 indexed)`. Now
    the caller hands count and detail over together and the timer prints only what it was handed."""
    import threading

    from app.ops.progress import PlainProgress

    lines: list[str] = []
    printed = threading.Event()

    class Stderr:  # a pipe, as in CI: whole lines, the Console.print the command uses
        def print(self, text, **_):
            lines.append(text)
            printed.set()

    state = {"indexed": 0}
    with PlainProgress(Stderr(), "pipeline", "through", 1, 0.01,
                       detail=lambda: f"({state['indexed']} indexed)") as bar:
        state["indexed"] = 1  # the watch counted the asset; its caller has not handed the new total over yet
        for _ in range(2):  # the second line is made after the change
            printed.clear()
            assert printed.wait(5)
        bar.update(1)
    shown = [re.search(r"through (\d)/1 \(\d+%\) \((\d) indexed\)", ln).groups() for ln in lines]
    assert shown[-1] == ("1", "1")
    assert all(done == indexed for done, indexed in shown), lines


def test_wait_follows_every_published_asset_to_the_index_or_the_dead_letters(broker, unique, store, tmp_path):  # noqa: F811
    """Trial 22, findings 1 and 2: a scripted backfill could not wait until its assets were through the pipeline,
    and off a terminal (CI, `| tee`, pod logs) it showed no progress at all. Here the index sink really runs; the
    stages before it are stood in for by copying each published event to `validated` (one with a latitude the
    store refuses, so the sink dead-letters it)."""
    from domain.store.client import make_client
    from domain.store.management import ensure_index
    from streams.runner import StageRunner
    from tests.kafka_support import RunnerThread
    from tests.test_index_runner import publish_validated

    s = _wait_settings(broker, f"wait{unique}", store.url)
    provision(s)
    ensure_index(make_client(s), s)
    sink = IndexSink(s)  # already indexed: one at a newer version, one at the version the backfill will publish
    try:
        assert sink.process_batch(as_items([validated_asset("newer", 9), validated_asset("same", 3)])) == [None, None]
    finally:
        sink.close()
    env = {**env_for(s), "ASSETSTREAM_OPS__BACKFILL_BURST": "1", "ASSETSTREAM_OPS__PROGRESS_INTERVAL_S": "0.3"}

    # nothing runs the pipeline: the wait gives up after its timeout, says so and what to look at
    lone = tmp_path / "lone.jsonl"
    lone.write_text(json.dumps({"uri": "https://cdn.example.com/lone.jpg", "asset_id": "lone", "version": 3}) + "\n")
    t0 = time.monotonic()
    r = CliRunner().invoke(_app(), ["backfill", str(lone), "--state", str(tmp_path / "s1"), "--wait",
                                    "--wait-timeout", "1"], env=env)
    assert r.exit_code == 1, r.output
    assert time.monotonic() - t0 < 20
    assert "timed out: 1 asset(s) not indexed nor dead-lettered" in r.output and "lone" in r.output
    assert "assetstream status --rate 30" in r.output
    assert "pipeline: through 0/1 (0%) (0 indexed)" in r.output  # plain lines, not a bar: CliRunner is no terminal

    ids = ["ok-1", "ok-2", "broken", "newer", "same"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"uri": f"https://cdn.example.com/{a}.jpg", "asset_id": a, "version": 3})
                                + "\n" for a in ids))
    proc = subprocess.Popen([sys.executable, "-m", "app.ops.cli", "backfill", str(manifest), "--rate", "8",
                             "--state", str(tmp_path / "s2"), "--wait", "--wait-timeout", "60", "--json"],
                            env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with RunnerThread(StageRunner(IndexSink(s), s)):  # the sink runs to the end of the test
        try:
            raw = [r for r in read_topic(s, "raw", len(ids) + 1) if r["key"] != "lone"]
            assert sorted(r["key"] for r in raw) == sorted(ids)
            # review 14 M3: a letter of an earlier event of ok-1 (the previous run's, written while this one is
            # still on its way) is not this event's: ok-1 is still waited for and indexed
            stale = validated_asset("ok-1", 3, gps=(123.0, 2.0))
            stale["enriched"]["pre"]["asset"]["event_id"] = "an-earlier-event"
            records = [stale]
            for rec in raw:  # what validate would emit for each event
                v = validated_asset(rec["key"], 3, gps=(123.0, 2.0) if rec["key"] == "broken" else (48.8, 2.29))
                v["enriched"]["pre"]["asset"]["event_id"] = rec["value"]["event_id"]
                records.append(v)
            publish_validated(s, records)
            out, err = proc.communicate(timeout=90)
        finally:
            proc.kill()
        err = err.decode()
        assert proc.returncode == 1, err
        wait = json.loads(out)["wait"]
        assert (wait["indexed"], wait["superseded"], wait["not_newer"], wait["waiting"]) == (2, 1, 1, 0), wait
        assert wait["superseded_ids"] == ["newer"] and wait["not_newer_ids"] == ["same"]
        assert list(wait["dead_lettered_ids"]) == ["broken"] and wait["dead_lettered_ids"]["broken"]["stage"] == "index"
        assert ("pipeline: 3 of 5 indexed (1 already with a newer version), 1 dead-lettered, 0 still in the pipeline"
                in err)
        assert "assetstream dlq show broken" in err
        assert "same" in err and "--only-stale" in err  # why it was not waited for
        # off a terminal: whole lines at the interval and at the end, for the publishing and for the wait
        lines = err.splitlines()
        published = [ln for ln in lines if ln.startswith("backfill: published ")]
        assert len(published) >= 2 and published[-1].startswith("backfill: published 5/5 (100%)"), err
        assert any(ln.startswith("pipeline: through 5/5 (100%) (3 indexed, 1 dead-lettered, 1 not newer")
                   for ln in lines), err
        assert "━" not in err  # no bar drawn into a log

        # trial 24b N2: the same command again (as the timeout's and Ctrl-C's advice says) published nothing, waited for
        # nothing and exited 0 though `broken` is dead-lettered. What the state file says was published is waited for.
        r = CliRunner().invoke(_app(), ["backfill", str(manifest), "--state", str(tmp_path / "s2"), "--wait",
                                        "--wait-timeout", "20", "--json"], env=env)
        assert r.exit_code == 1, r.output
        assert "0 to publish, 5 skipped (already published 5 (state file" in r.output
        assert "for 5 asset(s) (5 published by an earlier run of this state file)" in r.output
        wait = json.loads(r.stdout)["wait"]
        assert (wait["indexed"], wait["superseded"], wait["not_newer"], wait["waiting"]) == (2, 1, 1, 0), wait
        assert list(wait["dead_lettered_ids"]) == ["broken"]

        # trial 27 M1: the cause fixed and the record sent again (as `dlq replay` does), `broken` is indexed with the
        # very event the state file waits for; the re-run still said "dead-lettered", exit 1, for ever (the letter was
        # read first and the index never asked again). A document written after the letter wins over it ...
        event_of = {rec["key"]: rec["value"]["event_id"] for rec in raw}
        fixed = validated_asset("broken", 3)
        fixed["enriched"]["pre"]["asset"]["event_id"] = event_of["broken"]
        es = make_client(s)
        publish_validated(s, [fixed])
        deadline = time.monotonic() + 30
        while not es.mget(index=read_alias(s), ids=["broken"])["docs"][0].get("found"):
            assert time.monotonic() < deadline, "the fixed record was never indexed"
            time.sleep(0.2)
        r = CliRunner().invoke(_app(), ["backfill", str(manifest), "--state", str(tmp_path / "s2"), "--wait",
                                        "--wait-timeout", "20", "--json"], env=env)
        assert r.exit_code == 0, r.output
        wait = json.loads(r.stdout)["wait"]
        assert (wait["indexed"], wait["superseded"], wait["dead_lettered"], wait["waiting"]) == (3, 1, 0, 0), wait
        assert "pipeline: 4 of 5 indexed (1 already with a newer version), 0 dead-lettered" in r.output

        # ... and ok-1 indexed, then a later delivery of the same event failed (a redelivery after a rebalance; here
        # a record the sink refuses, at a newer version so the store does not answer with a version conflict first):
        # the wait said "dead-lettered", exit 1, for an asset whose event is in the index, because it compared the
        # letter's time (a worker's clock) with the document's (the sink's). Now the document says which event it is
        # of: ok-1 is indexed, and the letter is said beside it (both are true), exit 0.
        again = validated_asset("ok-1", 4, gps=(123.0, 2.0))
        again["enriched"]["pre"]["asset"]["event_id"] = event_of["ok-1"]
        publish_validated(s, [again])
        letters = read_topic(s, "dead_letter", 3)
        assert len(letters) == 3  # the earlier event's, broken's, and this one
        r = CliRunner().invoke(_app(), ["backfill", str(manifest), "--state", str(tmp_path / "s2"), "--wait",
                                        "--wait-timeout", "20", "--json"], env=env)
        assert r.exit_code == 0, r.output
        wait = json.loads(r.stdout)["wait"]
        assert (wait["indexed"], wait["dead_lettered"]) == (3, 0), wait
        # broken's letter was replayed and its event indexed: both are said too
        assert sorted(wait["also_dead_lettered_ids"]) == ["broken", "ok-1"], wait
        assert wait["also_dead_lettered_ids"]["ok-1"]["stage"] == "index"
        newest = max((d for d in letters if d["key"] == "ok-1"), key=lambda d: d["offset"])  # one partition per key
        ref = f"{newest['partition']}/{newest['offset']}"
        assert wait["also_dead_lettered_ids"]["ok-1"]["ref"] == ref
        assert "2 indexed asset(s) also have a dead letter of the same event" in r.output, r.output
        assert f"ok-1 (dlq {ref}, index/" in r.output and "nothing to replay" in r.output


def test_a_reprocess_of_an_asset_with_many_dam_attributes_is_still_sent_and_only_a_reprocess_says_when_it_was_sent():
    """Code review 15b: a reprocess carried all 63 of a DAM's attributes and added its own two (65 > 64): the event
    was refused and the asset could not be reprocessed at all. And a DAM's own `reprocessed_at` attribute (in
    seconds) on a `created` event was read as when it was sent (56-year record ages)."""
    from app.ops.carry import carry_forward, indexed_values, with_attributes
    from app.producer import build_event
    from domain.events import MAX_ATTRIBUTES, sent_ms

    dam = {f"dam_{i:02d}": str(i) for i in range(MAX_ATTRIBUTES - 1)} | {"ingest": "webhook"}
    upload = build_event("a-1", "file:///library/a.jpg", attributes=dam, event_time_ms=1_700_000_000_000)
    doc = {"record": {"enriched": {"pre": {"asset": upload}}}}
    fields, carried = carry_forward({}, indexed_values(doc))
    event = build_event("a-1", "file:///library/a.jpg", event_type="reprocess", **with_attributes(fields, ingest="cli"))
    assert len(event["attributes"]) <= MAX_ATTRIBUTES and event["attributes"]["dam_00"] == "0"
    assert len(carried) == MAX_ATTRIBUTES - 2 and sent_ms(event) > to_ms(upload["event_time"])

    created = build_event("a-1", "file:///library/a.jpg", attributes={"reprocessed_at": "1700000000"},
                          event_time_ms=1_700_000_000_000)
    assert sent_ms(created) == 1_700_000_000_000


def test_the_next_step_for_a_broken_file_is_a_new_file_and_the_backfill_again_not_a_replay():
    """Trial 33 N5: `backfill --wait` told a corrupt file's owner to `dlq replay --asset ID` once the cause was fixed;
    a replay sends the old event (the old version) again, while the fixed file is a new version the backfill
    publishes. Letters whose cause is the file say so; the others (a store that refused a document) keep the replay."""
    from app.ops.dlq import next_step

    broken = next_step(["corrupt_image", "decompression_bomb"], "acme::a1")
    assert "assetstream dlq show acme::a1" in broken and "run this backfill again" in broken
    assert "replay" not in broken
    refused = next_step(["document_error"], "a2")
    assert "dlq replay --asset ID" in refused and "backfill again" not in refused
    both = next_step(["corrupt_image", "timeout"], "a3")
    assert "for corrupt_image: replace the file" in both and "for the others: fix the cause" in both
