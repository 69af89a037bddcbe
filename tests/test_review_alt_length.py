"""Trial 2: a person's over-long alt text was published without a word. In the review app's edit form an edited
alt text over validate.alt_text_hard_max_chars (250) is not sent until the editor ticks "send as written"; one
over validate.alt_text_max_chars (125) is sent with a warning. Never cut. Trial 11: no alt text at all — a
rejected one keeps a non-decorative image in review, and the app says so when the editor chooses reject. Real parts: Debian's chromium driving
the app, the session's tansu broker (`feedback`), an osmem-server seeded through the real index sink."""
from __future__ import annotations

import html
import re

import httpx
import pytest
from playwright.sync_api import expect

from domain.review import apply_review, merge_decision
from tests import review_support
from tests.review_support import feedback

pytestmark = pytest.mark.timeout(300)
browser, page = review_support.browser, review_support.page  # the shared Playwright fixtures
fleet, server = review_support.fleet, review_support.server  # the seeded records and the app over them

LONG = ("A red enamel mug with a white handle on a white kitchen table next to a folded blue tea towel, a small "
        "plate of biscuits and a silver spoon, morning light from a window on the left, steam rising from the "
        "coffee in the mug and a blurred bookshelf in the background")
MEDIUM = LONG[:140].rstrip()




def _mine(settings, editor: str = "erin") -> list[str]:
    return [f["value"] for d in feedback(settings) if d["asset_id"] == "mug-0001" and d["editor"] == editor
            for f in d["fields"] if f["field"] == "alt_text"]


def test_an_over_long_alt_text_waits_for_send_as_written(page, server, fleet):
    settings = fleet[0]
    assert len(LONG) > 250
    page.goto(server.login_url)
    page.goto(server.url + "/asset/mug-0001")
    assert page.locator("#force-alt-label").is_hidden()
    page.fill("#alt_text", LONG)
    problems = " ".join(page.locator("#alt-problems").inner_text().split())
    assert f"{len(LONG)} characters (> 250): no model or file alt text is published longer" in problems, problems
    assert "\"send as written\" to publish it as written" in problems, problems
    assert page.locator("#force-alt-label").is_visible()
    page.click("button[value=save]")
    assert page.url.endswith("/asset/mug-0001")  # not submitted: the text stays in the form, as written
    assert page.input_value("#alt_text") == LONG and page.evaluate("document.activeElement.id") == "force-alt"
    assert _mine(settings) == []
    page.check("#force-alt")
    page.click("button[value=save]")
    page.wait_for_url(re.compile(r"sent="))
    flash = " ".join(page.locator(".flash").inner_text().split())
    assert "alt_text edited" in flash and f"warning: alt_text is {len(LONG)} characters" in flash, flash
    assert _mine(settings) == [LONG]  # never truncated


def test_a_long_alt_text_is_sent_with_a_warning(page, server, fleet):
    page.goto(server.login_url)
    page.goto(server.url + "/asset/mug-0001")
    page.fill("#alt_text", MEDIUM)
    assert page.locator("#force-alt-label").is_hidden()
    assert f"{len(MEDIUM)} characters (> 125)" in page.locator("#alt-problems").inner_text()
    page.click("button[value=save]")
    page.wait_for_url(re.compile(r"sent="))
    flash = " ".join(page.locator(".flash").inner_text().split())
    assert f"warning: alt_text is {len(MEDIUM)} characters, over the 125" in flash, flash
    assert MEDIUM in _mine(fleet[0])


def test_without_the_browser_rules_the_app_refuses_it_and_sends_nothing(server, fleet):
    """The form's script is not what protects the text: a POST without `force_alt` is refused by the app."""
    settings = fleet[0]
    with httpx.Client(base_url=server.url, follow_redirects=True) as c:
        c.get(server.login_url)
        csrf = c.get("/asset/mug-0001").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        before = len(feedback(settings))
        r = c.post("/decide/mug-0001", data={"csrf": csrf, "verdict": "save", "value.alt_text": LONG},
                   headers={"Origin": server.url})
        text = " ".join(r.text.split())
        assert "nothing was sent: alt_text is" in text and "never cut for you" in text, text
        # trial 20 (B14): the title starts with the outcome and the error is tied to the field it is about
        assert "<title>Error: nothing was sent · " in r.text
        assert re.search(r'<textarea [^>]*id="alt_text"[^>]*aria-describedby="alt-counter alt-problems outcome"'
                         r'[^>]*aria-invalid="true"', r.text)
        assert r.text.count('aria-invalid="true"') == 1  # that field only
        assert len(feedback(settings)) == before
        r = c.post("/decide/mug-0001", data={"csrf": csrf, "verdict": "save", "value.alt_text": LONG,
                                             "force_alt": "1"}, headers={"Origin": server.url})
        assert "Sent to feedback" in r.text
    assert _mine(settings, "erin")[-1] == LONG


