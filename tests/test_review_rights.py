"""Trial 23, a rights manager in the review app (Playwright driving Debian's chromium, the real tansu broker, a real
osmem-server seeded through the real index sink): the file's special instructions are among the asset's rights
facts, the queue has a usage column in words, and a bulk approval that includes restricted or unknown-rights assets
asks first (how many, which), approving nothing until the person confirms, approves only the others, or cancels."""
from __future__ import annotations

import contextlib
import re
import uuid

import pytest
from playwright.sync_api import expect

from consumers.index.sink import IndexSink
from domain.store.client import make_client
from domain.store.management import read_alias
from tests import review_support
from tests.kafka_support import provision
from tests.review_support import HOSTILE, LOW, RIGHTS, feedback, review_record, review_settings
from tests.store_support import as_items

pytestmark = pytest.mark.timeout(300)
browser, page = review_support.browser, review_support.page  # the shared Playwright fixtures
server = review_support.server  # the app over this module's `fleet`

# a long unbroken URL too: it wraps at 320 px (trial 25 M1)
LONG_URL = "https://example.com/very/long/unbroken/path/that/should/wrap/at/320px/without/horizontal/scrolling/0123456789"
INSTRUCTIONS = f"Editorial use only. Embargoed until 5 May. {LONG_URL}\nDo not crop. " + HOSTILE
RESTRICTS = "licence restricts use: a person must confirm the intended use is allowed"
# asset id -> (usage flag, what the queue's usage column says)
USAGE = {"wire-0001": ("restricted", "editorial only"), "stock-0002": ("unknown", "unknown"),
         "cc-0003": ("credit_required", "credit required"), "own-0004": ("ok", "ok"),
         "rm-0005": ("restricted", "restricted")}
RISKY = ["wire-0001", "stock-0002", "rm-0005"]  # queue order
METADATA_WHY = ("metadata skipped: an XMP/text chunk inflates past 1 MiB; not read: XMP (any creator, credit or rights "
                "the file states are unknown)")
UNREAD = "The file's own rights statement was not read"


def records(settings) -> list[dict]:
    out = []
    for n, (asset_id, (flag, _)) in enumerate(USAGE.items()):
        why = {"wire-0001": [RESTRICTS, "usage restricted: IPTC special instructions: 'Editorial use only. "
                                        f"Embargoed until 5 May. {LONG_URL}' restricts use"],
               "stock-0002": [RIGHTS], "rm-0005": [RESTRICTS, "usage restricted: XMP usage terms: 'Rights-managed: "
                                                              "licence fee applies' restricts use"]}.get(asset_id, [LOW])
        r = review_record(settings, asset_id, minutes=n + 1, sample="product_red_mug.jpg", title=f"Mug {asset_id}",
                          alt_text="A red mug on a table", tags=[("product", "cup")], reasons=why)
        r["usage_flag"] = flag
        out.append(r)
    out[0]["enriched"]["pre"]["embedded"].update(instructions=INSTRUCTIONS, usage_terms=None)
    out[1]["enriched"]["pre"]["degraded"] = {"metadata": METADATA_WHY}  # its own rights statement was not read
    out[4]["enriched"]["pre"]["embedded"]["usage_terms"] = "Rights-managed: licence fee applies"
    return out


@pytest.fixture(scope="module")
def fleet(broker, store):
    settings = review_settings(broker, store.url, f"rvr{uuid.uuid4().hex[:6]}")
    provision(settings)
    seeded = records(settings)
    client = make_client(settings)
    try:
        assert IndexSink(settings, client=client).process_batch(as_items(seeded)) == [None] * len(seeded)
        client.indices.refresh(index=read_alias(settings))
    finally:
        client.close()
    return settings, seeded


def sent_since(settings, before: set[str]) -> list[str]:
    return sorted(d["asset_id"] for d in feedback(settings) if d["decision_id"] not in before)


def test_the_special_instructions_are_shown_with_the_rights_facts(page, server):
    """Wish 1: an editor approving sees "Embargoed until 5 May" and "Do not crop" beside the usage, as text."""
    page.goto(server.login_url)
    page.goto(f"{server.url}/asset/wire-0001")
    facts = page.locator("dl.facts")
    assert facts.locator("dt", has_text="special instructions").count() == 1
    shown = facts.locator("#special-instructions")
    assert shown.text_content() == INSTRUCTIONS  # the file's text as it is: markup shown, never run
    assert page.evaluate("window.__pwned") is None
    # beside the other rights facts: right after the usage, which says why in words
    assert page.evaluate("document.getElementById('special-instructions').previousElementSibling"
                         ".previousElementSibling.previousElementSibling.textContent") == "usage"
    assert facts.locator("dd.usage").text_content() == "editorial only"
    page.goto(f"{server.url}/asset/own-0004")  # a file without instructions shows no empty row
    assert page.locator("#special-instructions").count() == 0


