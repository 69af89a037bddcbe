"""RecordWork.run_batch without a broker: ordered batches, per-item retries, and the typed store-outage signal
(an error with a pause_reason pauses consumption while it is retried; the label stays 'store_unavailable')."""
from __future__ import annotations

from streams.avro import Serde
from streams.errors import PermanentError, StoreUnavailable, TransientError
from app.settings import Settings
from streams.stage import Stage
from streams.work import Record, RecordWork
from tests.store_support import validated_asset


def settings() -> Settings:
    return Settings.model_validate({"registry": {"url": "mock://work-batch-tests"},
                                    "kafka": {"connect_timeout_s": 1},  # no broker here: the schemas topic
                                    "runner": {"retry_base_delay_s": 0.001, "retry_max_delay_s": 0.002}})


class FlakySink(Stage):
    """Fails the items it is told to, `times` attempts in a row, with the error it is given."""

    name = "flaky"
    input_topic = "validated"
    output_topic = None
    kind = "batch"

    def __init__(self, s, fail: dict[str, BaseException], times: int):
        super().__init__(s)
        self.fail, self.times, self.calls = fail, times, []

    def process_batch(self, items):
        self.calls.append([ctx.key for _, ctx in items])
        attempt = len(self.calls)
        return [self.fail[ctx.key] if ctx.key in self.fail and attempt <= self.times else None
                for _, ctx in items]


def batch(s: Settings, keys: list[str]) -> list[Record]:
    serde = Serde.for_settings(s)
    return [Record("validated", 0, i, k.encode(), serde.serialize("validated", validated_asset(k)), [], None)
            for i, k in enumerate(keys)]


def run(fail: dict[str, BaseException], times: int):
    s = settings()
    stage = FlakySink(s, fail, times)
    pauses: list[str | None] = []
    abandoned: list[Record] = []
    results = RecordWork(stage, s).run_batch(batch(s, ["a", "b", "c"]), abandoned.append, pauses.append)
    return stage, results, pauses, abandoned


def test_a_store_outage_is_retried_with_a_pause_then_everything_succeeds():
    outage = StoreUnavailable("index store unreachable: ConnectionError", reason="store_unavailable")
    stage, results, pauses, abandoned = run({"a": outage, "c": outage}, times=3)
    assert stage.calls == [["a", "b", "c"], ["a", "c"], ["a", "c"], ["a", "c"]]  # only the failed items again
    assert pauses == ["store_unavailable"] * 3 + [None]  # paused while it lasted, resumed when it passed
    assert sorted(r.record.key for r in results) == [b"a", b"b", b"c"]
    assert all(r.dead_letter is None for r in results) and not abandoned


def test_a_transient_error_without_a_pause_reason_is_retried_without_pausing():
    stage, results, pauses, _ = run({"b": TransientError("timeout", reason="timeout")}, times=2)
    assert stage.calls == [["a", "b", "c"], ["b"], ["b"]]
    assert pauses == [None, None, None]
    assert TransientError.pause_reason is None and StoreUnavailable.pause_reason == "store_unavailable"


def test_permanent_items_are_dead_lettered_and_their_batch_mates_done():
    stage, results, pauses, _ = run({"b": PermanentError("bad doc", reason="mapper_parsing_exception")}, times=99)
    by_key = {r.record.key: r for r in results}
    assert by_key[b"b"].error_class == "permanent" and by_key[b"b"].dead_letter
    assert by_key[b"a"].dead_letter is None and by_key[b"c"].dead_letter is None
    assert stage.calls == [["a", "b", "c"]] and pauses == [None]


def test_stopping_abandons_the_items_still_failing():
    s = settings()
    stage = FlakySink(s, {"a": StoreUnavailable("down")}, times=99)
    work = RecordWork(stage, s)
    work.stop_event.set()
    abandoned: list[Record] = []
    results = work.run_batch(batch(s, ["a", "b"]), abandoned.append, lambda reason: None)
    assert [r.key for r in abandoned] == [b"a"] and [r.record.key for r in results] == [b"b"]


