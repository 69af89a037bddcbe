"""`assetstream run DIR --json` accounts for every input in the one JSON answer a script reads: each published
file is a row (indexed with its status, or dead-lettered with the stage and reason), and each file the run found
but did not publish is a row with status `skipped` and the reason. A real run (embedded broker and store)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.test_run_inputs import REPO, cli


def test_json_rows_account_for_every_file_found(tmp_path):
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    (lib / ".cache").mkdir()
    shutil.copy(REPO / "samples" / "product_red_mug.jpg", lib / "mug.jpg")
    (lib / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (lib / "notes.txt").write_text("not an image")
    (lib / ".cache" / "thumb.jpg").write_bytes(b"x")
    # trial 24 F1: a name that is not UTF-8 (latin-1 `caf\\xe9.jpg`) was dead-lettered `not_found`, and --json
    # wrote its raw byte (stdout not UTF-8: `cli` decodes it strictly, as json.load of the saved output did)
    latin1 = os.fsdecode(os.path.join(os.fsencode(lib), b"caf\xe9.jpg"))
    shutil.copy(REPO / "samples" / "product_red_mug.jpg", latin1)
    result = cli("run", str(lib), "--out", str(tmp_path / "out"), "--json", cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stderr  # an input was dead-lettered
    rows = {Path(r["file"]).relative_to(lib).as_posix(): r for r in json.loads(result.stdout)}
    assert sorted(rows) == [".cache", "caf\udce9.jpg", "mug.jpg", "notes.txt", "sub/broken.png"]
    assert rows["caf\udce9.jpg"]["file"] == latin1  # json.loads gives back the OS's name (os.fsencode: the bytes)
    assert rows["caf\udce9.jpg"]["status"] in ("needs_review", "auto_applied"), rows["caf\udce9.jpg"]
    assert rows["mug.jpg"]["status"] in ("needs_review", "auto_applied") and rows["mug.jpg"]["asset_id"]
    assert (rows["sub/broken.png"]["status"], rows["sub/broken.png"]["stage"]) == ("dead_lettered", "preprocess")
    assert rows["sub/broken.png"]["reason"]
    assert rows["notes.txt"] == {"asset_id": None, "file": str(lib / "notes.txt"), "status": "skipped",
                                 "reason": rows["notes.txt"]["reason"]}
    assert rows["notes.txt"]["reason"].startswith("not an image extension (.txt")
    assert (rows[".cache"]["status"], rows[".cache"]["reason"]) == ("skipped", "hidden directory, not searched")
    # summary.json (written by the same run) lists the same rows, skipped files included
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    by_file = {Path(r["file"]).relative_to(lib).as_posix(): r for r in summary}
    assert sorted(by_file) == sorted(rows)
    assert by_file["notes.txt"] == rows["notes.txt"] and by_file[".cache"] == rows[".cache"]
    assert by_file["sub/broken.png"]["status"] == "dead_lettered"
    # the end of the run says what happened and what next (trial 32 F4); with --json on stderr
    said = " ".join(result.stderr.split())
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(Counter(r["status"] for r in summary
                                                                if r["status"] != "skipped").items()))
    assert f"3 asset(s): {statuses}; 2 file(s) skipped" in said and "1 dead_lettered" in statuses, said[-3000:]
    out = (tmp_path / "out").resolve()
    assert f"sidecars (JSON-LD, XMP) and summary.json (every row with its reasons) in {out}" in said
    assert f"exit code 1: 1 input(s) dead-lettered (each row says the stage and reason); the workers' logs: " \
           f"{out / 'logs'}" in said
    assert f"next: to review and search these assets (this run's broker and store are gone), run assetstream run " \
           f"{lib} --out {out} --serve" in said


def test_a_second_run_into_the_same_out_names_the_earlier_files_and_a_missing_tesseract(tmp_path):
    """Trial 32 F8: a second run into the same --out left the first run's sidecars there unmentioned (not in the
    new summary.json); they are kept (an earlier run's sidecars may carry people's decisions) and named at the end.
    Trial 32 F6: without tesseract on PATH nothing was said; now a warning at start (run and the preprocess
    worker), and a dense page RapidOCR read alone is marked degraded, which its row in the table shows."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    shutil.copy(REPO / "samples" / "gradient_decorative.jpg", first / "gradient.jpg")
    shutil.copy(REPO / "samples" / "product_red_mug.jpg", second / "mug.jpg")
    shutil.copy(REPO / "tests" / "data" / "quality" / "images" / "document_report.png", second / "report.png")
    out = tmp_path / "out"
    done = cli("run", str(first), "--out", str(out), "--json", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [gradient] = json.loads(done.stdout)
    assert "from an earlier run" not in done.stderr
    (out / "notes.md").write_text("mine")  # a file assetstream did not write: never named, never touched
    # every program on PATH but tesseract
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for exe in (Path(folder).iterdir() if Path(folder).is_dir() else ()):
            if exe.name != "tesseract" and not (bin_dir / exe.name).exists() and os.access(exe, os.X_OK):
                (bin_dir / exe.name).symlink_to(exe)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env.update({"PYTHONPATH": str(REPO), "PATH": str(bin_dir)})
    done = subprocess.run([sys.executable, "-m", "app.cli", "run", str(second), "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    said, shown = " ".join(done.stderr.split()), " ".join(done.stdout.split())
    assert "warning: tesseract is not installed ('tesseract' is not on PATH): dense text pages are read by RapidOCR " \
           "alone" in said, said[-3000:]
    assert "tesseract is not installed" in (out / "logs" / "preprocess.log").read_text()
    rows = {Path(r["file"]).name: r for r in json.loads((out / "summary.json").read_text())}
    assert sorted(rows) == ["mug.jpg", "report.png"]  # this run's rows only
    degraded = "degraded: ocr incomplete: tesseract is not installed"
    assert rows["report.png"]["status"] == "needs_review" and degraded in rows["report.png"]["reasons"]
    assert degraded not in rows["mug.jpg"]["reasons"]  # RapidOCR alone reads what it has
    report_row = shown.split("report-", 1)[1].split("└", 1)[0]  # the table's last row, its cells wrapped
    assert "│ needs_review │" in report_row and "│ degraded: ocr incomplete: │" in report_row, shown[-4000:]
    assert "│ tesseract is not installed │" in report_row
    earlier = sorted(gradient["sidecars"])
    assert all((out / name).exists() for name in earlier) and (out / "notes.md").read_text() == "mine"
    assert f"2 sidecar file(s) there are from an earlier run and not in this summary.json ({', '.join(earlier)}): " \
           "kept as they are; use another --out for a folder of this run only" in shown
    assert "notes.md" not in shown