def test_the_queue_says_each_assets_usage_in_words(page, server):
    """Wish 2: the queue has a usage column; the label is text (not colour alone)."""
    page.goto(server.login_url)
    heads = [t.text_content() for t in page.locator("table.queue thead th").all()]
    assert "usage" in heads
    col = heads.index("usage")
    got = {}
    for row in page.locator("table.queue tbody tr").all():
        # the label, then (for a screen reader and on keyboard focus) ": " and the reasons
        got[row.locator(".id").first.text_content()] = row.locator("td").nth(col).text_content().split(":")[0].strip()
    assert got == {a: label for a, (_, label) in USAGE.items()}
    cell = page.locator("table.queue tr", has=page.locator(".id", has_text="stock-0002")).locator("td.usage .badge")
    assert "no licence evidence" in cell.get_attribute("title")


def test_a_bulk_approval_with_restricted_or_unknown_rights_asks_first(page, server, fleet):
    """Wish 2: "Approve all" over restricted or unknown-rights assets approves nothing until the person confirms:
    the page says how many and which; Cancel sends nothing; "only the others" approves the rest; confirming
    approves all. A selection without such assets is approved as before. Trial 32 F10: the person is asked once:
    the rights page is the question, with no "Approve all 5 assets …?" dialog before it; a selection without such
    assets is asked about by the dialog alone."""
    settings, _ = fleet
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))  # the fixture accepts each
    page.goto(server.login_url)
    before = {d["decision_id"] for d in feedback(settings)}
    page.get_by_role("button", name="Approve all 5 matching").click()
    heading = page.locator("h1#outcome")
    expect(heading).to_have_text("Nothing approved yet: 3 of the 5 assets have restricted or unknown usage rights")
    assert dialogs == []
    expect(heading).to_be_focused()  # read first
    items = page.locator("ul.risky li")
    assert [i.locator(".id").text_content() for i in items.all()] == RISKY
    assert [i.locator(".badge").text_content() for i in items.all()] == ["editorial only", "unknown", "restricted"]
    assert "Do not crop." in items.first.locator(".instructions").text_content()
    assert page.evaluate("window.__pwned") is None
    assert sent_since(settings, before) == []  # asking sent nothing

    page.get_by_role("link", name=re.compile("Cancel")).click()
    page.wait_for_url(re.compile(r"/\?"))
    assert page.locator("table.queue .id").count() == 5 and sent_since(settings, before) == []
    # Cancel says so, and the message takes the focus, as the outcome of a decision does (trial 25 m1)
    expect(page.locator("#outcome")).to_have_text("Cancelled: nothing approved.")
    expect(page.locator("#outcome")).to_be_focused()
    assert page.title().startswith("Cancelled: nothing approved")

    page.get_by_role("button", name="Approve all 5 matching").click()
    # the button says which assets "the others" are, and so does the outcome (trial 25 m5)
    others = page.get_by_role("button", name="Approve only the 2 others")
    expect(others).to_have_accessible_description(
        "The 2 others, with no rights to check: Mug cc-0003 (cc-0003); Mug own-0004 (own-0004).")
    others.click()
    page.wait_for_url(re.compile("sent="))
    assert "2 assets approved — cc-0003, own-0004" in page.locator(".flash").text_content()
    assert sent_since(settings, before) == ["cc-0003", "own-0004"]

    seen = {d["decision_id"] for d in feedback(settings)}
    page.get_by_role("button", name="Approve all 5 matching").click()  # no review group runs: all 5 still listed
    page.get_by_role("button", name="Approve all 5, including these 3").click()
    page.wait_for_url(re.compile("sent="))
    assert "5 assets approved" in page.locator(".flash").text_content()
    assert sent_since(settings, seen) == sorted(USAGE)
    assert dialogs == []

    # ticked rows with no rights to check are approved at once; one unknown among them asks
    seen = {d["decision_id"] for d in feedback(settings)}
    page.locator("input[name=ids][value='own-0004']").check()
    page.get_by_role("button", name="Approve selected").click()
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, seen) == ["own-0004"]
    assert dialogs == ["Approve the 1 selected asset as it is shown?"]  # nothing to check: the dialog asks
    seen = {d["decision_id"] for d in feedback(settings)}
    page.locator("input[name=ids][value='own-0004']").check()
    page.locator("input[name=ids][value='stock-0002']").check()
    page.get_by_role("button", name="Approve selected").click()
    expect(heading).to_have_text("Nothing approved yet: 1 of the 2 assets has restricted or unknown usage rights")
    page.get_by_role("link", name=re.compile("Cancel")).click()  # the rows ticked are still ticked (trial 25 m1)
    expect(page.locator("#outcome")).to_have_text("Cancelled: nothing approved.")
    assert [c.get_attribute("value") for c in page.locator("input[name=ids]:checked").all()] == \
        ["stock-0002", "own-0004"]
    assert sent_since(settings, seen) == []
    page.get_by_role("button", name="Approve selected").click()
    expect(heading).to_have_text("Nothing approved yet: 1 of the 2 assets has restricted or unknown usage rights")
    page.get_by_role("button", name="Approve all 2, including this one").click()
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, seen) == ["own-0004", "stock-0002"]
    assert len(dialogs) == 1  # one unknown among the ticked: the rights page alone asked


