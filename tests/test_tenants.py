"""Tenants are namespaces (issue 16.12): two tenants publishing the same asset id keep two assets end to end —
the key of every record, the index document and the review decision are tenant-scoped (`acme::shared-1`,
`globex::shared-1`; the default tenant's ids stay as they were). Real broker, real store."""
from __future__ import annotations

import io
import time

import pytest
from elasticsearch import NotFoundError
from PIL import Image

from app.kpis.feedback import publish_decision
from app.producer import AssetPublisher, build_event
from consumers.index.sink import IndexSink
from consumers.review.stage import ReviewStage
from domain.events import EventError, scoped_id
from domain.records import document_id
from domain.store.management import read_alias
from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic
from tests.store_support import settings_for, validated_asset


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 90, 160)).save(buf, "JPEG")
    return buf.getvalue()


def _validated(tenant: str, version: int, title: str) -> dict:
    v = validated_asset("shared-1", version, tenant=tenant, title=title)
    v["enriched"]["pre"]["thumbnail"] = {"data": _jpeg(), "media_type": "image/jpeg", "width": 64, "height": 48}
    v["status"], v["reasons"] = "needs_review", ["confidence 0.55 < 0.85"]
    return v


def _docs(sink: IndexSink) -> dict[str, dict]:
    sink.client.indices.refresh(index=read_alias(sink.cfg))
    res = sink.client.search(index=read_alias(sink.cfg), query={"term": {"asset_id": "shared-1"}},
                             source_includes=["asset_id", "tenant", "title", "status", "reviewed_by", "version"])
    return {h["_id"]: h["_source"] for h in res["hits"]["hits"]}


