"""Dead letters on a real broker: list/show with reasons, replay through a fixed stage to the output topic,
a replay that fails again is dead-lettered again, and nothing is ever removed from the DLQ."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from streams import AVRO_DIR
from streams.avro import stable_schema_id
from streams.errors import PermanentError
from streams.schemas import schema_json
from streams.topics import create_topics
from app.ops import cli as ops_cli
from app.ops.dlq import DlqError, read_dead_letters
from app.producer import AssetPublisher, build_event
from app.run_writeback import read_dead_letters as run_letters
from streams.records import stamp
from streams.runner import StageRunner
from streams.stage import Output, Stage
from tests.kafka_support import RunnerThread, env_for, make_settings, provision, read_topic


class FileStage(Stage):
    """raw -> preprocessed, reading the source file: a missing file is a permanent failure (until someone
    puts the file there)."""

    name = "filecheck"
    input_topic = "raw"
    output_topic = "preprocessed"
    kind = "cpu"

    def process(self, value, ctx):
        path = Path(urlparse(value["source_uri"]).path)
        if not path.is_file():
            raise PermanentError(f"source file missing: {path} (field [source_uri] of type [file])",  # as a store
                                 reason="source_missing",
                                 details={"path": str(path)})
        return Output(value={"asset": value, "stamp": stamp(self.name)}, headers={"size": str(path.stat().st_size)})


def _cli(args: list[str], env: dict[str, str]):
    app = ops_cli.app
    result = CliRunner().invoke(app, args, env=env)
    return result


def _json(result) -> object:
    text = result.stdout
    return json.loads(text[min(i for i in (text.find("["), text.find("{")) if i >= 0):])


def _wait_dlq(settings, n: int, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        letters = read_dead_letters(settings)
        if len(letters) >= n or time.monotonic() > deadline:
            return letters
        time.sleep(0.3)


def test_dead_letter_inspect_fix_replay_round_trip(broker, unique, tmp_path):
    s = make_settings(broker, f"dlqops{unique}")
    provision(s)
    env = env_for(s)
    missing, still_missing = tmp_path / "later.jpg", tmp_path / os.fsdecode(b"n\xe9ver\x1b[2J\n.jpg")  # latin-1, ESC, LF
    present = tmp_path / "here.jpg"
    present.write_bytes(b"\xff\xd8ok")
    events = [build_event("asset-late", missing.as_uri(), version=1, attributes={"note": "x"}),
              build_event("asset-never", still_missing.as_uri(), version=1),
              build_event("asset-ok", present.as_uri(), version=1)]
    with AssetPublisher(s) as pub:
        pub.publish_events(events)
    p = Producer({"bootstrap.servers": broker})  # and a poison record nobody can decode
    p.produce(s.topics.name("raw"), key=b"asset-poison", value=b"\x00not-avro")
    p.flush(10)

    with RunnerThread(StageRunner(FileStage(s), s)):
        letters = _wait_dlq(s, 3)
        assert {d.asset_id for d in letters} == {"asset-late", "asset-never", "asset-poison"}

        listed = _cli(["dlq", "list", "--json"], env)
        assert listed.exit_code == 0, listed.output
        rows = {r["asset_id"]: r for r in _json(listed)}
        late = rows["asset-late"]
        assert (late["stage"], late["error_class"], late["reason"]) == ("filecheck", "permanent", "source_missing")
        assert "source file missing" in late["message"] and late["attempts"] == 1
        assert late["original"].startswith(s.topics.name("raw") + "/")
        assert rows["asset-poison"]["error_class"] == "poison"
        # trial 24 F8: which file it was, not only the asset id (a name that is not UTF-8 with its bytes as \xNN);
        # review 14 M2: control characters as their escapes, never raw into the terminal (clear screen, fake rows)
        assert (late["source"], rows["asset-never"]["source"], rows["asset-poison"]["source"]) == (
            "later.jpg", "n\\xe9ver\\x1b[2J\\n.jpg", None)

        only = _cli(["dlq", "list", "--json", "--reason", "source_missing", "--stage", "filecheck"], env)
        assert sorted(r["asset_id"] for r in _json(only)) == ["asset-late", "asset-never"]
        # a reason no letter has (trial 10: the docs' `fetch_404` matched nothing, silently): the ones there are
        typo = _cli(["dlq", "replay", "--reason", "fetch_404", "--dry-run"], env)
        assert typo.exit_code == 0 and "no dead letter has reason 'fetch_404'" in typo.output, typo.output
        assert "source_missing" in typo.output and "would replay" not in typo.output
        table = _cli(["dlq", "list", "--error", "poison"], env)
        assert table.exit_code == 0 and ": 1 matching" in table.stdout and "poison" in table.stdout
        table = _cli(["dlq", "list", "--reason", "source_missing"], env)
        assert "source" in table.stdout and "later.jpg" in table.stdout and "n\\xe9ver\\x1b[2J\\n.jpg" in table.stdout
        assert "\x1b" not in table.stdout
        # trial 27 m1: Rich took a store error's `[source_uri]` and `[long]` for markup and dropped them
        assert "[source_uri]" in table.stdout and "[file])" in table.stdout, table.stdout

        shown = _cli(["dlq", "show", late["ref"], "--json"], env)
        assert shown.exit_code == 0
        detail = _json(shown)[0]
        assert detail["details"]["path"] == str(missing) and "PermanentError" in detail["stack"]
        assert "trace-id" in detail["original_headers"]
        human = _cli(["dlq", "show", "asset-never"], env)
        assert human.exit_code == 0, human.output
        text = " ".join(human.stdout.split())
        assert "message: source file missing:" in text and "(field [source_uri] of type [file])" in text, text
        assert text.count("field [source_uri] of type [file]") >= 3  # message, details' error, and the stack
        assert _cli(["dlq", "show", "no-such-asset"], env).exit_code == 1

        # fix the cause for one asset, then replay both source_missing letters
        missing.write_bytes(b"\xff\xd8now-here")
        assert _cli(["dlq", "replay"], env).exit_code == 2  # no selection: refuse to replay everything
        dry = _cli(["dlq", "replay", "--reason", "source_missing", "--dry-run"], env)
        assert dry.exit_code == 0 and dry.stdout.count("would replay") == 2
        replayed = _cli(["dlq", "replay", "--reason", "source_missing", "--json"], env)
        assert replayed.exit_code == 0, replayed.output
        outcomes = _json(replayed)
        assert all(o["ok"] and o["topic"] == s.topics.name("raw") for o in outcomes)

        out = read_topic(s, "preprocessed", 2)
        letters = _wait_dlq(s, 4)

    by_key = {r["key"]: r for r in out}
    assert set(by_key) == {"asset-ok", "asset-late"}  # the fixed one went through
    late_out = by_key["asset-late"]
    assert late_out["value"]["asset"]["event_id"] == events[0]["event_id"]  # the original record, unchanged
    assert late_out["value"]["asset"]["attributes"] == {"note": "x"}
    assert late_out["headers"]["size"] == str(len(b"\xff\xd8now-here")).encode()

    # the original raw record's key/headers came back, plus replayed-from
    raw = read_topic(s, "raw", 6, decode=False)
    replays = [r for r in raw if "replayed-from" in r["headers"]]
    assert sorted(r["key"] for r in replays) == ["asset-late", "asset-never"]
    originals = {r["key"]: r for r in raw if "replayed-from" not in r["headers"]}
    for r in replays:
        assert r["headers"]["trace-id"] == originals[r["key"]]["headers"]["trace-id"]
        assert r["value"] == originals[r["key"]]["value"]  # byte for byte
    assert {r["headers"]["replayed-from"].decode() for r in replays} == {
        f"dlq/{rows[a]['ref']}" for a in ("asset-late", "asset-never")}

    # nothing was removed from the DLQ; the still-broken asset is dead-lettered again, marked as a replay
    assert len(letters) == 4
    again = [d for d in letters if d.replayed_from]
    assert [d.asset_id for d in again] == ["asset-never"]
    assert again[0].replayed_from == f"dlq/{rows['asset-never']['ref']}"


def test_dlq_list_asks_the_registry_once_per_schema_id_it_cannot_give(broker, unique):
    """Review 14 L4: the source column decodes each letter's original record, and a writer's schema id the registry
    does not know (404) or cannot give now (503) was asked again for every letter: one request (each up to
    registry.max_retries x registry.timeout_s) per letter on every `dlq list`. Now once per schema id; the external
    registry double counts the requests."""
    from streams.avro import Serde
    from tests.test_work_batch import DOWN, NOT_FOUND, RegistryStub

    def answer(method, path):
        if method == "POST":  # this release's subjects: raw's AssetEvent, the dead letter
            return 200, {"id": 1003 if ".dlq-value/" in path else 1001}
        if path.startswith("/schemas/ids/1003"):
            return 200, {"schema": schema_json("DeadLetter")}
        if path.startswith("/schemas/ids/556"):
            return DOWN  # answers nothing for this id now
        return NOT_FOUND  # 555: an old release's id this registry does not have

    with RegistryStub(answer) as reg:
        s = make_settings(broker, f"dlqids{unique}", registry={"url": reg.url})
        provision(s)
        serde = Serde.for_settings(s)
        p = Producer({"bootstrap.servers": broker})
        for i, schema_id in enumerate([555, 556, 555, 556, 555, 556]):
            letter = {"original_topic": s.topics.name("raw"), "original_partition": 0, "original_offset": i,
                      "original_key": f"asset-{i}".encode(), "asset_id": f"asset-{i}",
                      "original_value": b"\0" + schema_id.to_bytes(4, "big") + b"\x02x",
                      "stage": "filecheck", "error_class": "permanent", "error_type": "PermanentError",
                      "message": "source file missing", "first_failure_time": 0, "last_failure_time": 0,
                      "details": {"reason": "source_missing"}}
            p.produce(s.topics.name("dead_letter"), key=f"asset-{i}".encode(),
                      value=serde.serialize("dead_letter", letter))
        assert p.flush(10) == 0
        before = len(reg.seen)
        listed = _cli(["dlq", "list", "--json"], env_for(s))
        asked = reg.seen[before:]
    assert listed.exit_code == 0, listed.output
    rows = _json(listed)
    assert sorted(r["asset_id"] for r in rows) == [f"asset-{i}" for i in range(6)]
    assert all(r["source"] is None and r["reason"] == "source_missing" for r in rows)
    assert [sum(r.startswith(f"GET /schemas/ids/{i}") for r in asked) for i in (555, 556)] == [1, 1], asked


def test_a_record_dead_lettered_twice_is_replayed_once(broker, unique, tmp_path):
    """At-least-once delivery: a record a worker was handling when its partitions moved can be dead-lettered
    twice (a user trial saw raw/4/29 as dlq 4/1 and 4/2). `dlq replay` publishes it once and says so."""
    s = make_settings(broker, f"dlqtwice{unique}")
    provision(s)
    env = env_for(s)
    with AssetPublisher(s) as pub:
        pub.publish_events([build_event("asset-gone", (tmp_path / "gone.jpg").as_uri(), version=1)])
    with RunnerThread(StageRunner(FileStage(s), s)):
        first = _wait_dlq(s, 1)
    assert len(first) == 1
    # the second dead letter of the same record, as a second worker handling it after a rebalance writes it
    raw_letter = read_topic(s, "dead_letter", 1, decode=False)[0]
    p = Producer({"bootstrap.servers": broker})
    p.produce(s.topics.name("dead_letter"), key=raw_letter["key"], value=raw_letter["value"],
              headers=list(raw_letter["headers"].items()))
    p.flush(10)
    letters = _wait_dlq(s, 2)
    assert len(letters) == 2 and len({d.summary()["original"] for d in letters}) == 1

    replayed = _cli(["dlq", "replay", "--asset", "asset-gone", "--json"], env)
    assert replayed.exit_code == 0, replayed.output
    assert len(_json(replayed)) == 1 and _json(replayed)[0]["ok"]
    said = " ".join(replayed.stderr.split())
    assert f"skipped dlq {letters[0].ref}" in said and f"as dlq {letters[1].ref}" in said
    raw = read_topic(s, "raw", 3, timeout_s=8, decode=False)  # all there are: the event and its replays
    assert sum("replayed-from" in r["headers"] for r in raw) == 1


OLD_RELEASE = """
import sys
from app.producer import AssetPublisher, build_event
from app.settings import Settings
with AssetPublisher(Settings()) as pub:
    pub.publish_events([build_event(sys.argv[1], sys.argv[2], version=1)])
