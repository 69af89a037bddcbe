from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from streams.config import Section

SECRET_PROPERTY = re.compile(r"(^|\.)password$|^sasl\.(?!mechanisms?$)|^ssl\.key\.|^ssl\.keystore\.|secret|token"
                             r"|credential|oauth|^ssl_engine_callback_data$", re.IGNORECASE)
"""librdkafka properties that hold a secret: *.password, sasl.* (but sasl.mechanism), ssl.key.* (password,
pem), ssl.keystore.*, anything naming a secret, token, credential or OAuth setting."""


def is_secret_property(name: str) -> bool:
    return bool(SECRET_PROPERTY.search(name.strip()))


class KafkaSettings(Section):
    """Broker connection. Anything librdkafka understands can be passed through `extra`."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="the brokers to connect to first "
                                   "(bootstrap.servers): host:port, comma-separated")
    security_protocol: str | None = Field(None, description="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL")
    sasl_mechanism: str | None = Field(None, description="sasl.mechanism, e.g. PLAIN or SCRAM-SHA-512 (SASL_* "
                                       "security protocols)")
    sasl_username: str | None = Field(None, description="sasl.username")
    sasl_password: SecretStr | None = Field(None, description="sasl.password (shown redacted)")
    ssl_ca_location: str | None = Field(None, description="ssl.ca.location: path of the CA certificate(s) (PEM) "
                                        "the broker's certificate is checked against; None = the system's CAs")
    ssl_certificate_location: str | None = Field(None, description="ssl.certificate.location: path of this "
                                                 "client's certificate (PEM), for brokers that require mutual TLS")
    ssl_key_location: str | None = Field(None, description="ssl.key.location: path of the private key (PEM) of "
                                         "ssl_certificate_location; a key password goes in extra as "
                                         "ssl.key.password (kept secret)")
    session_timeout_ms: int = Field(45000, description="session.timeout.ms of every consumer (and the KPI app): "
                                    "a member silent this long is dropped from its group and its partitions are "
                                    "handed on")
    heartbeat_interval_ms: int = Field(3000, description="heartbeat.interval.ms of every consumer (and the KPI "
                                       "app)")
    max_poll_interval_ms: int = Field(300000, description="max.poll.interval.ms of every worker's consumer: a "
                                      "worker that does not poll for this long leaves its group and its partitions "
                                      "are handed on; runner.pause_after_s must be at most half of it")
    static_membership: bool = Field(True, description="use group.instance.id from POD_NAME/HOSTNAME when set")
    connect_timeout_s: float = Field(10.0, gt=0, description="one-shot commands and app start-up (`topics create`, "
                                     "`feedback`, `audit`, the KPI app): how long to wait for the broker to answer "
                                     "at all (a TCP connection to a bootstrap server, then its first topic list) "
                                     "before saying it cannot be reached; a refused connection is said at once. "
                                     "Every worker makes the TCP check at start-up too; once running, it keeps "
                                     "retrying as librdkafka does")
    assignment_strategy: Literal["range", "roundrobin", "cooperative-sticky"] = Field(
        "range", description="partition.assignment.strategy. range (default): one rebalance round, and each "
                             "member gets the same share of the input topic and of its -retry topic. "
                             "cooperative-sticky needs two rounds and may give one member all input partitions "
                             "and the other all retry partitions; on tansu its second round can stall for "
                             "minutes (docs/operations.md#scaling-a-group)")
    extra: dict[str, str | SecretStr] = Field(
        default_factory=dict, description="raw librdkafka properties, passed through; those holding a secret "
                                          "(*.password, sasl.*, ssl.key.*, *secret*, tokens) are kept as secrets "
                                          "and shown redacted like sasl_password")

    @field_validator("extra", mode="after")
    @classmethod
    def _secret_properties_are_secrets(cls, extra: dict[str, str | SecretStr]) -> dict[str, str | SecretStr]:
        return {k: SecretStr(v) if isinstance(v, str) and is_secret_property(k) else v for k, v in extra.items()}

    def client_config(self) -> dict[str, object]:
        """librdkafka config common to every client (never logged: it may carry secrets)."""
        conf: dict[str, object] = {"bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        for key, attr in (("ssl.ca.location", "ssl_ca_location"),
                          ("ssl.certificate.location", "ssl_certificate_location"),
                          ("ssl.key.location", "ssl_key_location")):
            if getattr(self, attr):
                conf[key] = getattr(self, attr)
        conf.update({k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in self.extra.items()})
        return conf

    def instance_id(self, group: str) -> str | None:
        if not self.static_membership:
            return None
        pod = os.environ.get("POD_NAME")
        return f"{group}-{pod}" if pod else None


class RegistrySettings(Section):
    url: str = Field("mock://assetstream", description="Schema Registry URL; mock:// = in-process (tests, embedded)")
    basic_auth_user_info: SecretStr | None = Field(None, description="user:password")
    auto_register: bool = Field(True, description="register this release's schemas under <topic>-value when "
                                "the registry lacks them; false = only look them up (a missing one is an error)")
    allow_in_process: bool = Field(False, description="let a worker run on a mock:// (in-process) registry; set "
                                                      "by `assetstream run` and the tests, never in production")
    timeout_s: float = Field(10.0, gt=0, description="how long the registry client may wait to connect, and for "
                             "each read or write, of one request (not the whole request: an answer trickled a few "
                             "bytes at a time can take longer; the client tries a failed request up to "
                             "registry.max_retries more times); a registry that does not answer in time is an "
                             "outage: the records wait, consumption paused (schema_registry). Without it a registry "
                             "that accepts connections and never answers held a worker's thread for ever")
    max_retries: int = Field(3, ge=0, description="how many more times the registry client tries a request that "
                             "failed (timed out, connection refused or reset, HTTP 408, 429, 500, 502, 503 or "
                             "504) before the call fails; a registry that does not answer holds one call up to "
                             "(max_retries + 1) x timeout_s plus the waits between tries (about 40 s with the "
                             "defaults) before the worker pauses and logs the outage; lower it to see an outage "
                             "sooner")
    retry_backoff_s: float = Field(1.0, ge=0, description="the wait before the client's first retry of a request, "
                                   "doubled at each further retry up to retry_backoff_max_s; each wait is a random "
                                   "part of that (full jitter). 0: no wait")
    retry_backoff_max_s: float = Field(20.0, ge=0, description="the longest wait between two tries of a request")

    @property
    def in_process(self) -> bool:
        return self.url.startswith("mock://")

    def refusal(self) -> str | None:
        """Why a long-running service must not start with this registry, or None. A mock:// registry lives in
        one process: records it writes carry schema ids no other process (nor a real consumer) can resolve."""
        if self.in_process and not self.allow_in_process:
            return (f"registry.url is {self.url!r}, the in-process test registry: set ASSETSTREAM_REGISTRY__URL "
                    "to your Schema Registry (e.g. http://schema-registry:8081), or set "
                    "ASSETSTREAM_REGISTRY__ALLOW_IN_PROCESS=true for a local experiment")
        return None

    def client_config(self) -> dict[str, object]:
        conf: dict[str, object] = {"url": self.url, "timeout": self.timeout_s, "max.retries": self.max_retries,
                                   "retries.wait.ms": round(self.retry_backoff_s * 1000),
                                   "retries.max.wait.ms": round(self.retry_backoff_max_s * 1000)}
        if self.basic_auth_user_info:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        return conf


class TopicSettings(Section):
    prefix: str = Field("assetstream.", description="prepended to every topic name")
    raw: str = Field("raw", description="topic of incoming AssetEvents (after prefix)")
    preprocessed: str = Field("preprocessed", description="topic of PreprocessedAssets")
    enriched: str = Field("enriched", description="topic of EnrichedAssets")
    validated: str = Field("validated", description="topic of ValidatedAssets (the published records)")
    dead_letter: str = Field("dlq", description="the dead-letter topic: every group writes a DeadLetter there for "
                             "a record it cannot process; `assetstream dlq list|show|replay` reads it")
    feedback: str = Field("feedback", description="topic of EditorDecisions (the review app, `assetstream "
                          "feedback`)")
    kpis: str = Field("kpis", description="topic of KpiSnapshots (the KPI app)")
    audit: str = Field("audit", description="topic of AuditEntries (kept forever)")
    schemas: str = Field("_schemas", description="registry.url=mock:// only: the compacted topic keeping every "
                         "schema any process registered (like a real Schema Registry's _schemas), so processes of "
                         "other releases resolve each other's schema ids; created by `topics create`")
    partitions: int = Field(6, description="partitions of every topic `topics create` (and the KPI app) creates, "
                            "retry topics included; set before the first create: tansu cannot add partitions later")
    replication_factor: int = Field(1, description="replicas of every topic `topics create` and the KPI app create "
                                    "(their internal topics included); 3 on a production cluster")
    retention_ms: int = Field(7 * 24 * 3600 * 1000, description="retention.ms of the topics `topics create` makes "
                              "(raw, preprocessed, enriched, validated, feedback, kpis, the retry topics); "
                              "not dlq or audit")
    dlq_retention_ms: int = Field(30 * 24 * 3600 * 1000, description="retention.ms of the dead-letter topic "
                                  "when `topics create` (or the KPI app) creates it: how long a dead letter can be "
                                  "listed and replayed")
    retry_suffix: str = Field("-retry", description="runner.retry_mode=topic: the retry topic of an input topic is "
                              "its name + this suffix")

    def name(self, logical: str) -> str:
        """Full topic name of a logical topic ('raw', 'dead_letter', ...)."""
        return self.prefix + getattr(self, logical)

    def retry_name(self, logical: str) -> str:
        """The retry topic of an input topic (runner.retry_mode=topic)."""
        return self.name(logical) + self.retry_suffix

    def logical(self, full: str) -> str:
        for field in ("raw", "preprocessed", "enriched", "validated", "dead_letter", "feedback", "kpis", "audit"):
            if self.name(field) == full:
                return field
        raise KeyError(full)


class GroupSettings(Section):
    prefix: str = Field("assetstream.", description="prepended to every stage's consumer group id")
    preprocess: str = Field("preprocess", description="group id of the preprocess stage (after prefix)")
    enrich: str = Field("enrich", description="group id of the enrich stage (after prefix)")
    validate_: str = Field("validate", alias="validate", description="group id of the validate stage (after prefix)")
    index: str = Field("index", description="group id of the index sink (after prefix)")

    model_config = {"populate_by_name": True, "extra": "forbid"}

    def name(self, stage: str) -> str:
        """Group id of a stage; a custom stage (module:Class) gets prefix + its own name."""
        attr = "validate_" if stage == "validate" else stage
        return self.prefix + (getattr(self, attr) if attr in type(self).model_fields else stage)


class RunnerSettings(Section):
    concurrency: int | None = Field(None, ge=1, description="worker threads (or asyncio tasks for I/O stages) per "
                                    "process; None = the stage's own default (Stage.concurrency: 4, preprocess 16: "
                                    "its threads mostly wait on fetches, the CPU-heavy parts run inside the CPU "
                                    "slots of streams.cpu)")
    max_in_flight: int = Field(64, ge=1, description="records taken but not yet finished; at the limit the worker stops "
                               "taking records until some finish. Finished records waiting behind a slower one of "
                               "their partition to be committed do not count (see max_uncommitted)")
    max_uncommitted: int = Field(1000, ge=1, description="per partition: records taken and not yet committed (finished "
                                 "ones behind an unfinished one included); at the limit that partition alone is paused "
                                 "until half of them are committed. Bounds what a restart redoes behind a stuck record")
    pause_after_s: float = Field(1.0, gt=0, description="when in-flight records stay at max_in_flight this long, pause the "
                                 "partitions (polling goes on, so the group never times the worker out)")
    retry_max_attempts: int = Field(5, ge=1, description="attempts of a record failing transiently (in place or "
                                    "through the retry topic) before it is dead-lettered (transient_exhausted)")
    retry_mode: Literal["auto", "inplace", "topic"] = Field(
        "auto", description="cpu and io stages: how a transiently failing record is retried. inplace = in the "
        "worker with backoff (the record holds its worker slot and its partition's commit meanwhile); topic = "
        "moved to the input's retry topic (<input>-retry, created by `topics create`) with a not-before time, and "
        "worked again by the same group after runner.retry_topic_delays_s without holding anything (issue 16.16); "
        "a worker whose retry topic is missing refuses to start. auto (default) = topic when the retry topic "
        "exists at start-up, else inplace with a warning. Batch stages always retry in place")
    retry_topic_delays_s: list[float] = Field(
        default_factory=lambda: [2.0, 10.0, 30.0, 60.0],
        description="retry_mode=topic: the delay before attempt 2, 3, ...; the last one repeats")
    retry_held_max: int = Field(1000, ge=1, description="retry_mode=topic: retry records held in memory until "
                                "their not-before time; above it the retry partitions are paused")
    retry_attempt_timeout_s: float | None = Field(
        None, gt=0, description="io stages: one attempt taking longer is a transient failure (timeout); None = no "
        "bound beyond the stage's own timeouts")
    retry_topic_check_timeout_s: float = Field(10.0, gt=0, description="how long a starting worker (any stage, "
                                               "any retry_mode) waits for the broker's topic list: the start-up "
                                               "check, and whether its retry topic exists")
    retry_base_delay_s: float = Field(0.2, description="in-place retries: the wait before attempt 2, doubled at "
                                      "each further attempt up to retry_max_delay_s (a random half to whole of it; "
                                      "longer when the error asks to wait, e.g. a provider's Retry-After)")
    retry_max_delay_s: float = Field(30.0, description="in-place retries: the longest wait between two attempts")
    retry_probe_interval_s: float = Field(0.2, gt=0, description="batch stages: while a dependency is down (a "
                                          "StoreUnavailable), how often the stage's ready() is asked during the "
                                          "backoff; once it turns ready the batch is retried at once")
    transactional: bool = Field(False, description="exactly-once: produce + offsets in one Kafka transaction")
    detect_offset_gaps: bool | None = Field(None, description="count (assetstream_offset_gaps_total) and log every "
                                            "jump in the offsets the broker returns for a partition: records it "
                                            "acknowledged and never returned. None = on unless runner.transactional "
                                            "(then the upstream stages write transactions, whose commit markers and "
                                            "aborted records take offsets no consumer sees: a gap is normal there); "
                                            "turn it off for compacted input topics and inputs written by "
                                            "transactional producers")
    inline: bool = Field(False, description="cpu stages: process in the poll thread instead of a pool (fastest for "
                         "cheap stages such as validate; polling waits while a chunk is processed)")
    processes: int = Field(0, ge=0, description="cpu stages: decode, run the stage and encode in this many child "
                           "processes (each builds its own stage from these settings) so Python code uses more "
                           "than one core; 0 = threads in the worker process")
    client_log_interval_s: float = Field(30.0, gt=0, description="Kafka client errors (librdkafka's log lines and "
                                         "error callbacks, routed to logger assetstream.kafka): each distinct "
                                         "error is logged once per this interval, with a count of its repeats")
    drain_timeout_s: float = Field(25.0, description="on SIGTERM or a revoke, how long to let the started records "
                                   "finish (those taken but not started are given up at once, uncommitted)")
    metrics_port: int = Field(9400, description="0 = pick a free port; -1 = no HTTP server")
    metrics_host: str = Field("0.0.0.0", description="the address the /metrics, /healthz and /readyz server binds: "
                              "0.0.0.0 = every interface (what Prometheus and the kubelet's probes reach in a "
                              "pod); 127.0.0.1 = this machine only")
    poll_timeout_s: float = Field(0.05, description="how long one consume() waits to fill a batch; adds up per hop")
    batch_max_records: int = Field(500, description="batch stages (the index sink): flush at this many records")
    batch_max_bytes: int = Field(5 * 1024 * 1024, description="batch stages: flush at this many bytes of records")
    batch_max_wait_s: float = Field(0.25, description="batch stages: flush a partial batch after this long")

    @model_validator(mode="after")
    def _one_place_for_cpu_work(self) -> "RunnerSettings":
        if self.inline and self.processes:
            raise ValueError("runner.inline and runner.processes exclude each other: inline works records in the "
                             "poll thread, processes in child processes")
        return self
