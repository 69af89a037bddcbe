"""An approval is of *that image* (user trial, issue 15): an editor approves `product_red_mug` (alt text and tags
edited), then the file is overwritten with another picture (a green cup) and published as `updated`. The asset
goes back to review saying why, the person's values stay in place and the model's new text waits as a
suggestion; a re-run of the same bytes keeps the approval, and approving the new image publishes it again.

Every hop is the real stage on real records: preprocess reads the file, enrich (local models) reads the review
from the index, validate applies it, the index sink writes the real store; the decisions are form posts to the
real review app, carried over the real broker by the review group."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
import re
import shutil
import time
import uuid

import httpx
import pytest
from PIL import Image, ImageDraw

from app.review.server import ReviewServer
from consumers.enrich.stage import EnrichStage
from consumers.index.sink import IndexSink
from consumers.preprocess.stage import PreprocessStage
from consumers.review.stage import ReviewStage
from consumers.validate.stage import ValidateStage
from domain.store.management import read_alias
from streams.avro import roundtrip
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, provision
from tests.preprocess_support import event
from tests.review_support import SAMPLES, review_settings
from tests.store_support import as_items
from tests.test_enrich_stage import ctx
from tests.test_review_provenance import _form

pytestmark = pytest.mark.timeout(120)

ASSET = "product_red_mug"
PERSON_ALT = "A red ceramic mug with a white handle"


def _green_cup(path) -> None:
    """Another picture in the same file: a green cup on white."""
    img = Image.new("RGB", (640, 480), (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.rectangle((220, 150, 400, 380), fill=(20, 160, 120))
    d.ellipse((380, 200, 470, 320), outline=(20, 160, 120), width=18)
    img.save(path, "JPEG", quality=90)


def _doc(sink: IndexSink, ok=lambda d: True, timeout_s: float = 30.0) -> dict:
    """The asset's index document, once `ok` holds (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        sink.client.indices.refresh(index=read_alias(sink.cfg))
        doc = sink.client.get(index=read_alias(sink.cfg), id=ASSET)["_source"]
        if ok(doc) or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


class _Pipeline:
    """raw event -> preprocess -> enrich -> validate -> index sink, each the real stage, in this process."""

    def __init__(self, settings, lib):
        self.settings = settings.with_overrides(preprocess={"file_roots": [str(lib)]},
                                                enrich={"provider": "local", "dedupe": "elasticsearch"})
        self.pre, self.enrich = PreprocessStage(self.settings), EnrichStage(self.settings)
        self.validate, self.sink = ValidateStage(self.settings), IndexSink(self.settings)

    def publish(self, path, version: int, event_type: str) -> dict:
        ev = {**event(f"file://{path}", event_type, ASSET), "event_id": uuid.uuid4().hex, "version": version}
        pre = roundtrip("PreprocessedAsset", self.pre.process(ev, None).value)
        enriched = asyncio.run(self.enrich.aprocess(pre, ctx(ASSET))).value
        validated = self.validate.process(roundtrip("EnrichedAsset", enriched)).value
        assert self.sink.process_batch(as_items([validated])) == [None]
        return validated

    def doc(self, ok=lambda d: True) -> dict:
        return _doc(self.sink, ok)

    def close(self) -> None:
        asyncio.run(self.enrich.aclose())
        self.sink.close()


def _rights_confirmed(c: httpx.Client, r: httpx.Response) -> httpx.Response:
    """The file carries no licence evidence (usage unknown): the approval asks first, on the rights-check page
    (review 1p), and the editor presses "Approve this asset anyway" (its form: the asset page's, edits included)."""
    if r.status_code != 303 or not r.headers["location"].startswith("/rights-check?"):
        return r
    page = c.get(r.headers["location"]).text
    assert "Nothing approved yet: this asset has restricted or unknown usage rights" in page
    form = page[page.index('action="/decide/'):]
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form[:form.index("</form>")]):
        fields.setdefault(html.unescape(name), []).append(html.unescape(value))
    return c.post(f"/decide/{ASSET}", data=fields)


def _approve_with_edits(settings) -> None:
    """In the review app: edit the alt text and the tags, press "Approve all ✓"."""
    with ReviewServer(settings) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get(srv.login_url).status_code == 303
        form = _form(c.get(f"/asset/{ASSET}").text)
        form.update({"value.alt_text": PERSON_ALT, "value.tags": "product:cup, color:red", "verdict": "approve"})
        r = _rights_confirmed(c, c.post(f"/decide/{ASSET}", data=form))
        assert r.status_code == 303 and "error" not in r.headers["location"], r.headers["location"]


def _approve_as_shown(settings) -> None:
    with ReviewServer(settings) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get(srv.login_url).status_code == 303
        form = {**_form(c.get(f"/asset/{ASSET}").text), "verdict": "approve"}
        r = _rights_confirmed(c, c.post(f"/decide/{ASSET}", data=form))
        assert r.status_code == 303 and "error" not in r.headers["location"], r.headers["location"]


