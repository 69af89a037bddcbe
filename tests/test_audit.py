"""The audit log against the real broker: the KPI app writes every generated field set and every editor decision;
`history()` / `assetstream audit` list an asset's versions in order, deduplicated across replays; `assetstream
feedback` publishes EditorDecision records."""
from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from app.kpis import testing as T
from app.kpis.audit import history
from app.kpis import cli as kpis_cli
from app.kpis.feedback import publish_decisions
from domain.events import scoped_id
from tests.test_kpis import BASE, HOUR, V, app_for, make_env


def cli() -> typer.Typer:
    app = kpis_cli.app
    return app


def test_audit_history_lists_every_version_in_order(broker, unique):
    settings, env, port = make_env(broker, unique)
    runner = CliRunner()
    versions = [V("x1", n, "auto_applied" if n != 2 else "needs_review", BASE + n * HOUR, BASE + n * HOUR + 1000 * n,
                  f"Title {n}", f"Alt text {n}", ("color:red",), 0.01 * n, f"p{n}", "model-a") for n in (1, 2, 3)]
    others = [V(f"o{i}", 1, "auto_applied", BASE, BASE + 500, "T", "A", ("color:red",), 0.01, "p1", "model-b")
              for i in range(6)]
    records = {v.version: v.record() for v in versions}
    with app_for(env, port):
        # versions arrive out of order (v3 before v2), mixed with other assets
        T.produce(settings, "validated", [("x1", records[1]), ("x1", records[3])]
                  + [(v.asset, v.record()) for v in others] + [("x1", records[2])])
        T.wait_for(lambda: len(history(settings, "x1")) == 3, 30, 0.5, "3 generated entries for x1")
        res = runner.invoke(cli(), ["feedback", "x1", "--field", "alt_text=accepted", "--field",
                                    "title=edited:New title", "--editor", "alice", "--json"], env=env)
        assert res.exit_code == 0, res.output
        sent = json.loads(res.stdout)[0]
        T.produce(settings, "validated", [("x1", records[2])])  # a replay of v2: same entry id
        T.wait_for(lambda: len([k for k, _ in T.read_all(settings, "audit") if k == "x1"]) == 5, 30, 0.5,
                   "5 audit records for x1 (one a replay)")
        entries = history(settings, "x1")

    # the decision reached `feedback` as an EditorDecision keyed by the asset id
    decisions = [(k, d) for k, d in T.read_all(settings, "feedback")]
    assert [(k, d["editor"], [(f["field"], f["action"], f["value"]) for f in d["fields"]]) for k, d in decisions] == \
        [("x1", "alice", [("alt_text", "accepted", None), ("title", "edited", "New title")])]

    assert [(e["kind"], e["version"]) for e in entries] == [("generated", 1), ("generated", 2), ("generated", 3),
                                                            ("editor_decision", 3)]
    assert len({e["entry_id"] for e in entries}) == 4
    for e, v in zip(entries[:3], versions):
        assert e["asset_id"] == "x1" and e["status"] == v.status
        fields = {f["field"]: f for f in e["fields"]}
        assert fields["alt_text"]["value"] == v.alt and fields["title"]["value"] == v.title
        assert (fields["alt_text"]["prompt_id"], fields["alt_text"]["prompt_version"], fields["alt_text"]["model"]) \
            == ("alt-text", v.alt_prompt, v.model)
        assert fields["tags"]["value"] == "color:red" and fields["tags"]["prompt_version"] == "t1"
        assert sorted((p["task"], p["prompt_version"]) for p in e["provenance"]) == \
            [("alt_text", v.alt_prompt), ("tagging", "t1")]
    decision = entries[3]
    assert decision["entry_id"] == "dec:" + sent["decision_id"] and decision["actor"] == "alice"
    # charged to the prompt that wrote the latest version (v3), though v2 was validated after it
    assert [(f["field"], f["action"], f["value"], f["prompt_version"]) for f in decision["fields"]] == \
        [("alt_text", "accepted", None, "p3"), ("title", "edited", "New title", "p3")]
    assert [h["entry_id"] for h in history(settings, "o0")] and history(settings, "nobody") == []

    # `assetstream audit` prints the same history
    res = runner.invoke(cli(), ["audit", "x1", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert [e["entry_id"] for e in json.loads(res.output)] == [e["entry_id"] for e in entries]
    res = runner.invoke(cli(), ["audit", "x1"], env={**env, "COLUMNS": "250"})
    assert res.exit_code == 0
    assert "alt-text@p3" in res.output and "alice" in res.output and "New title" in res.output


def test_feedback_cli_rejects_bad_field_spec(broker, unique):
    settings, env, _ = make_env(broker, unique)
    res = CliRunner().invoke(cli(), ["feedback", "x1", "--field", "alt_text=approved", "--editor", "bob"], env=env)
    assert res.exit_code == 2
    assert "action must be one of" in res.output


def test_feedback_cli_publishes_a_jsonl_file(broker, unique, tmp_path):
    settings, env, _ = make_env(broker, unique)
    from confluent_kafka.admin import AdminClient

    from app.kpis.topics import ensure_topics
    ensure_topics(settings)  # as the KPI app starts: with the mock:// registry's schemas topic, as `topics create`
    assert settings.topics.name("schemas") in AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics
    path = tmp_path / "decisions.jsonl"
    path.write_text('{"asset_id": "f1", "editor": "ann", "decided_at": "2026-01-05T10:00:00Z",'
                    ' "fields": [{"field": "tags", "action": "rejected"}]}\n\n'
                    '{"asset_id": "f2", "editor": "bo", "decision_id": "d-2",'
                    ' "fields": [{"field": "title", "action": "edited", "value": "Better"}]}\n')
    res = CliRunner().invoke(cli(), ["feedback", "--file", str(path)], env=env)
    assert res.exit_code == 0, res.output
    got = sorted((k, d["editor"], d["decision_id"] if k == "f2" else None, [(f["field"], f["action"], f["value"])
                  for f in d["fields"]]) for k, d in T.read_all(settings, "feedback"))
    assert got == [("f1", "ann", None, [("tags", "rejected", None)]), ("f2", "bo", "d-2", [("title", "edited", "Better")])]
    f1 = next(d for k, d in T.read_all(settings, "feedback") if k == "f1")
    assert f1["decided_at"].isoformat() == "2026-01-05T10:00:00+00:00"


def _tenant_version(tenant: str, version: int, prompt: str, title: str) -> tuple[str, dict]:
    """(key, record) of tenant's `shared` asset, version `version`, its alt text written by prompt `prompt`."""
    record = V("shared", version, "auto_applied", BASE + version * HOUR, BASE + version * HOUR + 1000, title,
               f"{title} alt", ("color:red",), 0.01, prompt, "model-a").record()
    record["enriched"]["pre"]["asset"]["tenant"] = tenant
    return scoped_id("shared", tenant), record


def test_two_tenants_with_the_same_asset_id_get_separate_audit_histories(broker, unique):
    """Issue 16.12: the audit trail is tenant-scoped like every other topic. acme's, globex's and the default
    tenant's `shared` each have their own history (keyed acme::shared, globex::shared, shared), and an editor
    decision on acme's asset is charged to the prompt of acme's latest version, not globex's."""
    settings, env, port = make_env(broker, unique)
    runner = CliRunner()
    with app_for(env, port):
        T.produce(settings, "validated", [_tenant_version("acme", 1, "acme-p1", "Acme mug")])
        T.wait_for(lambda: len(history(settings, "acme::shared")) == 1, 30, 0.5, "acme's generated entry")
        # globex's versions of the same asset id come after acme's: its state must not replace acme's
        T.produce(settings, "validated", [_tenant_version("globex", 1, "globex-p1", "Globex lamp"),
                                          _tenant_version("globex", 2, "globex-p2", "Globex lamp v2"),
                                          _tenant_version("default", 1, "default-p1", "Plain chair")])
        T.wait_for(lambda: len(history(settings, "shared", tenant="globex")) == 2, 30, 0.5, "globex's 2 entries")
        T.wait_for(lambda: len(history(settings, "shared")) == 1, 30, 0.5, "the default tenant's entry")
        sent = publish_decisions(settings, [{"asset_id": "shared", "tenant": "acme", "editor": "alice",
                                             "fields": [{"field": "alt_text", "action": "accepted"}]}])
        T.wait_for(lambda: len(history(settings, "acme::shared")) == 2, 30, 0.5, "acme's decision entry")
        acme = history(settings, "acme::shared")
        globex = history(settings, "globex::shared")
        plain = history(settings, "shared")

    assert [(e["kind"], e["version"], e["tenant"]) for e in acme] == \
        [("generated", 1, "acme"), ("editor_decision", 1, "acme")]
    assert [f["value"] for f in acme[0]["fields"] if f["field"] == "title"] == ["Acme mug"]
    # charged to acme's prompt: the asset state is per tenant (globex's v2 was validated after acme's v1)
    assert acme[1]["entry_id"] == "dec:" + sent[0]["decision_id"]
    assert [(f["field"], f["prompt_version"]) for f in acme[1]["fields"]] == [("alt_text", "acme-p1")]
    assert [(e["kind"], e["version"], e["tenant"]) for e in globex] == \
        [("generated", 1, "globex"), ("generated", 2, "globex")]
    assert [(e["kind"], e["tenant"]) for e in plain] == [("generated", "default")]
    assert [f["value"] for f in plain[0]["fields"] if f["field"] == "title"] == ["Plain chair"]
    assert all(e["asset_id"] == "shared" for e in acme + globex + plain)  # the asset's own id stays in the entry
    # on the topic: every entry keyed by its tenant-scoped id
    assert sorted({k for k, _ in T.read_all(settings, "audit")}) == ["acme::shared", "globex::shared", "shared"]

    # `assetstream audit` takes the scoped id, or the asset id with --tenant; the plain id is the default tenant's
    def audit_ids(*args: str) -> list[str]:
        res = runner.invoke(cli(), ["audit", *args, "--json"], env=env)
        assert res.exit_code == 0, res.output
        return [e["entry_id"] for e in json.loads(res.output)]

    assert audit_ids("acme::shared") == audit_ids("shared", "--tenant", "acme") == [e["entry_id"] for e in acme]
    assert audit_ids("shared", "--tenant", "globex") == [e["entry_id"] for e in globex]
    assert audit_ids("shared") == audit_ids("shared", "--tenant", "default") == [plain[0]["entry_id"]]
    res = runner.invoke(cli(), ["audit", "acme::shared", "--tenant", "globex"], env=env)
    assert res.exit_code == 2 and "another tenant" in res.output
    res = runner.invoke(cli(), ["audit", "shared", "--tenant", "initech"], env={**env, "COLUMNS": "250"})
    assert res.exit_code == 1 and "no audit entries for initech::shared" in res.output


def test_an_editors_verdict_is_in_the_audit_trail(broker, unique):
    """Trial 2: an asset rejected (or approved) in the review app left an `editor_decision` entry with no status
    and no fields, so `assetstream audit` showed that 'root' did something, not that root rejected it. The verdict
    is the entry's status; a decision the app cannot charge to a prompt yet shows no prompt, not unknown@unknown."""
    settings, env, port = make_env(broker, unique)
    runner = CliRunner()
    record = V("r1", 1, "needs_review", BASE, BASE + 1000, "Spotlight", "A spotlight", ("color:red",), 0.01, "p1",
               "model-a").record()
    with app_for(env, port):
        T.produce(settings, "validated", [("r1", record)])
        T.wait_for(lambda: len(history(settings, "r1")) == 1, 30, 0.5, "r1's generated entry")
        res = runner.invoke(cli(), ["feedback", "r1", "--reject", "--editor", "carol"], env=env)
        assert res.exit_code == 0, res.output
        # a decision about an asset the app has no version of yet (it reads feedback ahead of validated)
        publish_decisions(settings, [{"asset_id": "r2", "editor": "dan", "status": "approved",
                                      "fields": [{"field": "alt_text", "action": "edited", "value": "A red mug"}]}])
        T.wait_for(lambda: len(history(settings, "r1")) == 2 and history(settings, "r2"), 30, 0.5,
                   "both decisions in the audit log")
        r1, r2 = history(settings, "r1"), history(settings, "r2")
    assert [(e["kind"], e["status"]) for e in r1] == [("generated", "needs_review"), ("editor_decision", "rejected")]
    assert r1[1]["actor"] == "carol"
    assert [(e["kind"], e["actor"], e["status"]) for e in r2] == [("editor_decision", "dan", "approved")]
    assert [(f["field"], f["action"], f["value"], f["prompt_id"], f["model"]) for f in r2[0]["fields"]] == \
        [("alt_text", "edited", "A red mug", None, None)]
    res = runner.invoke(cli(), ["audit", "r1"], env={**env, "COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "editor_decision" in line)
    assert "carol" in row and "rejected" in row
    res = runner.invoke(cli(), ["audit", "r2"], env={**env, "COLUMNS": "250"})
    assert "unknown" not in res.output and "approved" in res.output