"""


def publish_as_old_release(settings, contracts: Path, asset_id: str, uri: str) -> None:
    """`assetstream publish` of a previous release: another process, with its own contract texts."""
    env = {**env_for(settings), "ASSETSTREAM_AVRO_DIR": str(contracts)}
    subprocess.run([sys.executable, "-c", OLD_RELEASE, asset_id, uri], env=env, check=True, timeout=60)


def test_a_record_of_another_release_is_read_and_its_dead_letter_replays_once_its_schema_is_known(
        broker, unique, tmp_path):
    """Trial 21: on the mock:// registry a process knew only its own contract texts, so what a previous release
    wrote (here: AssetEvent with another doc line, so another schema id) was dead-lettered "Schema Not Found" and a
    replay failed the same way. With the schemas topic the writer's schema is kept on the broker and the reader
    (this process, which never had that text) looks it up there."""
    contracts = tmp_path / "contracts"
    shutil.copytree(AVRO_DIR, contracts)
    avsc = contracts / "io.assetstream.AssetEvent.avsc"
    avsc.write_text(json.dumps({**json.loads(avsc.read_text()), "doc": "as the previous release said it"}))
    old_id = stable_schema_id(schema_json("AssetEvent", contracts))
    present = tmp_path / "here.jpg"
    present.write_bytes(b"\xff\xd8ok")
    s = make_settings(broker, f"dlqschema{unique}")
    env = env_for(s)
    # a fleet provisioned before the schemas topic existed: the old release's schema is kept nowhere
    provision(s.with_overrides(registry={"url": "http://registry.invalid:8081"}))
    publish_as_old_release(s, contracts, "asset-before", present.as_uri())
    with RunnerThread(StageRunner(FileStage(s), s)):
        letters = _wait_dlq(s, 1)
        assert [(d.asset_id, d.reason) for d in letters] == [("asset-before", "deserialize")]
        shown = _cli(["dlq", "show", letters[0].ref], env)
        said = " ".join(shown.stdout.split())
        assert f"hint: schema id {old_id} was unknown" in said, said
        assert "written by a process with other contract texts" in said

        assert create_topics(s)[s.topics.name("schemas")] == "created"  # `assetstream topics create` again
        publish_as_old_release(s, contracts, "asset-after", present.as_uri())  # keeps its schema there now
        assert [r["key"] for r in read_topic(s, "preprocessed", 1, timeout_s=20)] == ["asset-after"]

        replayed = _cli(["dlq", "replay", "--reason", "deserialize", "--json"], env)
        assert replayed.exit_code == 0, replayed.output
        assert "still unknown" not in replayed.stderr
        out = read_topic(s, "preprocessed", 2, timeout_s=20)
    assert sorted(r["key"] for r in out) == ["asset-after", "asset-before"]
    assert len(read_dead_letters(s)) == 1  # the replay was not dead-lettered again


def test_without_a_dead_letter_topic_the_dlq_listing_refuses_and_the_run_s_reading_is_empty(broker, unique):
    """One reader, two failure behaviours: `dlq list` says the topic is missing (DlqError naming it and the fix);
    `assetstream run`'s write-back outcomes, which never fail the run, read nothing."""
    settings = make_settings(broker, f"nodlq{unique}")  # topics never created
    with pytest.raises(DlqError, match=rf"no dead-letter topic 'nodlq{unique}\.dlq'.*assetstream topics create"):
        read_dead_letters(settings, 5.0)
    assert read_dead_letters(settings, 5.0, partial=True) == []
    assert run_letters(settings, "writeback", {"a-1"}, 0) == {}


