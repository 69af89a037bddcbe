"""Code review 15b M1: a form sent again gets its first answer even after the review group applied the first decision,
as it does in production (the other review tests run no review group, so the index never changed after a decision and
the same form still made the same decision). Playwright driving Debian's chromium, the real tansu broker, a real
osmem-server; the review group's own stage applies each decision and the real index sink writes it.

Trial 34: two editors on one asset. A decision made on a page drawn before another's is refused (never sent over it)
and the page keeps what the editor typed; a reprocess that changed nothing shown is no conflict."""
from __future__ import annotations

import copy
import html
import re
import threading
from urllib.parse import parse_qs, urlsplit

import httpx

import pytest
from playwright.sync_api import expect

from consumers.index.sink import IndexSink
from consumers.review.stage import ReviewStage
from domain.store.management import read_alias
from tests import review_support, test_review_rights
from tests.review_support import LOW, feedback, review_record
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


# --- trial 34: two editors on one asset ----------------------------------------------------------------------------
def _seed(settings, *ids: str) -> dict[str, dict]:
    """Assets of the test's own (usage ok: no rights check), in review, written by the real sink."""
    recs = {}
    for n, asset_id in enumerate(ids):
        recs[asset_id] = review_record(settings, asset_id, minutes=40 + n, sample="product_red_mug.jpg",
                                       title=f"Mug {asset_id}", alt_text="A red mug on a table",
                                       tags=[("product", "cup")], reasons=[LOW])
        recs[asset_id]["usage_flag"] = "ok"
    _write(settings, *recs.values())
    return recs


def _write(settings, *records: dict) -> None:
    sink = IndexSink(settings)
    try:
        assert sink.process_batch(as_items(list(records))) == [None] * len(records)
        sink.client.indices.refresh(index=read_alias(settings))
    finally:
        sink.close()


def _drop(settings, *ids: str) -> None:
    """Out of the queue again: the module's other tests count what is in review."""
    sink = IndexSink(settings)
    try:
        for asset_id in ids:
            sink.client.delete(index=read_alias(settings), id=asset_id, refresh=True)
    finally:
        sink.close()


def _indexed(settings, asset_id: str) -> dict:
    sink = IndexSink(settings)
    try:
        return sink.client.get(index=read_alias(settings), id=asset_id)["_source"]
    finally:
        sink.close()


def _form_of(c: httpx.Client, asset_id: str) -> dict[str, str]:
    """The hidden values of an asset page's form as a browser posts them (what the page showed, its tokens)."""
    page = c.get(f"/asset/{asset_id}").text
    return {html.unescape(k): html.unescape(v) for k, v in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}