def test_the_rights_check_covers_more_assets_than_one_search_returns(broker, store):
    """Code review 14 L5: the check asked one search for at most 10,000 (the store's result window), so past that
    risky assets were neither listed nor counted, and "Approve only the others" approved them."""
    from elasticsearch.helpers import bulk

    from app.review.queries import Index
    from domain.store.management import ensure_index

    settings = review_settings(broker, store.url, f"rvw{uuid.uuid4().hex[:6]}")
    client = make_client(settings)
    try:
        ensure_index(client, settings)
        ids = [f"r{n:05d}" for n in range(10_002)]  # all restricted but the last
        bulk(client, ({"_index": read_alias(settings), "_id": i, "_source": {
            "asset_id": i, "status": "needs_review", "usage_flag": "ok" if i == ids[-1] else "restricted"}}
            for i in ids), refresh=True)
        check = Index(client, settings).rights_to_check(ids)
    finally:
        client.close()
    assert [d["asset_id"] for d in check] == ids[:-1]


def test_back_from_an_asset_returns_to_the_rights_confirmation(page, server, fleet):
    """Trial 25 M2: the confirmation is a page of its own (the POST redirects to it), so Back from an asset it
    lists returns to it, not to "Confirm Form Resubmission"; showing it approves nothing, approving from it is still
    a POST with the CSRF token, and its address works only for the session it was made for."""
    settings, _ = fleet
    page.goto(server.login_url)
    before = {d["decision_id"] for d in feedback(settings)}
    page.get_by_role("button", name="Approve all 5 matching").click()
    heading = page.locator("h1#outcome")
    expect(heading).to_have_text(re.compile("^Nothing approved yet: 3 of the 5"))
    confirm_url = page.url
    assert "/rights-check?" in confirm_url
    page.locator("ul.risky a").first.click()
    page.wait_for_url(re.compile("/asset/wire-0001"))
    page.go_back()
    expect(heading).to_have_text(re.compile("^Nothing approved yet: 3 of the 5"))
    assert page.url == confirm_url and sent_since(settings, before) == []
    # another's link (or one edited) shows nothing of it
    forged = re.sub(r"sig=[0-9a-f]+", "sig=" + "0" * 64, confirm_url)
    assert page.goto(forged).status == 403
    tampered = confirm_url.replace("expect=5", "expect=4")
    assert page.goto(tampered).status == 403
    assert page.request.post(f"{server.url}/bulk-approve", form={"scope": "all", "expect": "5"}).status == 403
    page.goto(confirm_url)
    page.get_by_role("button", name="Approve all 5, including these 3").click()
    page.wait_for_url(re.compile("sent="))
    assert "5 assets approved" in page.locator(".flash").text_content()
    assert sent_since(settings, before) == sorted(USAGE)
    # Back to it once approved (trial 28 m1): it says so and offers no second approval
    page.go_back()
    expect(heading).to_have_text(re.compile(r"^Already approved from this page at \d\d:\d\d by .*: 5 assets approved"))
    assert page.get_by_role("button", name=re.compile("^Approve")).count() == 0
    assert sent_since(settings, before) == sorted(USAGE)


def test_back_after_approving_only_the_others_sends_them_once(page, server, fleet):
    """Code review 15b M2: "Approve only the K others" carried a new nonce each time its page was drawn (never cached:
    Back draws it again), so Back and approving the others again sent them twice. Its nonce is derived from the
    signed page and the choice: Back says they were approved, and the same form again sends nothing."""
    settings, _ = fleet
    page.goto(server.login_url)
    before = {d["decision_id"] for d in feedback(settings)}
    page.locator("input[name=ids][value='own-0004']").check()
    page.locator("input[name=ids][value='stock-0002']").check()
    page.get_by_role("button", name="Approve selected").click()
    heading = page.locator("h1#outcome")
    expect(heading).to_have_text("Nothing approved yet: 1 of the 2 assets has restricted or unknown usage rights")
    form = page.evaluate("""() => { const b = document.getElementById('rights-approve-others');
        return Object.fromEntries(Array.from(new FormData(b.form, b).entries())); }""")
    page.get_by_role("button", name="Approve only the 1 other").click()
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, before) == ["own-0004"]
    page.go_back()
    expect(heading).to_have_text(re.compile(r"^Already approved from this page at \d\d:\d\d by .*: 1 asset approved"))
    assert page.get_by_role("button", name=re.compile("^Approve")).count() == 0
    again = page.request.post(f"{server.url}/bulk-approve", form=form, max_redirects=0)
    assert again.status == 303 and "1+asset+approved" in again.headers["location"]
    assert sent_since(settings, before) == ["own-0004"]


