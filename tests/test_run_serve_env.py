"""`assetstream run DIR --serve` names, in one `env:` line, what the other commands need to work on the same fleet:
a user pastes it in front of `assetstream search` or `assetstream dlq list` and gets this run's answers. A real
subprocess with the embedded broker and store."""
from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(400)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_env_line_points_search_and_dlq_at_the_running_fleet(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(REPO / "samples" / "product_red_mug.jpg", images / "product_red_mug.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    base.update({"PYTHONPATH": str(REPO), "OMP_THREAD_LIMIT": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", str(images), "--out", str(tmp_path / "out"),
                             "--serve"], env={**base, "ASSETSTREAM_REVIEW__PORT": "0"}, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("review: ") for line in seen):
            assert proc.poll() is None and time.monotonic() < deadline, "\n".join(seen)
            try:
                seen.append(lines.get(timeout=1).rstrip("\n"))
            except queue.Empty:
                pass
        env_line = next(line for line in seen if line.startswith("env: ")).split(" ", 1)[1]
        store = next(line for line in seen if line.startswith("store: ")).split(" ", 1)[1]
        fleet = dict(item.split("=", 1) for item in shlex.split(env_line))
        assert fleet["ASSETSTREAM_INDEX__URL"] == store
        env = {**base, **fleet}

        found = _cli(["search", "mug", "--json"], env)
        assert found.returncode == 0, found.stderr
        assert [h["asset_id"].split("-")[0] for h in json.loads(found.stdout)["hits"]] == ["product_red_mug"]

        letters = _cli(["dlq", "list", "--json"], env)
        assert letters.returncode == 0, letters.stderr
        assert [(d["asset_id"].split("-")[0], d["stage"]) for d in json.loads(letters.stdout)] == \
            [("broken", "preprocess")]
        assert Path(fleet["ASSETSTREAM_DEAD_LETTERS__STORE"]) == (tmp_path / "out" / "dead-letter-originals")

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