def _wait(sink: IndexSink, ok, timeout_s: float = 60.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    docs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        try:
            docs = _docs(sink)
        except NotFoundError:  # the sink creates the index when it starts
            docs = {}
        if ok(docs):
            return docs
        time.sleep(0.3)
    raise AssertionError(f"the index never got there: {docs}")


def test_two_tenants_with_the_same_asset_id_keep_their_own_asset_end_to_end(broker, unique, store):
    s = make_settings(broker, f"tenants{unique}")
    s = s.with_overrides(index=settings_for(store.url).index.model_dump(mode="json") | {"refresh": "true"})
    provision(s)

    # event -> key: the SDK keys each tenant's event by its tenant-scoped id; the event keeps the asset's own id
    with AssetPublisher(s) as pub:
        for tenant in ("acme", "globex", "default"):
            pub.publish_asset("shared-1", "https://dam.example/shared-1.jpg", tenant=tenant, wait=False)
    raw = sorted((r["key"], r["value"]["asset_id"], r["value"]["tenant"]) for r in read_topic(s, "raw", 3))
    assert raw == [("acme::shared-1", "shared-1", "acme"), ("globex::shared-1", "shared-1", "globex"),
                   ("shared-1", "shared-1", "default")]

    # key -> index document: globex's newer version does not replace acme's asset (nor refuse it with a 409)
    acme, globex = _validated("acme", 3, "Acme red mug"), _validated("globex", 5, "Globex poster")
    with AssetPublisher(s) as pub:
        for v in (globex, acme):
            pub.send("validated", document_id(v), v)
    sink = IndexSink(s)
    try:
        with RunnerThread(StageRunner(IndexSink(s), s)):
            docs = _wait(sink, lambda d: len(d) == 2)
        assert docs["acme::shared-1"] | {} == {"asset_id": "shared-1", "tenant": "acme", "title": "Acme red mug",
                                              "status": "needs_review", "version": 3}
        assert docs["globex::shared-1"]["title"] == "Globex poster" and docs["globex::shared-1"]["version"] == 5

        # review: acme's editor approves acme's shared-1; globex's asset of the same id is untouched
        publish_decision(s, {"asset_id": "shared-1", "editor": "maria", "tenant": "acme", "status": "approved",
                             "fields": []})
        with RunnerThread(StageRunner(ReviewStage(s), s)), RunnerThread(StageRunner(IndexSink(s), s)):
            docs = _wait(sink, lambda d: d.get("acme::shared-1", {}).get("status") == "approved")
        assert docs["acme::shared-1"]["reviewed_by"] == "maria"
        assert docs["globex::shared-1"]["status"] == "needs_review" and not docs["globex::shared-1"].get("reviewed_by")
        approved = [r for r in read_topic(s, "validated", 3) if r["value"].get("status") == "approved"]
        assert [r["key"] for r in approved] == ["acme::shared-1"]
    finally:
        sink.close()


def test_the_tenant_separator_is_refused_in_asset_ids_and_tenants():
    assert scoped_id("a1", "default") == "a1" and scoped_id("a1", None) == "a1"
    assert scoped_id("a1", "acme") == "acme::a1"
    for fields in ({"asset_id": "acme::a1"}, {"asset_id": "a1", "tenant": "ac::me"}):
        with pytest.raises(EventError, match="separates the tenant"):
            build_event(fields["asset_id"], "https://dam.example/a.jpg", tenant=fields.get("tenant", "default"))


def test_writeback_keeps_each_tenants_copy_of_the_same_asset_id(broker, unique, store, tmp_path):
    """Two tenants' approved `shared-1` written back as file copies by a target serving both: two copies, each with
    its own metadata (one name per asset id used to let the second overwrite the first) and two writeback states."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    from consumers.writeback.sink import WritebackSink
    from tests.writeback_support import files_settings, run_until

    samples = Path(__file__).resolve().parent.parent / "samples"
    originals, out = tmp_path / "originals", tmp_path / "out"
    originals.mkdir()
    s = files_settings(broker, f"tenwb{unique}", store.url, out, originals, tenants=["acme", "globex"])
    provision(s)
    values = []
    for tenant, caption in (("acme", "Acme's red mug"), ("globex", "Globex's red mug")):
        path = originals / f"{tenant}.jpg"
        shutil.copy(samples / "product_red_mug.jpg", path)
        v = validated_asset("shared-1", status="approved", tenant=tenant, caption=caption)
        v["enriched"]["pre"]["asset"]["source_uri"] = path.as_uri()
        values.append(v)
    with RunnerThread(StageRunner(WritebackSink(s), s)):
        run_until(s, values, 2)
    copies = sorted(out.iterdir())
    assert len(copies) == 2, [p.name for p in copies]
    captions = set()
    for copy in copies:
        tags = json.loads(subprocess.run(["exiftool", "-j", "-XMP-dc:Description", str(copy)], check=True,
                                         capture_output=True).stdout)[0]
        captions.add(tags["Description"])
    assert captions == {"Acme's red mug", "Globex's red mug"}


def test_the_review_app_shows_and_decides_each_tenants_asset_of_the_same_id(broker, unique, store):
    """The queue lists both tenants' `shared-1`, each asset page is its own, and decisions (one, and a bulk
    approval of both) go to `feedback` with the right tenant and key."""
    import re

    import httpx

    from app.review.server import ReviewServer
    from domain.store.client import make_client
    from tests.review_support import LOW, review_record, review_settings
    from tests.store_support import as_items

    s = review_settings(broker, store.url, f"tenrv{unique}")
    provision(s)
    records = []
    for tenant, title in (("acme", "Acme red mug"), ("globex", "Globex blue mug")):
        r = review_record(s, "shared-1", minutes=1, sample="product_red_mug.jpg", title=title,
                          alt_text=f"{title} on a table", tags=[("product", "cup")], reasons=[LOW])
        r["enriched"]["pre"]["asset"]["tenant"] = tenant
        records.append(r)
    client = make_client(s)
    try:
        assert IndexSink(s, client=client).process_batch(as_items(records)) == [None, None]
        client.indices.refresh(index=read_alias(s))
    finally:
        client.close()
    with ReviewServer(s) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get(srv.login_url).status_code == 303
        queue = c.get("/").text
        assert sorted(re.findall(r'name="ids" value="([^"]+)"', queue)) == ["acme::shared-1", "globex::shared-1"]
        page = c.get("/asset/globex%3A%3Ashared-1")
        assert page.status_code == 200 and "Globex blue mug" in page.text and "Acme red mug" not in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = c.post("/decide/globex%3A%3Ashared-1", data={"csrf": csrf, "verdict": "approve"})
        assert r.status_code == 303 and "not sent" not in c.get(r.headers["location"]).text
        r = c.post("/bulk-approve", data={"csrf": csrf, "scope": "selected",
                                          "ids": ["acme::shared-1", "globex::shared-1"]})
        assert "2 assets approved" in c.get(r.headers["location"]).text
    sent = read_topic(s, "feedback", 3)
    assert sorted((d["key"], d["value"]["asset_id"], d["value"]["tenant"]) for d in sent) == [
        ("acme::shared-1", "shared-1", "acme"), ("globex::shared-1", "shared-1", "globex"),
        ("globex::shared-1", "shared-1", "globex")]


def test_backfill_keys_each_tenants_events_by_the_scoped_id(broker, unique, tmp_path):
    """`assetstream backfill` of the same folder for two tenants: the same asset ids, two keys each."""
    from typer.testing import CliRunner

    from app.ops import cli as ops_cli
    from tests.kafka_support import env_for

    s = make_settings(broker, f"tenbf{unique}")
    provision(s)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mug.jpg").write_bytes(b"\xff\xd8\xff" + bytes(64))
    for tenant in ("acme", "globex"):
        r = CliRunner().invoke(ops_cli.app, ["backfill", str(tmp_path / "lib"), "--tenant", tenant, "--no-index",
                                             "--state", str(tmp_path / f"state-{tenant}")], env=env_for(s))
        assert r.exit_code == 0, r.output
    got = sorted((x["key"], x["value"]["tenant"]) for x in read_topic(s, "raw", 2))
    (own,) = {x["value"]["asset_id"] for x in read_topic(s, "raw", 2)}
    assert got == [(f"acme::{own}", "acme"), (f"globex::{own}", "globex")]


def test_enrich_remembers_each_tenants_asset_of_the_same_id():
    """The in-process dedupe index holds one entry per tenant-scoped id: globex's `shared-1` does not evict acme's,
    and a copy is found for its own tenant only."""
    from consumers.enrich.dedupe import InMemoryDedupeIndex

    d = InMemoryDedupeIndex(max_distance=6)
    d.remember_sync("shared-1", "sha-acme", "ffffffffffffffff", None, {"tags": ["acme"]}, [], tenant="acme")
    d.remember_sync("shared-1", "sha-globex", "0000000000000000", None, {"tags": ["globex"]}, [], tenant="globex")
    assert len(d) == 2
    acme = d.lookup_sync("sha-acme", None, None, tenant="acme", exclude_asset_id="copy-1")
    assert acme is not None and acme.enrichment == {"tags": ["acme"]}
    assert d.lookup_sync("sha-acme", None, None, tenant="globex", exclude_asset_id="copy-1") is None