def test_rights_texts_read_well_and_reflow(page, server):
    """Trial 25: a long unbroken URL in the special instructions or a reason wraps at 320 px (M1); a screen reader
    hears the usage and the reasons as separate sentences and the instructions once (m2); the queue's usage reasons
    are reachable by keyboard (m3); each filter field has a name of its own (m6)."""
    page.goto(server.login_url)
    for name in ("confidence min", "confidence max", "uploaded from", "uploaded to"):
        assert page.get_by_label(name, exact=True).count() == 1, name
    usage = page.get_by_role("link", name=re.compile(r"^unknown ?: no licence evidence: rights must be confirmed before use$"))
    usage.focus()  # the reasons show beside the focused badge, and it leads to the asset's reasons
    assert usage.locator(".visually-hidden").evaluate("e => e.getBoundingClientRect().width") > 100
    assert usage.get_attribute("href").endswith("#why-review")

    page.get_by_role("button", name="Approve all 5 matching").click()
    items = page.locator("ul.risky li")
    wire, stock = items.nth(0).text_content(), items.nth(1).text_content()
    assert wire.count("Embargoed until 5 May") == 1 and ". usage:" in wire
    assert re.search(r"unknown\.\s*why: no licence evidence: rights must be confirmed before use\.", stock), stock
    page.wait_for_load_state("load")  # its stylesheet applied: a click's navigation can be measured before (CI: 965)
    page.set_viewport_size({"width": 320, "height": 640})
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 320
    page.goto(f"{server.url}/asset/wire-0001")
    assert LONG_URL in page.locator("ul.reasons-list").text_content()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 320
    page.goto(server.url)  # the queue's cards: the long URL among the reasons wraps there too (review 1p)
    assert LONG_URL in page.locator("table.queue").text_content()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 320
    # 200 % zoom on a 1366-1536 px laptop (trial 28 M2): the table scrolled sideways between 641 and ~810 px
    page.goto(f"{server.url}/?status=all")
    for width in (700, 768, 820, 1024):
        page.set_viewport_size({"width": width, "height": 800})
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width, width


def test_approving_one_asset_with_restricted_rights_asks_first_and_cancel_keeps_the_edits(page, server, fleet):
    """Review 1p: one asset's approval (Approve all on its page, the `a` key, Enter in a field) of an asset with
    restricted (editorial only too) or unknown rights went through without a word, where a bulk approval asks. It
    asks the same way now, on the page: Cancel sends nothing and keeps the editor's edits; confirming sends one
    approval, with the edits. An asset with no rights to check is approved at once, as before."""
    settings, _ = fleet
    page.goto(server.login_url)
    before = {d["decision_id"] for d in feedback(settings)}
    page.goto(f"{server.url}/asset/wire-0001")  # editorial only
    edited = "A red mug on a wooden table, seen from the side"
    page.locator("#alt_text").fill(edited)
    ask = page.locator("#rights-ask")
    heading = page.locator("#rights-ask-title")
    keep = page.get_by_role("button", name="Cancel: approve nothing, keep editing")

    page.get_by_role("button", name="Approve all ✓").click()
    expect(heading).to_have_text("Nothing approved yet: this asset has restricted or unknown usage rights")
    expect(heading).to_be_focused()
    assert ask.locator(".badge").text_content() == "editorial only"
    assert "Do not crop." in ask.locator(".instructions").text_content()
    keep.click()
    expect(ask).to_be_hidden()
    assert page.locator("#alt_text").input_value() == edited and "/asset/wire-0001" in page.url
    # the keyboard's ways to approve ask too: `a` from the page, Enter in a text field
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(heading).to_be_focused()
    keep.click()
    page.locator("#title").press("Enter")
    expect(heading).to_be_focused()
    keep.click()
    assert page.locator("#alt_text").input_value() == edited
    assert sent_since(settings, before) == []  # asking sent nothing

    page.get_by_role("button", name="Approve all ✓").click()
    page.get_by_role("button", name="Approve this asset anyway").click()
    page.wait_for_url(re.compile("sent="))
    new = [d for d in feedback(settings) if d["decision_id"] not in before]
    assert [(d["asset_id"], d["status"]) for d in new] == [("wire-0001", "approved")]  # once
    assert {"field": "alt_text", "action": "edited", "value": edited} in new[0]["fields"]

    seen = {d["decision_id"] for d in feedback(settings)}
    page.goto(f"{server.url}/asset/own-0004")  # usage ok: no question
    assert page.locator("#rights-ask").count() == 0
    page.get_by_role("button", name="Approve all ✓").click()
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, seen) == ["own-0004"]


