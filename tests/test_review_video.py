"""The review app shows a video as an editor needs it (issue 20): its poster, its duration, and its keyframes in time
order, each with its time offset, its picture and the text read in it. A video the test makes (PyAV, two scenes
with known text, the cut at 3 s) goes through the real preprocess stage, then through the real index sink into a
real osmem-server; Playwright drives Debian's chromium against the real review server."""
from __future__ import annotations

import copy
import io
import re
import uuid

import httpx
import pytest
from PIL import Image
from playwright import sync_api as playwright_api
from playwright.sync_api import expect

from app.review.server import ReviewServer
from consumers.index.sink import IndexSink
from domain.store.client import make_client
from domain.store.management import read_alias
from streams.avro import roundtrip, validate
from tests.kafka_support import provision
from tests.preprocess_support import event, stage as preprocess_stage
from tests.review_support import LOW, feedback, launch_chromium, review_record, review_settings
from tests.store_support import as_items
from tests.video_support import make_video

pytestmark = pytest.mark.timeout(300)
PRE_FROM_VIDEO = ("media_type", "video", "thumbnail", "image", "hashes", "ocr")


@pytest.fixture(scope="module")
def clip():
    """The preprocessed video: 6 s, "FRESH BREAD" then "OPEN SUNDAY" from 3 s."""
    return roundtrip("PreprocessedAsset", preprocess_stage().preprocess_bytes(
        event("file:///bakery.mp4", asset_id="clip-0001"), make_video()))


def many_frames(fmt: str, n: int) -> bytes:
    """An animated GIF or a multi-page TIFF of `n` different frames."""
    frames = [Image.new("RGB", (120, 90), (20 * i % 256, 90, 160)) for i in range(n)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:])
    return out.getvalue()


@pytest.fixture(scope="module")
def server(broker, store, clip):  # noqa: F811
    settings = review_settings(broker, store.url, f"rvv{uuid.uuid4().hex[:6]}")
    provision(settings)
    v = review_record(settings, "clip-0001", minutes=1, sample="product_red_mug.jpg", title="Bakery clip",
                      alt_text="A bakery sign that reads fresh bread, then open sunday",
                      tags=[("content", "text")], reasons=[LOW], visible_text="FRESH BREAD OPEN SUNDAY")
    v["enriched"]["pre"].update({k: clip[k] for k in PRE_FROM_VIDEO})
    validate("ValidatedAsset", v)
    # pixels15: an animated GIF and a multi-page TIFF, through the real preprocess stage (only their first frame
    # or page is looked at: the page says how many there are)
    st = preprocess_stage(ocr_enabled=False, faces_enabled=False, nsfw_enabled=False)
    more = []
    # code review 15 L3: a GIF whose count stops at the step budget (a frame cut into a million one-byte
    # sub-blocks after 5 frames, 500 more after it) said "animated, 6 frames"
    head = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00" + b"\x02\x02\x44\x01\x00"
    cut = head + frame * 5 + frame[:11] + b"\x01\x44" * 1_000_000 + b"\x00" + frame * 500 + b"\x3b"
    for asset_id, data in (("anim-0002", many_frames("GIF", 12)), ("scan-0003", many_frames("TIFF", 3)),
                           ("anim-0004", cut)):
        pre = roundtrip("PreprocessedAsset", st.preprocess_bytes(event(None, asset_id=asset_id), data))
        r = review_record(settings, asset_id, minutes=2, sample="product_red_mug.jpg", title=asset_id,
                          alt_text="Blue frames", tags=[("content", "graphic")], reasons=[LOW])
        r["enriched"]["pre"].update({k: pre[k] for k in ("image", "thumbnail", "hashes")})
        validate("ValidatedAsset", r)
        more.append(r)
    # a video with more scene changes than keyframes (trial 35 F6: what was not looked at is said)
    shots = review_record(settings, "shots-0005", minutes=2, sample="product_red_mug.jpg", title="Many shots",
                          alt_text="A bakery sign", tags=[("content", "text")], reasons=[LOW])
    shots["enriched"]["pre"].update({k: copy.deepcopy(clip[k]) for k in PRE_FROM_VIDEO})
    shots["enriched"]["pre"]["video"]["truncated_by"] = "max_keyframes"
    validate("ValidatedAsset", shots)
    more.append(shots)
    client = make_client(settings)
    try:
        assert IndexSink(settings, client=client).process_batch(as_items([v, *more])) == [None] * 5
        client.indices.refresh(index=read_alias(settings))
    finally:
        client.close()
    with ReviewServer(settings) as srv:
        yield srv


