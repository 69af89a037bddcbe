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