@contextlib.contextmanager
def stock_asset_without_script(browser, server, settings):
    """(context, page, the decision ids sent before): a browser without the script, signed in, on the page of
    stock-0002 (unknown rights: its approval asks on the rights-check page)."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(server.login_url)
        before = {d["decision_id"] for d in feedback(settings)}
        page.goto(f"{server.url}/asset/stock-0002")
        yield context, page, before
    finally:
        context.close()


def test_the_rights_check_s_cancel_keeps_long_edits_in_a_short_request(browser, server, fleet):
    """Code review 17 F3: the no-script Cancel was a link carrying the whole form in its query, encoded twice, every
    field's shown value too: a 1,000-character Russian caption made it 27 KB, which uvicorn answers 400 over a network
    and nginx 414 (its default request line limit is 8 KB), so the edits it promised to keep were lost. Cancel posts
    the form: its request line stays short whatever the edits, and they all come back (with a 2,700-character title,
    trial 31). The approval's own way to the rights check was a redirect carrying the same form in its address (8.5 KB
    here): with long edits the page is now the approval's answer, and every request line stays short."""
    settings, _ = fleet
    with stock_asset_without_script(browser, server, settings) as (_, page, before):
        title = " ".join(["Red ceramic mug on a wooden table"] * 90)[:2700].rstrip()
        caption = ("Красная керамическая кружка с кофе стоит на деревянном столе у окна, утренний свет. " * 13)[:1000]
        caption = caption.rstrip()
        page.locator("#title").fill(title)
        page.locator("#caption").fill(caption)
        lines: list[str] = []
        page.on("request", lambda r: lines.append(f"{r.method} {r.url}"))
        page.get_by_role("button", name="Approve all ✓").click()
        expect(page.locator("h1#outcome")).to_have_text(re.compile("^Nothing approved yet: this asset"))
        page.get_by_role("button", name="Cancel: approve nothing, back to the asset (your edits are kept)").click()
        page.wait_for_url(re.compile("/asset/stock-0002"))
        expect(page.locator("#outcome")).to_have_text("Cancelled: nothing approved; your edits are kept here, not sent.")
        assert lines and max(map(len, lines)) < 2000, [len(x) for x in lines]  # nginx refuses a line over 8 KB
        assert page.locator("#title").input_value() == title
        assert page.locator("#caption").input_value() == caption
        assert sent_since(settings, before) == []
        # and approving anyway sends the long edits
        page.get_by_role("button", name="Approve all ✓").click()
        page.get_by_role("button", name=re.compile("^Approve this asset anyway")).click()
        page.wait_for_url(re.compile("sent="))
        assert max(map(len, lines)) < 2000, [len(x) for x in lines]
        assert sent_since(settings, before) == ["stock-0002"]
        sent = [d for d in feedback(settings) if d["decision_id"] not in before][-1]
        assert {"field": "caption", "action": "edited", "value": caption} in sent["fields"]


def test_tag_edits_the_rights_check_s_cancel_keeps_show_as_chips_with_the_script_on(browser, server, fleet):
    """Code review 17 F4: a page with the script reaches the rights-check page too (drawn before the asset's rights
    changed). Its Cancel kept the tag edit in the hidden field, but the chips showed the document's tags, and a chip's
    click rebuilt the field from them, dropping the edit. The chips show the tags kept, removed and added, and a
    chip's click keeps the rest of the edit."""
    settings, _ = fleet
    with stock_asset_without_script(browser, server, settings) as (plain, page, before):  # tagged product:cup
        page.locator("#tags-value").fill("color:red")  # product:cup removed, color:red added
        page.get_by_role("button", name="Approve all ✓").click()
        expect(page.locator("h1#outcome")).to_have_text(re.compile("^Nothing approved yet: this asset"))
        check_url = page.url  # the rights-check page, signed for this session
        scripted = browser.new_context(viewport={"width": 1360, "height": 1000}, storage_state=plain.storage_state())
        try:
            page = scripted.new_page()  # the same session, with the script
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(check_url)
            page.get_by_role("button", name="Cancel: approve nothing, back to the asset (your edits are kept)").click()
            page.wait_for_url(re.compile("/asset/stock-0002"))
            tags = "cs => cs.map(c => c.dataset.tag)"
            assert page.locator("li.chip.removed").evaluate_all(tags) == ["product:cup"]
            assert page.locator("li.chip.added").evaluate_all(tags) == ["color:red"]
            assert page.locator("#tags-value").input_value() == "color:red"
            page.get_by_role("button", name="keep tag product:cup").click()
            assert page.locator("#tags-value").input_value() == "product:cup, color:red"
            assert sent_since(settings, before) == [] and not errors, errors
        finally:
            scripted.close()


EDITS_SHOWN = [("Title", "Stock mug, licence to check"), ("Caption", "rejected: “Mug stock-0002.” is removed"),
               ("Tags", "rejected: the 1 tag is removed (product:cup)")]


def edits_shown(page) -> list[tuple[str, str]]:
    """The rights-check page's "Approving publishes it with your edits" list, as (field, what) pairs."""
    edits = page.locator("dl.edits")
    return list(zip(edits.locator("dt").all_text_contents(), edits.locator("dd").all_text_contents()))