def test_an_editor_sees_the_video_poster_duration_and_keyframes_with_times_and_text(server, clip):
    frames = clip["video"]["keyframes"]
    assert len(frames) >= 2 and any(k["offset_s"] == pytest.approx(3.0, abs=0.15) for k in frames)
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1360, "height": 1000}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.login_url)
            page.goto(f"{server.url}/asset/clip-0001")
            assert page.locator("#video-duration").inner_text() == "0:06.0"
            poster = clip["video"]["poster_offset_s"]
            assert f"video · poster frame at {poster:.1f} s" in page.locator("figure.preview figcaption").inner_text()
            items = page.locator("ol.keyframes li.keyframe")
            assert items.count() == len(frames)
            times = [items.nth(i).locator(".at").inner_text().split(" · ")[0] for i in range(items.count())]
            assert times == [f"0:{k['offset_s']:04.1f}" for k in frames]  # in time order, as a player shows them
            assert page.locator("li.keyframe.poster").count() == 1
            for i, k in enumerate(frames):  # each keyframe's own picture and the text read in it
                img = items.nth(i).locator("img")
                img.scroll_into_view_if_needed()
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
                assert k["ocr_text"] and items.nth(i).locator(".ocr").inner_text() == k["ocr_text"]
            after_cut = [i for i, k in enumerate(frames) if k["offset_s"] >= 2.95]
            before_cut = [i for i, k in enumerate(frames) if k["offset_s"] < 2.95]
            assert all("SUNDAY" in items.nth(i).inner_text().upper() for i in after_cut)
            assert all("BREAD" in items.nth(i).inner_text().upper() for i in before_cut)
            # the keyframe pictures differ (the blue scene after the cut is another picture)
            first = page.request.get(f"{server.url}/thumb/clip-0001?k={before_cut[0]}")
            second = page.request.get(f"{server.url}/thumb/clip-0001?k={after_cut[0]}")
            assert first.ok and second.ok and first.headers["content-type"] == "image/jpeg"
            assert first.body() != second.body()
            assert page.request.get(f"{server.url}/thumb/clip-0001?k={len(frames)}").status == 404
            assert not errors, errors
        finally:
            browser.close()


def test_keyframe_pictures_need_sign_in(server):
    assert httpx.get(f"{server.url}/thumb/clip-0001?k=0").status_code == 401


def test_a_one_frame_video_shows_its_length_not_zero():
    """Trial 14: a 1-frame video (0.04 s, JSON-LD PT0.04S) showed duration 0:00.0 on its page."""
    from app.review.web import video_length

    assert (video_length(0.04), video_length(6.0), video_length(3725.0), video_length(None)) == (
        "0.04 s", "0:06.0", "1:02:05.0", "–")


def test_an_animated_gif_and_a_multi_page_tiff_say_how_many_frames_and_pages_they_have(server):
    """pixels15: only the first frame of an animated GIF/WebP/APNG or page of a TIFF is read, and nothing said the
    file had more. The asset page's caption says it now, next to the size and format, and that only the first was
    looked at, in its text (trial 28 m8: a tooltip only, which keyboard, touch and screen-reader users never get)."""
    auth = {"Authorization": f"Bearer {server.app.auth.token}"}
    for asset_id, said in (
            ("anim-0002", "120×90 GIF · animated, 12 frames (only the first frame was looked at: thumbnail, text, tags) ·"),
            ("scan-0003", "120×90 TIFF · 3 pages (only the first page was looked at: thumbnail, text, tags) ·"),
            ("anim-0004", "1×1 GIF · animated, at least 6 frames (only the first frame was looked at: thumbnail, text, "
                          "tags) ·")):
        page = httpx.get(f"{server.url}/asset/{asset_id}", headers=auth)
        assert page.status_code == 200
        caption = re.sub(r"<[^>]+>", "", re.search(r"<figcaption>(.*?)</figcaption>", page.text, re.S).group(1))
        assert said in " ".join(caption.split()), caption
    page = httpx.get(f"{server.url}/asset/clip-0001", headers=auth)
    assert 'class="frames"' not in page.text  # a video: its own keyframes
    assert "not looked at" not in re.sub(r"<[^>]+>", "", page.text)  # every shot of it has a keyframe
    shots = " ".join(re.sub(r"<[^>]+>", " ", httpx.get(f"{server.url}/asset/shots-0005", headers=auth).text).split())
    assert "more scene changes than keyframes (max keyframes): some shots of the video were not looked at" in shots
    assert "selection stopped early" not in shots


def test_a_video_cannot_be_marked_decorative(server):
    """Trial 36 N3: an editor marked a video decorative (empty alt text) with no warning and it was sent; a video is
    never decorative in the model and validate, and a video with no text alternative fails WCAG 1.1.1. Its page
    offers no *decorative* choice and says so when the alt text is cleared; sending an empty alt text (cleared, or
    a form that still chooses *decorative*: a page drawn before, a script) is refused, nothing sent, the form kept."""
    before = {d["decision_id"] for d in feedback(server.settings)}
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1360, "height": 1000}).new_page()
            page.on("dialog", lambda d: d.accept())
            page.goto(server.login_url)
            page.goto(f"{server.url}/asset/clip-0001")
            assert page.locator("input[name='action.alt_text'][value=decorative]").count() == 0
            page.locator("#alt_text").fill("")
            expect(page.locator("#alt-problems")).to_contain_text("a video is never decorative, so it cannot be sent "
                                                                  "empty")
            page.locator("#save").click()
            page.wait_for_url(re.compile("sent=|error="))
            expect(page.locator(".flash")).to_have_text(
                "nothing was sent: a video is never decorative: an empty alt text would publish it with no text "
                "alternative, which screen readers skip (WCAG 1.1.1). Say what the video shows, or reject the alt "
                "text to keep it in review")
            form = page.evaluate("""() => { const b = document.querySelector('#save');
                return Object.fromEntries(Array.from(new FormData(b.form, b).entries())); }""")
            form.update({"action.alt_text": "decorative", "value.alt_text": form["shown.alt_text"]})
            answer = page.request.post(f"{server.url}/decide/clip-0001", form=form, max_redirects=0)
            assert answer.status == 307 and "a+video+is+never+decorative" in answer.headers["location"]
        finally:
            browser.close()
    assert [d for d in feedback(server.settings) if d["decision_id"] not in before] == []
