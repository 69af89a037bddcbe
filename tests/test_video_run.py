"""A video as a user drops it into `assetstream run` (a real subprocess: embedded broker, every group, the offline
provider, a real store): one indexed document per video, found by text seen in any keyframe, with a VideoObject
JSON-LD and its poster frame; a truncated video is dead-lettered with its reason while the rest goes on."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from domain.store.client import make_client
from streams.embedded_store import OsmemStore
from tests.store_support import settings_for
from tests.test_validate_render import schema_org_problems
from tests.video_support import make_video

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store():
    with OsmemStore() as s:
        yield s


def assetstream(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO))


def test_run_indexes_one_searchable_video_object_per_video(store, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    clip = make_video(metadata={"creation_time": "2026-05-01T10:00:00Z"})  # FRESH BREAD, cut at 3 s, OPEN SUNDAY
    (inputs / "bakery.mp4").write_bytes(clip)
    (inputs / "broken.mp4").write_bytes(clip[: len(clip) // 3])
    shutil.copy(REPO / "samples" / "product_red_mug.jpg", inputs / "mug.jpg")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env.update({"ASSETSTREAM_INDEX__SERVER_MODE": "serverless", "ASSETSTREAM_INDEX__NUMBER_OF_REPLICAS": "0",
                "ASSETSTREAM_INDEX__INDEX": "video-assets", "PYTHONPATH": str(REPO)})

    result = assetstream("run", str(inputs), "--out", str(out), "--es-url", store.url, "--json", env=env)
    assert result.returncode == 1, result.stderr[-3000:]  # 1: the broken video was dead-lettered
    assert "skipped" not in result.stderr  # videos are picked up, not skipped
    rows = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    assert set(rows) == {"bakery.mp4", "broken.mp4", "mug.jpg"}
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
        assert json.loads(found.stdout)[0]["asset_id"] == video["asset_id"], query
        words = assetstream("search", query, "--mode", "keyword", "--json", "--es-url", store.url, env=env, timeout=60)
        assert [h["asset_id"] for h in json.loads(words.stdout)] == [video["asset_id"]], query
    es = make_client(settings_for(store.url))
    body = es.get(index="video-assets-read", id=video["asset_id"]).body["_source"]
    assert body["media_type"] == "video" and body["duration_s"] == pytest.approx(6.0, abs=0.15)
    assert body["video"]["codec"] == "h264" and "transcript" not in body  # left for a speech-to-text stage
    assert [k["ocr_text"] for k in body["video"]["keyframes"]] == ["FRESH BREAD", "OPEN SUNDAY"]
    assert es.count(index="video-assets-read", query={"term": {"media_type": "video"}})["count"] == 1