def test_without_javascript_one_assets_approval_asks_on_the_rights_check_page(browser, server, fleet):
    """Review 1p: without the script (or from a page that did not ask), the approval of an asset with unknown rights
    redirects to the signed rights-check page, as a bulk approval does: Cancel returns to the asset and sends
    nothing; *Approve this asset anyway* sends the asset's form once, edits included."""
    settings, _ = fleet
    with stock_asset_without_script(browser, server, settings) as (_, page, before):
        page.get_by_role("button", name="Approve all ✓").click()
        heading = page.locator("h1#outcome")
        expect(heading).to_have_text("Nothing approved yet: this asset has restricted or unknown usage rights")
        assert "/rights-check?" in page.url
        assert page.locator("ul.risky .badge").all_text_contents() == ["unknown"]
        page.get_by_role("button", name="Cancel: approve nothing, back to the asset").click()
        page.wait_for_url(re.compile("/asset/stock-0002"))
        expect(page.locator("#outcome")).to_have_text("Cancelled: nothing approved.")
        assert sent_since(settings, before) == []

        page.locator("#title").fill("Stock mug, licence to check")
        page.locator("input[name='action.caption'][value='rejected']").check()
        page.locator("input[name='action.tags'][value='rejected']").check()
        page.get_by_role("button", name="Approve all ✓").click()
        expect(heading).to_have_text(re.compile("^Nothing approved yet: this asset"))
        assert sent_since(settings, before) == []
        # it shows the edits it will publish (trial 28 m6), the rejected fields too, with what they remove (trial 33
        # N3: rejecting the tags removed them all without a word here); its title names the asset (m7); its file's
        # rights statement was not read, and it says so (m2)
        assert edits_shown(page) == EDITS_SHOWN
        assert page.title() == "Confirm the rights: Mug stock-0002 · assetstream"
        assert UNREAD in page.locator("ul.risky li").text_content()
        # closing 15: without the script, Cancel dropped the edits (the link said so). It brings the form back as the
        # editor left it, the edited title and the rejected caption, and sends nothing
        page.get_by_role("button", name="Cancel: approve nothing, back to the asset (your edits are kept)",
                         exact=True).click()
        page.wait_for_url(re.compile("/asset/stock-0002"))
        expect(page.locator("#outcome")).to_have_text("Cancelled: nothing approved; your edits are kept here, not sent.")
        assert page.locator("#title").input_value() == "Stock mug, licence to check"
        assert page.locator("input[name='action.caption'][value='rejected']").is_checked()
        assert page.locator("input[name='action.tags'][value='rejected']").is_checked()
        assert sent_since(settings, before) == []
        # the edits come back only in a form this app's page posts for this session (its CSRF token): a form posted
        # without it, or from another session, fills nothing in
        assert page.request.post(f"{server.url}/asset/stock-0002", form={"value.title": "forged"}).status == 403
        other = browser.new_context(java_script_enabled=False)
        try:
            stranger = other.new_page()
            stranger.goto(server.login_url)
            refused = stranger.request.post(f"{server.url}/asset/stock-0002", form={
                "csrf": page.locator("#decision input[name=csrf]").get_attribute("value"), "value.title": "forged"})
            assert refused.status == 403
        finally:
            other.close()
        page.get_by_role("button", name="Approve all ✓").click()
        expect(heading).to_have_text(re.compile("^Nothing approved yet: this asset"))
        assert edits_shown(page) == EDITS_SHOWN
        confirm_url = page.url
        fields = {i.get_attribute("name"): i.get_attribute("value")
                  for i in page.locator("form[action^='/decide/'] input[type=hidden]").all()}
        page.get_by_role("button", name="Approve this asset anyway").click()
        page.wait_for_url(re.compile("sent="))
        new = [d for d in feedback(settings) if d["decision_id"] not in before]
        assert [(d["asset_id"], d["status"]) for d in new] == [("stock-0002", "approved")]
        assert {"field": "title", "action": "edited", "value": "Stock mug, licence to check"} in new[0]["fields"]
        assert {"field": "caption", "action": "rejected", "value": None} in new[0]["fields"]
        assert {"field": "tags", "action": "rejected", "value": None} in new[0]["fields"]

        # Back to the rights-check page (trial 28 m1): it says the asset was approved from it, by whom and when, and
        # offers no second approval; the same form posted again sends nothing either
        page.go_back()
        assert page.url == confirm_url
        expect(heading).to_have_text(re.compile(r"^Already approved: this asset was approved from this page at "
                                                r"\d\d:\d\d by "))
        assert page.get_by_role("button", name="Approve this asset anyway").count() == 0
        again = page.request.post(f"{server.url}/decide/stock-0002", form=fields, max_redirects=0)
        assert again.status == 303 and "sent=" in again.headers["location"]
        assert len([d for d in feedback(settings) if d["decision_id"] not in before]) == 1