def test_a_letter_of_a_truncated_upload_gives_its_whole_event_back_for_replay():
    """Trial 17: a truncated JPEG's letter (`details.truncated: True`, the decoder's "the file is cut") was refused
    by `dlq replay` as "its original value was cut to 148 of more bytes ... no dead_letters.store" though the event
    was whole; the runtime's own cut-to-1-KiB mark still refuses."""
    from app.ops.dlq import DeadLetter, NotRestorable, original_value
    from streams.originals import sha256

    event = b"\x00\x00\x00\x00\x01" + b"e" * 143  # a whole 148-byte event

    def letter(details, data):
        return DeadLetter(0, 0, "a1", {}, None, {"details": details, "original_value": data, "original_value_ref": None,
                                                  "original_value_size": len(event),
                                                  "original_value_sha256": sha256(event)})
    assert original_value(letter({"format": "JPEG", "truncated": "True"}, event), None) == event
    with pytest.raises(NotRestorable, match="cut"):
        original_value(letter({"original_value_cut": "original value cut from 148 to 100 bytes"}, event[:100]), None)


def test_a_letter_whose_replay_failed_again_is_replayed_once_from_the_newer_letter():
    """Trial 17: `dlq replay --asset X` also replayed the letter of the first failure next to the letter its replay
    earned (`replayed_from`), so the same event was sent twice."""
    from app.ops.dlq import REPLAYED_FROM, DeadLetter, distinct_originals

    first = DeadLetter(0, 3, "a1", {}, None, {"original_topic": "raw", "original_partition": 0, "original_offset": 7,
                                              "original_headers": []})
    again = DeadLetter(0, 9, "a1", {}, None, {"original_topic": "raw", "original_partition": 0, "original_offset": 40,
                                              "original_headers": [{"key": REPLAYED_FROM, "value": b"dlq/0/3"}]})
    other = DeadLetter(1, 2, "b2", {}, None, {"original_topic": "raw", "original_partition": 1, "original_offset": 5,
                                              "original_headers": []})
    kept, skipped = distinct_originals([first, again, other])
    assert [d.ref for d in kept] == ["0/9", "1/2"] and [(d.ref, k.ref) for d, k in skipped] == [("0/3", "0/9")]
    # replayed twice, both failed again: still one event; a filter that selects only the first letter replays the
    # newest of its chain; refs that point at each other (a recreated topic) do not hang it
    twice = DeadLetter(0, 12, "a1", {}, None, {"original_topic": "raw", "original_partition": 0,
                                               "original_offset": 41,
                                               "original_headers": [{"key": REPLAYED_FROM, "value": b"dlq/0/3"}]})
    everything = [first, again, twice, other]
    assert [d.ref for d in distinct_originals(everything)[0]] == ["0/12", "1/2"]
    assert [d.ref for d in distinct_originals([first], everything)[0]] == ["0/12"]
    loop = DeadLetter(0, 3, "a1", {}, None, {**first.value, "original_headers": [
        {"key": REPLAYED_FROM, "value": b"dlq/0/9"}]})
    assert [d.ref for d in distinct_originals([loop, again])[0]] == ["0/9"]


