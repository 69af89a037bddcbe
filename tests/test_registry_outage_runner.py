"""A schema registry outage seen by a running worker on the real broker (the review of the registry-outage work):
the poll loop never waits for the registry, an io stage's loop is not held by a dead letter waiting for it, and a
stage worked in child processes (runner.processes) pauses its worker like one worked in the worker's process.

The registry is an external Schema Registry double (real HTTP, tests/test_work_batch.RegistryStub) whose
subjects can be taken down and brought back while the worker runs."""
from __future__ import annotations

import io
import logging
import time

import fastavro
import pytest
from confluent_kafka import Producer

from app.producer import build_event
from streams import metrics
from streams.runner import StageRunner
from streams.schemas import parsed_schema, schema_json
from streams.sensors import PrometheusSensor
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic, wait_committed
from tests.stages import AsyncEchoStage, BatchEchoStage, EchoStage
from tests.test_work_batch import DOWN, NOT_FOUND, RegistryStub

SUBJECTS = {"raw": (1001, "AssetEvent"), "preprocessed": (1002, "PreprocessedAsset"), "dlq": (1003, "DeadLetter"),
            "older": (555, "AssetEvent")}
"""Topic (last part of its name) -> the id the double registers its subject's schema as, and the record ("older":
no topic, the id another release's producer wrote raw records with)."""


def registry(down: set[str], outage=DOWN, slow: dict[str, float] | None = None,
             script: dict[str, list[bool]] | None = None) -> RegistryStub:
    """A registry double whose subjects named in `down` (a set the test changes) answer `outage`; a subject in
    `slow` answers its first registration (or the first look-up of its id) after that many seconds; one in
    `script` answers its next registrations as the list says (True: registered, False: `outage`), then as usual."""

    def answer(method, path):
        for topic, (schema_id, record) in SUBJECTS.items():
            registering = method == "POST" and f".{topic}-value/" in path
            looking_up = method == "GET" and path.startswith(f"/schemas/ids/{schema_id}")
            if (registering or looking_up) and slow and topic in slow:
                time.sleep(slow.pop(topic))
            if registering:
                up = script[topic].pop(0) if script and script.get(topic) else topic not in down
                return (200, {"id": schema_id}) if up else outage
            if looking_up:
                return 200, {"schema": schema_json(record)}
        return NOT_FOUND

    return RegistryStub(answer)


def produce_raw(settings, broker: str, events: list[dict], schema_id: int = SUBJECTS["raw"][0]) -> None:
    """AssetEvents as the double's registry ids frame them (or as written with `schema_id`)."""
    records = []
    for event in events:
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed_schema("AssetEvent"), event)
        records.append((event["asset_id"].encode(), b"\0" + schema_id.to_bytes(4, "big") + body.getvalue()))
    produce_bytes(settings, broker, records)


def produce_bytes(settings, broker: str, records: list[tuple[bytes, bytes]]) -> None:
    """(key, value) pairs to the raw topic, by a producer without entry caps."""
    p = Producer({"bootstrap.servers": broker, "message.max.bytes": 4_000_000})
    for key, value in records:
        p.produce(settings.topics.name("raw"), key=key, value=value)
    assert p.flush(10) == 0


def worker(stage, settings, unique: str) -> RunnerThread:
    """The stage's worker, its metrics labelled stage="<name>-<unique>": this test's own gauges, which no other
    test's worker (many stages are named "echo", and a worker stopped while paused leaves its gauge at 1) sets."""
    return RunnerThread(StageRunner(stage, settings, sensor=PrometheusSensor(f"{stage.name}-{unique}")))


def paused(runner: StageRunner, reason: str = "schema_registry") -> float:
    """assetstream_paused{stage, reason} of this worker (see `worker`)."""
    return metrics.PAUSED.labels(runner.sensor.stage, reason)._value.get()


