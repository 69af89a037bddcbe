"""`assetstream run` as a newcomer types it: a real subprocess, embedded broker, all four groups, the offline
provider; good images end validated, indexed and searchable with sidecars, hostile files end in the DLQ
with their reason while the rest keeps flowing; a video ends as one searchable VideoObject (issue 20)."""
from __future__ import annotations

import io
import json
import re
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from domain.store.client import make_client
from streams.embedded_store import OsmemStore
from tests.store_support import settings_for
from tests.test_validate_render import schema_org_problems
from tests.video_support import FESTIVAL, LONG_GOP_FAST, make_video

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


@pytest.fixture(scope="module")
def store():
    with OsmemStore() as s:
        yield s


def assetstream(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO))


def test_run_end_to_end_then_search(store, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("photo_paris_sunset.jpg", "poster_farmers_market.jpg", "product_red_mug.jpg"):
        shutil.copy(SAMPLES / name, images / name)
    (images / "not_really.jpg").write_bytes(b"<html><body>this is a web page, not an image</body></html>")
    jpeg = (SAMPLES / "product_red_mug.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    # the private folder (settings file with secrets) a run killed with SIGKILL left behind, and one whose run lives
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned, alive = tmp / "assetstream-run-abandoned", tmp / "assetstream-run-alive"
    for folder, pid in ((abandoned, dead.pid), (alive, os.getpid())):
        folder.mkdir(mode=0o700)
        (folder / "owner.pid").write_text(str(pid))
        (folder / "settings.json").write_text('{"secret": "s3cr3t"}')
    env.update({"ASSETSTREAM_INDEX__SERVER_MODE": "serverless", "ASSETSTREAM_INDEX__NUMBER_OF_REPLICAS": "0",
                "ASSETSTREAM_INDEX__INDEX": "e2e-assets", "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)})

    result = assetstream("run", str(images), "--out", str(out), "--es-url", store.url, "--json", env=env)
    # the next run removes the abandoned folder, leaves the living run's alone, and removes its own at the stop
    assert not abandoned.exists() and (alive / "settings.json").exists()
    assert sorted(p.name for p in tmp.glob("assetstream-run-*")) == ["assetstream-run-alive"]
    assert result.returncode == 1, result.stderr[-3000:]  # 1: some assets were dead-lettered
    rows = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    assert set(rows) == {"photo_paris_sunset.jpg", "poster_farmers_market.jpg", "product_red_mug.jpg",
                         "not_really.jpg", "truncated.jpg"}

    # hostile inputs: dead-lettered by preprocess, with a reason a person can act on
    assert rows["not_really.jpg"]["status"] == "dead_lettered"
    assert rows["not_really.jpg"]["stage"] == "preprocess"
    assert rows["not_really.jpg"]["reason"] == "not_an_image"
    assert rows["truncated.jpg"]["status"] == "dead_lettered"
    assert rows["truncated.jpg"]["reason"] in ("corrupt_image", "truncated_image")

    # good images: validated with a decision, reasons, canonical tags, and sidecars that parse
    for name in ("photo_paris_sunset.jpg", "poster_farmers_market.jpg", "product_red_mug.jpg"):
        r = rows[name]
        assert r["status"] in ("auto_applied", "needs_review"), r
        assert r["reasons"] and r["tags"] and all(":" in t for t in r["tags"])
        assert r["usage_flag"] in ("ok", "credit_required", "restricted", "unknown")
        jsonld_name, xmp_name = r["sidecars"]  # named by asset id: files sharing a stem never collide
        assert jsonld_name == f"{r['asset_id']}.jsonld" and jsonld_name.startswith(Path(name).stem)
        jsonld = json.loads((out / jsonld_name).read_text())
        assert jsonld["@type"] == "ImageObject" and jsonld.get("name")
        ET.fromstring((out / xmp_name).read_text())
    assert "market" in rows["poster_farmers_market.jpg"]["alt_text"].lower()  # OCR text reached the alt text
    assert rows["photo_paris_sunset.jpg"]["usage_flag"] == "restricted"  # XMP: editorial use only
    assert rows["product_red_mug.jpg"]["cost_usd"] == 0.0  # the offline provider is free
    # a worker stopping at the end of a run is no problem: its drain is not a WARNING in the logs (trial 9)
    logs = Path(re.search(r"\(logs: (\S+)/index\.log\)", result.stderr).group(1))
    assert logs == (out / "logs").resolve()  # with the outputs, not a new /tmp folder per run (trial 9)
    drains = [line for f in logs.glob("*.log") for line in f.read_text().splitlines() if "draining" in line]
    assert drains and not [line for line in drains if " WARNING " in line], drains

    # indexed and searchable, with the same decisions
    found = assetstream("search", "market", "--json", "--es-url", store.url, env=env, timeout=60)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert hits and hits[0]["asset_id"] == rows["poster_farmers_market.jpg"]["asset_id"]
    red = assetstream("search", "--tag", "color:red", "--json", "--es-url", store.url, env=env, timeout=60)
    assert rows["product_red_mug.jpg"]["asset_id"] in {h["asset_id"] for h in json.loads(red.stdout)["hits"]}


def _writeback_env(index: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env.update({"ASSETSTREAM_INDEX__SERVER_MODE": "serverless", "ASSETSTREAM_INDEX__NUMBER_OF_REPLICAS": "0",
                "ASSETSTREAM_INDEX__INDEX": f"{index}-assets", "ASSETSTREAM_WRITEBACK__STATE_INDEX": f"{index}-state",
                "PYTHONPATH": str(REPO)})
    return env


def test_run_with_a_writeback_url_sends_each_asset_to_the_dam(store, tmp_path):
    from tests.writeback_support import FakeDam

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "product_red_mug.jpg", images / "product_red_mug.jpg")
    # the DAM answers 404 for ids starting with "missing": a write-back dead letter, whenever it comes
    shutil.copy(SAMPLES / "gradient_decorative.jpg", images / "missing_gradient.jpg")
    out = tmp_path / "out"
    with FakeDam() as dam:
        # the offline model's samples all need review: a suggest target takes them
        result = assetstream("run", str(images), "--out", str(out), "--es-url", store.url, "--json",
                             "--writeback-url", dam.url, "--writeback-mode", "suggest", env=_writeback_env("e2e-wb"))
        assert result.returncode == 1 and result.stdout, result.stderr[-3000:]  # 1: dead-lettered at write-back
        rows = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
        [write] = dam.writes(rows["product_red_mug.jpg"]["asset_id"])
    row = rows["product_red_mug.jpg"]
    assert write["method"] == "PATCH" and json.loads(write["body"])["alt_text"] == row["alt_text"]
    assert row["writeback"] == [{"target": "dam", "outcome": "written", "reason": None}]
    missing = rows["missing_gradient.jpg"]
    assert missing["status"] == "needs_review"  # it went through the pipeline; its write-back failed
    [letter] = missing["writeback"]
    assert letter["target"] == "dam" and letter["outcome"] == "dead_lettered" and letter["reason"] == "http_404"
    assert "404" in letter["message"]
    summary = {Path(r["file"]).name: r for r in json.loads((out / "summary.json").read_text())}
    assert summary["missing_gradient.jpg"]["writeback"] == missing["writeback"]


def test_run_with_an_unreachable_writeback_target_reports_it_after_the_rows(store, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "product_red_mug.jpg", images / "product_red_mug.jpg")
    out = tmp_path / "out"
    env = {**_writeback_env("e2e-wbdown"), "ASSETSTREAM_OPS__RUN_WRITEBACK_WAIT_S": "2",
           "ASSETSTREAM_LOG_LEVEL": "WARNING"}  # the workers log at WARNING: the pause must still be seen
    # the default --timeout (900 s): the run must not sit it out (the subprocess is given 400 s)
    result = assetstream("run", str(images), "--out", str(out), "--es-url", store.url, "--json",
                         "--writeback-url", f"http://127.0.0.1:{port}/api/assets/{{asset_id}}",
                         "--writeback-mode", "suggest", env=env)
    assert result.returncode == 1, result.stderr[-3000:]
    [row] = json.loads(result.stdout)
    assert row["status"] == "needs_review" and row["sidecars"]
    assert row["writeback"] == [{"target": "dam", "outcome": "not_written",
                                 "reason": "target unreachable (ConnectError)"}]
    assert json.loads((out / "summary.json").read_text())[0]["writeback"] == row["writeback"]
    said = " ".join(result.stderr.split())
    assert f"write-back target 'dam' unreachable at http://127.0.0.1:{port} (ConnectError): 1 asset(s) not " \
           "written" in said, said[-2000:]


def test_run_indexes_one_searchable_video_object_per_video(store, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    clip = make_video(metadata={"creation_time": "2026-05-01T10:00:00Z"})  # FRESH BREAD, cut at 3 s, OPEN SUNDAY
    (inputs / "bakery.mp4").write_bytes(clip)
    (inputs / "broken.mp4").write_bytes(clip[: len(clip) // 3])
    # the user trial: a fast encode with ONE intra frame (at 0 s) and four text scenes
    (inputs / "festival.mp4").write_bytes(make_video(FESTIVAL, gop=10_000, options=LONG_GOP_FAST))
    shutil.copy(SAMPLES / "product_red_mug.jpg", inputs / "mug.jpg")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env.update({"ASSETSTREAM_INDEX__SERVER_MODE": "serverless", "ASSETSTREAM_INDEX__NUMBER_OF_REPLICAS": "0",
                "ASSETSTREAM_INDEX__INDEX": "video-assets", "PYTHONPATH": str(REPO)})

    result = assetstream("run", str(inputs), "--out", str(out), "--es-url", store.url, "--json", env=env)
    assert result.returncode == 1, result.stderr[-3000:]  # 1: the broken video was dead-lettered
    assert "skipped" not in result.stderr  # videos are picked up, not skipped
    rows = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    assert set(rows) == {"bakery.mp4", "broken.mp4", "festival.mp4", "mug.jpg"}
    assert rows["broken.mp4"]["status"] == "dead_lettered" and rows["broken.mp4"]["stage"] == "preprocess"
    assert rows["broken.mp4"]["reason"] == "corrupt_video" and "MP4" in rows["broken.mp4"]["message"]
    video = rows["bakery.mp4"]
    assert video["media_type"] == "video" and rows["mug.jpg"]["media_type"] == "image"
    assert video["status"] in ("auto_applied", "needs_review") and video["tags"]
    assert "fresh bread" in video["alt_text"].lower()  # the poster frame described, its text quoted

    # outputs: a schema.org VideoObject with an ISO 8601 duration and the poster frame next to it
    jsonld_name, xmp_name, poster_name = video["sidecars"]
    doc = json.loads((out / jsonld_name).read_text())
    assert doc["@type"] == "VideoObject" and doc["duration"] == "PT6S"
    assert doc["encodingFormat"] == "video/mp4" and doc["contentUrl"].endswith("bakery.mp4")
    assert doc["thumbnailUrl"] == poster_name and doc["uploadDate"] and doc["name"]
    assert schema_org_problems(doc) == []
    poster = Image.open(io.BytesIO((out / poster_name).read_bytes()))
    assert poster.format == "JPEG" and poster.size[0] > poster.size[1]  # 16:9 like the video
    assert [round(k["startOffset"], 1) for k in doc["assetstream:keyframes"]] == [0.0, 3.0]

    # one indexed document per video, found by the text of either keyframe (the second is not the poster)
    for query in ("sunday", "fresh bread"):
        found = assetstream("search", query, "--json", "--es-url", store.url, env=env, timeout=60)
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["hits"][0]["asset_id"] == video["asset_id"], query
        words = assetstream("search", query, "--mode", "keyword", "--json", "--es-url", store.url, env=env, timeout=60)
        assert [h["asset_id"] for h in json.loads(words.stdout)["hits"]] == [video["asset_id"]], query
    # the long-GOP video is found by the words of a scene in the seconds after its only intra frame, as typed
    festival = rows["festival.mp4"]
    assert festival["media_type"] == "video" and festival["status"] in ("auto_applied", "needs_review")
    for query in ("tickets", "saturday"):
        words = assetstream("search", query, "--mode", "keyword", "--json", "--es-url", store.url, env=env, timeout=60)
        assert [h["asset_id"] for h in json.loads(words.stdout)["hits"]] == [festival["asset_id"]], query
    es = make_client(settings_for(store.url))
    body = es.get(index="video-assets-read", id=video["asset_id"]).body["_source"]
    assert body["media_type"] == "video" and body["duration_s"] == pytest.approx(6.0, abs=0.15)
    assert body["video"]["codec"] == "h264" and "transcript" not in body  # left for a speech-to-text stage
    assert [k["ocr_text"] for k in body["video"]["keyframes"]] == ["FRESH BREAD", "OPEN SUNDAY"]
    assert es.count(index="video-assets-read", query={"term": {"media_type": "video"}})["count"] == 2
