"""Decisions made in the review app reach the faust KPI app (edit / override rates per prompt version and model)
and the audit log, like any EditorDecision: the real broker, the KPI app as a subprocess, the app in-process."""
from __future__ import annotations

import re

import httpx

from app.kpis import testing as T
from app.kpis.audit import history
from app.review.server import ReviewServer
from consumers.index.sink import IndexSink
from domain.store.client import make_client
from domain.store.management import read_alias
from tests.review_support import LOW, review_record
from tests.store_support import as_items
from tests.test_kpis import app_for, latest_snapshots, make_env


def test_app_decisions_reach_the_kpis_and_the_audit_log(broker, store, unique):  # noqa: F811
    settings, env, port = make_env(broker, unique)
    settings = settings.with_overrides(
        index={"url": store.url, "server_mode": "serverless", "number_of_replicas": 0, "index": f"k{unique}"},
        review={"port": 0, "token_user": "erin"})
    record = review_record(settings, "kpi-0001", minutes=1, sample="product_red_mug.jpg", title="Red mug",
                           alt_text="Image of a red mug", tags=[("product", "cup")], reasons=[LOW])
    client = make_client(settings)
    assert IndexSink(settings, client=client).process_batch(as_items([record])) == [None]
    client.indices.refresh(index=read_alias(settings))
    client.close()
    alt_prov = next(p for p in record["enriched"]["provenance"] if p["task"] == "alt_text")

    with app_for(env, port), ReviewServer(settings) as srv:
        T.produce(settings, "validated", [("kpi-0001", record)])
        T.wait_for(lambda: len(history(settings, "kpi-0001")) == 1, 60, 0.5, "the generated audit entry")
        with httpx.Client(base_url=srv.url, follow_redirects=False) as editor:
            assert editor.get(srv.login_url).status_code == 303
            page = editor.get("/asset/kpi-0001")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            r = editor.post("/decide/kpi-0001", data={"csrf": csrf, "value.alt_text": "A red mug",
                                                      "action.title": "accepted", "verdict": "approve"})
            assert r.status_code == 303
        entries = T.wait_for(lambda: [e for e in history(settings, "kpi-0001") if e["kind"] == "editor_decision"]
                             or None, 60, 0.5, "the editor decision in the audit log")

        def alt_rows():
            total = latest_snapshots(settings).get("total")
            if not total or total["decisions"] < 2:
                return None
            return {r["field"]: r for r in total["edit_rates"]
                    if (r["prompt_id"], r["prompt_version"], r["model"]) ==
                    (alt_prov["prompt_id"], alt_prov["prompt_version"], alt_prov["model"])}
        rows = T.wait_for(alt_rows, 60, 0.5, "KPI edit rates with the app's decision")

    assert [(e["actor"], [(f["field"], f["action"], f["value"]) for f in e["fields"]]) for e in entries] == \
        [("erin", [("title", "accepted", "Red mug"), ("alt_text", "edited", "A red mug")])]
    assert (rows["alt_text"]["edited"], rows["alt_text"]["edit_rate"]) == (1, 1.0)
    assert (rows["title"]["accepted"], rows["title"]["edit_rate"]) == (1, 0.0)
    # the approval accepted the caption and summary as shown, the model's too (trial 34 F5: charged to no prompt)
    assert (rows["caption"]["accepted"], rows["summary"]["accepted"]) == (1, 1)
    assert rows["*"]["decisions"] == 4 and rows["*"]["override_rate"] == 0.25
