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
METADATA_WHY = ("metadata skipped: an XMP/text chunk inflates past 1 MiB; not read: XMP (any creator, credit "
                "or rights the file states are unknown)")


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
    metadata = review_record(settings, "logo-metadata", minutes=4, sample="logo_badge_alpha.png", title="Badge",
                             alt_text="A round badge", tags=[("content", "logo")],
                             reasons=["degraded: " + METADATA_WHY, RIGHTS])
    metadata["enriched"]["pre"]["degraded"] = {"metadata": METADATA_WHY}
    provision(settings)
    client = make_client(settings)
    try:
        assert IndexSink(settings, client=client).process_batch(as_items([ocr, faces, whole, metadata])) == [None] * 4
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
    assert queue_ids(page) == ["poster-ocr", "mug-faces", "paris-ok", "logo-metadata"]
    row = page.locator("table.queue tr", has=page.locator(".id", has_text="poster-ocr"))
    badge = row.locator(".badge.degraded")
    assert badge.text_content() == "degraded: ocr" and badge.get_attribute("title") == f"ocr: {OCR_WHY}"
    assert page.locator("table.queue tr", has=page.locator(".id", has_text="paris-ok")).locator(
        ".badge.degraded").count() == 0  # a complete asset has none

    # the shortcut: every degraded asset, counted
    link = page.locator("nav.reasons a.degraded")
    assert link.locator("b").text_content() == "3"
    link.click()
    page.wait_for_url(re.compile("degraded=any"))
    assert queue_ids(page) == ["poster-ocr", "mug-faces", "logo-metadata"]

    # the filter menu: one part, with counts per part
    options = [o.text_content().strip() for o in page.locator("select[name=degraded] option").all()]
    assert options == ["any or none", "marked degraded (3)", "faces (1)", "metadata (1)", "ocr (1)"]
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
    assert page.locator("p.hint.metadata").count() == 0

    # pixels15: a PNG whose metadata was too large to read: the page says its credit and rights are unknown, and
    # does not suggest a redo (the file is what it is)
    page.goto(f"{server.url}/asset/logo-metadata")
    item = page.locator("ul.degraded-list li")
    assert item.count() == 1 and item.text_content().split() == ["metadata", *METADATA_WHY.split()]
    assert "credit, rights" in page.locator("p.hint.metadata").text_content()
    assert page.locator("p.hint", has_text="Redo the asset").count() == 0
    assert "degraded: " + METADATA_WHY in page.locator("ul.reasons-list").text_content()

    # a value that is no part name is ignored (the whole queue), never echoed as markup
    page.goto(f"{server.url}/?degraded=<script>")
    assert queue_ids(page) == ["poster-ocr", "mug-faces", "paris-ok", "logo-metadata"]
