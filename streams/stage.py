"""What a stage is: plain code from one record to its outputs. No Kafka types cross this line.

A stage gets the deserialized Avro value (a dict; timestamp-millis fields arrive as aware datetimes) and a
RecordContext, and returns zero or more Outputs. The runner produces them, waits for the broker's ack, and
only then commits the input offset.

    class Upper(Stage):
        name = "upper"; input_topic = "raw"; output_topic = "preprocessed"
        def process(self, value, ctx):
            return Output(value=...)

I/O-bound stages implement `async def aprocess(...)` instead (set `kind = "io"`); the runner drives them
on an asyncio loop with bounded concurrency. Batch stages (the index sink) implement `process_batch`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Literal, NamedTuple, Sequence

if TYPE_CHECKING:
    from streams.settings import RuntimeSettings


@dataclass
class Output:
    value: dict[str, Any] | None
    key: str | None = None
    """Defaults to the input key (the asset id)."""
    topic: str | None = None
    """Logical topic ('preprocessed', 'audit', ...); defaults to the stage's output_topic."""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordContext:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, bytes]
    timestamp_ms: int | None
    attempt: int = 1
    trace_id: str = ""

    @property
    def asset_id(self) -> str | None:
        return self.key


StageResult = Output | Iterable[Output] | None


def final_attempt(ctx: RecordContext | None, settings: "RuntimeSettings") -> bool:
    """Whether this is the record's last attempt (no retry follows a TransientError). A stage whose metadata part
    timed out or failed raises TransientError before it, and on it goes on with the part marked degraded (issue
    21). Without a context (a direct call: bench, tools) there is no retry path: final."""
    if ctx is None:
        return True
    return ctx.attempt >= settings.runner.retry_max_attempts


class OutputFacts(NamedTuple):
    """What the runner needs to know about a record without reading its shape (Stage.output_facts)."""

    event_time_ms: int | None = None
    """When the event the record is about happened (epoch ms): the record-age metric."""
    version: Any = None
    """The version of that event: part of the idempotency key of every output of the record."""


NO_FACTS = OutputFacts()


class Stage:
    """Base class for one consumer group's logic."""

    name: ClassVar[str] = "stage"
    input_topic: ClassVar[str] = "raw"
    output_topic: ClassVar[str | None] = None
    kind: ClassVar[Literal["cpu", "io", "batch"]] = "cpu"
    concurrency: ClassVar[int] = 4
    """Records worked at once (threads of a cpu stage, tasks of an io stage) when runner.concurrency is not set.
    A cpu stage whose records mostly wait (a fetch) sets more and runs its CPU-heavy calls inside
    `streams.cpu.cpu_slots()`, which bounds them by the CPUs the worker really has."""
    embeds_input: ClassVar[str | None] = None
    """The output field that holds the input record itself (the very dict the stage was given, unchanged),
    e.g. "asset": the runner then copies the input's Avro bytes into the output instead of encoding that
    part again. A promise: a stage that changes its input in place must not set it (the runner checks the
    first 16 outputs and every 1000th against a full encoding, and stops copying if they differ)."""

    def __init__(self, settings: "RuntimeSettings"):
        self.settings = settings

    def process(self, value: dict[str, Any], ctx: RecordContext) -> StageResult:  # cpu stages
        raise NotImplementedError

    async def aprocess(self, value: dict[str, Any], ctx: RecordContext) -> StageResult:  # io stages
        raise NotImplementedError

    def process_batch(self, items: Sequence[tuple[dict[str, Any], RecordContext]]
                      ) -> list[BaseException | StageResult]:
        """Batch stages: one entry per item, in order: a StageResult on success, or the exception
        (PermanentError -> dead letter; TransientError -> the runner retries just that item)."""
        raise NotImplementedError

    def output_facts(self, value: dict[str, Any]) -> OutputFacts:
        """About an input record (the deserialized value): its event time and version. The runner knows no
        record shapes; by default nothing is known (no record age; idempotency keys without a version)."""
        return NO_FACTS

    def content_id(self, value: dict[str, Any] | None) -> str | None:
        """An id of an output value's content (e.g. the image hash), part of its idempotency key; None if
        there is none. The idempotency-key header is a hash of output key, content id, PIPELINE_VERSION
        and the input's event version (output_facts)."""
        return None

    def ready(self) -> bool:
        """Readiness beyond Kafka (e.g. the search store answers). Reported on /readyz."""
        return True

    def should_pause(self) -> str | None:
        """Return a reason to stop taking new records (e.g. budget reached); None to keep going."""
        return None

    def close(self) -> None:
        pass
