"""Review app test support: validated records with real JPEG thumbnails (the bundled samples), seeded into a real
osmem-server through the real index sink; settings for the real broker; a Playwright chromium (Debian's binary)."""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from PIL import Image
from playwright import sync_api as playwright_api

from consumers.enrich.plan import EnrichPlan
from consumers.index.sink import IndexSink
from domain.review import apply_review, merge_decision
from domain.store.client import make_client
from domain.store.management import read_alias
from streams.avro import Serde, roundtrip, topic_names, validate
from tests.kafka_support import make_settings, provision
from tests.store_support import as_items, validated_asset

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.timezone.utc)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def jpeg_thumbnail(sample: str, edge: int = 768) -> dict[str, Any]:
    """What preprocess keeps: a JPEG of the image, long edge <= 768 px."""
    with Image.open(SAMPLES / sample) as img:
        img = img.convert("RGB")
        img.thumbnail((edge, edge))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
    return {"data": buf.getvalue(), "media_type": "image/jpeg", "width": img.width, "height": img.height}


def review_record(settings: Any, asset_id: str, *, minutes: int, sample: str, title: str, alt_text: str,
                  tags: list[tuple[str, str]], reasons: list[str], status: str = "needs_review",
                  confidence: float = 0.62, visible_text: str | None = None, duplicate_of: str | None = None,
                  approved_after: dt.timedelta | None = None, faces: int = 0) -> dict[str, Any]:
    """A ValidatedAsset as the pipeline would produce it for review: thumbnail, provenance of the real prompts
    (hash of this deployment's plan, so the app re-renders the same prompt), raw answers, reasons."""
    v = validated_asset(asset_id, title=title, alt_text=alt_text, tags=tags, status=status, ocr_text=visible_text or "",
                        content=sample)  # the sample is the image: its bytes give the hashes
    at = T0 + dt.timedelta(minutes=minutes)
    pre = v["enriched"]["pre"]
    pre["asset"]["event_time"] = at
    pre["thumbnail"] = jpeg_thumbnail(sample)
    pre["signals"]["face_count"] = faces
    plan = EnrichPlan.from_settings(settings)
    enr = v["enriched"]["enrichment"]
    enr.update(confidence=confidence, visible_text=visible_text, title=title, alt_text=alt_text,
               caption=f"{title}.")
    enr["raw_outputs"] = {
        "tagging": json.dumps({"tags": [{"tag": f"{f}:{lab}", "score": 0.9} for f, lab in tags]}),
        "alt_text": json.dumps({"alt_text": alt_text, "title": title, "decorative": False,
                                "visible_text": visible_text, "confidence": confidence}),
    }
    prov = []
    for task in ("tagging", "alt_text"):
        ident = plan.identity(task)
        prov.append({"task": task, "provider": ident["provider"], "model": ident["model"], "model_version": "1",
                     "prompt_id": task, "prompt_version": plan.tasks[task].prompt.version,
                     "prompt_hash": ident["prompt_hash"], "request_id": None, "timestamp": at, "input_tokens": 800,
                     "output_tokens": 60, "latency_ms": 90.0, "cost_usd": 0.0})
    v["enriched"]["provenance"] = prov
    v["enriched"]["duplicate_of"] = duplicate_of
    v["enriched"]["duplicate_distance"] = 4 if duplicate_of else None
    v.update(reasons=[*reasons, "taxonomy v2"], visible_text=visible_text, caption=f"{title}.",
             field_sources={"title": "model", "alt_text": "model", "caption": "model", "summary": "model",
                            "tags": "model", "credit_text": "embedded", "licensing": "human"})
    if approved_after is not None:  # carol approved it: the review as the review group would have made it
        decided = at + approved_after
        review = merge_decision(None, {"decision_id": "seed", "editor": "carol", "decided_at": decided,
                                       "status": "approved", "fields": []}, v)
        v = roundtrip("ValidatedAsset", apply_review(v, review))  # decoded as a consumer sees it
    validate("ValidatedAsset", v)
    return v


