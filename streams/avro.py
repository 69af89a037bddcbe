"""Avro contracts: load the .avsc files in avro/, serialize with the Confluent Schema Registry wire format.

Topic -> record type is fixed here. Each topic's schema is registered fully expanded (no references), under
the TopicNameStrategy subject `<topic>-value`.
"""
from __future__ import annotations

import io
import json
import threading
import uuid
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.schemalog import SchemaLog
from streams.schemas import NAMESPACE, parsed_schema, schema_json, schema_path  # noqa: F401 - re-exported

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
"""Logical topic -> Avro record name."""


def topic_names(settings: Any) -> dict[str, str]:
    """Logical topic -> full topic name (settings.topics prefix) for every topic with a contract."""
    return {logical: settings.topics.name(logical) for logical in TOPIC_RECORDS}


def validate(record: str, value: dict[str, Any]) -> None:
    """Raise fastavro's ValidationError if value does not fit the schema (used by tests and stages)."""
    fastavro.validation.validate(value, parsed_schema(record), raise_errors=True)


def roundtrip(record: str, value: dict[str, Any]) -> dict[str, Any]:
    """Write and read back with fastavro (schemaless): what a consumer would see."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(record), value)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, parsed_schema(record))


def stable_schema_id(schema_str: str) -> int:
    """A schema id derived from the schema's JSON (whitespace/key order normalised; 31 bits, never 0)."""
    import hashlib
    try:
        schema_str = json.dumps(json.loads(schema_str), sort_keys=True, separators=(",", ":"))
    except ValueError:
        pass
    return int.from_bytes(hashlib.sha256(schema_str.encode()).digest()[:4], "big") % (2**31 - 1) + 1


def _mock_client(conf: dict[str, Any], schema_log: SchemaLog | None = None) -> SchemaRegistryClient:
    """confluent-kafka's mock:// client numbers schemas 1, 2, 3... per process, so two processes (a producer
    and a worker) can disagree on ids. This one keeps everything of the mock client but derives each id
    from the schema text, so every process of an embedded run or a test agrees; the wire format stays
    the real Confluent one. With a `schema_log` (the broker's schemas topic, streams/schemalog.py) it also
    behaves like a real registry across processes and releases: each schema it registers is kept on the
    broker before its id is returned, and an id it does not know is looked up there before "Schema Not Found"."""
    from confluent_kafka.schema_registry import RegisteredSchema
    from confluent_kafka.schema_registry._sync import mock_schema_registry_client as mock

    class StableStore(mock._SchemaStore):
        def set(self, registered_schema: RegisteredSchema) -> RegisteredSchema:
            return self.put(stable_schema_id(registered_schema.schema.schema_str), registered_schema)

        def put(self, schema_id: int, registered_schema: RegisteredSchema) -> RegisteredSchema:
            with self.lock:
                rs = RegisteredSchema(schema_id=schema_id, guid=registered_schema.guid,
                                      schema=registered_schema.schema, subject=registered_schema.subject,
                                      version=registered_schema.version)
                self.schema_id_index[rs.schema_id] = rs
                self.schema_guid_index[rs.guid] = rs
                self.schema_index[rs.schema] = rs.schema_id
                self.subject_schemas[rs.subject].add(rs)
                return rs

    class LoggedClient(mock.MockSchemaRegistryClient):
        def register_schema_full_response(self, subject_name: str, schema: Schema,
                                          normalize_schemas: bool = False) -> RegisteredSchema:
            rs = super().register_schema_full_response(subject_name, schema, normalize_schemas)
            if schema_log is not None:
                schema_log.publish(rs.schema_id, rs.subject, rs.version, rs.schema.schema_str)
            return rs

        def get_schema(self, schema_id: int, *args: Any, **kwargs: Any) -> Schema:
            if self._store.get_schema(schema_id) is None:
                self._learn()
            return super().get_schema(schema_id, *args, **kwargs)

        def lookup_schema(self, subject_name: str, schema: Schema, *args: Any, **kwargs: Any) -> RegisteredSchema:
            if self._store.get_registered_schema_by_schema(subject_name, schema) is None:
                self._learn()
            return super().lookup_schema(subject_name, schema, *args, **kwargs)

        def _learn(self) -> None:
            """Take in what other processes registered on the broker since the last look."""
            for entry in schema_log.read_new() if schema_log is not None else []:
                if self._store.get_schema(entry["id"]) is None:
                    self._store.put(entry["id"], RegisteredSchema(
                        schema_id=entry["id"], guid=str(uuid.uuid4()), schema=Schema(entry["schema"], "AVRO"),
                        subject=str(entry.get("subject") or ""), version=entry.get("version")))

    client = LoggedClient(dict(conf))
    client._store = StableStore()
    return client