@pytest.fixture
def pipeline(broker, store, tmp_path):
    settings = review_settings(broker, store.url, f"ch{uuid.uuid4().hex[:6]}")
    provision(settings)
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(SAMPLES / f"{ASSET}.jpg", lib / f"{ASSET}.jpg")
    p = _Pipeline(settings, lib)
    try:
        yield settings, p, lib / f"{ASSET}.jpg"
    finally:
        p.close()


def _decide(settings, pipeline: _Pipeline, approve, ok) -> dict:
    approve(settings)
    with RunnerThread(StageRunner(ReviewStage(settings), settings)), \
            RunnerThread(StageRunner(IndexSink(settings), settings)):
        return pipeline.doc(ok)


def test_a_replaced_image_goes_back_to_review_with_the_persons_values_kept(pipeline):
    settings, p, path = pipeline
    red = hashlib.sha256(path.read_bytes()).hexdigest()
    p.publish(path, 1, "created")
    doc = _decide(settings, p, _approve_with_edits, lambda d: d.get("status") == "approved")
    assert doc["status"] == "approved" and doc["alt_text"] == PERSON_ALT
    assert doc["review"]["content_sha256"] == red  # the image the editor was shown

    _green_cup(path)  # the user overwrites the file and publishes it as `updated`
    green = hashlib.sha256(path.read_bytes()).hexdigest()
    validated = p.publish(path, 2, "updated")
    # validate (given the review enrich read from the index) already says so, and so does the index
    assert validated["status"] == "needs_review"
    doc = p.doc()
    assert doc["hashes"]["sha256"] == green and doc["version"] == 2
    assert doc["status"] == "needs_review"
    reason = next(r for r in doc["reasons"] if r.startswith("the image changed since"))
    assert reason.startswith("the image changed since erin approved it on ") and reason.endswith(
        ": check the values")
    # the person's values are still there, not overwritten; the model's new answer is a suggestion
    assert doc["alt_text"] == PERSON_ALT and doc["field_sources"]["alt_text"] == "human"
    assert sorted(doc["tags"]) == ["color:red", "product:cup"]
    new_alt = validated["enriched"]["enrichment"]["alt_text"]
    assert new_alt and new_alt != PERSON_ALT and doc["model_suggestions"]["alt_text"] == new_alt
    # the queue lists it under "changed since approval"
    with ReviewServer(settings) as srv, httpx.Client(base_url=srv.url) as c:
        c.get(srv.login_url)
        queue = c.get("/", params={"status": "needs_review", "reason": "changed since approval"}).text
    assert f"/asset/{ASSET}" in queue and "1 asset needs review" in queue
    assert "the image changed since erin approved it" in html.unescape(queue)  # in the row's first reasons (trial 5)

    # the editor looks at the new image and approves it: published again, the approval now of the green cup
    doc = _decide(settings, p, _approve_as_shown, lambda d: d.get("status") == "approved")
    assert doc["status"] == "approved" and doc["review"]["content_sha256"] == green
    assert doc["alt_text"] == PERSON_ALT
    assert not any(r.startswith("the image changed") for r in doc["reasons"])


def test_a_rerun_of_the_same_bytes_keeps_the_approval(pipeline):
    settings, p, path = pipeline
    p.publish(path, 1, "created")
    _decide(settings, p, _approve_with_edits, lambda d: d.get("status") == "approved")
    validated = p.publish(path, 2, "updated")  # the same file again (a reprocess, a re-publish)
    assert validated["status"] == "approved"
    doc = p.doc()
    assert doc["version"] == 2 and doc["status"] == "approved"
    assert doc["alt_text"] == PERSON_ALT and sorted(doc["tags"]) == ["color:red", "product:cup"]
    assert not any(r.startswith("the image changed") for r in doc["reasons"])


def test_a_re_encode_or_a_recolour_with_the_same_phash_counts_as_changed(tmp_path):
    """What counts as changed is the exact sha256 (docs/review.md): a re-encode of the approved picture has the
    very same pHash, and the mug recoloured green is 2 bits away (within dedupe's near-duplicate distance): a pHash
    cannot tell the approved red mug from a green one, so neither keeps the approval; the same bytes do."""
    from app.settings import Settings
    from consumers.preprocess.hashes import hamming
    from domain.review import apply_review, merge_decision
    from tests.store_support import validated_asset

    img = Image.open(SAMPLES / f"{ASSET}.jpg").convert("RGB")
    shutil.copy(SAMPLES / f"{ASSET}.jpg", tmp_path / "same.jpg")
    img.save(tmp_path / "reencoded.jpg", "JPEG", quality=80)
    r, g, b = img.split()
    Image.merge("RGB", (g, r, b)).save(tmp_path / "green.jpg", "JPEG", quality=90)
    pre = PreprocessStage(Settings().with_overrides(preprocess={"file_roots": [str(SAMPLES), str(tmp_path)]}))
    hashes = {name: pre.process(event(f"file://{path}", asset_id=ASSET), None).value["hashes"]
              for name, path in [("approved", SAMPLES / f"{ASSET}.jpg"), *((p.stem, p) for p in tmp_path.iterdir())]}
    assert hashes["reencoded"]["phash"] == hashes["approved"]["phash"]
    assert hamming(hashes["green"]["phash"], hashes["approved"]["phash"]) <= Settings().enrich.dedupe_max_distance

    def record(name: str) -> dict:
        v = validated_asset(ASSET, title="Red mug", alt_text="A red mug", status="needs_review")
        v["enriched"]["pre"]["hashes"] = hashes[name]
        return v

    review = merge_decision(None, {"decision_id": "d1", "asset_id": ASSET, "editor": "erin", "status": "approved",
                                   "decided_at": 1_800_000_000_000, "fields": []}, record("approved"))
    outcome = {name: apply_review(record(name), review)["status"] for name in hashes}
    assert outcome == {"approved": "approved", "same": "approved", "reencoded": "needs_review",
                       "green": "needs_review"}


