"""`assetstream run DIR --serve` as an editor starts it: a real subprocess with the embedded broker and store, the
whole pipeline, then the review app until Ctrl-C."""
from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(400)


def test_run_serve_prints_the_login_url_and_serves_until_ctrl_c(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(REPO / "samples" / "product_red_mug.jpg", images / "product_red_mug.jpg")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env.update({"PYTHONPATH": str(REPO), "OMP_THREAD_LIMIT": "1", "ASSETSTREAM_REVIEW__PORT": "0"})
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", str(images), "--out", str(tmp_path / "out"),
                             "--serve"], env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("review: ") for line in seen):
            assert proc.poll() is None and time.monotonic() < deadline, "\n".join(seen)
            try:
                seen.append(lines.get(timeout=1).rstrip("\n"))
            except queue.Empty:
                pass
        url = next(line for line in seen if line.startswith("review: ")).split(" ", 1)[1]
        broker = next(line for line in seen if line.startswith("broker: ")).split(" ", 1)[1]
        store = next(line for line in seen if line.startswith("store: ")).split(" ", 1)[1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/login\?token=[\w-]{20,}", url)
        assert re.fullmatch(r"127\.0\.0\.1:\d+", broker) and re.fullmatch(r"http://127\.0\.0\.1:\d+", store)
        base = url.split("/login")[0]

        assert httpx.get(base + "/").status_code == 401
        with httpx.Client(follow_redirects=True) as editor:
            queue_page = editor.get(url)
            assert queue_page.status_code == 200 and str(queue_page.url) == base + "/"  # the token is gone
            asset_id = re.search(r'name="ids" value="([^"]+)"', queue_page.text).group(1)
            assert asset_id.startswith("product_red_mug-")
            assert editor.get(f"{base}/thumb/{asset_id}").headers["content-type"] == "image/jpeg"
            assert httpx.get(f"{store}/").status_code == 200  # the embedded store is still up while serving

        # the `env:` line points the other commands at this run: search finds the image, dlq reads its topic
        fleet = dict(item.split("=", 1)
                     for item in shlex.split(next(line for line in seen if line.startswith("env: "))[5:]))
        assert fleet["ASSETSTREAM_INDEX__URL"] == store and fleet["ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS"] == broker
        assert Path(fleet["ASSETSTREAM_DEAD_LETTERS__STORE"]) == tmp_path / "out" / "dead-letter-originals"
        other = {**{k: v for k, v in env.items() if not k.startswith("ASSETSTREAM_")}, **fleet}
        found = subprocess.run([sys.executable, "-m", "app.cli", "search", "mug", "--json"], env=other,
                               cwd=str(REPO), capture_output=True, text=True, timeout=120)
        assert found.returncode == 0, found.stderr
        assert [h["asset_id"] for h in json.loads(found.stdout)["hits"]] == [asset_id]
        letters = subprocess.run([sys.executable, "-m", "app.cli", "dlq", "list", "--json"], env=other,
                                 cwd=str(REPO), capture_output=True, text=True, timeout=120)
        assert letters.returncode == 0 and json.loads(letters.stdout) == [], letters.stderr

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
        reader.join(10)
        while not lines.empty():
            seen.append(lines.get_nowait().rstrip("\n"))
        assert sum(line.startswith("review: ") for line in seen) == 1
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{store}/", timeout=2)  # and stopped with the run
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