def test_a_quick_second_approval_sends_one_decision(page, server, fleet):
    """Trial 28 M1: Enter pressed twice on "Approve this asset anyway" (or `a` right after it, or `a a` on an asset
    with no rights to check) sent two EditorDecisions while the first was on its way. The page sends a form once,
    and the server answers the same form's same decision again with the first answer, sending nothing."""
    settings, _ = fleet
    page.goto(server.login_url)
    before = {d["decision_id"] for d in feedback(settings)}
    page.goto(f"{server.url}/asset/wire-0001")
    page.get_by_role("button", name="Approve all ✓").click()
    anyway = page.get_by_role("button", name="Approve this asset anyway")
    anyway.focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    page.keyboard.press("a")
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, before) == ["wire-0001"]

    seen = {d["decision_id"] for d in feedback(settings)}
    page.goto(f"{server.url}/asset/own-0004")  # no rights to check: `a` approves at once
    page.keyboard.press("a")
    page.keyboard.press("a")
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, seen) == ["own-0004"]

    # the same form posted twice (a browser without the script, a proxy retrying): one decision, the same answer
    seen = {d["decision_id"] for d in feedback(settings)}
    page.goto(f"{server.url}/asset/cc-0003")
    form = page.evaluate("""() => { const f = document.getElementById('decision');
        const d = new FormData(f, document.getElementById('approve'));
        return Object.fromEntries(Array.from(d.entries())); }""")
    first = page.request.post(f"{server.url}/decide/cc-0003", form=form, max_redirects=0)
    again = page.request.post(f"{server.url}/decide/cc-0003", form=form, max_redirects=0)
    assert first.status == again.status == 303
    assert again.headers["location"] == first.headers["location"]
    assert sent_since(settings, seen) == ["cc-0003"]
    # another decision of the same page is its own: sent
    seen = {d["decision_id"] for d in feedback(settings)}
    page.request.post(f"{server.url}/decide/cc-0003", form={**form, "verdict": "reject"}, max_redirects=0)
    assert sent_since(settings, seen) == ["cc-0003"]


