"""Gemini's native video input (issue 20): with `enrich.gemini_video` a video small enough to ride along in the
record (`preprocess.video_inline_max_bytes`) goes to Gemini as the file itself, inline, with its container's mime
type, instead of its keyframe JPEGs. A video the test makes goes through the real preprocess stage and the real
enrich stage against a local HTTP server answering in Gemini's wire format (tests/recordings/gemini)."""
from __future__ import annotations

import base64

import pytest

from app.settings import Settings
from consumers.enrich.replay import ReplayServer, gemini_route
from consumers.enrich.stage import EnrichStage
from streams.avro import roundtrip, validate
from tests.preprocess_support import event, stage as preprocess_stage
from tests.test_enrich_stage import rec, run_stage
from tests.video_support import make_video

MB = 1024 * 1024


def preprocessed(data: bytes, asset_id: str = "clip", **preprocess) -> dict:
    return roundtrip("PreprocessedAsset", preprocess_stage(**preprocess).preprocess_bytes(
        event(f"file:///{asset_id}", asset_id=asset_id), data))


def enrich(value: dict, **enrich_settings) -> tuple[dict, list]:
    with ReplayServer(route=gemini_route) as g:
        g.script("tagging output", rec("gemini/tagging_video_ok.json"))
        g.script("alt_text output", rec("gemini/alt_text_ok.json"))
        g.script("rights output", rec("gemini/rights_ok.json"))
        s = Settings().with_overrides(enrich={"provider": "gemini", "gemini_api_key": "AIza-video-SECRET",
                                              "gemini_base_url": g.url, "dedupe": "off", "result_cache": "off",
                                              "max_attempts": 1, "prompt_caching": False, **enrich_settings})
        (out,) = run_stage(EnrichStage(s), value)
        return out.value, list(g.requests)


def inline_parts(request) -> list[tuple[str, bytes]]:
    out = []
    for part in request.body["contents"][0]["parts"]:
        if "inlineData" in part:
            d = part["inlineData"]
            out.append((d.get("mimeType") or d.get("mime_type"), base64.urlsafe_b64decode(d["data"])))
    return out


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return make_video()


def test_gemini_gets_the_video_itself_inline_with_its_mime_type(mp4):
    value = preprocessed(mp4, video_inline_max_bytes=MB)
    assert value["video"]["data"] == mp4 and len(mp4) < MB
    out, requests = enrich(value, gemini_video=True)
    assert len(requests) == 3  # tagging, alt text, rights: each with the video
    for r in requests:
        assert inline_parts(r) == [("video/mp4", mp4)]  # the file, not the keyframe JPEGs
        parts = r.body["contents"][0]["parts"]
        assert parts[0]["text"] == "The video:" and "FRESH BREAD" in parts[-1]["text"]  # keyframe text as context
        assert "AIza-video-SECRET" not in str(r.body)
    validate("EnrichedAsset", out)
    assert out["pre"]["video"]["data"] is None  # the file goes no further than the model call
    assert {t["tag"] for t in out["enrichment"]["tags"]} >= {"content:text"}
    tagging = next(p for p in out["provenance"] if p["task"] == "tagging")
    assert tagging["input_tokens"] == 3724  # the video's tokens, as Gemini counted them


def test_without_the_setting_or_beyond_its_size_the_keyframes_are_sent(mp4):
    value = preprocessed(mp4, video_inline_max_bytes=MB)
    keyframes = [k["thumbnail"] for k in value["video"]["keyframes"]]
    for settings in ({}, {"gemini_video": True, "gemini_video_max_bytes": len(mp4) - 1}):
        out, requests = enrich(value, **settings)
        sent = inline_parts(requests[0])
        assert sent and all(mime == "image/jpeg" for mime, _ in sent)
        assert {data for _, data in sent[1:]} <= set(keyframes)
        assert out["pre"]["video"]["data"] is None


def test_a_video_not_carried_in_the_record_or_in_matroska_goes_as_keyframes(mp4):
    assert preprocessed(mp4)["video"]["data"] is None  # preprocess.video_inline_max_bytes = 0 by default
    mkv = make_video(container="matroska")
    value = preprocessed(mkv, "clip-mkv", video_inline_max_bytes=MB)
    assert value["video"]["container"] == "MKV" and value["video"]["data"] == mkv  # Gemini takes no Matroska
    _, requests = enrich(value, gemini_video=True)
    assert all(mime == "image/jpeg" for mime, _ in inline_parts(requests[0]))
