"""Small helpers for building and reading Avro record dicts."""
from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import time
from typing import Any

from streams import PIPELINE_VERSION
from streams.stage import OutputFacts


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def now_ms() -> int:
    return int(time.time() * 1000)


def to_ms(value: Any) -> int | None:
    """timestamp-millis values arrive as aware datetimes from the deserializer; accept ints too."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return (value - _EPOCH) // dt.timedelta(milliseconds=1)  # exact: no float rounding
    return int(value)


@functools.lru_cache(maxsize=1)
def worker_name() -> str:
    """POD_NAME (Kubernetes downward API) or the host name; looked up once (gethostname is a syscall)."""
    return os.environ.get("POD_NAME") or socket.gethostname()


def stamp(stage: str) -> dict[str, Any]:
    """The StageStamp every stage puts on its output."""
    return {"stage": stage, "version": PIPELINE_VERSION, "worker": worker_name(), "at": now_ms()}


def asset_of(value: dict[str, Any]) -> dict[str, Any]:
    """The AssetEvent inside any pipeline record (raw, preprocessed, enriched, validated)."""
    if "asset_id" in value:
        return value
    if "asset" in value:
        return value["asset"]
    if "pre" in value:
        return value["pre"]["asset"]
    if "enriched" in value:
        return value["enriched"]["pre"]["asset"]
    raise KeyError("not a pipeline record")


def is_deleted(value: dict[str, Any]) -> bool:
    return asset_of(value)["event_type"] == "deleted"


class PipelineFacts:
    """The Stage hooks a stage of this pipeline mixes in (`class MyStage(PipelineFacts, Stage)`), so the runner
    learns what it needs about pipeline records without knowing their shape: the event time and version of
    the asset inside the input (Stage.output_facts) and the image hash inside an output (Stage.content_id)."""

    def output_facts(self, value: dict[str, Any]) -> OutputFacts:
        try:
            asset = asset_of(value)
        except (KeyError, TypeError):
            return OutputFacts()
        if not asset:
            return OutputFacts()
        return OutputFacts(to_ms(asset.get("event_time")), asset.get("version"))

    def content_id(self, value: dict[str, Any] | None) -> str | None:
        content, node = None, value
        while isinstance(node, dict) and content is None:  # validated -> enriched -> pre -> hashes
            content = (node.get("hashes") or {}).get("sha256")
            node = node.get("pre") or node.get("enriched")
        return content
