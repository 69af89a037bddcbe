"""The writeback files target under the real runner: approved metadata in a copy of each original as XMP + IPTC,
every field read back with the real ExifTool; names unique per asset; the photographer's keywords and headline kept;
a reprocess leaves the copies untouched."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from consumers.writeback.sink import WritebackSink
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, provision
from tests.store_support import validated_asset
from tests.writeback_support import files_settings, run_until

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CONFIG = Path(__file__).resolve().parent.parent / "consumers" / "writeback" / "exiftool.config"


def exif(path: Path, *args: str) -> dict:
    out = subprocess.run(["exiftool", "-config", str(CONFIG), "-j", "-G1", "-charset", "iptc=UTF8", *args,
                          str(path)], check=True, capture_output=True)
    return json.loads(out.stdout)[0]




def record(asset_id, path: Path, fmt: str = "JPEG", **kw):
    """`fmt`: the format preprocess sniffed from the file's bytes."""
    v = validated_asset(asset_id, status="approved", **kw)
    v["enriched"]["pre"]["asset"]["source_uri"] = path.as_uri()
    v["enriched"]["pre"]["image"]["format"] = fmt
    v["field_sources"]["licensing"] = "human"  # the declared licence, as validate sets it
    return v


def test_files_carry_every_field_as_exiftool_reads_it(broker, unique, store, tmp_path):
    originals, out = tmp_path / "originals", tmp_path / "out"
    (originals / "sub").mkdir(parents=True)
    jpg, png, sub = originals / "a.jpg", originals / "a.png", originals / "sub" / "a.jpg"
    shutil.copy(SAMPLES / "product_red_mug.jpg", jpg)
    shutil.copy(SAMPLES / "logo_badge_alpha.png", png)
    shutil.copy(SAMPLES / "photo_paris_sunset.jpg", sub)
    # the photographer's own metadata
    subprocess.run(["exiftool", "-overwrite_original", "-XMP-dc:Subject=harbour", "-XMP-dc:Subject=Jane's pick",
                    "-IPTC:Keywords=harbour", "-IPTC:Keywords=Jane's pick", "-XMP-photoshop:Headline=Jane's headline",
                    str(jpg)], check=True, capture_output=True)
    original_bytes = jpg.read_bytes()
    s = files_settings(broker, f"wbf{unique}", store.url, out, originals)
    provision(s)
    values = [record("a-jpg", jpg, caption="A red mug on a white table", title="Red mug"),
              record("a-png", png, "PNG", caption="A badge"), record("sub-a-jpg", sub, caption="Paris")]
    with RunnerThread(StageRunner(WritebackSink(s), s)):
        run_until(s, values, 3)
        files = sorted(p.name for p in out.iterdir())  # three copies of a.*: none overwrites another
        assert [f.rsplit("-", 1)[0] for f in files] == ["a-jpg", "a-png", "sub-a-jpg"], files
        copy = next(out.glob("a-jpg-*.jpg"))
        tags = exif(copy, "-XMP:all", "-IPTC:all")
        v = values[0]
        assert tags["XMP-iptcCore:AltTextAccessibility"] == v["alt_text"]
        assert tags["XMP-iptcCore:ExtDescrAccessibility"] == v["summary"]
        assert tags["XMP-dc:Description"] == tags["IPTC:Caption-Abstract"] == "A red mug on a white table"
        assert tags["XMP-photoshop:Credit"] == tags["IPTC:Credit"] == v["credit_text"]
        assert tags["XMP-xmpRights:UsageTerms"] == "CC-BY-4.0"
        ours = [t["label"] for t in v["tags"]]
        assert tags["XMP-dc:Subject"] == ["harbour", "Jane's pick", *sorted(ours)]  # theirs kept, ours added
        assert tags["IPTC:Keywords"] == ["harbour", "Jane's pick", *sorted(ours)]
        assert tags["XMP-photoshop:Headline"] == "Jane's headline"  # a person's value is never replaced
        assert tags["XMP-assetstream:AssetId"] == "a-jpg" and tags["XMP-assetstream:Status"] == "approved"
        prov = v["enriched"]["provenance"][0]
        assert tags["XMP-assetstream:ProvenanceModel"] == prov["model"]
        assert tags["XMP-assetstream:ProvenancePromptHash"] == prov["prompt_hash"]
        assert tags["XMP-assetstream:ProvenanceTimestamp"].startswith("2026:03:01")
        assert jpg.read_bytes() == original_bytes  # the original is never touched
        png_tags = exif(next(out.glob("a-png-*.png")), "-XMP:all")
        assert png_tags["XMP-dc:Description"] == "A badge" and png_tags["XMP-assetstream:AssetId"] == "a-png"

        # a reprocess: nothing written; a changed tag set: ours replaced, the photographer's kept
        mtime = copy.stat().st_mtime_ns
        run_until(s, values, 6)
        assert copy.stat().st_mtime_ns == mtime
        run_until(s, [record("a-jpg", jpg, caption="A red mug on a white table", title="Red mug",
                             tags=[("color", "red"), ("product", "mug")])], 7)
        assert exif(copy, "-XMP-dc:Subject")["XMP-dc:Subject"] == ["harbour", "Jane's pick", "red", "mug"]


