"""`assetstream run DIR --json` accounts for every input in the one JSON answer a script reads: each published
file is a row (indexed with its status, or dead-lettered with the stage and reason), and each file the run found
but did not publish is a row with status `skipped` and the reason. A real run (embedded broker and store)."""
from __future__ import annotations

import json
import os
import shutil
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
