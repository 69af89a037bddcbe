"""A real stage for exercising the runner: copies raw AssetEvents to `preprocessed`, and misbehaves on
request through the event's attributes (fail=permanent | fail=transient:N | slow_ms=N | exit_child=1, which
ends the process when the stage runs in a runner.processes child | bad_output=1, an output its schema refuses). Each output says which process made it."""
from __future__ import annotations

import multiprocessing
import os
import time

from streams.errors import PermanentError, TransientError
from domain.records import PipelineFacts
from streams.records import stamp
from streams.stage import Output, Stage


class EchoStage(PipelineFacts, Stage):
    name = "echo"
    input_topic = "raw"
    output_topic = "preprocessed"
    kind = "cpu"
    embeds_input = "asset"  # the input record, unchanged: its Avro bytes are reused

    def process(self, value, ctx):
        attrs = value.get("attributes") or {}
        fail = attrs.get("fail", "")
        if fail == "permanent":
            raise PermanentError("asked to fail permanently", reason="test_permanent", details={"hint": "attr"})
        if fail.startswith("transient:") and ctx.attempt <= int(fail.split(":")[1]):
            raise TransientError(f"transient failure {ctx.attempt}", reason="test_transient")
        if attrs.get("slow_ms"):
            time.sleep(int(attrs["slow_ms"]) / 1000)
        if attrs.get("exit_child") == "1" and multiprocessing.parent_process() is not None:
            os._exit(3)  # like an OOM kill of a child process
        out_stamp = stamp(self.name)
        if attrs.get("bad_output") == "1":  # a bug in a stage: a field of the wrong type
            out_stamp["at"] = {"when": "now"}
        return Output(value={"asset": value, "stamp": out_stamp}, headers={"echo": "1", "pid": str(os.getpid())})


class HoldableEchoStage(EchoStage):
    """EchoStage whose worker can be told to stop taking records (like a budget or a store outage)."""

    name = "holdecho"

    def __init__(self, settings):
        super().__init__(settings)
        self.hold = False

    def should_pause(self):
        return "held" if self.hold else None


class BatchEchoStage(EchoStage):
    """EchoStage as a batch stage (RecordWork.run_batch); `seen` lists the asset ids it was given, as it starts
    on each."""

    name = "batchecho"
    kind = "batch"

    def __init__(self, settings):
        super().__init__(settings)
        self.seen: list[str] = []

    def process_batch(self, items):
        results = []
        for value, ctx in items:
            self.seen.append(value["asset_id"])
            try:
                results.append(self.process(value, ctx))
            except Exception as exc:  # noqa: BLE001 - that item's outcome, as a batch stage reports it
                results.append(exc)
        return results


class UnbuildableInChildStage(EchoStage):
    """Builds in the worker process but not in a runner.processes child (say, a model file missing there)."""

    def __init__(self, settings):
        if multiprocessing.parent_process() is not None:
            raise FileNotFoundError("model weights not found: /models/missing.onnx")
        super().__init__(settings)


class AsyncEchoStage(EchoStage):
    """EchoStage as an io stage (asyncio); `stall_first_ms=N` makes its first attempt take N ms."""

    name = "asyncecho"
    kind = "io"

    async def aprocess(self, value, ctx):
        import asyncio

        stall = (value.get("attributes") or {}).get("stall_first_ms")
        if stall and ctx.attempt == 1:
            await asyncio.sleep(int(stall) / 1000)
        return self.process(value, ctx)