def test_an_editors_edit_replaces_the_originals_own_value_an_accepted_one_does_not(broker, unique, store, tmp_path,
                                                                                   caplog):
    """Trial 2: the photographer's file carried an alt text; the editor replaced it in the review app and approved.
    The index and the run's sidecar had the edit, the files target's copy kept the file's old alt text (taken for
    a person's change in the target, `protect_unknown`). The copy's values we never wrote are the original's, which
    the editor saw in review: an edited field replaces them; an accepted one (or one nobody reviewed) does not."""
    originals, out = tmp_path / "originals", tmp_path / "out"
    originals.mkdir()
    jpg = originals / "sunset.jpg"
    shutil.copy(SAMPLES / "photo_paris_sunset.jpg", jpg)
    subprocess.run(["exiftool", "-overwrite_original", "-XMP-photoshop:Headline=Jane's headline", str(jpg)],
                   check=True, capture_output=True)
    assert exif(jpg, "-XMP-iptcCore:AltTextAccessibility")["XMP-iptcCore:AltTextAccessibility"].startswith(
        "The Paris skyline")
    s = files_settings(broker, f"wbe{unique}", store.url, out, originals)
    provision(s)
    edited = "Eiffel Tower silhouette at sunset over the Seine"
    v = record("sunset", jpg, alt_text=edited, title="Paris at dusk", caption="Paris")
    at = 1_772_323_200_000  # 2026-03-01
    v["review"] = {"status": "approved", "editor": "Mia", "decided_at": at, "decision_ids": ["d1"],
                   "fields": [{"field": "alt_text", "action": "edited", "value": edited, "editor": "Mia", "at": at},
                              {"field": "title", "action": "accepted", "value": "Paris at dusk", "editor": "Mia",
                               "at": at}]}
    # trial 20 B5/B15.8: the editor marks a copy of it decorative (an empty alt text)
    shutil.copy(jpg, originals / "deco.jpg")
    deco = record("deco", originals / "deco.jpg", alt_text="")
    deco["decorative"] = True
    deco["review"] = {**v["review"], "fields": [{**v["review"]["fields"][0], "value": ""}]}
    # trial 23 B9: the editor's credit is 36 bytes, over IIM Credit's 32
    credit = "Foto: REUTERS/Staff – Zoë Müller"
    v["credit_text"], v["field_sources"]["credit_text"] = credit, "human"
    v["review"]["fields"].append({"field": "credit_text", "action": "edited", "value": credit, "editor": "Mia",
                                  "at": at})
    # trial 23 B2: the model's rights paraphrases, approved with "Approve all", are never the file's rights words
    shutil.copy(jpg, originals / "agency.jpg")
    subprocess.run(["exiftool", "-overwrite_original", "-XMP-photoshop:Credit=", "-XMP-xmpRights:UsageTerms=",
                    str(originals / "agency.jpg")], check=True, capture_output=True)  # the file states neither
    (originals / "agency.jpg").chmod(0o664)  # trial 23 B8: the copy keeps the original's mode (mkstemp's is 0600)
    agency = record("agency", originals / "agency.jpg")
    agency["credit_text"], agency["licensing"] = "Flickr user kfoto / CC BY-NC 2.0", "CC BY-NC 2.0 (from copyright notice)"
    agency["field_sources"].update(credit_text="model", licensing="model")
    with RunnerThread(StageRunner(WritebackSink(s), s)):
        run_until(s, [v, deco, agency], 3)
        tags = exif(next(out.glob("sunset-*.jpg")), "-XMP:all", "-IPTC:all")
        deco_tags = exif(next(out.glob("deco-*.jpg")), "-XMP:all")
        agency_copy = next(out.glob("agency-*.jpg"))
        agency_tags = exif(agency_copy, "-XMP:all", "-IPTC:all")
    assert not {"XMP-photoshop:Credit", "IPTC:Credit", "XMP-xmpRights:UsageTerms"} & set(agency_tags), agency_tags
    assert agency_copy.stat().st_mode & 0o777 == 0o664
    assert next(out.glob("sunset-*.jpg")).stat().st_mode & 0o777 == jpg.stat().st_mode & 0o777
    assert tags["XMP-photoshop:Credit"] == credit and "IPTC:Credit" not in tags  # whole in XMP, not cut in IIM
    # an explicit empty alt text (not the file's old one, not absent) and the decorative flag, as in the sidecar;
    # no extended description for an image that carries no information
    assert deco_tags["XMP-iptcCore:AltTextAccessibility"] == ""
    assert deco_tags["XMP-assetstream:Decorative"] is True and tags["XMP-assetstream:Decorative"] is False
    assert "XMP-iptcCore:ExtDescrAccessibility" not in deco_tags
    assert tags["XMP-iptcCore:AltTextAccessibility"] == edited  # the editor's value, as in the index
    assert tags["XMP-photoshop:Headline"] == "Jane's headline"  # accepted, not typed: the file's own stays
    assert tags["XMP-dc:Description"] == "Paris"  # the original had none
    # the log says why the headline was left alone (it said "changed in the target after our last write")
    left = [r.getMessage() for r in caplog.records if "left alone" in r.getMessage()]
    assert "writeback files: sunset field 'XMP-photoshop:Headline,IPTC:Headline' already holds a value we never " \
        "wrote (protect_unknown: a person's, or the file's own); left alone" in left, left
    assert not [m for m in left if "after our last write" in m]