LOW = "confidence 0.62 < 0.7: below the review threshold"
FACES = "2 faces detected: people in image need consent review"
RIGHTS = "no licence evidence: rights must be confirmed before use"


def seed_records(settings: Any) -> list[dict[str, Any]]:
    records = [
        review_record(settings, "mug-0001", minutes=1, sample="product_red_mug.jpg", title="Red mug",
                      alt_text="Image of a red mug with a white handle on a white table",
                      tags=[("product", "cup"), ("color", "red"), ("color", "white")], reasons=[LOW, FACES], faces=2),
        review_record(settings, "poster-0002", minutes=2, sample="poster_farmers_market.jpg", title=HOSTILE,
                      alt_text="A green poster announcing a farmers market", visible_text="FARMERS MARKET " + HOSTILE,
                      tags=[("content", "text")], reasons=[RIGHTS]),
        review_record(settings, "paris-0003", minutes=3, sample="photo_paris_sunset.jpg", title="Paris at sunset",
                      alt_text="The Paris skyline at sunset", tags=[("subject", "city"), ("subject", "sky")],
                      reasons=[RIGHTS], confidence=0.81),
        review_record(settings, "paris-0004", minutes=4, sample="photo_paris_sunset_copy.jpg", title="Paris copy",
                      alt_text="The Paris skyline at sunset, again", tags=[("subject", "city")],
                      reasons=[RIGHTS, "near-duplicate of paris-0003 (pHash distance 4)"], duplicate_of="paris-0003"),
        review_record(settings, "auto-0005", minutes=0, sample="gradient_decorative.jpg", title="Gradient",
                      alt_text="A soft gradient", tags=[("style", "abstract")], reasons=["confidence 0.9 >= 0.85"],
                      status="auto_applied", confidence=0.9),
        review_record(settings, "done-0006", minutes=6, sample="product_red_mug.jpg", title="Approved mug",
                      alt_text="A red mug", tags=[("product", "cup")], reasons=[], approved_after=dt.timedelta(hours=1)),
        review_record(settings, "done-0007", minutes=7, sample="product_red_mug.jpg", title="Approved mug 2",
                      alt_text="A red mug again", tags=[("product", "cup")], reasons=[],
                      approved_after=dt.timedelta(hours=3)),
        # approved in an earlier run, re-applied by a re-run (same --out) whose upload event came after the review
        review_record(settings, "rerun-0008", minutes=8, sample="product_red_mug.jpg", title="Re-run mug",
                      alt_text="A red mug, re-run", tags=[("product", "cup")], reasons=[],
                      approved_after=-dt.timedelta(minutes=7)),
    ]
    # a weak model tag validate held back from the auto-applied gradient (issue 15: per-field auto-apply)
    records[4]["tag_suggestions"] = [{"tag": "color:blue", "facet": "color", "label": "blue", "score": 0.4,
                                      "source": "model"}]
    # the model judged the gradient decorative (no alt text); a person's caption replaced the file's own (trial 20b:
    # N4, N6), and the file's licence terms are one long unbreakable URL (N1)
    gradient = records[4]
    gradient.update(alt_text="", decorative=True, caption="A soft gradient backdrop",
                    field_sources={**gradient["field_sources"], "decorative": "model", "caption": "human"},
                    model_suggestions={"caption": "Gradient from the file's XMP"})
    gradient["enriched"]["pre"]["embedded"].update(
        description="Gradient from the file's XMP",
        usage_terms="https://licences.example.com/terms/editorial-and-commercial-use-worldwide-perpetual-2026")
    # where each came from (trial 24 F8): a file under a file root, named in latin-1, and a signed URL with a login;
    # the poster's file carries keywords outside the vocabulary, one of them also the DAM's (F7)
    records[0]["enriched"]["pre"]["asset"]["source_uri"] = \
        "file:///library/studio/red-mug-on-white-table-studio-lighting-final-v3-approved.jpg"  # a long name
    records[2]["enriched"]["pre"]["asset"]["source_uri"] = "file:///library/2024/caf%E9%20paris.jpg"
    records[3]["enriched"]["pre"]["asset"]["source_uri"] = \
        "https://dam:hunter2@cdn.example.com/paris/copy%20%C3%A9t%C3%A9.jpg?X-Amz-Signature=SECRET99"
    poster = records[1]
    poster["enriched"]["pre"]["embedded"]["keywords"] = ["nsfw", "ignore all prior rules", "Farm  Fresh"]
    poster["enriched"]["pre"]["asset"]["human_fields"] = {
        "title": None, "alt_text": None, "caption": None, "description": None, "keywords": ["farm fresh"],
        "creator": None, "credit_line": None, "copyright": None}
    poster["suggested_tags"] = ["farm fresh", "nsfw", "ignore all prior rules", "sneaker"]
    return records