def test_a_schema_registered_before_topics_create_is_kept_at_the_writer_s_next_write(broker, unique, caplog):
    """Review 13 M3: a running writer that registered its schema before `topics create` made the schemas topic
    (or while the broker did not answer) never offered it again, and said so once per process at most: readers of
    another release dead-lettered its records "Schema Not Found" for the life of the writer."""
    from streams.avro import Serde, topic_names
    from streams.schemalog import SchemaLog

    s = make_settings(broker, f"schemalater{unique}")
    provision(s.with_overrides(registry={"url": "http://registry.invalid:8081"}))  # provisioned without it
    topic = s.topics.name("schemas")
    log = SchemaLog(s.kafka.client_config(), topic, timeout_s=10, retry_after_s=0.1)
    writer = Serde({"url": f"mock://schemalater{unique}"}, topic_names(s), True, log)
    event = build_event("asset-1", "file:///x.jpg", version=1)
    with caplog.at_level("WARNING", logger="assetstream.registry"):
        writer.serialize("raw", event)
    schema_id = stable_schema_id(schema_json("AssetEvent"))
    assert f"schema id {schema_id} ({s.topics.name('raw')}-value) is not kept on {topic}" in caplog.text

    assert create_topics(s)[topic] == "created"  # `assetstream topics create`
    time.sleep(0.2)
    writer.serialize("raw", event)  # the same process writes again
    reader = SchemaLog(s.kafka.client_config(), topic, timeout_s=10)
    assert schema_id in [entry["id"] for entry in reader.read_new()]


