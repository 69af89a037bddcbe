"""Code review 15b M1: a form sent again gets its first answer even after the review group applied the first decision,
as it does in production (the other review tests run no review group, so the index never changed after a decision and
the same form still made the same decision). Playwright driving Debian's chromium, the real tansu broker, a real
osmem-server; the review group's own stage applies each decision and the real index sink writes it."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from consumers.index.sink import IndexSink
from consumers.review.stage import ReviewStage
from domain.store.management import read_alias
from tests import review_support, test_review_rights
from tests.review_support import feedback
from tests.store_support import as_items
from tests.test_review_rights import USAGE, sent_since

pytestmark = pytest.mark.timeout(300)
browser, page = review_support.browser, review_support.page  # the shared Playwright fixtures
server = review_support.server  # the app over this module's `fleet`
fleet = test_review_rights.fleet  # its five assets (three with rights to check), in an index and topics of our own

FORM = """(sel) => { const b = document.querySelector(sel);
    return Object.fromEntries(Array.from(new FormData(b.form, b).entries())); }"""


def apply_decisions(settings, before: set[str]) -> None:
    """The review group's work: each decision sent since `before` applied to the stored record, written by the sink."""
    group, sink = ReviewStage(settings), IndexSink(settings)
    try:
        for d in feedback(settings):
            if d["decision_id"] not in before:
                assert sink.process_batch(as_items([group.process(d).value])) == [None]
        sink.client.indices.refresh(index=read_alias(settings))
    finally:
        group.close()
        sink.close()


def _said(response) -> str:
    """The outcome banner a redirect carries (sent= or error=)."""
    q = parse_qs(urlsplit(response.headers["location"]).query)
    return (q.get("sent") or q.get("error") or [""])[0]


def test_a_decision_sent_again_after_it_was_applied_gets_its_first_answer(page, server, fleet):
    """An approval with an edited alt text, posted again (a proxy's retry, a browser without the script) after the
    review group applied it: it was refused with "nothing was sent: alt text changed while you were looking at it
    (another tab or editor decided meanwhile)", its own decision taken for another's."""
    settings, _ = fleet
    page.goto(server.login_url)
    before = {d["decision_id"] for d in feedback(settings)}
    page.goto(f"{server.url}/asset/own-0004")
    form = page.evaluate(FORM, "#approve")
    form["value.alt_text"] = "A red ceramic mug with a white handle"
    first = page.request.post(f"{server.url}/decide/own-0004", form=form, max_redirects=0)
    assert first.status == 303 and _said(first).endswith(": approved")
    apply_decisions(settings, before)
    page.goto(f"{server.url}/asset/own-0004")
    expect(page.locator("#alt_text")).to_have_value("A red ceramic mug with a white handle")  # applied
    again = page.request.post(f"{server.url}/decide/own-0004", form=form, max_redirects=0)
    assert again.status == 303 and again.headers["location"] == first.headers["location"]
    assert sent_since(settings, before) == ["own-0004"]


def test_back_to_the_rights_check_after_approving_all_matching_says_already_approved(page, server, fleet):
    """"Approve all N matching" confirmed on the rights check, applied by the review group: Back to the page (and the
    same form again) said "nothing approved: the queue changed since you looked: 0 assets match these filters now",
    not that this page's approval went out."""
    settings, _ = fleet
    page.goto(server.login_url)
    before = {d["decision_id"] for d in feedback(settings)}
    pending = sorted(i for i in USAGE if i != "own-0004")  # the first test approved own-0004
    page.get_by_role("button", name=f"Approve all {len(pending)} matching").click()
    heading = page.locator("h1#outcome")
    expect(heading).to_have_text(re.compile(f"^Nothing approved yet: 3 of the {len(pending)}"))
    form = page.evaluate(FORM, "#rights-approve-all")
    page.get_by_role("button", name=f"Approve all {len(pending)}, including these 3").click()
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, before) == pending
    apply_decisions(settings, before)
    page.reload()
    assert page.locator("table.queue .id").count() == 0  # applied: none left in review

    page.go_back()
    expect(heading).to_have_text(re.compile(rf"^Already approved from this page at \d\d:\d\d by .*: "
                                            rf"{len(pending)} assets approved"))
    assert page.get_by_role("button", name=re.compile("^Approve")).count() == 0
    again = page.request.post(f"{server.url}/bulk-approve", form=form, max_redirects=0)
    assert _said(again).startswith(f"{len(pending)} assets approved")
    assert sent_since(settings, before) == pending