def test_a_submission_arriving_while_the_same_one_is_sent_waits_for_it_and_sends_nothing():
    """Trial 28 M1, the server's side: two requests of the same form at the same moment publish once; one that sent
    nothing (refused, not confirmed) is not remembered, so trying again sends."""
    import threading
    import time

    from app.review.once import Once

    once, calls, answers = Once(), [], []

    def send():
        calls.append(1)
        time.sleep(0.3)
        return {"target": "/next"}

    threads = [threading.Thread(target=lambda: answers.append(once.answer(("erin", "s", "n1", "d"), send)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and answers == [{"target": "/next"}] * 3
    assert once.sent("erin", "s", "n1") == [{"target": "/next"}] and once.sent("erin", "other", "n1") == []

    def fails():
        calls.append(1)
        raise RuntimeError("not confirmed")

    with pytest.raises(RuntimeError):
        once.answer(("erin", "s", "n2", "d"), fails)
    assert once.answer(("erin", "s", "n2", "d"), lambda: "sent") == "sent"


def test_a_repeat_waits_seconds_for_the_first_and_only_a_nonce_this_app_makes_is_remembered():
    """Code review 15b L1: a repeat held its request thread up to 120 s while the first was being sent, and any
    client-supplied text (up to a megabyte a field) was kept as a nonce."""
    import threading
    import time

    from app.review.once import Once, StillSending, nonce, token

    once, started = Once(wait_s=0.2), threading.Event()

    def slow():
        started.set()
        time.sleep(1.0)
        return {"target": "/next"}

    first = threading.Thread(target=once.answer, args=(("erin", "s", "n1", "d"), slow))
    first.start()
    started.wait(5)
    t0 = time.monotonic()
    with pytest.raises(StillSending, match="still being sent"):
        once.answer(("erin", "s", "n1", "d"), slow)
    assert time.monotonic() - t0 < 0.9
    first.join()
    assert once.answer(("erin", "s", "n1", "d"), slow) == {"target": "/next"}  # the first answer, now done
    made = nonce()
    assert token(made) == made and token("a" * 64) == "a" * 64
    assert token("a" * 65) == token("x y") == token("<b>") == token(None) == token(["a"]) == ""


def test_the_rights_question_by_keyboard(page, server):
    """Trial 28 m4, m5, w1: Esc closes the question as Cancel does; Cancel returns the focus to where it was when the
    question opened (the text field Enter was pressed in; else Approve all); `a` while it is open says to answer
    it first; the keys help says an asset with restricted or unknown rights asks; the asset's name in its own
    question is not a link back to the same page."""
    page.goto(server.login_url)
    page.goto(f"{server.url}/asset/wire-0001")
    ask, heading = page.locator("#rights-ask"), page.locator("#rights-ask-title")
    title = page.locator("#title")
    title.fill("Mug, editorial")
    title.press("Enter")
    expect(heading).to_be_focused()
    assert ask.locator("a").count() == 0
    page.keyboard.press("a")
    expect(page.locator("#keys-note")).to_have_text(re.compile("^Answer the question first"))
    page.keyboard.press("Escape")
    expect(ask).to_be_hidden()
    expect(title).to_be_focused()
    assert title.input_value() == "Mug, editorial"

    title.press("Enter")
    expect(heading).to_be_focused()
    page.get_by_role("button", name="Cancel: approve nothing, keep editing").click()
    expect(title).to_be_focused()
    page.get_by_role("button", name="Approve all ✓").click()
    page.get_by_role("button", name="Approve this asset anyway").focus()
    page.keyboard.press("Escape")  # from its buttons too
    expect(ask).to_be_hidden()
    expect(page.locator("#approve")).to_be_focused()

    page.locator("main").focus()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_contain_text("restricted or unknown rights asks first: Esc or Cancel closes")


def test_the_rights_check_words_one_asset_and_names_what_it_checks(page, server):
    """Trial 28 m3, m7, m2: one ticked asset, all flagged, reads "this asset has …" / "Approve it anyway" (not "1 of
    the 1 asset has …", "Approve all 1, including these 1"), two read "both"; the page title names the asset or the
    count; an asset whose file metadata was not read says its own rights statement was not read."""
    page.goto(server.login_url)
    heading = page.locator("h1#outcome")
    page.locator("input[name=ids][value='stock-0002']").check()
    page.get_by_role("button", name="Approve selected").click()
    expect(heading).to_have_text("Nothing approved yet: this asset has restricted or unknown usage rights")
    assert page.get_by_role("button", name="Approve it anyway").count() == 1
    assert page.title() == "Confirm the rights of 1 asset · assetstream"
    assert UNREAD in page.locator("ul.risky li").text_content()  # m2, on the bulk page too
    page.get_by_role("link", name=re.compile("Cancel")).click()

    page.locator("input[name=ids][value='wire-0001']").check()
    page.get_by_role("button", name="Approve selected").click()
    expect(heading).to_have_text("Nothing approved yet: both assets have restricted or unknown usage rights")
    assert page.get_by_role("button", name="Approve both anyway").count() == 1
    assert page.title() == "Confirm the rights of the 2 assets · assetstream"
    items = page.locator("ul.risky li")
    assert UNREAD not in items.nth(0).text_content() and UNREAD in items.nth(1).text_content()

    page.goto(server.url)
    page.get_by_role("button", name="Approve all 5 matching").click()
    expect(heading).to_have_text(re.compile("^Nothing approved yet: 3 of the 5 assets have"))
    assert page.title() == "Confirm the rights of 3 of 5 assets · assetstream"

    page.goto(f"{server.url}/asset/stock-0002")  # the question on the asset's page says it too
    page.get_by_role("button", name="Approve all ✓").click()
    expect(page.locator("#rights-ask .unread")).to_have_text(re.compile("^" + UNREAD))


def test_a_script_cannot_answer_the_rights_question_by_computing_it_and_a_rights_link_expires(server, fleet):
    """Trial 30 F9: the rights confirmation was the plain sha256 of the asset ids, so a script with a CSRF token
    skipped the question by computing it; and a signed rights-check link had no issue time, so in session-less modes
    (bearer, basic, header: the session is "") it stayed valid until the secret changed. The confirmation is signed
    for the person and session now (only the page the app drew confirms), and a link lives review.session_max_age_s."""
    import hashlib
    import hmac
    import time
    from urllib.parse import parse_qsl, urlencode, urlsplit

    import httpx

    from app.review.auth import _canon
    from app.review.queries import selection_digest

    settings, _ = fleet
    before = {d["decision_id"] for d in feedback(settings)}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.app.auth.token}"}) as c:
        page = c.get("/asset/rm-0005").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        computed = selection_digest(["rm-0005"])
        r = c.post("/decide/rm-0005", data={"csrf": csrf, "verdict": "approve", "rights_confirmed": computed})
        assert r.status_code == 303 and r.headers["location"].startswith("/rights-check?"), r.headers["location"]
        r = c.post("/bulk-approve", data={"csrf": csrf, "scope": "selected", "ids": "rm-0005",
                                          "rights_confirmed": computed})
        link = r.headers["location"]
        assert r.status_code == 303 and link.startswith("/rights-check?"), link
        assert sent_since(settings, before) == []
        assert c.get(link).status_code == 200  # the link the app made works

        # the same link issued 13 hours ago (review.session_max_age_s is 12 h): refused, even signed by this desk
        items = [(k, v) for k, v in parse_qsl(urlsplit(link).query) if k not in ("at", "sig")]
        items.append(("at", str(int(time.time()) - 13 * 3600)))
        user = settings.review.token_user
        sig = hmac.new(server.app.auth.secret, b"query\n" + f"{user}\n\n".encode() + _canon(items),
                       hashlib.sha256).hexdigest()
        old = c.get("/rights-check?" + urlencode([*items, ("sig", sig)]))
        assert old.status_code == 403 and "expired" in old.text

        # what the page itself says confirms
        confirmed = re.search(r'data-confirmed="([^"]+)"', page).group(1)
        assert confirmed != computed
        r = c.post("/decide/rm-0005", data={"csrf": csrf, "verdict": "approve", "rights_confirmed": confirmed})
        assert r.status_code == 303 and "sent=" in r.headers["location"]
    assert sent_since(settings, before) == ["rm-0005"]
