"""Enriching a video: the offline provider tags it from every keyframe (frequency x confidence) and describes
its poster frame, with its real models on the bundled sample photos as keyframes."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from consumers.enrich.providers.local import LocalProvider
from tests.test_local_provider import _ask, _pre

SAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "samples"


def keyframe(name: str, crop: int = 0, folder=SAMPLES) -> bytes:
    """A sample photo (or one from `folder`) as preprocess keeps a keyframe: a small JPEG (crop: a slightly
    different frame)."""
    img = Image.open(folder / name).convert("RGB")
    img.thumbnail((256, 256))
    img = img.crop((crop, 0, img.width, img.height))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    return buf.getvalue()


@pytest.fixture(scope="module")
def provider():
    return LocalProvider()


def scores(answer) -> dict[str, float]:
    return {t["tag"]: t["score"] for t in answer.data["tags"]}


def test_video_tags_aggregate_keyframes_by_frequency_and_confidence(provider):
    sunset, mug, mug_later = keyframe("photo_paris_sunset.jpg"), keyframe("product_red_mug.jpg"), \
        keyframe("product_red_mug.jpg", crop=12)
    alone_sunset = scores(_ask(provider, "tagging", sunset, _pre()))
    alone_mug = scores(_ask(provider, "tagging", mug, _pre()))
    # a video whose poster is the sunset, and which shows the mug in two of its three keyframes
    video = _pre(video={"keyframes": [{"offset_s": t, "thumbnail": k}
                                      for t, k in ((0.0, sunset), (2.0, mug), (4.0, mug_later))]})
    answer = _ask(provider, "tagging", sunset, video)
    assert answer.stop_reason == "stop"
    got = scores(answer)
    # the mug, never in the poster, is found; seen in 2 of 3 keyframes it outranks the building seen in 1
    assert "product:cup" in got and "product:cup" not in alone_sunset
    assert got["product:cup"] > got["subject:building"]
    assert got["product:cup"] == pytest.approx(alone_mug["product:cup"] * 2 / 3, abs=0.06)
    assert got["subject:building"] == pytest.approx(alone_sunset["subject:building"] / 3, abs=0.06)


def test_video_alt_text_describes_the_poster_frame(provider):
    mug = keyframe("product_red_mug.jpg")
    video = _pre(video={"keyframes": [{"offset_s": 0.0, "thumbnail": mug},
                                      {"offset_s": 3.0, "thumbnail": keyframe("photo_paris_sunset.jpg")}]})
    alt = _ask(provider, "alt_text", mug, video).data["alt_text"].lower()
    assert "cup" in alt or "mug" in alt


def test_a_video_of_two_plain_shots_is_not_decorative_and_is_described_by_both(provider):
    """Trial 35 F7: a video of a blue shot, then an orange one, was "Decorative background" with no alt text
    (published so with "Approve all"), tagged with the poster's blue only. A video carries information: its alt
    text describes it, and the colours of every keyframe are its colours."""
    from tests.preprocess_support import event, stage as preprocess_stage
    from tests.test_local_provider import _ask_pre
    from tests.video_support import LONG_GOP_FAST, SHOP, Scene, make_video

    data = make_video((Scene(1.0, "", (90, 160, 200)), Scene(1.0, "", (230, 120, 30))), fps=5)
    pre = preprocess_stage().preprocess_bytes(event("file:///sky.mp4", asset_id="sky"), data)
    assert [k["reason"] for k in pre["video"]["keyframes"]] == ["first", "scene"]
    colours = [c["name"] for c in pre["signals"]["colors"]]
    assert colours == ["sky blue", "orange"] or colours == ["orange", "sky blue"], colours
    alt = _ask_pre(provider, "alt_text", pre).data
    assert alt["decorative"] is False and "decorative" not in f"{alt['title']} {alt['caption']}".lower()
    assert "blue" in alt["alt_text"] and "orange" in alt["alt_text"], alt
    tags = [t["tag"] for t in _ask_pre(provider, "tagging", pre).data["tags"]]
    assert {"color:blue", "color:orange"} <= set(tags), tags
    # three shots of one length: their colours in the order the video shows them, the poster's (red) first
    shop = preprocess_stage().preprocess_bytes(event("file:///shop.mp4", asset_id="shop"),
                                               make_video(SHOP, gop=10_000, options=LONG_GOP_FAST))
    assert [c["name"] for c in shop["signals"]["colors"]] == ["red", "green", "blue"]
    assert _ask_pre(provider, "alt_text", shop).data["alt_text"].startswith("A sign in red and green with the text")


def test_keyframes_sent_are_capped_spread_and_change_the_cached_answer_key():
    from consumers.enrich.calling import ModelSpec
    from consumers.enrich.results import result_key
    from consumers.enrich.stage import video_keyframes
    from tests.test_enrich_providers import prompt

    frames = [{"offset_s": float(t), "thumbnail": bytes([t])} for t in range(10)]
    pre = {"video": {"poster_offset_s": 0.0, "keyframes": frames}}
    sent = video_keyframes(pre, 4)
    assert [label for label, _ in sent] == ["Keyframe at 1.0 s", "Keyframe at 4.0 s", "Keyframe at 6.0 s",
                                            "Keyframe at 9.0 s"]  # the poster is not sent twice
    assert video_keyframes({"video": None}, 4) == []
    pr, spec = prompt("tagging"), ModelSpec("claude", "claude-haiku-4-5")
    assert result_key("tagging", spec, pr, b"poster") != result_key("tagging", spec, pr, b"poster", sent)
    assert result_key("tagging", spec, pr, b"poster", sent[:2]) != result_key("tagging", spec, pr, b"poster", sent)


def test_the_same_clip_re_encoded_reuses_the_enrichment_of_the_first(tmp_path):
    """The clip as MP4/H.264 640x360 and again as WebM/VP9 480x270 (another file, other bytes): preprocess
    gives both the same poster frame within a few pHash bits and the same keyframe text, so the enrich stage's
    dedupe answers the second from the first without asking the model."""
    import asyncio

    from app.settings import Settings
    from consumers.enrich.stage import EnrichStage
    from streams.avro import roundtrip
    from tests.preprocess_support import event, stage as preprocess_stage
    from tests.test_enrich_stage import ctx
    from tests.video_support import make_video

    pre = preprocess_stage()
    first = roundtrip("PreprocessedAsset", pre.preprocess_bytes(event("file:///clip.mp4", asset_id="clip"),
                                                                make_video()))
    again = roundtrip("PreprocessedAsset", pre.preprocess_bytes(
        event("file:///clip.webm", asset_id="clip-webm"),
        make_video(container="webm", codec="libvpx-vp9", size=(480, 270))))
    assert first["hashes"]["sha256"] != again["hashes"]["sha256"]
    # libvpx-vp9 put one key frame (at 0 s) in the 6 s clip: the scene after the cut is found all the same
    assert [k["ocr_text"] for k in again["video"]["keyframes"]] == ["FRESH BREAD", "OPEN SUNDAY"]
    enrich = EnrichStage(Settings().with_overrides(enrich={"dedupe": "memory"}))

    async def go():
        try:
            return [await enrich.aprocess(v, ctx(v["asset"]["asset_id"])) for v in (first, again)]
        finally:
            await enrich.aclose()
    a, b = asyncio.run(go())
    assert a.value["duplicate_of"] is None
    assert b.value["duplicate_of"] == "clip" and b.value["duplicate_distance"] <= 6
    assert b.value["enrichment"]["tags"] == a.value["enrichment"]["tags"]
    asked = {p["request_id"] for p in a.value["provenance"] if p["task"] != "rights"}  # random per model call
    # (a re-encoded clip answers rights from its own metadata)
    assert asked and asked <= {p["request_id"] for p in b.value["provenance"]}  # the first's answers, reused
