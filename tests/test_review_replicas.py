"""Two editors on one asset across desk replicas, and a decision the review worker never applies.

Two review apps (desk replicas: each knows only the decisions it sent itself) over one real tansu broker and one real
osmem-server; the real review worker (ReviewStage in a StageRunner) and the real index sink apply what reaches
`feedback`. Code review 18 F7 (a decision never applied held other editors back for 10 minutes) and the multi-replica
gap of docs/review.md ("Two editors on one asset": both saves were sent and told "Sent", one silently lost)."""
from __future__ import annotations

import html
import re
import time
import uuid
from urllib.parse import parse_qs, urlsplit

from contextlib import contextmanager

import httpx
import pytest
from typer.testing import CliRunner

from app.kpis import cli as kpis_cli
from app.kpis.audit import history
from app.kpis.feedback import publish_decision
from app.kpis.testing import RunningApp
from app.review.server import ReviewServer
from consumers.index.sink import IndexSink
from consumers.review.stage import ReviewStage
from domain.store.management import read_alias
from streams.embedded import free_port
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, env_for, provision, read_topic
from tests.review_support import LOW, feedback, review_record, review_settings
from tests.store_support import as_items

pytestmark = pytest.mark.timeout(300)
EDITORS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture
def settings(broker, store):  # noqa: F811
    s = review_settings(broker, store.url, f"rr{uuid.uuid4().hex[:6]}", auth="basic", users=EDITORS,
                        apply_wait_s=2.0)
    provision(s)
    rec = review_record(s, "race-0001", minutes=1, sample="product_red_mug.jpg", title="Mug",
                        alt_text="A red mug on a table", tags=[("product", "cup")], reasons=[LOW])
    rec["usage_flag"] = "ok"
    sink = IndexSink(s)
    try:
        assert sink.process_batch(as_items([rec])) == [None]
        sink.client.indices.refresh(index=read_alias(s))
    finally:
        sink.close()
    return s


def _form_of(c: httpx.Client, asset_id: str) -> dict[str, str]:
    """The hidden values of an asset page's form, as a browser posts them."""
    page = c.get(f"/asset/{asset_id}").text
    return {html.unescape(k): html.unescape(v) for k, v in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}


def _said(response) -> str:
    q = parse_qs(urlsplit(response.headers["location"]).query)
    return (q.get("sent") or q.get("error") or [""])[0]