_clients: dict[tuple[str, int], SchemaRegistryClient] = {}
_logs: dict[tuple[str, str], SchemaLog] = {}
_clients_lock = threading.Lock()


def registry_client(conf: dict[str, Any], schema_log: SchemaLog | None = None) -> SchemaRegistryClient:
    """One client per URL (and, for mock://, per schemas topic) per process (a mock:// client keeps its schemas
    in the instance)."""
    url = str(conf["url"])
    key = (url, id(schema_log) if url.startswith("mock://") else 0)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = (_mock_client(conf, schema_log) if url.startswith("mock://")
                      else SchemaRegistryClient.new_client(dict(conf)))
            _clients[key] = client
        return client


def schema_log_for(settings: Any) -> SchemaLog | None:
    """The broker-kept schema list of a mock:// registry (None for a real registry)."""
    if not settings.registry.in_process:
        return None
    conf = settings.kafka.client_config()
    key = (settings.topics.name("schemas"), repr(sorted(conf.items())))
    with _clients_lock:
        if key not in _logs:
            _logs[key] = SchemaLog(conf, key[0], timeout_s=settings.kafka.connect_timeout_s)
        return _logs[key]


class UnknownSchema(LookupError):
    """A record's schema id the registry does not know (a real registry's "Schema Not Found")."""


class OwnSchemaUnavailable(RuntimeError):
    """The worker's own schema of a topic could not be registered or looked up (the registry is down, refuses it
    (409, 401/403), or, with registry.auto_register=false, does not have it (404)): the worker's fault or the
    registry's, never a record's."""


def registry_error(exc: BaseException) -> bool:
    """Whether an exception comes from talking to the schema registry: any answer it gave (SchemaRegistryError),
    or its HTTP layer failing (httpx, or the copy confluent-kafka ships as `httpx2`: connect, read, timeout and
    protocol failures are all its TransportError), or a connection/timeout error (also the schemas topic's)."""
    if isinstance(exc, (SchemaRegistryError, ConnectionError, TimeoutError)):
        return True
    return any(c.__name__ == "TransportError" and c.__module__.split(".")[0] in ("httpx", "httpx2")
               for c in type(exc).__mro__)


