"""Avro contracts: load the .avsc files in avro/, serialize with the Confluent Schema Registry wire format.

Topic -> record type is fixed here. Each topic's schema is registered fully expanded (no references), under
the TopicNameStrategy subject `<topic>-value`.
"""
from __future__ import annotations

import io
import json
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streams import AVRO_DIR

NAMESPACE = "io.assetstream"

TOPIC_RECORDS: dict[str, str] = {
    "raw": "AssetEvent",
    "preprocessed": "PreprocessedAsset",
    "enriched": "EnrichedAsset",
    "validated": "ValidatedAsset",
    "dead_letter": "DeadLetter",
    "feedback": "EditorDecision",
    "audit": "AuditEntry",
    "kpis": "KpiSnapshot",
}
"""Logical topic -> record name. Fixed registration order (mock:// registries assign ids in order)."""


def schema_path(record: str, avro_dir: Path = AVRO_DIR) -> Path:
    return avro_dir / f"{NAMESPACE}.{record}.avsc"


@lru_cache(maxsize=None)
def parsed_schema(record: str, avro_dir: Path = AVRO_DIR) -> dict[str, Any]:
    """fastavro-parsed schema with named types from sibling files resolved."""
    return load_schema(str(schema_path(record, avro_dir)), _write_hint=False)


@lru_cache(maxsize=None)
def schema_json(record: str, avro_dir: Path = AVRO_DIR) -> str:
    """The fully expanded schema as JSON text: what the registry stores."""
    return json.dumps(_expanded(record, avro_dir))


def _expanded(record: str, avro_dir: Path) -> Any:
    schema = parsed_schema(record, avro_dir)
    # load_schema inlines named types at first use; strip fastavro's internal keys
    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if not k.startswith("__")}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node
    return clean(schema)


def validate(record: str, value: dict[str, Any]) -> None:
    """Raise fastavro's ValidationError if value does not fit the schema (used by tests and stages)."""
    fastavro.validation.validate(value, parsed_schema(record), raise_errors=True)


def roundtrip(record: str, value: dict[str, Any]) -> dict[str, Any]:
    """Write and read back with fastavro (schemaless): what a consumer would see."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(record), value)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, parsed_schema(record))


_clients: dict[str, SchemaRegistryClient] = {}
_clients_lock = threading.Lock()


def registry_client(conf: dict[str, Any]) -> SchemaRegistryClient:
    """One client per URL per process (mock:// clients keep their schemas in the instance)."""
    url = str(conf["url"])
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = SchemaRegistryClient.new_client(dict(conf))
            _clients[url] = client
        return client


class Serde:
    """Serializer + deserializer for the pipeline topics, bound to topic names from settings."""

    def __init__(self, registry_conf: dict[str, Any], topic_names: dict[str, str], auto_register: bool = True):
        self.client = registry_client(registry_conf)
        self.topic_names = topic_names  # logical -> full
        self._ser: dict[str, AvroSerializer] = {}
        self._de: dict[str, AvroDeserializer] = {}
        self._auto_register = auto_register
        self._lock = threading.Lock()
        if str(registry_conf["url"]).startswith("mock://"):
            # mock:// registries live in the process and number schemas in registration order: register
            # every topic in TOPIC_RECORDS order up front so all processes of an embedded run agree on ids
            for logical in TOPIC_RECORDS:
                if logical in topic_names and schema_path(TOPIC_RECORDS[logical]).exists():
                    self.serializer(logical)

    def serializer(self, logical: str) -> AvroSerializer:
        with self._lock:
            ser = self._ser.get(logical)
            if ser is None:
                ser = AvroSerializer(self.client, schema_json(TOPIC_RECORDS[logical]),
                                     conf={"auto.register.schemas": self._auto_register,
                                           "normalize.schemas": False})
                self._ser[logical] = ser
                if self._auto_register:  # register now, in a fixed order, not at first message
                    self.client.register_schema(f"{self.topic_names[logical]}-value",
                                                Schema(schema_json(TOPIC_RECORDS[logical]), "AVRO"))
            return ser

    def deserializer(self, logical: str) -> AvroDeserializer:
        with self._lock:
            de = self._de.get(logical)
            if de is None:
                de = AvroDeserializer(self.client, schema_json(TOPIC_RECORDS[logical]))
                self._de[logical] = de
            return de

    def serialize(self, logical: str, value: dict[str, Any]) -> bytes:
        topic = self.topic_names[logical]
        return self.serializer(logical)(value, SerializationContext(topic, MessageField.VALUE))

    def deserialize(self, logical: str, data: bytes) -> dict[str, Any]:
        topic = self.topic_names[logical]
        return self.deserializer(logical)(data, SerializationContext(topic, MessageField.VALUE))
