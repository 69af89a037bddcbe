"""The Avro contracts in avro/, loaded and expanded with fastavro alone (no Kafka client): streams.avro serializes
with them for the runner, and record knowledge (domain/) reads records with them without importing the Kafka side."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema

from streams import AVRO_DIR

NAMESPACE = "io.assetstream"


def schema_path(record: str, avro_dir: Path = AVRO_DIR) -> Path:
    return avro_dir / f"{NAMESPACE}.{record}.avsc"


def contracts_digest(avro_dir: Path = AVRO_DIR) -> str:
    """8 hex digits of a SHA-256 over every contract's file name and text (`avro/*.avsc`, not history/): two
    releases whose contracts differ in any byte, a doc line included, show different digests (`assetstream
    --version`). Any byte matters because a `mock://` registry's schema ids are a hash of the text."""
    digest = hashlib.sha256()
    for path in sorted(avro_dir.glob("*.avsc")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:8]


@lru_cache(maxsize=None)
def _loaded(record: str, avro_dir: Path = AVRO_DIR) -> dict[str, Any]:
    """The schema with named types from sibling files inlined (not marked as parsed)."""
    return load_schema(str(schema_path(record, avro_dir)), _write_hint=False)


@lru_cache(maxsize=None)
def parsed_schema(record: str, avro_dir: Path = AVRO_DIR) -> dict[str, Any]:
    """The fully expanded schema, parsed once by fastavro (parse results are reused by reader/writer)."""
    return fastavro.parse_schema(json.loads(schema_json(record, avro_dir)))


@lru_cache(maxsize=None)
def schema_json(record: str, avro_dir: Path = AVRO_DIR) -> str:
    """The fully expanded schema as JSON text: what the registry stores."""
    return json.dumps(_expanded(record, avro_dir))


def _expanded(record: str, avro_dir: Path) -> Any:
    schema = _loaded(record, avro_dir)
    # load_schema inlines named types at first use; strip fastavro's internal keys
    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if not k.startswith("__")}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node
    return clean(schema)