def test_a_schemas_topic_that_cannot_be_read_is_an_outage_not_schema_not_found():
    """Review 13 M3: a failed read of the schemas topic returned nothing, so the look-up said "Schema Not Found"
    and the record was a poison letter; it is the (in-process) registry being unavailable: the record waits."""
    import socket

    from streams.schemalog import SchemaLog
    from streams.work import registry_unavailable

    with socket.socket() as probe:  # a broker address where nothing listens
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    log = SchemaLog({"bootstrap.servers": nowhere}, "assetstream._schemas", timeout_s=0.5)
    for _ in range(2):  # the second within RETRY_AFTER_S: at once, without asking the broker again
        started = time.monotonic()
        try:
            log.read_new()
            raise AssertionError("read nothing and said nothing")
        except Exception as exc:  # noqa: BLE001
            assert registry_unavailable(exc), repr(exc)
    assert time.monotonic() - started < 0.2


def test_dlq_replay_s_schema_check_says_it_could_not_check_when_the_registry_is_down(capsys):
    """Review 13 M4: the advisory "still unknown" check asked an unreachable registry and the replay ended in a
    traceback before replaying anything; the replay itself needs no registry."""
    import socket

    from app.ops.cli import _say_unknown_schemas
    from app.ops.dlq import DeadLetter
    from app.settings import Settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    from streams.avro import registry_client

    registry_client({"url": down, "max.retries": 0})  # this URL's client, without its own retries
    letter = DeadLetter(0, 5, "a1", {}, None, {
        "message": "cannot deserialize Avro value: Schema Not Found: schema id 77 is not known",
        "original_value": b"\0\0\0\0\x4d" + b"x"})
    _say_unknown_schemas(Settings.model_validate({"registry": {"url": down}}), [letter])
    captured = capsys.readouterr()
    said = " ".join((captured.err + captured.out).split())
    assert "dlq 0/5: could not check schema id 77" in said, said