def _page_text(c: httpx.Client, asset_id: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", c.get(f"/asset/{asset_id}").text)).split())


def _doc(settings, asset_id: str) -> dict:
    sink = IndexSink(settings)
    try:
        sink.client.indices.refresh(index=read_alias(settings))
        return sink.client.get(index=read_alias(settings), id=asset_id)["_source"]
    finally:
        sink.close()


def _wait(check, timeout_s: float = 40.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError("timed out")


def _letters(settings, n: int) -> list[dict]:
    return [m["value"] for m in read_topic(settings, "dead_letter", n, timeout_s=20) if m["value"]["stage"] == "review"]


@contextmanager
def kpi_app(settings, tmp_path):
    """The KPI app (the audit log's writer) as a subprocess against this test's topics."""
    port = free_port()
    env = {k: v for k, v in env_for(settings).items() if k.startswith("ASSETSTREAM_")}
    env.update({"ASSETSTREAM_KPIS__APP_ID": f"kpis-{settings.topics.prefix}", "ASSETSTREAM_KPIS__WEB_PORT": str(port),
                "ASSETSTREAM_KPIS__WEB_HOST": "127.0.0.1", "ASSETSTREAM_KPIS__DATA_DIR": str(tmp_path / "kpis")})
    with RunningApp(env, port, str(tmp_path / "kpis.log")):
        yield


def test_two_desk_replicas_both_send_one_view_and_the_review_group_applies_one(settings, tmp_path):
    """alice on one desk replica and bob on another save the alt text of the same view while no review worker runs:
    each replica sends its own (it cannot know the other's). The review group applies alice's, which came first,
    and refuses bob's (stale_decision, dead-lettered, naming alice and what she changed); bob sees why on the
    asset's page, on either replica. A decision that does not say its base (`assetstream feedback`) is applied as
    before."""
    before = {d["decision_id"] for d in feedback(settings)}
    with ReviewServer(settings) as one, ReviewServer(settings) as two:
        alice = httpx.Client(base_url=one.url, auth=("alice", EDITORS["alice"]))
        bob = httpx.Client(base_url=two.url, auth=("bob", EDITORS["bob"]))
        bob_on_one = httpx.Client(base_url=one.url, auth=("bob", EDITORS["bob"]))
        try:
            forms = {who: {**_form_of(c, "race-0001"), "value.alt_text": f"{who}'s alt text", "verdict": "save"}
                     for who, c in (("alice", alice), ("bob", bob))}
            for who, c in (("alice", alice), ("bob", bob)):
                answer = c.post("/decide/race-0001", data=forms[who])
                assert (answer.status_code, _said(answer)) == (303, "alt_text edited"), _said(answer)
            sent = [d for d in feedback(settings) if d["decision_id"] not in before]
            assert [(d["editor"], d["base_decision_id"]) for d in sent] == [("alice", ""), ("bob", "")]

            with RunnerThread(StageRunner(ReviewStage(settings), settings)), \
                    RunnerThread(StageRunner(IndexSink(settings), settings)), kpi_app(settings, tmp_path):
                doc = _wait(lambda: (d := _doc(settings, "race-0001")) and sent[0]["decision_id"] in
                            ((d.get("review") or {}).get("decision_ids") or []) and d)
                letters = _letters(settings, 1)
                assert doc["alt_text"] == "alice's alt text"  # exactly one applied, the first sent
                assert sent[1]["decision_id"] not in doc["review"]["decision_ids"]
                assert [(x["details"]["reason"], x["details"]["decision_id"]) for x in letters] == [
                    ("stale_decision", sent[1]["decision_id"])]
                assert re.fullmatch(r"alice changed the alt text at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                                    letters[0]["details"]["meanwhile"]), letters[0]["details"]

                # bob sees why, on the replica he used and on the other one (each reads the dead-letter topic)
                for c in (bob, bob_on_one):
                    said = _wait(lambda c=c: re.search(r"not applied: your decision of \d\d:\d\d \(alt text\) was "
                                                       r"refused by the review group: alice changed the alt text at "
                                                       r"[0-9: -]+ UTC, after the page you decided on was drawn",
                                                       _page_text(c, "race-0001")), timeout_s=20)
                    assert said
                assert "not applied" not in _page_text(alice, "race-0001")  # alice's was applied: nothing to say
                # and on a replica started after the refusal (it reads review.refusals_lookback_s back)
                with ReviewServer(settings) as three, httpx.Client(base_url=three.url,
                                                                   auth=("bob", EDITORS["bob"])) as bob_on_three:
                    assert _wait(lambda: "refused by the review group: alice changed the alt text" in
                                 _page_text(bob_on_three, "race-0001"), timeout_s=20)

                # null base (assetstream feedback, the SDK, an older desk): not checked, applied as before
                carol = publish_decision(settings, {"asset_id": "race-0001", "editor": "carol", "fields": [
                    {"field": "alt_text", "action": "edited", "value": "carol's alt text"}]})
                doc = _wait(lambda: (d := _doc(settings, "race-0001"))["alt_text"] == "carol's alt text" and d)
                assert carol["decision_id"] in doc["review"]["decision_ids"]

                # the audit log has bob's decision and its refusal (the KPI app audits what the review group refused)
                refused = _wait(lambda: [e for e in history(settings, "race-0001") if e.get("refused")])
                assert [(e["entry_id"], e["actor"], e["refused"].split(":")[0]) for e in refused] == [
                    ("ref:" + sent[1]["decision_id"], "bob", "stale_decision")]
                assert "alice changed the alt text at" in refused[0]["refused"]
                table = CliRunner().invoke(kpis_cli.app, ["audit", "race-0001"], env={**env_for(settings),
                                                                                      "COLUMNS": "250"})
                assert table.exit_code == 0 and "refused" in table.output, table.output
        finally:
            for c in (alice, bob, bob_on_one):
                c.close()


def test_a_decision_never_applied_holds_others_back_briefly_and_says_since_when(settings):
    """Code review 18 F7: with no review worker running, alice's save held bob's for 10 minutes ("reload in a
    moment"). Now the refusal says the review worker has not applied it and since when; after
    review.unapplied_hold_s bob's is sent, and the review group, once it runs, applies alice's (the first) and
    refuses bob's, which his page then says."""
    s = settings.with_overrides(review={"unapplied_hold_s": 4.0, "apply_wait_s": 0})
    before = {d["decision_id"] for d in feedback(s)}
    with ReviewServer(s) as desk:
        alice = httpx.Client(base_url=desk.url, auth=("alice", EDITORS["alice"]))
        bob = httpx.Client(base_url=desk.url, auth=("bob", EDITORS["bob"]))
        try:
            forms = {who: {**_form_of(c, "race-0001"), "value.alt_text": f"{who}'s alt text", "verdict": "save"}
                     for who, c in (("alice", alice), ("bob", bob))}
            first = alice.post("/decide/race-0001", data=forms["alice"])
            assert _said(first) == "alt_text edited"
            held = bob.post("/decide/race-0001", data=forms["bob"])
            assert held.status_code == 307
            assert re.fullmatch(r"nothing was sent: alice decided the alt text at \d\d:\d\d:\d\d \(\d+ s ago\) and the "
                                r"review worker has not applied it yet: reload in a moment, check it and decide again",
                                _said(held)), _said(held)
            time.sleep(4.2)  # past the hold: no longer counted as pending
            later = bob.post("/decide/race-0001", data=forms["bob"])
            assert (later.status_code, _said(later)) == (303, "alt_text edited"), _said(later)
            sent = [d for d in feedback(s) if d["decision_id"] not in before]
            assert [d["editor"] for d in sent] == ["alice", "bob"]

            with RunnerThread(StageRunner(ReviewStage(s), s)), RunnerThread(StageRunner(IndexSink(s), s)):
                _wait(lambda: sent[0]["decision_id"] in ((_doc(s, "race-0001").get("review") or {})
                                                         .get("decision_ids") or []))
                assert _wait(lambda: "refused by the review group: alice changed the alt text" in
                             _page_text(bob, "race-0001"), timeout_s=20)
                assert _doc(s, "race-0001")["alt_text"] == "alice's alt text"
        finally:
            alice.close()
            bob.close()


def test_an_approval_through_another_replica_after_a_save_on_the_same_view_is_refused(settings):
    """A verdict is refused when anyone else decided after the view it was made on (trial 34 F2's rule), across
    replicas too: bob's Approve all from the view alice saved a caption on, through the other desk replica, would
    have approved her caption unseen; the review group applies her save and refuses his approval, and says why."""
    before = {d["decision_id"] for d in feedback(settings)}
    with ReviewServer(settings.with_overrides(review={"apply_wait_s": 0})) as one, \
            ReviewServer(settings.with_overrides(review={"apply_wait_s": 0})) as two:
        alice = httpx.Client(base_url=one.url, auth=("alice", EDITORS["alice"]))
        bob = httpx.Client(base_url=two.url, auth=("bob", EDITORS["bob"]))
        try:
            saved = alice.post("/decide/race-0001", data={**_form_of(alice, "race-0001"), "verdict": "save",
                                                          "value.caption": "alice's caption"})
            approved = bob.post("/decide/race-0001", data={**_form_of(bob, "race-0001"), "verdict": "approve"})
            assert (_said(saved), _said(approved)) == ("caption edited", "race-0001 (Mug): approved")
            sent = [d for d in feedback(settings) if d["decision_id"] not in before]
            with RunnerThread(StageRunner(ReviewStage(settings), settings)), \
                    RunnerThread(StageRunner(IndexSink(settings), settings)):
                assert _wait(lambda: "your decision of" in (text := _page_text(bob, "race-0001")) and text) and \
                    re.search(r"not applied: your decision of \d\d:\d\d \(approved\) was refused by the review group: "
                              r"alice changed the caption at [0-9: -]+ UTC", _page_text(bob, "race-0001"))
                doc = _wait(lambda: (d := _doc(settings, "race-0001"))["caption"] == "alice's caption" and d)
                assert doc["status"] == "needs_review"
                assert doc["review"]["decision_ids"][-1] == sent[0]["decision_id"]
        finally:
            alice.close()
            bob.close()
