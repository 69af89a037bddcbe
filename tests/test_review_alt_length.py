"""Trial 2: a person's over-long alt text was published without a word. In the review app's edit form an edited
alt text over validate.alt_text_hard_max_chars (250) is not sent until the editor ticks "send as written"; one
over validate.alt_text_max_chars (125) is sent with a warning. Never cut. Real parts: Debian's chromium driving
the app, the session's tansu broker (`feedback`), an osmem-server seeded through the real index sink."""
from __future__ import annotations

import re

import httpx
import pytest

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
    assert f"{len(LONG)} characters (> 250): no alt text is published longer" in problems, problems
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
        assert len(feedback(settings)) == before
        r = c.post("/decide/mug-0001", data={"csrf": csrf, "verdict": "save", "value.alt_text": LONG,
                                             "force_alt": "1"}, headers={"Origin": server.url})
        assert "Sent to feedback" in r.text
    assert _mine(settings, "erin")[-1] == LONG
