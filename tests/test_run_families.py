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
