"""`assetstream run`'s outputs name duplicates the way the index does (issue 17 item 4, user trial): a folder with
a photo (china.jpg, 50 KB) and its recompressed copy (china_copy.jpg, same pixels, 35 KB), named so the copy is
published first. The index makes the original the family's canonical member (most pixels, then most bytes); the
run's JSON rows, summary.json, JSON-LD and XMP sidecars (their reasons included) say the same, whichever copy enrich
saw first (before: they showed enrich's arrival-order link, the original `duplicate_of` its own copy). A real run:
embedded broker and store, one worker process per stage, the offline local provider."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.embedded_run import sidecar_name
from domain.render import parse_xmp
from tests.test_run_inputs import cli

pytestmark = pytest.mark.timeout(600)

IMAGES = Path(__file__).parent / "data" / "quality" / "images"


def test_run_rows_and_sidecars_point_the_copy_at_the_original(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(IMAGES / "china_copy.jpg", folder / "a_small_copy.jpg")  # sorted first: published first
    shutil.copyfile(IMAGES / "china.jpg", folder / "b_original.jpg")
    shutil.copyfile(IMAGES / "coffee.jpg", folder / "c_other.jpg")
    out = tmp_path / "out"
    result = cli("run", str(folder), "--out", str(out), "--json", "--provider", "local", cwd=tmp_path, timeout=540)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    original, copy, other = rows["b_original.jpg"], rows["a_small_copy.jpg"], rows["c_other.jpg"]

    assert original["duplicate_of"] is None
    assert copy["duplicate_of"] == original["asset_id"]
    assert (original["family_id"], original["family_size"]) == (original["asset_id"], 2)
    assert (copy["family_id"], copy["family_size"]) == (original["asset_id"], 2)
    assert (other["duplicate_of"], other["family_id"], other["family_size"]) == (None, other["asset_id"], 1)
    assert not any("near-duplicate" in r for r in original["reasons"]), original["reasons"]
    near = [r for r in copy["reasons"] if "near-duplicate" in r]
    assert len(near) == 1 and near[0].startswith(f"near-duplicate of {original['asset_id']} (pHash distance "), near
    # summary.json: the same rows
    summary = {Path(r["file"]).name: r for r in json.loads((out / "summary.json").read_text())}
    for name in rows:
        assert {k: summary[name][k] for k in ("duplicate_of", "family_id", "family_size", "reasons")} == \
               {k: rows[name][k] for k in ("duplicate_of", "family_id", "family_size", "reasons")}, name

    def sidecars(row: dict) -> tuple[dict, dict]:
        stem = out / sidecar_name(row["asset_id"])
        return (json.loads(stem.with_name(stem.name + ".jsonld").read_text()),
                parse_xmp(stem.with_name(stem.name + ".xmp").read_text()))

    ld, xmp = sidecars(original)
    assert "assetstream:duplicateOf" not in ld and "assetstream:DuplicateOf" not in xmp
    assert (ld["assetstream:familyId"], ld["assetstream:familySize"], ld["assetstream:familyCanonical"]) == \
           (original["asset_id"], 2, True)
    assert (xmp["assetstream:FamilyId"], xmp["assetstream:FamilySize"], xmp["assetstream:FamilyCanonical"]) == \
           (original["asset_id"], "2", "True")
    assert not any("near-duplicate" in r for r in xmp.get("assetstream:Reasons", []))
    ld, xmp = sidecars(copy)
    assert ld["assetstream:duplicateOf"] == xmp["assetstream:DuplicateOf"] == original["asset_id"]
    assert (ld["assetstream:familyId"], ld["assetstream:familyCanonical"]) == (original["asset_id"], False)
    assert xmp["assetstream:Reasons"] == copy["reasons"]


def test_an_interrupted_run_shows_the_index_family_of_what_finished(tmp_path, own_store):
    """Ctrl-C once the photo and its copy are indexed, while OCR-heavy images are still in preprocess: the rows of
    the two finished assets (and their sidecars) say what the index says, the others are `interrupted`."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from app.producer import asset_id_for
    from domain.store.client import make_client
    from tests.store_support import settings_for
    from tests.test_run_inputs import REPO
    from tests.test_run_signals import _text_images

    folder = tmp_path / "photos"
    _text_images(folder, 40)  # photo-NNN.jpg: each takes preprocess seconds of OCR
    shutil.copyfile(IMAGES / "china_copy.jpg", folder / "a_small_copy.jpg")  # published first
    shutil.copyfile(IMAGES / "china.jpg", folder / "b_original.jpg")
    ids = [asset_id_for(folder / "a_small_copy.jpg"), asset_id_for(folder / "b_original.jpg")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    env.update({"PYTHONPATH": str(REPO), "OMP_THREAD_LIMIT": "1", "ASSETSTREAM_INDEX__SERVER_MODE": "serverless",
                "ASSETSTREAM_INDEX__NUMBER_OF_REPLICAS": "0",  # what the run sets on the store it starts
                # one partition: records are handled in the order published (the pair first). With six, the pair's
                # partitions could be fetched last, and the run be nearly done when the pair is
                "ASSETSTREAM_TOPICS__PARTITIONS": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", str(folder), "--out", str(tmp_path / "out"),
                             "--json", "--provider", "local", "--es-url", own_store.url], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    client = make_client(settings_for(own_store.url))
    try:
        deadline = time.monotonic() + 300
        while True:  # until both are indexed in one family (the original written last re-points it)
            assert proc.poll() is None and time.monotonic() < deadline, (
                f"the run ended before it was interrupted: {proc.stderr.read()[-3000:] if proc.poll() else ''}")
            try:
                client.indices.refresh(index="*")
                hits = client.search(index="*", query={"ids": {"values": ids}}, size=2)["hits"]["hits"]
            except Exception:  # noqa: BLE001 - the index is not created yet
                hits = []
            if len(hits) == 2 and all(h["_source"].get("family_size") == 2 for h in hits):
                break
            time.sleep(0.2)
        time.sleep(3)  # the run sees them indexed too (it looks every 0.5 s)
        photos = [asset_id_for(p) for p in folder.glob("photo-*")]
        client.indices.refresh(index="*")
        indexed = client.count(index="*", query={"ids": {"values": photos}})["count"]
        assert indexed <= len(photos) - 10, f"{indexed} of the {len(photos)} OCR images were done: not mid-run"
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
    said = f"exit {proc.returncode}; stdout: {stdout[:1000]!r}; stderr: {stderr[-3000:]}"
    assert proc.returncode == 130, said
    try:
        printed = json.loads(stdout)
    except ValueError:
        raise AssertionError(f"run --json did not print JSON: {said}") from None
    rows = {Path(r["file"]).name: r for r in printed}
    assert any(r["status"] == "interrupted" for r in rows.values())  # stopped mid-run
    original, copy = rows["b_original.jpg"], rows["a_small_copy.jpg"]
    assert (original["duplicate_of"], original["family_id"], original["family_size"]) == (None, ids[1], 2)
    assert (copy["duplicate_of"], copy["family_id"], copy["family_size"]) == (ids[1], ids[1], 2)
    assert not any("near-duplicate" in r for r in original["reasons"])
    xmp = parse_xmp((tmp_path / "out" / f"{sidecar_name(ids[1])}.xmp").read_text())
    assert "assetstream:DuplicateOf" not in xmp and xmp["assetstream:FamilyCanonical"] == "True"
