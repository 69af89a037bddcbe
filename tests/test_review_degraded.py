"""Issue 21 in the review app, in a real browser (Playwright driving Debian's chromium) against a real osmem-server
seeded through the real index sink: assets with a degraded part carry a visible badge, the queue filters them (any,
or one part) with counts, and the asset view says which part is incomplete and why."""
from __future__ import annotations

import re
import uuid

import pytest
from playwright import sync_api as playwright_api

from app.review.server import ReviewServer
from consumers.index.sink import IndexSink
from domain.store.client import make_client
from domain.store.management import read_alias
from tests.review_support import LOW, RIGHTS, launch_chromium, review_record, review_settings
from tests.kafka_support import provision
from tests.store_support import as_items

pytestmark = pytest.mark.timeout(300)

OCR_WHY = "ocr timed out"
FACES_WHY = "face detection failed (RuntimeError)"


def seed(settings) -> None:
    ocr = review_record(settings, "poster-ocr", minutes=1, sample="poster_farmers_market.jpg", title="Market poster",
                        alt_text="A green poster", tags=[("content", "text")],
                        reasons=["degraded: " + OCR_WHY, RIGHTS])
    ocr["enriched"]["pre"]["degraded"] = {"ocr": OCR_WHY}
    faces = review_record(settings, "mug-faces", minutes=2, sample="product_red_mug.jpg", title="Red mug",
                          alt_text="A red mug", tags=[("product", "cup")],
                          reasons=["degraded: faces: " + FACES_WHY, LOW])
    faces["enriched"]["pre"]["degraded"] = {"faces": FACES_WHY}
    whole = review_record(settings, "paris-ok", minutes=3, sample="photo_paris_sunset.jpg", title="Paris",
                          alt_text="The Paris skyline at sunset", tags=[("subject", "city")], reasons=[RIGHTS])
    provision(settings)
    client = make_client(settings)
    try:
        assert IndexSink(settings, client=client).process_batch(as_items([ocr, faces, whole])) == [None] * 3
        client.indices.refresh(index=read_alias(settings))
    finally:
        client.close()


@pytest.fixture(scope="module")
def server(broker, store):
    settings = review_settings(broker, store.url, f"rvd{uuid.uuid4().hex[:6]}")
    seed(settings)
    with ReviewServer(settings) as srv:
        yield srv


@pytest.fixture
def page(server):
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        pg = browser.new_context(viewport={"width": 1360, "height": 1000}).new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        browser.close()
        assert not errors, errors


def queue_ids(page) -> list[str]:
    return [a.text_content() for a in page.locator("table.queue .id").all()]


def test_degraded_assets_have_a_badge_a_filter_and_their_reasons(page, server):
    page.goto(server.login_url)
    assert queue_ids(page) == ["poster-ocr", "mug-faces", "paris-ok"]
    row = page.locator("table.queue tr", has=page.locator(".id", has_text="poster-ocr"))
    badge = row.locator(".badge.degraded")
    assert badge.text_content() == "degraded: ocr" and badge.get_attribute("title") == f"ocr: {OCR_WHY}"
    assert page.locator("table.queue tr", has=page.locator(".id", has_text="paris-ok")).locator(
        ".badge.degraded").count() == 0  # a complete asset has none

    # the shortcut: every degraded asset, counted
    link = page.locator("nav.reasons a.degraded")
    assert link.locator("b").text_content() == "2"
    link.click()
    page.wait_for_url(re.compile("degraded=any"))
    assert queue_ids(page) == ["poster-ocr", "mug-faces"]

    # the filter menu: one part, with counts per part
    options = [o.text_content().strip() for o in page.locator("select[name=degraded] option").all()]
    assert options == ["any or none", "marked degraded (2)", "faces (1)", "ocr (1)"]
    page.select_option("select[name=degraded]", "faces")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile("degraded=faces"))
    assert queue_ids(page) == ["mug-faces"]

    # the asset view: which part and why, and how to redo it
    page.locator("table.queue a.open").first.click()
    page.wait_for_url(re.compile("/asset/mug-faces"))
    item = page.locator("ul.degraded-list li")
    assert item.count() == 1 and item.text_content().split() == ["faces", *FACES_WHY.split()]
    assert "--only-stale" in page.locator("p.hint", has_text="Redo the asset").text_content()

    # a value that is no part name is ignored (the whole queue), never echoed as markup
    page.goto(f"{server.url}/?degraded=<script>")
    assert queue_ids(page) == ["poster-ocr", "mug-faces", "paris-ok"]
