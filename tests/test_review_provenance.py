"""Provenance stays honest through review (user trial, issue 15): an editor who edits one field and presses
"Approve all" (or approves in bulk, or with `assetstream feedback --approve`) made that one field `human`; every
field the editor did not touch keeps the source of the value the person approved (`model`, `embedded`, ...) with
the review's `accepted` decision beside it. Driven through the real review app (HTTP form posts, as the browser
sends them), the real review group and index sink on the real broker and store; a reprocess keeps both the edit
and the approval."""
from __future__ import annotations

import re
import time
import uuid
from html.parser import HTMLParser

import httpx
import pytest
from typer.testing import CliRunner

from app import cli
from app.kpis import cli as kpis_cli
from app.review.server import ReviewServer
from consumers.index.sink import IndexSink
from consumers.review.stage import ReviewStage
from consumers.validate.stage import ValidateStage
from domain.store.client import make_client
from domain.store.management import read_alias
from streams.avro import roundtrip
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, env_for, read_topic
from tests.review_support import review_record, review_settings, seed
from tests.store_support import as_items

pytestmark = pytest.mark.timeout(120)

EDITED_ALT = "A red mug with a white handle on a white table"


class _Form(HTMLParser):
    """The fields the browser submits with the asset page's decision form (checked radios, inputs, textareas)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.fields, self._area = False, {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == "decision":
            self.inside = True
        if not self.inside or not a.get("name"):
            return
        if tag == "input" and (a.get("type") not in ("radio", "checkbox") or "checked" in a):
            self.fields[a["name"]] = a.get("value") or ""
        elif tag == "textarea":
            self._area = a["name"]
            self.fields[a["name"]] = ""

    def handle_data(self, data):
        if self._area:
            self.fields[self._area] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._area = None
        elif tag == "form":
            self.inside = False


def _form(html: str) -> dict[str, str]:
    parser = _Form()
    parser.feed(html)
    return parser.fields


def _docs(settings, ok, ids: list[str], timeout_s: float = 40.0) -> dict[str, dict]:
    es = make_client(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            es.indices.refresh(index=read_alias(settings))
            docs = {d["_id"]: d["_source"] for d in es.mget(index=read_alias(settings), ids=ids)["docs"]}
            if all(ok(docs[i]) for i in ids) or time.monotonic() > deadline:
                return docs
            time.sleep(0.3)
    finally:
        es.close()


def _reviewed(doc: dict) -> dict[str, dict]:
    return {f["field"]: f for f in (doc.get("review") or {}).get("fields") or []}


@pytest.fixture
def fleet(broker, store):
    settings = review_settings(broker, store.url, f"rp{uuid.uuid4().hex[:6]}")
    return settings, {r["enriched"]["pre"]["asset"]["asset_id"]: r for r in seed(settings)}


def test_approve_all_after_one_edit_keeps_the_untouched_fields_model_approved(fleet):
    settings, records = fleet
    with ReviewServer(settings) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get(srv.login_url).status_code == 303
        page = c.get("/asset/mug-0001")
        form = _form(page.text)
        assert form["value.title"] == "Red mug" and "product:cup" in form["value.tags"]
        form.update({"value.alt_text": EDITED_ALT, "verdict": "approve"})  # edit one field, press "Approve all ✓"
        r = c.post("/decide/mug-0001", data=form)
        assert r.status_code == 303 and "error" not in r.headers["location"], r.headers["location"]

    with RunnerThread(StageRunner(ReviewStage(settings), settings)), \
            RunnerThread(StageRunner(IndexSink(settings), settings)):
        doc = _docs(settings, lambda d: d.get("status") == "approved", ["mug-0001"])["mug-0001"]
    assert doc["status"] == "approved" and doc["reviewed_by"] == "erin"
    assert doc["alt_text"] == EDITED_ALT and doc["field_sources"]["alt_text"] == "human"
    # what the editor did not touch: the model's (and the file's, and the DAM's) values, approved by a person
    assert doc["title"] == "Red mug" and doc["caption"] == "Red mug."
    assert {f: doc["field_sources"][f] for f in ("title", "caption", "tags", "credit_text", "licensing")} == \
        {"title": "model", "caption": "model", "tags": "model", "credit_text": "embedded", "licensing": "human"}
    assert {t["source"] for t in doc["tag_details"]} == {"model"}
    # each tag keeps the model's score (not 1.0, as if a person had set it)
    assert [t["score"] for t in doc["tag_details"]] == pytest.approx([t["score"] for t in records["mug-0001"]["tags"]])
    reviewed = _reviewed(doc)
    assert (reviewed["alt_text"]["action"], reviewed["alt_text"]["source"]) == ("edited", None)
    assert {f: (reviewed[f]["action"], reviewed[f]["source"], reviewed[f]["editor"]) for f in ("title", "tags")} == \
        {"title": ("accepted", "model", "erin"), "tags": ("accepted", "model", "erin")}

    # what a user sees in search: only the alt text was set by a person
    found = CliRunner().invoke(cli.app, ["search", "red mug", "--mode", "keyword"], env=env_for(settings))
    assert found.exit_code == 0, found.output
    lines = found.output.splitlines()
    at = next(i for i, line in enumerate(lines) if "│ mug-0001 " in line)
    source_cell = " ".join(line.split("│")[7].strip() for line in lines[at:at + 2])  # the table folds it
    assert source_cell == "title=model alt_text=human tags=model · erin"

    # the asset page says the same: source model, accepted by erin
    with ReviewServer(settings) as srv, httpx.Client(base_url=srv.url) as c:
        c.get(srv.login_url)
        html = c.get("/asset/mug-0001").text
    title_box = re.search(r'data-field="title">(.*?)</legend>', html, re.S).group(1)
    assert 'class="src src-model">model<' in title_box and "accepted by erin" in title_box
    alt_box = re.search(r'data-field="alt_text">(.*?)</legend>', html, re.S).group(1)
    assert 'class="src src-human">human<' in alt_box and "edited by erin" in alt_box

    # the record on `validated` says so too, and a reprocess keeps the edit and the approval
    published = [r["value"] for r in read_topic(settings, "validated", 1)]
    (approved,) = [v for v in published if v["enriched"]["pre"]["asset"]["asset_id"] == "mug-0001"]
    assert approved["field_sources"]["title"] == "model" and approved["field_sources"]["alt_text"] == "human"
    newer = review_record(settings, "mug-0001", minutes=1, sample="product_red_mug.jpg", title="Coffee cup",
                          alt_text="A coffee cup", tags=[("product", "cup"), ("color", "red")], reasons=[])
    newer["enriched"]["pre"]["asset"]["version"] = 2
    sink = IndexSink(settings)
    try:
        assert sink.process_batch(as_items([newer])) == [None]
    finally:
        sink.close()
    doc = _docs(settings, lambda d: d.get("version") == 2, ["mug-0001"])["mug-0001"]
    assert doc["status"] == "approved" and doc["version"] == 2
    assert doc["alt_text"] == EDITED_ALT and doc["field_sources"]["alt_text"] == "human"
    # the approved value stays, now the person's: the new run (which wrote "Coffee cup") did not make it
    assert doc["title"] == "Red mug" and doc["field_sources"]["title"] == "human"
    assert doc["model_suggestions"]["title"] == "Coffee cup"  # the new model text waits as a suggestion
    assert sorted(doc["tags"]) == ["color:red", "color:white", "product:cup"]
    chips = {t["tag"]: t["source"] for t in doc["tag_details"]}
    assert (chips["color:white"], chips["product:cup"]) == ("human", "model")  # the new run gives no white
    # ... and validate, given the review enrich reads from the index, publishes the same
    enriched = {**newer["enriched"], "review": approved["review"]}
    out = ValidateStage(settings).process(roundtrip("EnrichedAsset", enriched)).value
    assert out["status"] == "approved" and out["title"] == "Red mug" and out["alt_text"] == EDITED_ALT
    assert (out["field_sources"]["title"], out["field_sources"]["alt_text"]) == ("human", "human")


def test_bulk_approval_and_the_feedback_command_keep_sources(fleet):
    settings, _records = fleet
    with ReviewServer(settings) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get(srv.login_url).status_code == 303
        queue = c.get("/?status=needs_review&tag=subject:city").text
        assert "2 assets" in queue
        csrf = re.search(r'name="csrf" value="([^"]+)"', queue).group(1)
        selection = re.search(r'name="selection" value="([^"]+)"', queue).group(1)  # what the page confirmed
        r = c.post("/bulk-approve", data={"csrf": csrf, "scope": "all", "status": "needs_review",
                                          "tag": "subject:city", "expect": "2", "selection": selection})
        # "Approve all 2 matching"
        assert "2 assets approved" in c.get(r.headers["location"]).text
    sent = CliRunner().invoke(kpis_cli.app, ["feedback", "poster-0002", "--approve", "--editor", "maria",
                                             "--field", "title=edited:Farmers market poster"], env=env_for(settings))
    assert sent.exit_code == 0, sent.output

    ids = ["paris-0003", "paris-0004", "poster-0002"]
    with RunnerThread(StageRunner(ReviewStage(settings), settings)), \
            RunnerThread(StageRunner(IndexSink(settings), settings)):
        docs = _docs(settings, lambda d: d.get("status") == "approved", ids)
    for aid in ("paris-0003", "paris-0004"):
        doc = docs[aid]
        assert doc["status"] == "approved" and doc["reviewed_by"] == "erin"
        assert {f: doc["field_sources"][f] for f in ("title", "alt_text", "caption", "tags")} == \
            dict.fromkeys(("title", "alt_text", "caption", "tags"), "model"), aid
        assert {t["source"] for t in doc["tag_details"]} == {"model"}
        assert {f["action"] for f in _reviewed(doc).values()} == {"accepted"}
    poster = docs["poster-0002"]
    assert poster["status"] == "approved" and poster["title"] == "Farmers market poster"
    assert poster["field_sources"]["title"] == "human"
    assert poster["field_sources"]["alt_text"] == "model" and poster["field_sources"]["tags"] == "model"
    assert _reviewed(poster)["alt_text"]["action"] == "accepted"


def test_approving_values_from_the_family_keeps_them_propagated_and_an_accepted_field_is_not_overwritten(store):
    """A value the duplicate family gave an asset, approved as shown, stays `propagated` (approved by a person);
    a field a person accepted (no verdict yet) keeps its own model value when an approved member joins the family,
    although its source is still `model`."""
    from app.review.decisions import approval
    from tests.test_family_propagation import ORIG_ALT, _docs as family_docs, _record, _sink

    sink = _sink(store, family_propagation=True, family_decay=0.9)
    group = ReviewStage(sink.settings, client=sink.client)
    try:
        sink.process_batch(as_items([_record("g-web", None, alt_text="boats", status="needs_review"),
                                     _record("g-small", "g-web", alt_text="a small harbour", status="needs_review")]))
        accept = {"decision_id": "d-accept", "asset_id": "g-small", "editor": "erin", "tenant": "default",
                  "decided_at": 1_800_000_000_000, "status": None,
                  "fields": [{"field": "alt_text", "action": "accepted", "value": None}]}
        assert sink.process_batch(as_items([group.process(accept).value])) == [None]
        sink.process_batch(as_items([_record("g-orig", "g-web", status="approved", alt_text=ORIG_ALT,
                                             tags=[("subject", "water"), ("subject", "boat")])]))
        docs = family_docs(sink)
        small = docs["g-small"]
        assert small["alt_text"] == "a small harbour" and small["field_sources"].get("alt_text", "model") == "model"
        assert "subject:boat" in small["tags"]  # the field it did not decide on is still given
        web = docs["g-web"]
        assert web["alt_text"] == ORIG_ALT and web["field_sources"]["alt_text"] == "propagated"

        decision = {**approval("g-web", "erin", "default", web), "decision_id": "d-approve",
                    "decided_at": 1_800_000_100_000}
        assert sink.process_batch(as_items([group.process(decision).value])) == [None]
        web = family_docs(sink)["g-web"]
        assert web["status"] == "approved" and web["alt_text"] == ORIG_ALT
        assert web["field_sources"]["alt_text"] == "propagated" and web["field_sources"]["title"] == "model"
        assert {t["tag"]: t["source"] for t in web["tag_details"]} == {"subject:water": "model",
                                                                       "subject:boat": "propagated"}
        reviewed = _reviewed(web)
        assert (reviewed["alt_text"]["action"], reviewed["alt_text"]["source"]) == ("accepted", "propagated")
        assert (reviewed["title"]["action"], reviewed["title"]["source"]) == ("accepted", "model")
    finally:
        group.close()
        sink.close()


def test_an_edit_saved_first_and_approved_later_stays_the_editors_edit():
    """"Save field decisions" with an edited alt text, then "Approve all" in a later visit: the alt text stays
    `edited` (writeback replaces the DAM's value only for an edit) and `human`; the rest is accepted as `model`."""
    from domain.review import apply_review, merge_decision
    from tests.store_support import validated_asset

    record = validated_asset("two-step", title="Red mug", alt_text="Image of a red mug", status="needs_review")
    saved = {"decision_id": "d-save", "asset_id": "two-step", "editor": "erin", "decided_at": 1_800_000_000_000,
             "status": None, "fields": [{"field": "alt_text", "action": "edited", "value": EDITED_ALT}]}
    review = merge_decision(None, saved, record)
    shown = apply_review(record, review)  # the record the review group stores and the app shows next time
    approve = {"decision_id": "d-approve", "asset_id": "two-step", "editor": "erin", "decided_at": 1_800_000_060_000,
               "status": "approved", "fields": []}
    review = merge_decision(review, approve, shown)
    out = apply_review(record, review)
    reviewed = _reviewed(out)
    assert (reviewed["alt_text"]["action"], reviewed["alt_text"]["value"]) == ("edited", EDITED_ALT)
    assert (reviewed["title"]["action"], reviewed["title"]["source"]) == ("accepted", "model")
    assert out["status"] == "approved" and out["alt_text"] == EDITED_ALT
    assert (out["field_sources"]["alt_text"], out["field_sources"]["title"]) == ("human", "model")
    assert {t["source"] for t in out["tags"]} == {"model"}


def test_approving_an_asset_with_empty_credit_credits_nobody_with_it():
    """Trial 15: Approve all on an asset whose credit and licensing are empty recorded them as `accepted` with
    source `human` (value null), though nobody wrote them. The approval still confirms them (a later model value
    waits as a suggestion), but with no source."""
    from domain.review import apply_review, merge_decision
    from tests.store_support import validated_asset

    record = validated_asset("no-credit", title="Red mug", status="needs_review")
    record.update(credit_text=None, licensing=None, field_sources={  # as validate emits an asset with no rights facts
        k: v for k, v in record["field_sources"].items() if k not in ("credit_text", "licensing")})
    approve = {"decision_id": "d-all", "asset_id": "no-credit", "editor": "erin", "decided_at": 1_800_000_000_000,
               "status": "approved", "fields": []}
    reviewed = _reviewed(apply_review(record, merge_decision(None, approve, record)))
    assert {(reviewed[f]["action"], reviewed[f]["value"], reviewed[f]["source"]) for f in ("credit_text", "licensing")
            } == {("accepted", None, None)}
    assert reviewed["title"]["source"] == "model"


def test_removing_one_tag_leaves_the_others_the_models_with_their_scores():
    """Trial 11: an editor removed color:orange from an asset and every remaining model tag turned `human` with
    score 1.00. Only the tag the person added is theirs; the ones they kept keep the model's source and score."""
    from domain.review import apply_review, merge_decision
    from tests.store_support import validated_asset

    record = validated_asset("tag-edit", status="needs_review")  # model tags color:red, product:shoe, style:studio
    before = {t["tag"]: (t["source"], t["score"]) for t in record["tags"]}
    edit = {"decision_id": "d-tags", "asset_id": "tag-edit", "editor": "erin", "decided_at": 1_800_000_000_000,
            "status": "approved", "fields": [{"field": "tags", "action": "edited",
                                              "value": "color:red, product:shoe, subject:sport"}]}
    out = apply_review(record, merge_decision(None, edit, record), label_of=lambda t: t.split(":")[1])
    chips = {t["tag"]: (t["source"], t["score"]) for t in out["tags"]}
    assert chips == {"color:red": before["color:red"], "product:shoe": before["product:shoe"],
                     "subject:sport": ("human", 1.0)}
    assert before["color:red"][0] == "model" and out["field_sources"]["tags"] == "human"


def test_an_approved_asset_says_approved_by_its_editor_once(fleet):
    """User trial: every approved asset listed "approved by <editor>" twice in its reasons (china_copy, approved
    once): the review group applied the review to the stored record, and the index sink applied it again to the
    group's output. Seeded approvals (through the sink) and an approval made in the app now say it once."""
    settings, _records = fleet
    with ReviewServer(settings) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get(srv.login_url).status_code == 303
        seeded = c.get("/asset/done-0006").text  # approved by carol before, indexed through the sink
        assert re.findall(r"<li>approved by carol</li>", seeded) == ["<li>approved by carol</li>"]
        queue = c.get("/?status=needs_review").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', queue).group(1)
        r = c.post("/bulk-approve", data={"csrf": csrf, "scope": "selected", "ids": ["paris-0003"]})
        assert "1 asset approved" in c.get(r.headers["location"]).text

        with RunnerThread(StageRunner(ReviewStage(settings), settings)), \
                RunnerThread(StageRunner(IndexSink(settings), settings)):
            doc = _docs(settings, lambda d: d.get("status") == "approved", ["paris-0003"])["paris-0003"]
        assert doc["status"] == "approved" and doc["reviewed_by"] == "erin"
        assert [x for x in doc["reasons"] if "approved" in x] == ["approved by erin"]
        page = c.get("/asset/paris-0003").text
        assert re.findall(r"<li>approved by erin</li>", page) == ["<li>approved by erin</li>"]


def test_an_approved_value_a_new_prompt_no_longer_produces_is_the_persons_not_the_new_runs(store):
    """Review finding (issue 15): after "Approve all", a reprocess with a new prompt brought other output; the
    approved values stayed pinned but were credited to the new run (`model`, prompt v2-NEW in the audit and the
    asset view) and an approved tag the new run no longer gives was rebuilt as a `model` tag with score 1.0, a
    score no model gave. Now a pinned value the record no longer holds is the person's (`human`); a value the new
    run still produces keeps its `model` source and score."""
    from app.kpis.compute import audit_for_validated
    from app.kpis.settings import KpiSettings
    from app.review.decisions import approval, field_rows
    from domain.records import record_from_doc
    from tests.store_support import validated_asset
    from tests.test_family_propagation import _docs as index_docs, _sink

    sink = _sink(store)
    group = ReviewStage(sink.settings, client=sink.client)
    try:
        v1 = validated_asset("rp-mug", title="Red mug", alt_text="A red mug", caption="Old caption",
                             status="needs_review")
        sink.process_batch(as_items([v1]))
        decision = {**approval("rp-mug", "erin", "default", index_docs(sink)["rp-mug"]), "decision_id": "d-all",
                    "decided_at": 1_800_000_000_000}
        assert sink.process_batch(as_items([group.process(decision).value])) == [None]
        assert index_docs(sink)["rp-mug"]["field_sources"].get("alt_text", "model") == "model"  # approved as the model's

        # a reprocess with a new prompt: another title and caption, the same licensing, other tags but color:red
        v2 = validated_asset("rp-mug", 2, title="Crimson mug", alt_text="A red mug", caption="New caption",
                             status="needs_review", tags=[("color", "red"), ("product", "cup")])
        v2["tags"][0]["score"] = 0.61
        for p in v2["enriched"]["provenance"]:
            p["prompt_version"] = "v2-NEW"
        sink.process_batch(as_items([v2]))
        doc = index_docs(sink)["rp-mug"]
        assert doc["status"] == "approved" and doc["version"] == 2
        assert (doc["title"], doc["caption"]) == ("Red mug", "Old caption")  # pinned
        assert doc["model_suggestions"]["title"] == "Crimson mug"
        sources = doc["field_sources"]
        assert (sources["title"], sources["caption"], sources["tags"]) == ("human", "human", "human")
        assert sources.get("alt_text", "model") == "model"  # the new run produced the approved value itself
        assert sources.get("licensing", "model") == "model"
        chips = {t["tag"]: (t["source"], t["score"]) for t in doc["tag_details"]}
        assert chips == {"color:red": ("model", 0.61), "product:shoe": ("human", 1.0), "style:studio": ("human", 1.0)}

        ks = KpiSettings()
        audit = {f["field"]: f for f in audit_for_validated(record_from_doc(
            sink.client.get(index=read_alias(sink.cfg), id="rp-mug")["_source"]), ks)["fields"]}
        rows = {r["name"]: r for r in field_rows(doc, ks.field_tasks)}
        for name in ("title", "caption", "tags"):
            assert (audit[name]["source"], audit[name]["action"], audit[name]["editor"]) == ("human", "accepted", "erin")
            assert audit[name]["prompt_version"] is None and audit[name]["model"] is None
            assert rows[name]["source"] == "human" and rows[name]["provenance"] is None
            assert rows[name]["decided"]["action"] == "accepted"
        assert audit["alt_text"]["source"] == "model" and rows["alt_text"]["source"] == "model"
    finally:
        group.close()
        sink.close()


def test_approving_a_renamed_tag_the_family_gave_sends_it_under_its_current_name(store):
    """Review finding (issue 15): a member given `color:grey` by a source indexed before the rename to
    `color:gray`; "Approve all" (app, bulk, or a decision sent without the app's mapping) was dead-lettered
    `invalid_decision` while the app said "Sent to feedback". Now the approval publishes `color:gray`, marked
    `propagated`."""
    from app.review.decisions import approval, from_form
    from domain.taxonomy import taxonomy_from_settings
    from tests.test_family_propagation import _docs as family_docs, ORIG_ALT, _record, _sink

    sink = _sink(store, family_propagation=True, family_decay=0.9)
    group = ReviewStage(sink.settings, client=sink.client)
    tax = taxonomy_from_settings(sink.settings)
    try:
        sink.process_batch(as_items([_record("rn-web", None, alt_text="boats", status="needs_review"),
                                     _record("rn-small", "rn-web", alt_text="boats", status="needs_review"),
                                     _record("rn-orig", "rn-web", status="approved", alt_text=ORIG_ALT,
                                             tags=[("subject", "water"), ("color", "grey")])]))
        docs = family_docs(sink)
        assert "color:grey" in docs["rn-web"]["propagated"]["applied"]["tags"]

        form = from_form(docs["rn-small"], {"verdict": "approve", "value.tags": ", ".join(docs["rn-small"]["tags"])},
                         "erin", tax)
        # a bulk approval built without the taxonomy still holds the old name: the review group maps it
        bulk = approval("rn-web", "erin", "default", docs["rn-web"])
        assert "color:grey" in [f["value"] for f in bulk["fields"] if f["field"] == "tags"][0]
        for aid, decision in (("rn-web", bulk), ("rn-small", form)):
            decision = {**decision, "decision_id": f"d-{aid}", "decided_at": 1_800_000_000_000, "tenant": "default"}
            assert sink.process_batch(as_items([group.process(decision).value])) == [None]
        for aid in ("rn-web", "rn-small"):
            doc = family_docs(sink)[aid]
            assert doc["status"] == "approved"
            assert {t["tag"]: t["source"] for t in doc["tag_details"]} == {"subject:water": "model",
                                                                           "color:gray": "propagated"}
            assert (_reviewed(doc)["tags"]["action"], _reviewed(doc)["tags"]["source"]) == ("accepted", "propagated")
        # the app's form (with the taxonomy) sends the current name itself
        assert [f["value"] for f in form["fields"] if f["field"] == "tags"] == ['["color:gray", "subject:water"]']
    finally:
        group.close()
        sink.close()


def _pinned(record: dict, *decisions: dict) -> tuple[dict, dict]:
    """The review after each decision (each merged into the record the review group stored after the previous
    one) and the record with it applied."""
    from domain.review import apply_review, merge_decision

    review, shown = None, record
    for i, d in enumerate(decisions):
        review = merge_decision(review, {"decision_id": f"d{i}", "asset_id": record["enriched"]["pre"]["asset"]
                                         ["asset_id"], "editor": "erin", "decided_at": 1_800_000_000_000 + i * 60_000,
                                         "status": None, "fields": [], **d}, shown)
        shown = apply_review(record, review)
    return review, shown


def test_accepting_ones_own_earlier_edit_keeps_it_an_edit_that_reaches_the_dam():
    """Review finding (issue 15): ticking *accept* on an alt text the editor wrote in an earlier visit turned the
    edit into `accepted`, so writeback's `edited_fields` was empty and the editor's text never reached the DAM."""
    from consumers.writeback.plan import edited_fields
    from tests.store_support import validated_asset

    record = validated_asset("acc-edit", title="Red mug", alt_text="Image of a red mug", status="needs_review")
    mapping = {"alt_text": "alt", "title": "title"}
    _, saved = _pinned(record, {"fields": [{"field": "alt_text", "action": "edited", "value": EDITED_ALT}]})
    review, out = _pinned(record, {"fields": [{"field": "alt_text", "action": "edited", "value": EDITED_ALT}]},
                          {"status": "approved", "fields": [{"field": "alt_text", "action": "accepted",
                                                             "value": saved["alt_text"]}]})
    assert (_reviewed(out)["alt_text"]["action"], _reviewed(out)["alt_text"]["value"]) == ("edited", EDITED_ALT)
    assert out["status"] == "approved" and out["field_sources"]["alt_text"] == "human"
    assert edited_fields(out, mapping) == {"alt"}
    # accepting another value (here: the model's, after the edit) is still an accept
    _, other = _pinned(record, {"fields": [{"field": "alt_text", "action": "edited", "value": EDITED_ALT}]},
                       {"fields": [{"field": "alt_text", "action": "accepted", "value": "Image of a red mug"}]})
    assert _reviewed(other)["alt_text"]["action"] == "accepted" and edited_fields(other, mapping) == set()


def test_a_rejection_stays_a_rejection_through_a_later_approve_all():
    """Review finding (issue 15): rejected tags became `accepted "[]"` (source human) after a later "Approve
    all"; a rejected caption stayed rejected. Both stay rejections now."""
    from tests.store_support import validated_asset

    record = validated_asset("rej-tags", title="Red mug", caption="cap", status="needs_review")
    review, out = _pinned(record, {"fields": [{"field": "tags", "action": "rejected", "value": None},
                                              {"field": "caption", "action": "rejected", "value": None}]},
                          {"status": "approved"})
    reviewed = _reviewed(out)
    assert (reviewed["tags"]["action"], reviewed["tags"]["value"]) == ("rejected", None)
    assert (reviewed["caption"]["action"], reviewed["caption"]["value"]) == ("rejected", None)
    assert out["tags"] == [] and out["caption"] is None and out["status"] == "approved"
    assert reviewed["title"]["action"] == "accepted"


def test_a_rejected_alt_text_is_never_approved_or_auto_applied_without_one():
    """Trial 11, finding 5: a rejection says the text is wrong, not that the image is decorative: approved (or
    auto-applied) with no alt text left, a non-decorative image stays in review until a person writes one."""
    from tests.store_support import validated_asset

    reject = {"fields": [{"field": "alt_text", "action": "rejected", "value": None}]}
    for status, verdict in (("needs_review", "approved"), ("auto_applied", None)):
        record = validated_asset("rej-alt", title="Gravel", alt_text="Gravel", status=status)
        _, out = _pinned(record, {**reject, "status": verdict})
        assert (out["status"], out["alt_text"], out["decorative"]) == ("needs_review", None, False), status
        assert out["reasons"][0].startswith("no alt text for a non-decorative image after erin's review")
        _, out = _pinned(record, {**reject, "status": verdict},
                         {"status": "approved", "fields": [{"field": "alt_text", "action": "edited", "value": "Grey gravel"}]})
        assert (out["status"], out["alt_text"]) == ("approved", "Grey gravel")
        assert not [r for r in out["reasons"] if r.startswith("no alt text")]


def test_an_accepted_value_is_propagated_only_when_it_is_the_familys(store):
    """Review finding (issue 15): a value a person accepted that was neither the record's nor the one the family
    gave was labelled `propagated` because the field held a propagated value. Through the real review group."""
    from tests.test_family_propagation import ORIG_ALT, _docs as family_docs, _record, _sink

    sink = _sink(store, family_propagation=True, family_decay=0.9)
    group = ReviewStage(sink.settings, client=sink.client)
    try:
        sink.process_batch(as_items([_record("pc-web", None, alt_text="boats", status="needs_review"),
                                     _record("pc-small", "pc-web", alt_text="boats", status="needs_review"),
                                     _record("pc-orig", "pc-web", status="approved", alt_text=ORIG_ALT)]))
        docs = family_docs(sink)
        assert docs["pc-web"]["alt_text"] == ORIG_ALT and docs["pc-small"]["alt_text"] == ORIG_ALT
        for aid, value in (("pc-web", ORIG_ALT), ("pc-small", "two boats in a harbour, my words")):
            decision = {"decision_id": f"d-{aid}", "asset_id": aid, "editor": "erin", "tenant": "default",
                        "decided_at": 1_800_000_000_000, "status": None,
                        "fields": [{"field": "alt_text", "action": "accepted", "value": value}]}
            assert sink.process_batch(as_items([group.process(decision).value])) == [None]
        docs = family_docs(sink)
        assert _reviewed(docs["pc-web"])["alt_text"]["source"] == "propagated"
        assert docs["pc-web"]["field_sources"]["alt_text"] == "propagated"
        small = docs["pc-small"]
        assert (_reviewed(small)["alt_text"]["source"], small["field_sources"]["alt_text"]) == ("human", "human")
        assert small["alt_text"] == "two boats in a harbour, my words"
    finally:
        group.close()
        sink.close()


def test_an_approved_original_keeps_its_summary_source_through_a_rerun_in_the_other_order(store):
    """User trial 5 (issue 15 item 4): chelsea_web.jpg is enriched before chelsea.jpg (the larger, canonical
    copy); an editor approves the original untouched; a re-run enriches the original first. The original's
    enrichment is its own in both runs (it used to be the web copy's, then, pinned but no longer produced, `human`),
    so the approved summary keeps its `model` source and the asset stays approved."""
    import asyncio
    import copy

    from app.review.decisions import approval
    from consumers.enrich.stage import EnrichStage
    from streams.stage import RecordContext
    from tests.preprocess_support import preprocessed_quality
    from tests.test_family_propagation import _docs as index_docs, _sink

    sink = _sink(store)
    group = ReviewStage(sink.settings, client=sink.client)

    def run(order: list[str], version: int) -> None:
        stage = EnrichStage(sink.settings.with_overrides(enrich={"provider": "local", "dedupe": "memory",
                                                                 "result_cache": "off"}))
        values = [copy.deepcopy(preprocessed_quality(name)) for name in order]
        for v in values:
            v["asset"].update(version=version, event_time=v["asset"]["event_time"] + version)

        async def go() -> list[dict]:
            try:
                return [(await stage.aprocess(v, RecordContext("preprocessed", 0, 0, v["asset"]["asset_id"], {},
                                                               None))).value for v in values]
            finally:
                await stage.aclose()
        sink.process_batch(as_items([ValidateStage(sink.settings).process(e).value for e in asyncio.run(go())]))

    try:
        run(["chelsea_web.jpg", "chelsea.jpg"], 1)
        before = index_docs(sink)["chelsea.jpg"]
        decision = {**approval("chelsea.jpg", "erin", "default", before), "decision_id": "d-orig",
                    "decided_at": 1_800_000_000_000}
        sink.process_batch(as_items([group.process(decision).value]))
        run(["chelsea.jpg", "chelsea_web.jpg"], 2)
        doc = index_docs(sink)["chelsea.jpg"]
        assert doc["version"] == 2 and doc["status"] == "approved" and doc["summary"] == before["summary"]
        assert doc["field_sources"].get("summary", "model") == "model"
        assert not doc.get("model_suggestions", {}).get("summary")
    finally:
        group.close()
        sink.close()
