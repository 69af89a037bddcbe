"""The one typed settings object: env over file over defaults, typos rejected, secrets redacted."""
from __future__ import annotations

import pytest


def test_a_misspelt_setting_is_an_error_not_ignored(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from app.settings import Settings

    config = tmp_path / "config.yaml"
    config.write_text("runner:\n  drain_timeout_seconds: 3\n")
    monkeypatch.setenv("ASSETSTREAM_CONFIG", str(config))
    with pytest.raises(ValidationError, match="drain_timeout_seconds"):
        Settings()
    config.write_text("runner:\n  drain_timeout_s: 3\nkafka:\n  bootstrap_servers: kafka:9092\n")
    monkeypatch.setenv("ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS", "override:9092")
    s = Settings()
    assert s.runner.drain_timeout_s == 3 and s.kafka.bootstrap_servers == "override:9092"  # env over file


def test_secrets_never_appear_in_the_redacted_view(monkeypatch):
    from app.settings import Settings

    monkeypatch.setenv("ASSETSTREAM_ENRICH__ANTHROPIC_API_KEY", "sk-ant-very-secret")
    monkeypatch.setenv("ASSETSTREAM_KAFKA__SASL_PASSWORD", "hunter2")
    s = Settings()
    assert s.enrich.anthropic_api_key.get_secret_value() == "sk-ant-very-secret"
    text = str(s.redacted()) + repr(s) + str(s)
    assert "sk-ant-very-secret" not in text and "hunter2" not in text
    assert s.kafka.client_config()["sasl.password"] == "hunter2"  # handed to librdkafka, never printed


def test_inline_and_child_processes_cannot_both_be_asked_for(monkeypatch):
    from pydantic import ValidationError

    from app.settings import Settings

    monkeypatch.setenv("ASSETSTREAM_RUNNER__INLINE", "true")
    monkeypatch.setenv("ASSETSTREAM_RUNNER__PROCESSES", "2")
    with pytest.raises(ValidationError, match="exclude each other"):
        Settings()
    monkeypatch.setenv("ASSETSTREAM_RUNNER__INLINE", "false")
    assert Settings().runner.processes == 2
    monkeypatch.setenv("ASSETSTREAM_RUNNER__PROCESSES", "-1")
    with pytest.raises(ValidationError, match="processes"):
        Settings()


def test_backpressure_settings_that_would_starve_the_consumer_are_refused():
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="max_in_flight"):
        Settings.model_validate({"runner": {"max_in_flight": 0}})  # would never take a record
    with pytest.raises(ValidationError, match="pause_after_s"):  # the group would drop the worker first
        Settings.model_validate({"runner": {"pause_after_s": 200}, "kafka": {"max_poll_interval_ms": 300000}})
    ok = Settings.model_validate({"runner": {"pause_after_s": 5}, "kafka": {"max_poll_interval_ms": 300000}})
    assert ok.runner.pause_after_s == 5


def test_a_tag_publish_floor_above_the_auto_apply_threshold_is_refused():
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="tag_publish_min"):
        Settings.model_validate({"validate": {"tag_publish_min": 0.9}})  # would hold tags strong enough to apply
    assert Settings.model_validate({"validate": {"tag_publish_min": None}}).validate_.tag_publish_min is None
    assert Settings().validate_.tag_publish_min == 0.5


WP = "    - {name: blog, type: wordpress, url: %s, username: wb, application_password: FAKE-APP-PW-777%s}\n"
HOOK = "    - {name: dam, url: '%s', bearer_token: FAKE-BEARER-888%s}\n"


@pytest.mark.parametrize("target, expected", [
    # trial 30 F2: a suggest target with the live fields put unreviewed text on the site
    (WP % ("https://blog.example", ", mode: suggest"),
     "writeback target 'blog' (wordpress, mode suggest) maps alt_text -> alt_text, caption -> caption, summary -> "
     "description: the media item's own fields, which the site shows at once, so unreviewed suggestions would go "
     "live; map them to the post meta the editor sees in the media modal: fields: {alt_text: "
     "meta.assetstream_suggested_alt_text, caption: meta.assetstream_suggested_caption, summary: "
     "meta.assetstream_suggested_description}"),
    # trial 30 F6: credentials in clear to another machine; a URL password next to the application password
    (HOOK % ("http://dam.example/api/assets/{asset_id}", ""),
     "writeback target 'dam' (webhook): bearer_token would be sent in clear over plain http:// to dam.example; use "
     "an https:// url, or set allow_insecure_http: true on the target if that network is trusted"),
    (WP % ("http://blog.example", ""), "writeback target 'blog' (wordpress): application_password would be sent in "
                                       "clear over plain http:// to blog.example"),
    # code review 16 F7: a *.localhost name may resolve anywhere (a cluster DNS wildcard): not loopback
    (HOOK % ("http://dam.localhost:8080/api/assets/{asset_id}", ""),
     "writeback target 'dam' (webhook): bearer_token would be sent in clear over plain http:// to dam.localhost"),
    (WP % ("'https://wb:FAKE-URL-PW-999@blog.example'", ""),
     "writeback target 'blog' (wordpress): the url holds a user:password, which is never sent"),
    # trial 30 F1: two tenants' same asset id on one DAM record
    (HOOK % ("https://dam.example/api/assets/{asset_id}", ", tenants: [acme, globex]"),
     "writeback target 'dam' (webhook) serves acme, globex but its url has no {tenant}"),
], ids=["suggest-to-live-fields", "bearer-over-http", "app-password-over-http", "bearer-to-a-localhost-name",
        "wordpress-url-password",
        "tenants-without-placeholder"])
