"""What `assetstream run` picks up from the paths it is given: HEIC/HEIF included, every other file reported
with the reason it was skipped (never silently)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.embedded_run import find_images

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_discovery_takes_heic_and_heif_and_reports_the_rest(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    for name in ("iphone.HEIC", "camera.heif", "a.jpg", "sub/b.png", "notes.txt", ".DS_Store", "sub/README",
                 ".git/HEAD", ".git/objects/x.jpg", "clip.MP4", "sub/c.mov", "d.webm", "e.mkv", "f.m4v"):
        (tmp_path / name).write_bytes(b"x")
    images, skipped = find_images([str(tmp_path)])
    assert sorted(p.name for p in images) == ["a.jpg", "b.png", "c.mov", "camera.heif", "clip.MP4", "d.webm",
                                              "e.mkv", "f.m4v", "iphone.HEIC"]  # videos are assets too
    why = {Path(f).name: reason for f, reason in skipped}
    assert set(why) == {"notes.txt", ".DS_Store", "README", ".git"}  # a hidden directory is one line
    assert "not an image extension (.txt" in why["notes.txt"]
    assert why[".DS_Store"] == "hidden file" and why[".git"] == "hidden directory, not searched"


def test_glob_reports_what_it_skips(tmp_path):
    for name in ("one.heic", "two.gif", "three.pdf"):
        (tmp_path / name).write_bytes(b"x")
    images, skipped = find_images([str(tmp_path / "*")])
    assert sorted(p.name for p in images) == ["one.heic", "two.gif"]
    assert [Path(f).name for f, _ in skipped] == ["three.pdf"]


def test_a_file_named_explicitly_is_always_taken(tmp_path):
    odd = tmp_path / "scan.dat"
    odd.write_bytes(b"x")
    images, skipped = find_images([str(odd)])
    assert images == [odd.resolve()] and skipped == []


def test_run_says_which_files_it_skipped_and_why(tmp_path):
    """Nothing to publish: exit 2 before any broker starts, naming each skipped file."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "brief.txt").write_text("hello")
    (tmp_path / "docs" / "clip.avi").write_bytes(b"x")  # AVI is not a video container preprocess takes
    result = cli("run", "docs", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    err = " ".join(result.stderr.split())
    assert "skipped" in err and "brief.txt" in err and "clip.avi" in err
    assert "not an image extension" in err and "no images found" in err


def test_sidecars_of_files_with_the_same_stem_do_not_collide(tmp_path):
    """a.jpg, a.png and sub/a.jpg: three assets, three JSON-LD + XMP pairs, each naming its own asset."""
    import json
    import xml.etree.ElementTree as ET

    from app.embedded_run import EmbeddedRun, Tracker, summary_row
    from app.kpis.testing import validated_record
    from app.producer import asset_id_for

    (tmp_path / "sub").mkdir()
    files = [tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "sub" / "a.jpg"]
    ids = [asset_id_for(f) for f in files]
    assert len(set(ids)) == 3
    tracker = Tracker({a: f"evt-{i}" for i, a in enumerate(ids)})
    for i, a in enumerate(ids):
        tracker.validated[a] = validated_record(a, 1, event_time_ms=1_767_600_000_000, published_ms=1_767_600_001_000,
                                                title=f"title {i}", alt_text=f"alt {i}")
    out = tmp_path / "out"
    job = EmbeddedRun([], out_dir=out)
    paths = dict(zip(ids, files))
    rows = [summary_row(a, p, tracker) for a, p in paths.items()]
    job.write_sidecars(tracker, paths, rows)

    assert len(list(out.glob("*.jsonld"))) == 3 and len(list(out.glob("*.xmp"))) == 3
    for i, (a, row) in enumerate(zip(ids, rows)):
        jsonld_name, xmp_name = row["sidecars"]
        assert jsonld_name.startswith("a-") and jsonld_name == f"{a}.jsonld"  # readable stem + the asset's hash
        assert json.loads((out / jsonld_name).read_text())["name"] == f"title {i}"
        assert f"alt {i}" in (out / xmp_name).read_text()
        ET.fromstring((out / xmp_name).read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert [r["sidecars"] for r in summary] == [r["sidecars"] for r in rows]


def test_a_jsonld_sidecar_is_safe_inside_an_html_script_block(tmp_path):
    """Trial 16: a title `</script><img onerror=…>` went into the JSON-LD as is; pasted into a
    <script type="application/ld+json"> block it ended the block (stored XSS on the site publishing it)."""
    import json

    from app.embedded_run import EmbeddedRun, Tracker, summary_row
    from app.kpis.testing import validated_record
    from app.producer import asset_id_for

    title, alt = "</script><img src=x onerror=alert(1)>", "Salt & pepper <!-- \u2028 -->"
    path = tmp_path / "xss.jpg"
    asset_id = asset_id_for(path)
    tracker = Tracker({asset_id: "evt-0"})
    tracker.validated[asset_id] = validated_record(asset_id, 1, event_time_ms=1_767_600_000_000,
                                                   published_ms=1_767_600_001_000, title=title, alt_text=alt)
    EmbeddedRun([], out_dir=tmp_path / "out").write_sidecars(tracker, {asset_id: path},
                                                              [summary_row(asset_id, path, tracker)])
    text = (tmp_path / "out" / f"{asset_id}.jsonld").read_text()
    assert not set("<>&\u2028") & set(text), text
    doc = json.loads(text)
    assert (doc["name"], doc["accessibilitySummary"]) == (title, alt)


def test_a_run_that_times_out_still_accounts_for_every_input(tmp_path):
    """--timeout ran out: the rows as far as the run got (trial 9: stdout was empty and --out never written, even
    for the images already indexed), exit 1 naming the timeout."""
    import json

    done = cli("run", str(REPO / "samples"), "--timeout", "2", "--json", "--out", str(tmp_path / "out"),
               cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "not every asset was processed within 2s" in done.stderr
    rows = json.loads(done.stdout)
    images = sorted(p.name for p in (REPO / "samples").iterdir() if p.suffix in (".jpg", ".png"))
    assert sorted(Path(r["file"]).name for r in rows if r["status"] != "skipped") == images
    unfinished = [r for r in rows if r["status"] == "interrupted"]
    assert unfinished and all(r["reason"].startswith("the run timed out before this input was") for r in unfinished)
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == rows


def test_a_link_to_a_file_already_taken_and_a_broken_link_each_get_a_reason(tmp_path):
    """Trial 9: a symbolic link to an image in the same folder had no row at all, and a broken one said only
    'not a regular file'."""
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "link_a.jpg").symlink_to("a.jpg")
    (tmp_path / "broken.jpg").symlink_to("/nonexistent/b.jpg")
    images, skipped = find_images([str(tmp_path)])
    assert images == [(tmp_path / "a.jpg").resolve()]
    assert dict((Path(f).name, why) for f, why in skipped) == {
        "broken.jpg": "broken symbolic link (to /nonexistent/b.jpg)",
        "link_a.jpg": f"same file as {tmp_path / 'a.jpg'}"}


def test_the_results_table_names_each_file_under_its_asset_id(tmp_path, capsys):
    """Trial 24 F8: the run table named assets only by id (`caf-E9-…` for a latin-1 `caf\\xe9.jpg`); each row now
    shows the file's name below the id, a name that is not UTF-8 with its bytes as \\xNN."""
    from app.cli import _print_run_rows
    from app.producer import asset_id_for

    latin1 = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")))
    evil = tmp_path / "a\x1b[2J\u202egpj.jpg"  # review 14 M2: no terminal escapes or bidi overrides from a name
    rows = [{"asset_id": asset_id_for(p), "file": str(p), "status": "dead_lettered", "stage": "preprocess",
             "reason": "corrupt_image", "message": "truncated"} for p in (latin1, evil)]
    _print_run_rows(rows, False, str(tmp_path))
    text = capsys.readouterr().out
    assert asset_id_for(latin1) in text and "caf\\xe9.jpg" in text
    assert "a\\x1b[2J\\u202egpj.jpg" in text and "\x1b" not in text and "\u202e" not in text


def test_a_link_to_a_file_elsewhere_admits_that_file_not_its_folder(tmp_path):
    """Trial 24b N4: `run lib/ in4/ --serve`, in4 holding a link to /tmp/trial24/in/orient_2.jpg, gave the session
    (and every `backfill` into it) file_roots with /tmp/trial24/in, the link target's whole folder."""
    from app.embedded_run import file_roots_for

    given, elsewhere, single = tmp_path / "in4", tmp_path / "elsewhere", tmp_path / "one"
    for d in (given, elsewhere, single):
        d.mkdir()
    (elsewhere / "orient_2.jpg").write_bytes(b"x")
    (elsewhere / "secret.jpg").write_bytes(b"x")
    (given / "a.jpg").write_bytes(b"x")
    (given / "link.jpg").symlink_to(elsewhere / "orient_2.jpg")
    (single / "b.jpg").write_bytes(b"x")
    inputs = [str(given), str(single / "b.jpg")]
    images, _ = find_images(inputs)
    assert file_roots_for(inputs, images) == sorted([str(given), str(elsewhere / "orient_2.jpg"), str(single)])


def test_an_asset_dead_lettered_at_the_index_is_shown_dead_lettered_not_as_validated(tmp_path, capsys):
    """Trial 32 F3: validate passed the asset (`needs_review`), the index sink dead-lettered it; the table, --json
    and summary.json said `needs_review` (with sidecars) for an asset the index does not hold."""
    import json

    from app.cli import _print_run_rows
    from app.embedded_run import EmbeddedRun, Tracker, summary_row
    from app.producer import asset_id_for

    path = tmp_path / "sign_sale.png"
    asset_id = asset_id_for(path)
    tracker = Tracker({asset_id: "e1"})
    tracker.reached["validate"].add(asset_id)
    tracker.validated[asset_id] = {"status": "needs_review", "title": "SALE", "enriched": {}}
    tracker.dead[asset_id] = {"stage": "index", "error_class": "permanent", "error_type": "PermanentError",
                              "message": "cannot build the search document: mapper_parsing_exception",
                              "details": {"reason": "document_error"}}
    row = summary_row(asset_id, path, tracker)
    assert (row["status"], row["stage"], row["reason"]) == ("dead_lettered", "index", "document_error")
    _print_run_rows([row], False, str(tmp_path))
    text = " ".join(capsys.readouterr().out.split())
    assert "dead letter" in text and "index: document_error" in text and "needs_review" not in text
    run = EmbeddedRun([str(path)], out_dir=tmp_path / "out")
    run.write_sidecars(tracker, {asset_id: path}, [row])  # no sidecars for an asset that was not published
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".assetstream-files.json", "summary.json"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())[0]["status"] == "dead_lettered"


def test_an_asset_the_index_dead_lettered_then_holds_with_a_decision_is_shown_as_the_index_holds_it(tmp_path, store):
    """Trial 33 N1: during `run --serve` an asset the index sink dead-lettered was fixed, replayed and approved;
    the row, summary.json and the sidecars still said `dead_lettered` (the dead letter won for ever), so the
    editor's decision reached no file while the stop message said it was kept in the sidecars. Once the index
    holds the asset, what it holds is the row: the decision, with sidecars."""
    import datetime as dt
    import json
    import shutil

    from app.embedded_run import EmbeddedRun, Tracker, summary_row
    from app.producer import asset_id_for
    from domain.records import asset_of
    from tests.review_support import review_record
    from tests.store_support import index_all, settings_for

    path = tmp_path / "product_red_mug.jpg"
    shutil.copy(Path(__file__).resolve().parents[1] / "samples" / "product_red_mug.jpg", path)
    asset_id = asset_id_for(path)
    settings = settings_for(store.url)
    first = review_record(settings, asset_id, minutes=1, sample="product_red_mug.jpg", title="Red mug",
                          alt_text="A red mug on a white background", tags=[("product", "cup")], reasons=[])
    index_all(settings, [review_record(settings, asset_id, minutes=1, sample="product_red_mug.jpg",
                                       title="Red mug", alt_text="A red mug on a white background",
                                       tags=[("product", "cup")], reasons=[], approved_after=dt.timedelta(minutes=5))])
    run = EmbeddedRun([str(path)], out_dir=tmp_path / "out")
    run.tracker = tracker = Tracker({asset_id: asset_of(first)["event_id"]})
    tracker.reached["validate"].add(asset_id)
    tracker.validated[asset_id] = first
    tracker.dead[asset_id] = {"stage": "index", "error_class": "transient", "message": "the store was down",
                              "details": {"reason": "store_unavailable"}}
    assert summary_row(asset_id, path, tracker)["status"] == "dead_lettered"
    assert run.read_indexed(settings, [asset_id]) == [asset_id]
    row = summary_row(asset_id, path, tracker)
    assert row["status"] == "approved", row
    run.write_sidecars(tracker, {asset_id: path}, [row])
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert any(n.endswith(".jsonld") for n in names) and any(n.endswith(".xmp") for n in names), names
    assert json.loads((tmp_path / "out" / "summary.json").read_text())[0]["status"] == "approved"


def test_the_run_progress_counts_dead_letters_without_a_bar():
    """Trial 33 N6: the run's progress showed `dlq ━━━━ 0/2`, an unfinished bar, though nothing was waiting. Each
    stage keeps its bar (assets through it of all); the dead letters are a count."""
    from rich.console import Console

    from app.embedded_run import run_progress

    console = Console(record=True, width=100, force_terminal=False)
    progress = run_progress(console)
    index = progress.add_task("index", total=2)
    dead = progress.add_task("dlq", total=None, count="dead-lettered")
    progress.update(index, completed=1)
    progress.update(dead, completed=1)
    console.print(progress.get_renderable())
    lines = {line.split()[0]: line for line in console.export_text().splitlines() if line.strip()}
    assert "━" in lines["index"] and "1/2" in lines["index"]
    assert "━" not in lines["dlq"] and "1 dead-lettered" in lines["dlq"] and "/" not in lines["dlq"]