def test_a_schema_registry_outage_is_retried_never_dead_lettered():
    """Trial 21: any failure to read a record's schema was a poison letter, so a registry outage (unreachable,
    5xx) dead-lettered every record read meanwhile. Now it is transient: a batch stage pauses (reason
    schema_registry) and retries, and on shutdown leaves the records uncommitted; a single-record stage retries."""
    import socket

    from streams.errors import PoisonError

    with socket.socket() as probe:  # a registry address where nothing listens
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    from streams.avro import registry_client

    registry_client({"url": down, "max.retries": 0})  # this URL's client, without its own retries (one per process)
    written = batch(settings(), ["a", "b"])  # framed with the schema ids of the registry that wrote them
    s = settings().model_copy(update={"registry": settings().registry.model_copy(update={"url": down})})
    stage = FlakySink(s, {}, times=0)
    work = RecordWork(stage, s)
    try:
        work.decode(written[0])
        raise AssertionError("decoded without a registry")
    except TransientError as exc:
        assert exc.reason == "registry_unavailable" and not isinstance(exc, PoisonError)
    pauses: list[str | None] = []
    abandoned: list[Record] = []

    def pause(reason):
        pauses.append(reason)
        if len(pauses) == 2:
            work.stop_event.set()  # shut down while the registry is still down

    results = work.run_batch(written, abandoned.append, pause)
    assert pauses == ["schema_registry"] * 2 and results == [] and stage.calls == []
    assert [r.key for r in abandoned] == [b"a", b"b"]  # left uncommitted for the next owner, no dead letter


class RegistryStub:
    """An external Schema Registry double (real HTTP): each request is answered by `answer(method, path)`, a
    (status, body) pair; the worker's own schema is registered/looked up as id OWN."""

    OWN = 4242

    def __init__(self, answer):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from streams.avro import registry_client

        self.seen: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.seen.append(f"{self.command} {self.path}")
                status, body = answer(self.command, self.path)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a late answer the client stopped waiting for (its timeout)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        registry_client({"url": self.url, "max.retries": 0})  # this URL's client, without its own retries

    def settings(self, **registry) -> Settings:
        s = settings()
        return s.model_copy(update={"registry": s.registry.model_copy(update={"url": self.url, **registry})})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


DOWN = (503, {"error_code": 50301, "message": "registry down"})
NOT_FOUND = (404, {"error_code": 40403, "message": "Schema not found"})


def framed(rec: Record, schema_id: int) -> Record:
    """The record as written with another schema id (same Avro body)."""
    return Record(rec.topic, rec.partition, rec.offset, rec.key, b"\0" + schema_id.to_bytes(4, "big") + rec.value[5:],
                  [], None)


def test_a_batch_waits_for_the_registry_in_order_and_resumes_also_when_the_waiting_records_turn_out_poison():
    """Review 13 H1/M1/L5: records waiting out a registry outage kept consumption paused for ever when they then
    turned out poison (404 for their writer's id), were worked after later records of their batch, and the dead
    letter's own schema could not be registered during the outage."""
    from streams.schemas import schema_json

    gets = {"n": 0, "letters": 0}

    def answer(method, path):
        if method == "POST":  # registering our own schemas: the dead letter's is refused twice
            if "dead_letter" in path:
                gets["letters"] += 1
                if gets["letters"] <= 2:
                    return DOWN
            return 200, {"id": RegistryStub.OWN}
        gets["n"] += 1
        if gets["n"] <= 2:
            return DOWN
        return NOT_FOUND if "/777" in path else (200, {"schema": schema_json("ValidatedAsset")})

    with RegistryStub(answer) as registry:
        written = batch(settings(), ["a", "b", "c"])
        s = registry.settings()
        stage = FlakySink(s, {}, times=0)
        work = RecordWork(stage, s)
        # a: another release's id (needs the registry), b: the worker's own, c: an id the registry does not have
        recs = [framed(written[0], 555), framed(written[1], RegistryStub.OWN), framed(written[2], 777)]
        pauses: list[str | None] = []
        results = work.run_batch(recs, lambda rec: None, pauses.append)
    assert stage.calls == [["a", "b"]]  # in offset order, after the outage
    assert pauses[:2] == ["schema_registry"] * 2 and pauses[-1] is None  # resumed once the registry was back
    by_key = {r.record.key: r for r in results}
    assert by_key[b"a"].dead_letter is None and by_key[b"b"].dead_letter is None
    assert by_key[b"c"].error_class == "poison" and by_key[b"c"].dead_letter  # its writer's id is unknown (404)

    gets["n"] = 0  # a batch whose only record waits, then is poison: consumption must not stay paused
    with RegistryStub(answer) as registry:
        pauses = []
        results = RecordWork(FlakySink(s, {}, times=0), registry.settings()).run_batch(
            [framed(written[2], 777)], lambda rec: None, pauses.append)
    assert pauses == ["schema_registry"] * 2 + [None] and [r.error_class for r in results] == ["poison"]