def test_a_writeback_target_that_would_leak_is_refused_when_the_settings_load(tmp_path, monkeypatch, target, expected):
    from pydantic import ValidationError

    from app.settings import Settings

    config = tmp_path / "config.yaml"
    config.write_text("writeback:\n  targets:\n" + target)
    monkeypatch.setenv("ASSETSTREAM_CONFIG", str(config))
    with pytest.raises(ValidationError) as err:
        Settings()
    text = " ".join(str(err.value).split())
    assert expected in text, text
    assert "FAKE-" not in text.split("[type=")[0]  # no secret in the message (pydantic's input echo is not shown)


def test_writeback_targets_that_are_safe_load_and_serve_the_default_tenant(tmp_path, monkeypatch):
    from app.settings import Settings

    config = tmp_path / "config.yaml"
    config.write_text("writeback:\n  targets:\n"
                      + HOOK % ("http://127.0.0.1:9/api/assets/{asset_id}", "")  # loopback
                      + (HOOK % ("http://localhost.:9/api/assets/{asset_id}", "")).replace("dam,", "dam-name,")
                      + (HOOK % ("http://[::1]:9/api/assets/{asset_id}", "")).replace("dam,", "dam-v6,")
                      + (WP % ("http://wp.internal", ", allow_insecure_http: true")).replace("blog", "wp")
                      + (HOOK % ("https://dam.example/{tenant}/assets/{asset_id}", ", tenants: ['*']")).replace(
                          "dam,", "dam-all,")
                      + WP % ("https://blog.example", ", mode: suggest, fields: {alt_text: "
                                                      "meta.assetstream_suggested_alt_text}"))
    monkeypatch.setenv("ASSETSTREAM_CONFIG", str(config))
    local, _name, _v6, insecure, every, suggest = Settings().writeback.targets
    assert local.tenants == ["default"] and local.serves(None) and not local.serves("acme")  # the default
    assert every.serves("acme") and every.serves("default")
    assert insecure.allow_insecure_http and suggest.mode == "suggest"


def test_the_settings_reference_is_generated_from_the_code_and_says_every_setting():
    """docs/settings.md (trial 32 F9): every setting with its variable, type, default and description, as
    `python -m app.settings_doc` prints it from the settings' code; a setting added or changed without
    regenerating it fails here."""
    import re
    from pathlib import Path

    from app.settings_doc import render

    doc = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text("utf-8")
    assert doc == render(), "docs/settings.md is out of date: run `python -m app.settings_doc > docs/settings.md`"
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in doc.splitlines()
             if line.startswith("| `")]
    rows = {c[0].strip("`"): (c[1], c[3], c[4]) for c in cells}  # setting -> variable, default, description
    # those a first-day reader found documented nowhere now say what they do
    for key in ("kafka.ssl_ca_location", "kafka.ssl_certificate_location", "kafka.ssl_key_location",
                "kafka.max_poll_interval_ms", "topics.replication_factor", "topics.dlq_retention_ms",
                "topics.dead_letter", "validate.unknown_tags", "validate.scrub_denied_from_raw",
                "validate.prompt_schemas", "kpis.flow_enabled"):
        assert rows[key][2].strip(), key
    assert rows["index.health_check_interval_s"][:2] == ("`ASSETSTREAM_INDEX__HEALTH_CHECK_INTERVAL_S`", "`1.0`")
    assert rows["validate.unknown_tags"][0] == "`ASSETSTREAM_VALIDATE__UNKNOWN_TAGS`"
    assert rows["kafka.sasl_password"][1] == "(secret)" and rows["review.token"][1] == "(secret)"
    assert not [k for k, (_, _, described) in rows.items() if not described.strip()]


def test_operations_names_every_variable_that_is_not_a_setting():
    """docs/operations.md lists the ASSETSTREAM_* variables allowed beside the settings (trial 32 F7: one was
    missing), and points at the settings reference."""
    from pathlib import Path

    from app.settings import OTHER_ENV

    doc = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text("utf-8")
    assert [v for v in sorted(OTHER_ENV) if f"`{v}`" not in doc] == []
    assert "(settings.md)" in doc
