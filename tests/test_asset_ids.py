"""One asset id per file, whichever way it enters: `assetstream run`, `publish` and `backfill` derive the same id
(app.producer.asset_id_for over the file's canonical file:// URI), so a file is one document in the index."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.embedded_run import EmbeddedRun, find_images
from app.producer import asset_id_for, source_uri_for
from tests.kafka_support import REPO, env_for, make_settings, provision, read_topic


def cli(*args: str, env: dict[str, str], cwd: Path) -> dict | list:
    r = subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_run_publish_and_backfill_give_a_file_the_same_asset_id(broker, unique, tmp_path, monkeypatch):
    s = make_settings(broker, f"ids{unique}")
    provision(s)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / "red mug.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(32))
    (imgs / "b.png").write_bytes(b"\x89PNG" + os.urandom(32))
    (tmp_path / "link.jpg").symlink_to(imgs / "red mug.jpg")
    env = {**env_for(s), "PYTHONPATH": str(REPO)}

    monkeypatch.chdir(tmp_path)
    images, _ = find_images(["imgs"])  # a relative path, as a user types it
    run_ids, _ = EmbeddedRun.publish(s, images)
    run_by_name = {p.name: a for a, p in zip(run_ids, images)}

    published = cli("publish", "imgs/red mug.jpg", "imgs/b.png", "link.jpg", "--json", env=env, cwd=tmp_path)
    publish_ids = [e["asset_id"] for e in published]
    backfill = cli("backfill", "imgs", "--dry-run", "--json", "--no-index", "--state", str(tmp_path / "st.jsonl"),
                   env=env, cwd=tmp_path)

    mug, png = run_by_name["red mug.jpg"], run_by_name["b.png"]
    assert publish_ids == [mug, png, mug]  # a symlink is the file it points to
    assert sorted(backfill["planned_ids"]) == sorted([mug, png])
    assert mug.startswith("red-20mug-") and png.startswith("b-")  # the stem of the (percent-encoded) URI
    assert mug == asset_id_for(imgs / "red mug.jpg") == asset_id_for(source_uri_for(tmp_path / "link.jpg"))
    # and the events carry the same source URI
    uris = {r["key"]: r["value"]["source_uri"] for r in read_topic(s, "raw", 5)}
    assert uris[mug] == (imgs / "red mug.jpg").resolve().as_uri()


def test_uris_keep_their_ids():
    """Ids of URLs are unchanged by the derivation (already-indexed documents keep theirs)."""
    import hashlib

    url = "https://cdn.example.com/dam/Red%20Mug.JPG?v=2"
    assert asset_id_for(url) == "Red-20Mug-" + hashlib.sha1(url.encode()).hexdigest()[:10]
