"""The trial's repro as a user runs it: a folder with a photo and its byte copy, `assetstream run` twice with the
same topics and index (the embedded run: real broker, real store, one worker process per stage, the offline local
provider). Each run leaves one family of two, the copy duplicate_of the canonical member and never the other way
round (before: the second run linked each copy to the other)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.embedded_run import EmbeddedRun
from app.producer import asset_id_for
from domain.store.client import make_client
from domain.store.management import read_alias
from tests.kafka_support import make_settings

pytestmark = pytest.mark.timeout(900)

CUP = Path(__file__).parent / "data" / "quality" / "images" / "cup_on_white.jpg"
FIELDS = ("family_id", "family_size", "family_canonical", "duplicate_of")


def test_two_runs_of_a_folder_with_a_copy_leave_one_family_without_a_loop(broker, store, unique, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(CUP, folder / "mug.jpg")
    shutil.copyfile(CUP, folder / "mug_copy.jpg")
    mug, copy = asset_id_for(folder / "mug.jpg"), asset_id_for(folder / "mug_copy.jpg")
    canonical, other = sorted([mug, copy])  # same pixels, same bytes: the smallest asset id
    settings = make_settings(broker, f"famrun{unique}", enrich={"provider": "local"}, index={
        "url": store.url, "server_mode": "serverless", "number_of_replicas": 0, "index": f"famrun-{unique}"})
    found = []
    for n in range(2):
        EmbeddedRun([str(folder)], out_dir=tmp_path / f"out{n}", bootstrap=broker, es_url=store.url,
                    settings=settings, show_progress=False, timeout_s=600).run()
        client = make_client(settings)
        try:
            client.indices.refresh(index=read_alias(settings))
            hits = client.search(index=read_alias(settings), size=10, query={"match_all": {}}, version=True,
                                 source_includes=[*FIELDS, "reasons"])["hits"]["hits"]
        finally:
            client.close()
        found.append({h["_id"]: {k: h["_source"].get(k) for k in FIELDS} for h in hits})
        # the review reasons name the same link as the document (the review queue's "near-duplicate" filter)
        reasons = {h["_id"]: [r for r in h["_source"].get("reasons") or [] if r.startswith("near-duplicate")]
                   for h in hits}
        assert reasons == {canonical: [], other: [f"near-duplicate of {canonical} (pHash distance 0)"]}, n
        assert found[-1] == {
            canonical: {"family_id": canonical, "family_size": 2, "family_canonical": True, "duplicate_of": None},
            other: {"family_id": canonical, "family_size": 2, "family_canonical": False,
                    "duplicate_of": canonical}}, n
