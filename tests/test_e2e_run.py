"""`assetstream run` as a newcomer types it: a real subprocess, embedded broker, all four groups, the offline
provider; good images end validated, indexed and searchable with sidecars, hostile files end in the DLQ
with their reason while the rest keeps flowing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from streams.embedded_store import OsmemStore

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
    env.update({"ASSETSTREAM_INDEX__SERVER_MODE": "serverless", "ASSETSTREAM_INDEX__NUMBER_OF_REPLICAS": "0",
                "ASSETSTREAM_INDEX__INDEX": "e2e-assets", "PYTHONPATH": str(REPO)})

    result = assetstream("run", str(images), "--out", str(out), "--es-url", store.url, "--json", env=env)
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

    # indexed and searchable, with the same decisions
    found = assetstream("search", "market", "--json", "--es-url", store.url, env=env, timeout=60)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and hits[0]["asset_id"] == rows["poster_farmers_market.jpg"]["asset_id"]
    red = assetstream("search", "--tag", "color:red", "--json", "--es-url", store.url, env=env, timeout=60)
    assert rows["product_red_mug.jpg"]["asset_id"] in {h["asset_id"] for h in json.loads(red.stdout)}


def test_run_with_a_writeback_url_sends_each_asset_to_the_dam(store, tmp_path):
    from tests.writeback_support import FakeDam

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "product_red_mug.jpg", images / "product_red_mug.jpg")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env.update({"ASSETSTREAM_INDEX__SERVER_MODE": "serverless", "ASSETSTREAM_INDEX__NUMBER_OF_REPLICAS": "0",
                "ASSETSTREAM_INDEX__INDEX": "e2e-wb-assets", "ASSETSTREAM_WRITEBACK__STATE_INDEX": "e2e-wb-state",
                "PYTHONPATH": str(REPO)})
    with FakeDam() as dam:
        # the offline model's samples all need review: a suggest target takes them
        result = assetstream("run", str(images), "--out", str(tmp_path / "out"), "--es-url", store.url, "--json",
                             "--writeback-url", dam.url, "--writeback-mode", "suggest", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        [row] = json.loads(result.stdout)
        [write] = dam.writes()
    assert write["id"] == row["asset_id"] and write["method"] == "PATCH"
    assert json.loads(write["body"])["alt_text"] == row["alt_text"]