def test_rejecting_the_alt_text_of_a_non_decorative_image_warns_and_keeps_it_in_review(page, server, fleet):
    """Trial 11, finding 5: "reject" then "Approve all" published gravel as approved with neither alt text nor
    decorative, without a hint. Reject now warns at once and on sending, and the review group's apply_review
    keeps the asset in review; *decorative* (like a cleared text) publishes it decorative."""
    settings, records = fleet
    record = next(r for r in records if r["enriched"]["pre"]["asset"]["asset_id"] == "paris-0003")
    problems = lambda: " ".join(page.locator("#alt-problems").inner_text().split())  # noqa: E731
    page.goto(server.login_url)
    page.goto(server.url + "/asset/paris-0003")
    page.fill("#alt_text", "")
    assert "the image will be published as decorative" in problems(), problems()  # a cleared text
    page.check("input[name='action.alt_text'][value=rejected]")
    assert "rejecting leaves no alt text, and the image is not decorative: it stays in review" in problems()
    page.click("#approve")
    page.wait_for_url(re.compile(r"sent="))
    flash = " ".join(page.locator(".flash").inner_text().split())
    assert "paris-0003 (Paris at sunset): approved (warning: alt_text rejected and none written, and the image is not decorative: " \
           "it stays in review until you write one, or mark the image decorative)" in flash, flash

    page.goto(server.url + "/asset/paris-0003")
    page.check("input[name='action.alt_text'][value=decorative]")
    assert problems().startswith("decorative: published with no alt text"), problems()
    page.click("#approve")
    page.wait_for_url(re.compile(r"sent="))
    rejected, decorative = [d for d in feedback(settings) if d["asset_id"] == "paris-0003"]
    assert [f for f in decorative["fields"] if f["field"] == "alt_text"] == \
        [{"field": "alt_text", "action": "edited", "value": ""}]

    # the review group's rule, on the decisions as sent: never approved without alt text nor decorative
    review = merge_decision(None, rejected, record)
    out = apply_review(record, review)
    assert (out["status"], out["alt_text"], out["decorative"]) == ("needs_review", None, False)
    assert out["reasons"][0] == ("no alt text for a non-decorative image after erin's review: write one, or mark "
                                 "the image decorative (an empty alt text)")
    out = apply_review(record, merge_decision(review, decorative, out))
    assert (out["status"], out["alt_text"], out["decorative"]) == ("approved", "", True)


def test_a_file_name_typed_as_alt_text_waits_for_send_as_written(page, server, fleet):
    """Trial 20b (W1): a file name is never an alt text: typed in the app it is refused like an over-long one, in
    the browser and by the app itself, until the editor ticks "send as written"."""
    settings = fleet[0]
    page.goto(server.login_url)
    page.goto(server.url + "/asset/mug-0001")
    csrf = page.locator("input[name=csrf]").first.input_value()
    r = page.request.post(server.url + "/decide/mug-0001", headers={"Origin": server.url},
                          form={"csrf": csrf, "verdict": "save", "value.alt_text": "Image of DSC_0042.JPG"})
    text = html.unescape(" ".join(r.text().split()))
    assert "nothing was sent: the alt text \"Image of DSC_0042.JPG\" is a file name, not a description of the " \
           "image: say what the image shows, or tick \"send as written\"" in text
    page.fill("#alt_text", "IMG_1234.JPG")
    expect(page.locator("#force-alt-label")).to_have_text("send as written, although it is a file name")
    page.click("button[value=save]")
    assert page.url.endswith("/asset/mug-0001") and page.evaluate("document.activeElement.id") == "force-alt"
    assert "IMG_1234.JPG" not in _mine(settings) and "Image of DSC_0042.JPG" not in _mine(settings)
    page.check("#force-alt")
    page.click("button[value=save]")
    page.wait_for_url(re.compile(r"sent="))
    assert _mine(settings)[-1] == "IMG_1234.JPG"