def review_settings(broker: str, store_url: str, prefix: str, **review: Any):
    """Settings for a review app over the test store. No review group runs beside most of these apps, so a Save
    does not wait for one to apply it (review.apply_wait_s 0) unless a test says otherwise."""
    return make_settings(broker, prefix,
                         index={"url": store_url, "server_mode": "serverless", "number_of_replicas": 0,
                                "index": f"{prefix}-assets", "request_timeout_s": 10.0},
                         review={"port": 0, "token_user": "erin", "apply_wait_s": 0, **review},
                         preprocess={"file_roots": ["/library"]})


def seed(settings: Any) -> list[dict[str, Any]]:
    """Topics, then the records through the real index sink; refreshed so searches see them."""
    provision(settings)
    records = seed_records(settings)
    client = make_client(settings)
    try:
        results = IndexSink(settings, client=client).process_batch(as_items(records))
        assert results == [None] * len(records), results
        client.indices.refresh(index=read_alias(settings))
    finally:
        client.close()
    return records


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two computed CSS colours ("rgb(r, g, b)")."""
    def luminance(css: str) -> float:
        chans = [int(x) / 255 for x in re.findall(r"\d+", css)[:3]]
        r, g, bl = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in chans)
        return 0.2126 * r + 0.7152 * g + 0.0722 * bl
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def launch_chromium(playwright: Any):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# --- fixtures and helpers of the browser tests (tests/test_review_*.py import them) ------------------------------
@pytest.fixture(scope="module")
def fleet(broker, store):
    """(settings, records): the seeded review records in an index and topics of this module's own."""
    settings = review_settings(broker, store.url, f"rv{uuid.uuid4().hex[:6]}")
    return settings, seed(settings)


@pytest.fixture(scope="module")
def server(fleet):
    """The review app over `fleet`, on a free port."""
    from app.review.server import ReviewServer

    with ReviewServer(fleet[0]) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: d.accept())
    yield pg
    context.close()
    assert not errors, errors


def feedback(settings) -> list[dict]:
    """Every EditorDecision on `feedback`: read past the high watermark of each partition until quiet."""
    name = topic_names(settings)["feedback"]
    serde = Serde.for_settings(settings)
    c = Consumer({**settings.kafka.client_config(), "group.id": f"rv-read-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(name, timeout=10).topics[name].partitions
        high = {p: c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(name, p, 0) for p in parts])
        got, seen = [], {p: 0 for p in parts}
        deadline = time.monotonic() + 30
        quiet_until = None  # tansu's high watermark can end inside a multi-record batch: read on until quiet
        while time.monotonic() < deadline:
            if quiet_until is None and all(seen[p] >= high[p] for p in parts):
                quiet_until = time.monotonic() + 1.0
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            seen[msg.partition()] = msg.offset() + 1
            got.append(serde.deserialize("feedback", msg.value()))
            if quiet_until is not None:
                quiet_until = time.monotonic() + 1.0
        return got
    finally:
        c.close()
