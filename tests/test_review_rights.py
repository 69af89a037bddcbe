"""Trial 23, a rights manager in the review app (Playwright driving Debian's chromium, the real tansu broker, a real
osmem-server seeded through the real index sink): the file's special instructions are among the asset's rights
facts, the queue has a usage column in words, and a bulk approval that includes restricted or unknown-rights assets
asks first (how many, which), approving nothing until the person confirms, approves only the others, or cancels."""
from __future__ import annotations

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

INSTRUCTIONS = "Editorial use only. Embargoed until 5 May.\nDo not crop. " + HOSTILE
RESTRICTS = "licence restricts use: a person must confirm the intended use is allowed"
# asset id -> (usage flag, what the queue's usage column says)
USAGE = {"wire-0001": ("restricted", "editorial only"), "stock-0002": ("unknown", "unknown"),
         "cc-0003": ("credit_required", "credit required"), "own-0004": ("ok", "ok"),
         "rm-0005": ("restricted", "restricted")}
RISKY = ["wire-0001", "stock-0002", "rm-0005"]  # queue order


def records(settings) -> list[dict]:
    out = []
    for n, (asset_id, (flag, _)) in enumerate(USAGE.items()):
        why = {"wire-0001": [RESTRICTS, "usage restricted: IPTC special instructions: 'Editorial use only. "
                                        "Embargoed until 5 May.' restricts use"],
               "stock-0002": [RIGHTS], "rm-0005": [RESTRICTS, "usage restricted: XMP usage terms: 'Rights-managed: "
                                                              "licence fee applies' restricts use"]}.get(asset_id, [LOW])
        r = review_record(settings, asset_id, minutes=n + 1, sample="product_red_mug.jpg", title=f"Mug {asset_id}",
                          alt_text="A red mug on a table", tags=[("product", "cup")], reasons=why)
        r["usage_flag"] = flag
        out.append(r)
    out[0]["enriched"]["pre"]["embedded"].update(instructions=INSTRUCTIONS, usage_terms=None)
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
        got[row.locator(".id").first.text_content()] = row.locator("td").nth(col).text_content().strip()
    assert got == {a: label for a, (_, label) in USAGE.items()}
    cell = page.locator("table.queue tr", has=page.locator(".id", has_text="stock-0002")).locator("td.usage .badge")
    assert "no licence evidence" in cell.get_attribute("title")


def test_a_bulk_approval_with_restricted_or_unknown_rights_asks_first(page, server, fleet):
    """Wish 2: "Approve all" over restricted or unknown-rights assets approves nothing until the person confirms:
    the page says how many and which; Cancel sends nothing; "only the others" approves the rest; confirming
    approves all. A selection without such assets is approved as before."""
    settings, _ = fleet
    page.goto(server.login_url)
    before = {d["decision_id"] for d in feedback(settings)}
    page.get_by_role("button", name="Approve all 5 matching").click()
    heading = page.locator("h1#outcome")
    expect(heading).to_have_text("Nothing approved yet: 3 of the 5 asset(s) have restricted or unknown usage rights")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'outcome'")  # read first
    items = page.locator("ul.risky li")
    assert [i.locator(".id").text_content() for i in items.all()] == RISKY
    assert [i.locator(".badge").text_content() for i in items.all()] == ["editorial only", "unknown", "restricted"]
    assert "Do not crop." in items.first.locator(".instructions").text_content()
    assert page.evaluate("window.__pwned") is None
    assert sent_since(settings, before) == []  # asking sent nothing

    page.get_by_role("link", name=re.compile("Cancel")).click()
    page.wait_for_url(re.compile(r"/\?"))
    assert page.locator("table.queue .id").count() == 5 and sent_since(settings, before) == []

    page.get_by_role("button", name="Approve all 5 matching").click()
    page.get_by_role("button", name="Approve only the 2 other(s)").click()
    page.wait_for_url(re.compile("sent="))
    assert "2 asset(s) approved" in page.locator(".flash").text_content()
    assert sent_since(settings, before) == ["cc-0003", "own-0004"]

    seen = {d["decision_id"] for d in feedback(settings)}
    page.get_by_role("button", name="Approve all 5 matching").click()  # no review group runs: all 5 still listed
    page.get_by_role("button", name="Approve all 5, including these 3").click()
    page.wait_for_url(re.compile("sent="))
    assert "5 asset(s) approved" in page.locator(".flash").text_content()
    assert sent_since(settings, seen) == sorted(USAGE)

    # ticked rows with no rights to check are approved at once; one unknown among them asks
    seen = {d["decision_id"] for d in feedback(settings)}
    page.locator("input[name=ids][value='own-0004']").check()
    page.get_by_role("button", name="Approve selected").click()
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, seen) == ["own-0004"]
    seen = {d["decision_id"] for d in feedback(settings)}
    page.locator("input[name=ids][value='own-0004']").check()
    page.locator("input[name=ids][value='stock-0002']").check()
    page.get_by_role("button", name="Approve selected").click()
    expect(heading).to_have_text("Nothing approved yet: 1 of the 2 asset(s) have restricted or unknown usage rights")
    page.get_by_role("button", name="Approve all 2, including these 1").click()
    page.wait_for_url(re.compile("sent="))
    assert sent_since(settings, seen) == ["own-0004", "stock-0002"]


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