def wait_for(check, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def longest_stand_still(runner, seconds: float = 1.5) -> float:
    """The longest time the poll loop went without a tick (what /healthz reports) over the next `seconds`."""
    worst, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        worst = max(worst, time.monotonic() - runner.health.last_tick)
        time.sleep(0.05)
    return worst


def test_an_output_refused_during_a_registry_outage_pauses_and_never_blocks_the_poll_loop(broker, unique):
    """Review: the broker refused an output (too large) while the registry could not give the dead letter's schema;
    the poll thread built the dead letter itself and waited there for the registry: the loop stopped ticking
    (/healthz stalls after 60 s, the group drops the member after max.poll.interval.ms) and the pause it asked for
    was never applied. Now the letter is built again later from the loop, consumption paused (schema_registry)."""
    down = {"dlq"}
    with registry(down) as reg:
        s = make_settings(broker, f"rtrej{unique}", registry={"url": reg.url})
        provision(s)
        huge = build_event("asset-huge", "file:///library/big.jpg", version=1)
        huge["uploader_notes"] = "n" * (1024 * 1024)  # the input fits (producer limit raised), its output does not
        produce_raw(s, broker, [huge])
        with worker(EchoStage(s), s, unique) as runner:
            assert wait_for(lambda: any("dlq-value" in r for r in reg.seen), 15), "the dead letter was never tried"
            worst = longest_stand_still(runner)
            assert worst < 1.0, f"the poll loop stood still for {worst:.1f} s waiting for the registry"
            assert wait_for(lambda: paused(runner) == 1, 2), "not paused for the schema registry"
            down.clear()  # the registry is back
            dead = read_topic(s, "dead_letter", 1, timeout_s=15)
            wait_committed(s, runner.group_id, "raw", 1, timeout_s=10)
            assert wait_for(lambda: paused(runner) == 0, 5), "still paused once the registry was back"
    assert [d["key"] for d in dead] == ["asset-huge"]
    assert dead[0]["value"]["details"]["reason"] == "output_rejected"


def test_a_batch_that_succeeds_does_not_lift_the_pause_of_a_dead_letter_still_owed(broker, unique):
    """The pause request was one slot: in a batch stage, an output the broker refused while the registry could not
    give the dead letter's schema paused consumption (schema_registry), and the next batch to succeed asked for no
    pause, which lifted it: records were taken on while the letter was still owed. Now each source asks and lifts
    its own, so the worker stays paused until the letter is written."""
    down = {"dlq"}
    with registry(down) as reg:
        s = make_settings(broker, f"rtbat{unique}", registry={"url": reg.url},
                          runner={"batch_max_records": 1, "batch_max_wait_s": 0.05})
        provision(s)
        huge = build_event("asset-huge", "file:///library/big.jpg", version=1, attributes={"slow_ms": "1500"})
        huge["uploader_notes"] = "n" * (1024 * 1024)  # the input fits (producer limit raised), its output does not
        stage = BatchEchoStage(s)
        with worker(stage, s, unique) as runner:
            produce_raw(s, broker, [huge])
            assert wait_for(lambda: stage.seen, 15), "the batch stage never started"
            # taken while the huge record is worked: its own batch succeeds after the letter became owed
            produce_raw(s, broker, [build_event("asset-2", "file:///library/2.jpg", version=1,
                                                attributes={"slow_ms": "500"})])
            assert [r["key"] for r in read_topic(s, "preprocessed", 1, timeout_s=15)] == ["asset-2"]
            assert wait_for(lambda: paused(runner) == 1, 2), "not paused for the schema registry"
            produce_raw(s, broker, [build_event("asset-3", "file:///library/3.jpg", version=1)])
            assert not wait_for(lambda: "asset-3" in stage.seen, 2.0), "taken while the dead letter was owed"
            assert paused(runner) == 1
            down.clear()  # the registry is back: the letter is written, then asset-3 is taken
            dead = read_topic(s, "dead_letter", 1, timeout_s=15)
            wait_committed(s, runner.group_id, "raw", 3, timeout_s=15)
            assert wait_for(lambda: paused(runner) == 0, 5), "still paused once the registry was back"
    assert [d["key"] for d in dead] == ["asset-huge"] and stage.seen == ["asset-huge", "asset-2", "asset-3"]


def test_a_registry_that_never_answers_is_an_outage_not_a_hung_worker(broker, unique, caplog):
    """Review (the slow registry above): the registry client had no timeout at all, so a registry that accepts the
    connection and never answers held the worker's thread for ever, without a pause or a log line. Now each request
    is bounded (registry.timeout_s) and a request that times out is an outage: the record waits and is tried
    again."""
    from streams import avro

    with registry(set(), slow={"preprocessed": 30.0}) as reg:  # the first registration of the output hangs
        s = make_settings(broker, f"rthang{unique}", registry={"url": reg.url, "timeout_s": 0.5})
        provision(s)
        # the process's client for this URL, as the settings configure it, without the client's own retries
        avro._clients.pop((reg.url, 0), None)
        avro.registry_client({**s.registry.client_config(), "max.retries": 0})
        produce_raw(s, broker, [build_event("asset-1", "file:///library/1.jpg", version=1)])
        with caplog.at_level(logging.WARNING, logger="assetstream.runner"):
            with worker(EchoStage(s), s, unique):
                out = read_topic(s, "preprocessed", 1, timeout_s=10)  # the hanging answer would come after 30 s
    assert [r["key"] for r in out] == ["asset-1"]
    assert "waits for the schema registry" in caplog.text and "Timeout" in caplog.text


def test_a_silent_registry_is_given_up_on_after_registry_max_retries(unique):
    """ops15: the registry client's retries were fixed (3 more tries, up to 20 s apart), so a registry that accepts
    connections and never answers held each call about 4 x registry.timeout_s (40 s by default) before the record
    waited and the worker paused and said so. Now registry.max_retries and the waits between tries are settings:
    the double counts the requests one look-up made (no broker needed: the serde as every worker builds it)."""
    from streams import avro

    def silent(method, path):
        time.sleep(1.0)  # well past timeout_s: no answer in time
        return NOT_FOUND

    with RegistryStub(silent) as reg:
        try:
            for retries in (0, 2):
                s = make_settings("127.0.0.1:1", f"rtsilent{unique}", registry={
                    "url": reg.url, "timeout_s": 0.2, "max_retries": retries, "retry_backoff_s": 0.01})
                avro._clients.pop((reg.url, 0), None)  # not the double's own client: the one the settings build
                serde = avro.Serde.for_settings(s)
                before = len(reg.seen)
                with pytest.raises(Exception) as gave_up:  # noqa: PT011 - the HTTP layer's timeout
                    serde.knows(777)
                assert avro.registry_error(gave_up.value), repr(gave_up.value)
                asked = [r for r in reg.seen[before:] if r.startswith("GET /schemas/ids/777")]
                assert len(asked) == retries + 1, (retries, reg.seen[before:])
        finally:
            avro._clients.pop((reg.url, 0), None)


class CountingEchoStage(EchoStage):
    """EchoStage that counts its process() calls per event version (runner.inline: in the test's process)."""

    def __init__(self, settings):
        super().__init__(settings)
        self.calls: dict[int, int] = {}

    def process(self, value, ctx):
        version = value["version"]
        self.calls[version] = self.calls.get(version, 0) + 1
        return super().process(value, ctx)


def test_with_runner_inline_a_record_waiting_for_the_registry_does_not_stop_the_poll_loop(broker, unique, caplog):
    """Review: runner.inline works records in the poll thread, which waited there for the registry (an output's
    schema not registered yet): no tick, no pause applied. Now the records wait in order, the loop goes on paused.
    Review 14: and at each try the poll thread ran the whole stage again (a preprocess fetch and decode, a
    transient failure's retries with their backoffs), and said "dead-lettering" again: 93 runs and 93 warnings
    for one record in 2 s. Now only the step that met the outage (the outputs' or the dead letter's
    serialization) is tried again."""
    down = {"preprocessed", "dlq"}
    with registry(down) as reg:
        s = make_settings(broker, f"rtinl{unique}", registry={"url": reg.url}, runner={"inline": True})
        provision(s)
        events = [build_event("asset-1", "file:///library/1.jpg", version=v) for v in (1, 2, 3)]
        events[1]["attributes"] = {"fail": "permanent"}  # waits for its dead letter's schema
        produce_raw(s, broker, events)
        stage = CountingEchoStage(s)

        def tries(subject: str) -> int:
            return sum(f".{subject}-value/" in r for r in reg.seen)

        with caplog.at_level(logging.WARNING, logger="assetstream.runner"):
            with worker(stage, s, unique) as runner:
                assert wait_for(lambda: tries("preprocessed") >= 3, 15), "the output was not tried again"
                worst = longest_stand_still(runner)
                assert worst < 1.0, f"the poll loop stood still for {worst:.1f} s waiting for the registry"
                assert wait_for(lambda: paused(runner) == 1, 2), "not paused for the schema registry"
                down.discard("preprocessed")
                assert wait_for(lambda: tries("dlq") >= 3, 15), "the dead letter was not tried again"
                assert paused(runner) == 1, "not paused while the dead letter waits"
                down.clear()
                out = read_topic(s, "preprocessed", 2, timeout_s=15)
                dead = read_topic(s, "dead_letter", 1, timeout_s=15)
                wait_committed(s, runner.group_id, "raw", 3, timeout_s=10)
                assert wait_for(lambda: paused(runner) == 0, 5), "still paused once the registry was back"
    assert [r["value"]["asset"]["version"] for r in out] == [1, 3]  # in order, each once
    assert [d["value"]["details"]["reason"] for d in dead] == ["test_permanent"]
    assert stage.calls == {1: 1, 2: 1, 3: 1}, "the stage ran again while its record waited for the registry"
    assert caplog.text.count("dead-lettering") == 1


class CountingAsyncEchoStage(CountingEchoStage, AsyncEchoStage):
    """AsyncEchoStage (an io stage) counting its calls."""


class CountingBatchEchoStage(CountingEchoStage, BatchEchoStage):
    """BatchEchoStage (a batch stage) counting its calls."""


@pytest.mark.parametrize("stage_class", [CountingEchoStage, CountingAsyncEchoStage, CountingBatchEchoStage],
                         ids=["threads", "io", "batch"])
def test_a_record_waiting_for_its_output_s_schema_does_not_run_its_stage_again(broker, unique, stage_class):
    """Review 14, without runner.inline (the thread pool, an io stage's loop, a batch stage): a record whose output's
    schema the registry could not give ran its whole stage again at every try for as long as the outage lasted
    (for enrich: the paid model calls, again and again). Now the stage's result is kept and only its outputs are
    serialized again; they come out in order once the registry is back."""
    down = {"preprocessed"}
    with registry(down) as reg:
        # one record at a time (several threads or tasks may finish a partition's records out of order)
        s = make_settings(broker, f"rtkeep{stage_class.kind}{unique}", registry={"url": reg.url},
                          runner={"concurrency": 1})
        provision(s)
        produce_raw(s, broker, [build_event("asset-1", "file:///library/1.jpg", version=v) for v in (1, 2, 3)])
        stage = stage_class(s)
        with worker(stage, s, unique) as runner:
            assert wait_for(lambda: sum(".preprocessed-value/" in r for r in reg.seen) >= 4, 15), "not tried again"
            assert wait_for(lambda: paused(runner) == 1, 2), "not paused for the schema registry"
            down.clear()  # the registry is back
            out = read_topic(s, "preprocessed", 3, timeout_s=15)
            wait_committed(s, runner.group_id, "raw", 3, timeout_s=10)
            assert wait_for(lambda: paused(runner) == 0, 5), "still paused once the registry was back"
    assert [r["value"]["asset"]["version"] for r in out] == [1, 2, 3]
    assert stage.calls == {1: 1, 2: 1, 3: 1}, "the stage ran again while its record waited for the registry"


def test_a_batch_keeps_an_asset_s_versions_in_order_when_only_the_first_output_waits(broker, unique):
    """CI: the registry came back while a batch's outputs were serialized: version 1's registration was refused,
    versions 2 and 3 of the same asset went out, and 1 followed them (the index then held version 1's metadata
    until something newer came). A record waiting in a batch now holds the later records of its key."""
    script = {"preprocessed": [False, True]}  # the first registration is refused, the next one is met
    with registry(set(), script=script) as reg:
        # the three records in one batch
        s = make_settings(broker, f"rtorder{unique}", registry={"url": reg.url},
                          runner={"batch_max_records": 3, "batch_max_wait_s": 3.0})
        provision(s)
        produce_raw(s, broker, [build_event("asset-1", "file:///library/1.jpg", version=v) for v in (1, 2, 3)])
        stage = CountingBatchEchoStage(s)
        with worker(stage, s, unique) as runner:
            out = read_topic(s, "preprocessed", 3, timeout_s=15)
            wait_committed(s, runner.group_id, "raw", 3, timeout_s=10)
    assert not script["preprocessed"], "the refusal was never met"
    assert stage.seen == ["asset-1"] * 3, "not one batch"
    assert [r["value"]["asset"]["version"] for r in out] == [1, 2, 3]
    assert stage.calls == {1: 1, 2: 1, 3: 1}, "a stage ran again while its record waited for the registry"


@pytest.mark.parametrize("trouble", ["down", "slow", "slow_lookup"])
def test_an_io_stage_s_first_dead_letter_does_not_hold_its_other_records(broker, unique, trouble):
    """Review: an io stage's dead letter waited for its schema in the asyncio loop's own thread (a blocking wait),
    so every other record of the loop stood still until the registry came back. And "just after" the outage, a
    slow registry: registering the letter's schema (or looking up another release's writer schema of an input)
    is a blocking HTTP call made on the loop's thread, which held every record of the loop for as long. Now what
    needs the registry is done beside the loop and only its record waits."""
    down = {"dlq"} if trouble == "down" else set()
    slow = {"dlq": 4.0} if trouble == "slow" else {"older": 4.0} if trouble == "slow_lookup" else None
    with registry(down, slow=slow) as reg:
        s = make_settings(broker, f"rtio{trouble}{unique}".replace("_", ""), registry={"url": reg.url})
        provision(s)
        # one asset, one partition: the slow good record is on the loop when the other one starts waiting
        good = build_event("asset-1", "file:///library/1.jpg", version=1, attributes={"stall_first_ms": "1000"})
        bad = build_event("asset-1", "file:///library/1.jpg", version=2, attributes={"fail": "permanent"})
        produce_raw(s, broker, [good])
        if trouble == "slow_lookup":  # written by another release: its writer schema is looked up (4 s)
            produce_raw(s, broker, [bad], schema_id=SUBJECTS["older"][0])
        else:
            produce_raw(s, broker, [bad])
        asked = "ids/555" if trouble == "slow_lookup" else "dlq-value"
        with worker(AsyncEchoStage(s), s, unique) as runner:
            assert wait_for(lambda: any(asked in r for r in reg.seen), 15), "the registry was never asked"
            out = read_topic(s, "preprocessed", 1, timeout_s=2.5)  # the registry: down, or 4 s to answer
            assert [r["value"]["asset"]["version"] for r in out] == [1], "the good record waited for the registry"
            down.clear()
            dead = read_topic(s, "dead_letter", 1, timeout_s=15)
            wait_committed(s, runner.group_id, "raw", 2, timeout_s=10)
    assert [d["value"]["details"]["reason"] for d in dead] == ["test_permanent"]


def test_a_stage_in_child_processes_pauses_its_worker_while_the_registry_is_down(broker, unique, caplog):
    """Review: with runner.processes the records waited for the registry in the children, whose pause went nowhere:
    the worker kept consuming, and assetstream_paused{reason="schema_registry"} and the log said nothing.
    And a child's dead letter too large for the broker is rewritten (original cut) by the worker, whose own
    registration of the letter's schema then met the outage: that error ended the worker; now the letter waits."""
    down = {"raw"}
    refused = (403, {"error_code": 40301, "message": "forbidden"})  # not retried by the client (children's own)
    script = {"dlq": [True, False, False]}  # the child registers the letter's schema, the worker is refused twice
    with registry(down, refused, script=script) as reg:
        s = make_settings(broker, f"rtproc{unique}", registry={"url": reg.url}, runner={"processes": 1})
        provision(s)
        produce_raw(s, broker, [build_event("asset-1", "file:///library/1.jpg", version=1)])
        poison = b"\0" + (999).to_bytes(4, "big") + b"\1" * 999_000  # a writer's id the registry does not know
        produce_bytes(s, broker, [(b"asset-poison", poison)])
        with caplog.at_level(logging.WARNING, logger="assetstream.runner"):
            with worker(EchoStage(s), s, unique) as runner:
                assert wait_for(lambda: paused(runner) == 1, 15), "the children's wait did not pause the worker"
                assert "pausing consumption: schema_registry" in caplog.text
                down.clear()
                out = read_topic(s, "preprocessed", 1, timeout_s=15)
                dead = read_topic(s, "dead_letter", 1, timeout_s=15)
                wait_committed(s, runner.group_id, "raw", 2, timeout_s=10)
                assert wait_for(lambda: paused(runner) == 0, 5), "still paused once the registry was back"
                assert runner.fatal_error is None and not runner.stopping
    assert [r["key"] for r in out] == ["asset-1"]
    assert [d["key"] for d in dead] == ["asset-poison"] and not script["dlq"]  # the worker's refusals were met
    letter = dead[0]["value"]
    assert letter["details"]["reason"] == "deserialize" and "original_value_cut" in letter["details"]


def test_an_io_stage_s_letters_waiting_for_a_silent_registry_leave_the_loop_s_threads_to_the_stage(unique):
    """Review 14: an io stage's registry calls ran in the asyncio loop's default thread pool (min(32, cpus + 4)
    threads), the one the stage's own `asyncio.to_thread` work (a local model, the result cache) runs in: a burst of
    dead letters while the registry does not answer took every thread (one waiting for the answer, the rest for its
    lock), and the stage's work for records that never touch the registry stood still. Now registry calls have a
    few threads of their own (no broker needed: RecordWork as the Asyncio executor drives it)."""
    import asyncio

    from streams.work import Record, RecordWork

    with registry(set(), slow={"dlq": 4.0}) as reg:  # the letter's schema: 4 s to answer
        s = make_settings("127.0.0.1:1", f"rtpool{unique}", registry={"url": reg.url})
        work = RecordWork(AsyncEchoStage(s), s)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed_schema("AssetEvent"),
                                   build_event("asset-1", "file:///x.jpg", version=1, attributes={"fail": "permanent"}))
        raw = b"\0" + SUBJECTS["raw"][0].to_bytes(4, "big") + body.getvalue()
        records = [Record(s.topics.name("raw"), 0, i, b"asset-1", raw, [], None, time.monotonic()) for i in range(40)]

        async def scenario() -> tuple[float, list]:
            letters = [asyncio.ensure_future(work.run_async(rec)) for rec in records]
            while not any("dlq-value" in r for r in reg.seen):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the letters' calls have all started
            start = time.monotonic()
            await asyncio.to_thread(time.sleep, 0)  # the stage's own work in a thread
            return time.monotonic() - start, await asyncio.gather(*letters)

        try:
            took, results = asyncio.run(scenario())
        finally:
            work.close()
    assert took < 1.0, f"the stage's thread work waited {took:.1f} s for the registry's calls"
    assert [r.error_class for r in results] == ["permanent"] * 40