def test_an_approval_recorded_before_image_hashes_is_dated_to_the_image_the_index_holds(store):
    """A review approved before reviews kept their image (no content_sha256, as the index holds it after the
    upgrade): the sink takes the image it indexed under that approval, so a re-run of the same bytes stays
    approved and the next replaced image goes back to review."""
    from domain.review import apply_review, merge_decision
    from tests.store_support import settings_for, validated_asset

    sink = IndexSink(settings_for(store.url, embed_documents=False, embed_images=False))
    try:
        v1 = validated_asset(ASSET, title="Red mug", alt_text="A red mug", status="needs_review")
        review = merge_decision(None, {"decision_id": "old", "asset_id": ASSET, "editor": "carol",
                                       "status": "approved", "decided_at": 1_800_000_000_000, "fields": []}, v1)
        review["content_sha256"] = None  # as recorded before the field existed
        assert sink.process_batch(as_items([apply_review(v1, review)])) == [None]
        assert _doc(sink)["status"] == "approved"

        again = validated_asset(ASSET, 2, title="Red cup", alt_text="A red cup", status="needs_review")
        assert sink.process_batch(as_items([again])) == [None]
        doc = _doc(sink)
        assert (doc["version"], doc["status"], doc["alt_text"]) == (2, "approved", "A red mug")
        assert doc["review"]["content_sha256"] == v1["enriched"]["pre"]["hashes"]["sha256"]

        replaced = validated_asset(ASSET, 3, title="Green cup", alt_text="A green cup", status="needs_review",
                                   content="green cup")
        assert sink.process_batch(as_items([replaced])) == [None]
        doc = _doc(sink)
        assert (doc["version"], doc["status"], doc["alt_text"]) == (3, "needs_review", "A red mug")
        assert any(r.startswith("the image changed since carol approved it on ") for r in doc["reasons"])
        assert doc["model_suggestions"]["alt_text"] == "A green cup"
    finally:
        sink.close()


def test_an_approval_of_bytes_the_dam_sends_again_is_timed_from_their_first_upload(store):
    """Trial 34 F7: after the DAM sent the same files again (`created` events, the same bytes), the desk's header read
    "timed over 2 of 15 approvals; 13 carried over from an earlier upload left out": the index held only the new
    event's time, later than the approvals. The document now keeps when these bytes were first uploaded
    (`uploaded_at`), and the time to publish is timed from it; a replaced image starts its own."""
    from app.review.queries import Index
    from domain.review import apply_review, merge_decision
    from tests.store_support import T0, settings_for, validated_asset

    settings = settings_for(store.url, embed_documents=False, embed_images=False)
    sink = IndexSink(settings)
    try:
        v1 = validated_asset(ASSET, title="Red mug", alt_text="A red mug", status="needs_review")  # uploaded T0+1m
        approved_at = T0 + dt.timedelta(minutes=1, seconds=45)
        review = merge_decision(None, {"decision_id": "d1", "asset_id": ASSET, "editor": "erin", "status": "approved",
                                       "decided_at": approved_at, "fields": []}, v1)
        assert sink.process_batch(as_items([apply_review(v1, review)])) == [None]

        resent = validated_asset(ASSET, 2, title="Red mug", alt_text="A red mug", status="needs_review")  # T0+2m
        resent["enriched"]["pre"]["asset"]["event_type"] = "created"  # the DAM's re-send of the same file
        assert sink.process_batch(as_items([resent])) == [None]
        doc = _doc(sink, lambda d: d.get("version") == 2)
        assert (doc["status"], doc["event_time"]) == ("approved", "2026-03-01T12:02:00.000+00:00")
        ttp = Index(sink.client, settings).time_to_publish()  # the desk's header and /metrics
        assert (ttp["count"], ttp["p50"], ttp["left_out"]) == (1, 45.0, 0)
        assert doc["uploaded_at"] == "2026-03-01T12:01:00.000+00:00"  # the first upload of these bytes

        replaced = validated_asset(ASSET, 3, title="Green cup", alt_text="A green cup", status="needs_review",
                                   content="green cup")
        assert sink.process_batch(as_items([replaced])) == [None]
        doc = _doc(sink, lambda d: d.get("version") == 3)
        assert doc["uploaded_at"] == doc["event_time"] == "2026-03-01T12:03:00.000+00:00"  # other bytes: their own
    finally:
        sink.close()