class Serde:
    """Serializer + deserializer for the pipeline topics, bound to topic names from settings.

    The wire format is Confluent's (magic byte 0, 4-byte big-endian schema id, Avro binary), and schemas are
    registered with / looked up in the Schema Registry through confluent-kafka's SchemaRegistryClient
    (subject `<topic>-value`). Encoding and decoding use fastavro directly with parsed schemas cached per
    id: confluent-kafka's AvroSerializer/AvroDeserializer re-expand the schema and walk it for data-contract
    rules on every message (about 5x slower; see docs/benchmarks.md), which assetstream does not use.
    `tests/test_avro_contracts.py` proves both directions interoperate with confluent-kafka's own serde.
    """

    def __init__(self, registry_conf: dict[str, Any], topic_names: dict[str, str], auto_register: bool = True,
                 schema_log: SchemaLog | None = None):
        self.client = registry_client(registry_conf, schema_log)
        self._schema_log = schema_log
        self.topic_names = topic_names  # logical -> full
        self._auto_register = auto_register
        self._ids: dict[str, bytes] = {}  # logical -> 5-byte header
        self._writers: dict[int, Any] = {}  # schema id -> parsed writer schema
        self._own_ids: dict[str, int] = {}
        self._plans: dict[tuple[str, str, str], tuple[Any, Any] | None] = {}
        self._lock = threading.Lock()
        # one per topic: a slow registration of one subject (say the dead letter's) holds no other subject's
        self._header_locks: dict[str, threading.Lock] = {}
        if str(registry_conf["url"]).startswith("mock://"):
            # mock:// registries live in the process: know every topic's own id up front (it is derived from the
            # text) so a record written by another process with the same text can be read before this one wrote
            # anything; registering (and keeping it on the broker's schemas topic) waits for the first write
            for logical in TOPIC_RECORDS:
                if logical in topic_names and schema_path(TOPIC_RECORDS[logical]).exists():
                    schema_id = stable_schema_id(schema_json(TOPIC_RECORDS[logical]))
                    self._own_ids[logical] = schema_id
                    self._writers[schema_id] = parsed_schema(TOPIC_RECORDS[logical])

    @classmethod
    def for_settings(cls, settings: Any) -> "Serde":
        """The serde for the configured registry and topic names (what every producer and consumer uses)."""
        return cls(settings.registry.client_config(), topic_names(settings), settings.registry.auto_register,
                   schema_log_for(settings))

    def _header(self, logical: str) -> bytes:
        header = self._ids.get(logical)
        if header is not None:
            return header
        with self._lock:
            lock = self._header_locks.setdefault(logical, threading.Lock())
        with lock:
            if logical not in self._ids:
                subject = f"{self.topic_names[logical]}-value"
                schema = Schema(schema_json(TOPIC_RECORDS[logical]), "AVRO")
                try:
                    if self._auto_register:
                        schema_id = self.client.register_schema(subject, schema)
                    else:
                        schema_id = self.client.lookup_schema(subject, schema).schema_id
                except Exception as exc:
                    if not registry_error(exc):
                        raise
                    missing = (not self._auto_register and isinstance(exc, SchemaRegistryError)
                               and exc.http_status_code == 404)
                    raise OwnSchemaUnavailable(
                        f"cannot {'register' if self._auto_register else 'look up'} this release's schema of "
                        f"subject {subject}: {type(exc).__name__}: {exc}"
                        + ("; register it in the registry (registry.auto_register=false: see docs/operations.md "
                           "'Upgrading and rolling back')" if missing else "")) from exc
                self._own_ids[logical] = schema_id
                self._writers[schema_id] = parsed_schema(TOPIC_RECORDS[logical])
                self._ids[logical] = b"\x00" + int(schema_id).to_bytes(4, "big")
        return self._ids[logical]

    def _writer(self, schema_id: int) -> Any:
        writer = self._writers.get(schema_id)
        if writer is None:
            try:
                registered = self.client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code != 404:
                    raise
                raise UnknownSchema(f"Schema Not Found: schema id {schema_id} is not known to the registry "
                                    f"({exc})") from None
            writer = fastavro.parse_schema(json.loads(registered.schema_str))
            self._writers[schema_id] = writer
        return writer

    def reads_offline(self, logical: str, data: bytes | None) -> bool:
        """Whether deserialize(logical, data) needs no registry request (the ids are known to this process)."""
        return (data is not None and len(data) >= 5 and logical in self._own_ids
                and int.from_bytes(data[1:5], "big") in self._writers)

    def writes_offline(self, logical: str | None) -> bool:
        """Whether serialize(logical, ...) needs no registry (nor, for mock://, schemas topic) request."""
        return (logical is not None and logical in self._ids
                and not (self._schema_log is not None and self._schema_log.pending))

    def knows(self, schema_id: int) -> bool:
        """Whether a record with this schema id can be read (the registry, or the schemas topic, has it)."""
        try:
            self._writer(schema_id)
            return True
        except UnknownSchema:
            return False

    def serialize(self, logical: str, value: dict[str, Any]) -> bytes:
        if self._schema_log is not None and self._schema_log.pending:
            self._schema_log.publish_pending()  # registered while the schemas topic could not take them
        buf = io.BytesIO()
        buf.write(self._header(logical))
        fastavro.schemaless_writer(buf, parsed_schema(TOPIC_RECORDS[logical]), value)
        return buf.getvalue()

    def deserialize(self, logical: str, data: bytes) -> dict[str, Any]:
        if data is None or len(data) < 6 or data[0] != 0:
            raise ValueError(f"not Confluent-framed Avro ({len(data or b'')} bytes, "
                             f"magic byte {data[0] if data else None!r})")
        schema_id = int.from_bytes(data[1:5], "big")
        own = self._own_ids.get(logical)
        if own is None:
            self._header(logical)
            own = self._own_ids.get(logical)
        writer = self._writer(schema_id)
        buf = io.BytesIO(data)
        buf.seek(5)
        if schema_id == own:
            return fastavro.schemaless_reader(buf, writer, None)
        return fastavro.schemaless_reader(buf, writer, parsed_schema(TOPIC_RECORDS[logical]))

    def serialize_embedding(self, logical: str, value: dict[str, Any], field: str, inner_logical: str,
                            inner_data: bytes) -> bytes | None:
        """Encode `value` for `logical`, where `value[field]` is, unchanged, the record `inner_data` (a framed
        `inner_logical` message) was decoded from: those Avro bytes are copied instead of encoded again (an
        Avro record is the concatenation of its fields). None when that would not be exact: the inner bytes
        were written with another schema version, or the field is not that record type."""
        if len(inner_data) < 6 or inner_data[0] != 0:
            return None
        if int.from_bytes(inner_data[1:5], "big") != self._own_ids.get(inner_logical):
            return None
        plan = self._splice_plan(logical, field, inner_logical)
        if plan is None:
            return None
        head, tail = plan
        buf = io.BytesIO()
        buf.write(self._header(logical))
        if head is not None:
            fastavro.schemaless_writer(buf, head, value)
        buf.write(memoryview(inner_data)[5:])
        if tail is not None:
            fastavro.schemaless_writer(buf, tail, value)
        return buf.getvalue()

    def _splice_plan(self, logical: str, field: str, inner_logical: str) -> tuple[Any, Any] | None:
        """The record schemas of the fields before and after `field` (None for an empty side), or None."""
        key = (logical, field, inner_logical)
        if key in self._plans:
            return self._plans[key]
        full = parsed_schema(TOPIC_RECORDS[logical])
        inner = parsed_schema(TOPIC_RECORDS[inner_logical])
        fields = full["fields"]
        names = [f["name"] for f in fields]
        plan = None
        if field in names:
            i = names.index(field)
            ftype = fields[i]["type"]
            type_name = ftype if isinstance(ftype, str) else (ftype.get("name") if isinstance(ftype, dict) else None)
            if type_name == inner["name"]:
                # the tail may refer by name to types defined in the head or in the embedded record
                defined: dict[str, Any] = {}
                head = (fastavro.parse_schema({"type": "record", "name": f"{full['name']}Head", "fields": fields[:i]},
                                              named_schemas=defined) if i else None)
                fastavro.parse_schema({"type": "record", "name": f"{full['name']}Upto", "fields": fields[:i + 1]},
                                      named_schemas=defined)
                rest = fields[i + 1:]
                tail = (fastavro.parse_schema({"type": "record", "name": f"{full['name']}Tail", "fields": rest},
                                              named_schemas=defined) if rest else None)
                plan = (head, tail)
        with self._lock:
            self._plans[key] = plan
        return plan