def test_two_saves_of_one_field_at_the_same_moment_send_one_and_refuse_the_other(fleet):
    """Trial 34 F1: alice and bob saved the alt text of one asset 100 ms apart: both were told "Sent", the index kept
    one text and the other was lost. Checked against the index, neither was applied yet. Now the app checks, sends
    and waits under the asset's lock and counts another editor's decision it sent and the index does not show yet:
    one is sent, the other refused, and its page keeps the text it would have sent."""
    from app.review.server import ReviewServer

    settings, _ = fleet
    _seed(settings, "race-0011")
    before = {d["decision_id"] for d in feedback(settings)}
    editors = {"alice": "alice-pw", "bob": "bob-pw"}
    with ReviewServer(settings.with_overrides(review={"auth": "basic", "users": editors})) as srv:
        clients = [httpx.Client(base_url=srv.url, auth=who) for who in editors.items()]
        try:
            forms = [{**_form_of(c, "race-0011"), "value.alt_text": f"{who.upper()} race alt", "verdict": "save"}
                     for c, who in zip(clients, editors)]
            start, answers = threading.Barrier(2), [None, None]

            def save(i: int) -> None:
                start.wait()
                answers[i] = clients[i].post("/decide/race-0011", data=forms[i])

            threads = [threading.Thread(target=save, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            said = sorted((r.status_code, _said(r)) for r in answers)
            assert [code for code, _ in said] == [303, 307], said  # one sent, one refused (both were "Sent")
            loser = next(i for i, r in enumerate(answers) if r.status_code != 303)
            winner = list(editors)[1 - loser]
            assert said[0] == (303, "alt_text edited"), said
            assert said[1][0] == 307 and re.fullmatch(
                f"nothing was sent: {winner} decided the alt text at \\d\\d:\\d\\d:\\d\\d \\(\\d+ s ago\\) and the review worker has "
                "not applied it yet: reload in a moment, check it and decide again", said[1][1]), said
            # the refused page, as the browser shows it (it posts the form there again): the text it would have sent
            shown = clients[loser].post(answers[loser].headers["location"], data=forms[loser])
            assert re.search(r'id="alt_text"[^>]*>' + forms[loser]["value.alt_text"] + "</textarea>", shown.text)
        finally:
            for c in clients:
                c.close()
    try:
        sent = [d for d in feedback(settings) if d["decision_id"] not in before]
        assert [(d["editor"], d["fields"][0]["value"]) for d in sent] == [(winner, f"{winner.upper()} race alt")]
    finally:
        _drop(settings, "race-0011")


def test_a_refused_save_keeps_the_editors_typing_and_a_stale_verdict_is_refused(browser, server, fleet):
    """Trial 34 F3: bob's save of the alt text alice had just saved was refused (rightly), and the page he was sent
    back to showed the index's values: his alt text and his caption edit were gone. Now both are still in the form,
    the alt text with alice's text beside it, and saving again sends them. F2: alice's page from before bob's
    approval rejected the asset, reversing it; now refused. F4: rejecting the title says it publishes none."""
    settings, _ = fleet
    _seed(settings, "keep-0012")
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    try:
        alice, bob = context.new_page(), context.new_page()
        for tab in (alice, bob):
            tab.on("dialog", lambda d: d.accept())
        alice.goto(server.login_url)
        for tab in (alice, bob):
            tab.goto(f"{server.url}/asset/keep-0012")
        expect(bob.locator("input[name='action.title'][value=rejected]")).to_have_accessible_description(
            "reject: the asset is published with no title; to change it, edit it instead")
        before = {d["decision_id"] for d in feedback(settings)}
        alice.locator("#alt_text").fill("Alice's alt text")
        alice.locator("#save").click()
        alice.wait_for_url(re.compile("sent="))
        apply_decisions(settings, before)

        bob.locator("#alt_text").fill("Bob's alt text")
        bob.locator("#caption").fill("Bob's caption")
        bob.locator("#save").click()
        bob.wait_for_url(re.compile("error="))
        expect(bob.locator(".flash.error")).to_contain_text("alt text changed while you were looking at it")
        expect(bob.locator("#alt_text")).to_have_value("Bob's alt text")
        expect(bob.locator("#caption")).to_have_value("Bob's caption")
        expect(bob.locator("#meanwhile-alt_text")).to_contain_text("now Alice's alt text (edited by erin)")
        before = {d["decision_id"] for d in feedback(settings)}
        bob.locator("#save").click()  # knowingly, over alice's text
        bob.wait_for_url(re.compile("sent="))
        apply_decisions(settings, before)
        doc = _indexed(settings, "keep-0012")
        assert (doc["alt_text"], doc["caption"]) == ("Bob's alt text", "Bob's caption")

        alice.reload()  # shows bob's values; then bob approves from his page
        before = {d["decision_id"] for d in feedback(settings)}
        bob.locator("#approve").click()
        bob.wait_for_url(re.compile("sent="))
        apply_decisions(settings, before)
        alice.locator("#reject").click()
        alice.wait_for_url(re.compile("sent=|error="))
        expect(alice.locator(".flash")).to_have_text(
            "nothing was sent: this asset was approved by erin (you, on another page or tab) while you were looking at "
            "it: check it and decide again")
        assert _indexed(settings, "keep-0012")["status"] == "approved"
        # the page shown with the refusal is of an approved asset now: rejecting its title keeps it approved
        expect(alice.locator("#title-reject-hint")).to_have_text(
            "reject: the asset is published with no title and stays approved; to change it, edit it instead")
    finally:
        context.close()
        _drop(settings, "keep-0012")


def test_approve_selected_leaves_out_a_row_decided_meanwhile_and_says_so(page, server, fleet):
    """Trial 34 F2 (8a): bob ticked gift_on_white, alice rejected it, bob's "Approve selected" approved it. A row
    decided elsewhere since the queue showed it is left out of the approval and named; the others are approved."""
    settings, _ = fleet
    _seed(settings, "tick-0013", "tick-0014")
    try:
        page.goto(server.login_url)
        before = {d["decision_id"] for d in feedback(settings)}
        page.goto(f"{server.url}/asset/tick-0014")  # decided before the queue is drawn: no conflict
        page.locator("#caption").fill("A caption saved before the queue was drawn")
        page.locator("#save").click()
        page.wait_for_url(re.compile("sent="))
        apply_decisions(settings, before)
        page.goto(f"{server.url}/?status=needs_review")
        for asset_id in ("tick-0013", "tick-0014"):
            page.get_by_role("checkbox", name=f"select {asset_id}").check()
        other = page.context.new_page()
        before = {d["decision_id"] for d in feedback(settings)}
        other.on("dialog", lambda d: d.accept())
        other.goto(f"{server.url}/asset/tick-0013")
        other.locator("#reject").click()
        other.wait_for_url(re.compile("sent="))
        apply_decisions(settings, before)
        before = {d["decision_id"] for d in feedback(settings)}
        page.get_by_role("button", name="Approve selected").click()
        page.wait_for_url(re.compile("sent=|error="))
        expect(page.locator(".flash")).to_contain_text(
            "1 asset approved — tick-0014; not approved: tick-0013 (rejected by erin (you, on another page or tab)) "
            "was decided meanwhile: left out")
        assert [(d["asset_id"], d["status"]) for d in feedback(settings) if d["decision_id"] not in before] == [
            ("tick-0014", "approved")]
    finally:
        _drop(settings, "tick-0013", "tick-0014")


def test_a_reprocess_refuses_only_a_decision_on_what_it_changed(page, server, fleet):
    """Trial 34 F3 (s10): a reprocess of the same bytes and values refused every open page's decision ("the asset
    changed while you were looking at it") and emptied the caption typed. Now a new version that changed nothing
    the page shows is no conflict; one that changed the title refuses an edit of the title, keeping it typed."""
    settings, _ = fleet
    rec = _seed(settings, "again-0015")["again-0015"]
    try:
        page.goto(server.login_url)
        page.goto(f"{server.url}/asset/again-0015")
        again = copy.deepcopy(rec)
        again["enriched"]["pre"]["asset"]["version"] = 2  # reprocessed: the same image, the same answers
        _write(settings, again)
        page.locator("#caption").fill("A caption typed during a reprocess")
        page.locator("#save").click()
        page.wait_for_url(re.compile("sent=|error="))
        expect(page.locator(".flash")).to_contain_text("Sent to feedback: caption edited")

        retitled = copy.deepcopy(again)
        retitled["enriched"]["pre"]["asset"]["version"] = 3
        retitled["title"] = retitled["enriched"]["enrichment"]["title"] = "Mug, as the new prompt titles it"
        _write(settings, retitled)
        page.locator("#title").fill("Mug retitled by a person")
        page.locator("#save").click()
        page.wait_for_url(re.compile("sent=|error="))
        expect(page.locator(".flash")).to_have_text(
            "nothing was sent: title changed while you were looking at it (the asset was processed again "
            "meanwhile): check the values and decide again")
        expect(page.locator("#title")).to_have_value("Mug retitled by a person")
        expect(page.locator("#meanwhile-title")).to_contain_text("now Mug, as the new prompt titles it")
    finally:
        _drop(settings, "again-0015")