def test_cpu_and_io_stages_wait_for_the_registry_without_limit_on_both_sides_and_never_dead_letter():
    """Review 13 H2: a cpu stage's output schema refused (409, the FULL-compatibility refusal) was dead-lettered
    'permanent' at once, and an io stage's decode during a 503 outage was dead-lettered after
    runner.retry_max_attempts. Both now wait (paused: schema_registry) until the registry serves again, and a
    worker stopped meanwhile leaves the record uncommitted."""
    import asyncio

    from app.producer import build_event
    from streams.schemas import schema_json
    from streams.work import Abandon
    from tests.stages import AsyncEchoStage, EchoStage

    calls = {"refused": 0, "down": 0}

    def answer(method, path):
        if method == "POST" and "preprocessed" in path and calls["refused"] < 3:
            calls["refused"] += 1
            return 409, {"error_code": 409, "message": "Schema being registered is incompatible"}
        if method == "GET" and calls["down"] < 3:
            calls["down"] += 1
            return DOWN
        return (200, {"schema": schema_json("AssetEvent")}) if method == "GET" else (200, {"id": RegistryStub.OWN})

    with RegistryStub(answer) as registry:
        s = registry.settings()
        s = s.model_copy(update={"runner": s.runner.model_copy(update={"retry_max_attempts": 2,
                                                                       "retry_mode": "inplace"})})
        body = Serde.for_settings(settings()).serialize("raw", build_event("asset-1", "file:///x.jpg", version=1))
        own = Record("raw", 0, 0, b"asset-1", b"\0" + RegistryStub.OWN.to_bytes(4, "big") + body[5:], [], None)
        other = Record("raw", 0, 1, b"asset-1", b"\0" + (555).to_bytes(4, "big") + body[5:], [], None)

        cpu = RecordWork(EchoStage(s), s)
        pauses: list[str | None] = []
        cpu.pause = pauses.append
        written = cpu.run(own)  # the output's subject is refused 3 times, more than retry_max_attempts
        assert written.dead_letter is None and [o[0] for o in written.outputs] == ["assetstream.preprocessed"]
        assert pauses == ["schema_registry", None]

        io = RecordWork(AsyncEchoStage(s), s)
        io.pause = pauses.append
        read = asyncio.run(io.run_async(other))  # its writer's schema: 503 three times
        assert read.dead_letter is None and read.outputs and pauses[2:] == ["schema_registry", None]

    with RegistryStub(lambda method, path: DOWN) as down:
        stopping = RecordWork(EchoStage(down.settings()), down.settings())
        stopping.pause = lambda reason: stopping.stop_event.set()  # shut down during the outage
        try:
            stopping.run(other)
            raise AssertionError("a record finished without the registry")
        except Abandon:
            pass  # left uncommitted for the next owner


def test_with_auto_register_off_a_missing_own_schema_makes_records_wait_not_poison(caplog):
    """Review 13 M2: registry.auto_register=false and this release's version of the input subject not registered
    yet (the operator's rollout step missed): the look-up's 404 made every record a poison letter, though the
    records and their writer's schema are fine. It is the worker's fault: the records wait, the log names the
    subject to register."""
    from streams.schemas import schema_json

    def answer(method, path):  # POST: the look-up of our own version; GET: the writer's schema
        return NOT_FOUND if method == "POST" else (200, {"schema": schema_json("ValidatedAsset")})

    with RegistryStub(answer) as registry:
        s = registry.settings(auto_register=False)
        work = RecordWork(FlakySink(s, {}, times=0), s)
        pauses: list[str | None] = []
        abandoned: list[Record] = []

        def pause(reason):
            pauses.append(reason)
            if len(pauses) == 2:
                work.stop_event.set()  # shut down before anyone registered it

        with caplog.at_level("WARNING", logger="assetstream.runner"):
            results = work.run_batch(batch(settings(), ["a"]), abandoned.append, pause)
    assert results == [] and [r.key for r in abandoned] == [b"a"] and pauses == ["schema_registry"] * 2
    assert "subject assetstream.validated-value" in caplog.text and "register it" in caplog.text