class RefusingReview(Stage):
    """feedback -> validated, refusing every decision as the review group refuses one on a document without its
    stored record."""

    name = "review"
    input_topic = "feedback"
    output_topic = "validated"
    kind = "cpu"

    def process(self, value, ctx):
        raise PermanentError("no stored record to apply the decision to", reason="no_stored_record")


class RefusingIndex(Stage):
    """validated -> the index, refusing every record as the sink refuses one the store will not take (an edited
    value too large for a keyword term)."""

    name = "index"
    input_topic = "validated"
    output_topic = None
    kind = "cpu"

    def process(self, value, ctx):
        raise PermanentError("the store refused the document: mapper_parsing_exception", reason="mapper_parsing")


def test_dlq_list_open_leaves_out_the_letters_whose_asset_was_processed_since(broker, unique, store, tmp_path):
    """Operations leftover (closing 15): `dlq list` showed every letter ever written, the ones whose asset was
    re-driven and indexed since (or superseded by a later good record) among the ones still needing someone, and
    nothing told them apart. `--open` asks the index, by the records' own facts (which event, which version, which
    decisions the review holds), never by the times the letter and the document were written.
    Code review 17 F2: the sink's letter of the record the review group published for a person's approval is of
    the indexed document's own event; `--open` called it closed ("this event is indexed") though the approval never
    reached the index, and that letter was its only trace. It is open until the index's review holds the decision."""
    import datetime as dt

    from consumers.index.sink import IndexSink
    from domain.review import empty_review
    from domain.store.client import make_client
    from domain.store.management import ensure_index
    from tests.store_support import as_items, validated_asset

    s = make_settings(broker, f"dlqopen{unique}", index={
        "url": store.url, "server_mode": "serverless", "number_of_replicas": 0, "index": f"dlqopen{unique}-assets",
        "request_timeout_s": 5.0})
    provision(s)
    ensure_index(make_client(s), s)
    env = env_for(s)
    gone = (tmp_path / "gone.jpg").as_uri()  # every event's file is missing: each is dead-lettered once
    events = {a: build_event(a, gone, version=v, event_type=t) for a, v, t in (
        ("a-fixed", 1, "created"), ("a-newer", 1, "created"), ("a-same", 1, "created"), ("a-open", 2, "updated"),
        ("a-none", 1, "created"), ("a-deleted", 3, "deleted"))}
    at = dt.datetime.now(dt.timezone.utc)
    decisions = [{"asset_id": a, "decision_id": d, "fields": [], "editor": "ed@example.com", "decided_at": at,
                  "status": "approved", "tenant": None, "content_sha256": None}
                 for a, d in (("a-fixed", "dec-applied"), ("a-open", "dec-lost"))]
    # the records the review group published for two approvals, each the document's stored record (its event id)
    # with the person's review applied: a-lost's approval (dec-new) never reaches the index, a-kept's does
    indexed = {a: validated_asset(a, 2) for a in ("a-lost", "a-kept")}
    applied = {a: {**v, "stamp": {**v["stamp"], "stage": "review"},
                   "review": {**empty_review(), "status": "approved", "decision_ids": ids}}
               for (a, v), ids in zip(indexed.items(), (["dec-old", "dec-new"], ["dec-kept"]))}
    indexed["a-lost"]["review"] = {**empty_review(), "status": "approved", "decision_ids": ["dec-old"]}
    indexed["a-kept"]["review"] = applied["a-kept"]["review"]
    # trial 33 N4: a still-broken file sent twice at one version (a run's event, then a backfill's): one open line
    twice = [build_event("a-twice", gone, version=1, event_type="created") for _ in range(2)]
    with AssetPublisher(s) as pub:
        pub.publish_events([*events.values(), *twice])
        for d in decisions:
            pub.send("feedback", d["asset_id"], d)
        for a, v in applied.items():
            pub.send("validated", a, v)
        pub.flush()
    p = Producer({"bootstrap.servers": broker})
    p.produce(s.topics.name("raw"), key=b"a-poison", value=b"\x00not-avro")
    p.flush(10)
    with RunnerThread(StageRunner(FileStage(s), s)), RunnerThread(StageRunner(RefusingReview(s), s)), \
            RunnerThread(StageRunner(RefusingIndex(s), s)):
        assert len(_wait_dlq(s, 13)) == 13

    # since then: a-fixed's very event indexed (its letter replayed after the fix) with the decision applied,
    # a-newer indexed at a newer version, a-same at its version from another event; a-open only at an older version
    fixed = validated_asset("a-fixed", 1)
    fixed["enriched"]["pre"]["asset"]["event_id"] = events["a-fixed"]["event_id"]
    fixed["review"] = {**empty_review(), "status": "approved", "decision_ids": ["dec-applied"]}
    sink = IndexSink(s)
    try:
        assert sink.process_batch(as_items([fixed, validated_asset("a-newer", 2), validated_asset("a-same", 1),
                                            validated_asset("a-open", 1), *indexed.values()])) == [None] * 6
    finally:
        sink.close()

    everything = _cli(["dlq", "list", "--json"], env)
    assert everything.exit_code == 0 and len(_json(everything)) == 13
    first, second = [r["ref"] for r in _json(everything) if r["asset_id"] == "a-twice"]
    listed = _cli(["dlq", "list", "--open", "--json"], env)
    assert listed.exit_code == 0, listed.output
    rows = _json(listed)
    assert sorted((r["asset_id"], r["stage"]) for r in rows) == [
        ("a-lost", "index"), ("a-none", "filecheck"), ("a-open", "filecheck"), ("a-open", "review"),
        ("a-poison", "filecheck"), ("a-twice", "filecheck")], rows
    assert [(r["ref"], r["folded"]) for r in rows if r["asset_id"] == "a-twice"] == [(second, [first])]
    said = " ".join(listed.stderr.split())
    assert "1 older letter(s) folded into the newest of the same asset and version" in said, said
    shown = _cli(["dlq", "list", "--open", "--asset", "a-twice"], env)
    assert ": 1 open" in shown.stdout and f"{second} (+1 older: {first})" in " ".join(shown.stdout.split()), shown.output
    # and its replay sends the newest letter once, saying why the other is skipped
    dry = _cli(["dlq", "replay", "--asset", "a-twice", "--dry-run"], env)
    assert dry.exit_code == 0 and dry.stdout.count("would replay") == 1 and f"would replay dlq {second} " in dry.stdout
    assert f"skipped dlq {first}: another event of the same asset and version as dlq {second}" in " ".join(
        dry.stderr.split()), dry.output
    assert ("6 letter(s) left out, their asset processed since: " in said and "this event is indexed ×1" in said
            and "a newer version is indexed ×1" in said and "the same version is indexed from another event ×1" in said
            and "its decision is in the asset's review ×2" in said and "the asset is deleted ×1" in said), said
    table = _cli(["dlq", "list", "--open", "--stage", "review"], env)
    assert table.exit_code == 0 and ": 1 open" in table.stdout and "a-open" in table.stdout, table.output

    # --open needs the index: a store that does not answer is said, exit 2 (a listing that hides nothing is not
    # pretended)
    down = _cli(["dlq", "list", "--open", "--es-url", "http://127.0.0.1:9"], env)
    assert down.exit_code == 2 and "--open looks each letter's asset up in the index" in down.output, down.output
