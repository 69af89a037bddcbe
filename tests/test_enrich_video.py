"""Enriching a video: the offline provider tags it from every keyframe (frequency x confidence) and describes
its poster frame, with its real models on the bundled sample photos as keyframes."""
from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

from consumers.enrich.providers.local import LocalProvider
from tests.test_enrich_providers import claude_server, gemini_server  # noqa: F401 - the recording servers
from tests.test_local_provider import _ask, _pre

SAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "samples"


def keyframe(name: str, crop: int = 0) -> bytes:
    """A sample photo as preprocess keeps a keyframe: a small JPEG (crop: a slightly different frame)."""
    img = Image.open(SAMPLES / name).convert("RGB")
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


# --- cloud providers: one call with every keyframe, against recorded answers at the HTTP layer ---------------

def _keyframe_call(provider, spec, pr, s, poster: bytes, extra: list[tuple[str, bytes]]):
    from tests.test_enrich_providers import caller

    c = caller(s, provider)

    async def go():
        try:
            return await c.run(spec, pr, image=poster, media_type="image/jpeg", context={}, extra_images=extra)
        finally:
            await provider.aclose()
    return asyncio.run(go())


def _video_frames():
    poster, cut = keyframe("product_red_mug.jpg"), keyframe("photo_paris_sunset.jpg")
    return poster, [("Keyframe at 3.0 s", cut)]


def test_claude_gets_the_poster_and_keyframes_in_one_call(claude_server):
    from consumers.enrich.calling import ModelSpec
    from tests.test_enrich_providers import claude, prompt, rec, settings

    claude_server.script("record_tags", rec("claude/tagging_ok.json"))
    poster, extra = _video_frames()
    pr = prompt("tagging")
    res = _keyframe_call(claude(claude_server), ModelSpec("claude", "claude-haiku-4-5"), pr, settings(), poster, extra)
    assert res.data["tags"][0]["tag"] == "product:sneaker"  # the recorded answer, validated as usual
    (seen,) = claude_server.requests  # one request for the whole video
    content = seen.body["messages"][0]["content"]
    assert [b["type"] for b in content] == ["text", "image", "text", "image", "text"]
    assert content[0]["text"] == "Poster frame of the video:" and content[2]["text"] == "Keyframe at 3.0 s:"
    assert base64.b64decode(content[1]["source"]["data"]) == poster
    assert base64.b64decode(content[3]["source"]["data"]) == extra[0][1]
    assert content[4] == {"type": "text", "text": pr.user_text}


def test_gemini_gets_the_poster_and_keyframes_in_one_call(gemini_server):
    from consumers.enrich.calling import ModelSpec
    from tests.test_enrich_providers import gemini, prompt, rec, settings

    gemini_server.script("alt_text output", rec("gemini/alt_text_ok.json"))
    poster, extra = _video_frames()
    pr = prompt("alt_text", provider="gemini", model="gemini-2.5-flash")
    res = _keyframe_call(gemini(gemini_server), ModelSpec("gemini", "gemini-2.5-flash"), pr,
                         settings(provider="gemini"), poster, extra)
    assert res.data["visible_text"] == "RUNFAST 2"
    (seen,) = gemini_server.requests
    parts = seen.body["contents"][0]["parts"]
    assert [p.get("text") for p in parts] == ["Poster frame of the video:", None, "Keyframe at 3.0 s:", None,
                                              pr.user_text]
    assert base64.urlsafe_b64decode(parts[1]["inlineData"]["data"]) == poster
    assert base64.urlsafe_b64decode(parts[3]["inlineData"]["data"]) == extra[0][1]


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
