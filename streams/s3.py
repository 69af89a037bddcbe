"""The S3 API, as every s3:// user in the fleet talks to it (sources, copies, dead-letter originals).

boto3 is the optional `s3` extra: `new_client` raises `S3Unavailable` (one message, naming the extra) when it is not
installed, and each caller turns that into its own error. A client is built from an `S3Config` (endpoint, region,
timeouts, retries, and credentials when the caller's settings carry them, else the usual AWS chain); the secret is
never in the config's repr. `ClientCache` keeps one client per config (boto3 clients are thread-safe).

`parse_uri` reads `s3://bucket/key` (the key URL-unquoted); `refuse_dot_segments` refuses a `.` or `..` segment,
which S3 takes literally but a path-backed server (SeaweedFS, MinIO on a file system) may resolve out of a prefix.
`classify` sorts a boto error into missing / denied / credentials / transient with its code, and `describe` says
what failed without the request (a ClientError's message can quote signed headers).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

MISSING_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})
DENIED_CODES = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


class S3Unavailable(Exception):
    """boto3, the `s3` extra, is not installed."""

    def __init__(self) -> None:
        super().__init__("s3:// locations need boto3 (pip install 'assetstream[s3]')")


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None = None
    region: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 3
    retry_mode: str | None = None  # None: botocore's default ("legacy", or AWS_RETRY_MODE)
    access_key_id: str | None = None  # None: the usual AWS chain (environment, profile, instance role)
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def for_timeout(cls, endpoint_url: str | None, region: str | None, timeout_s: float, max_attempts: int,
                    retry_mode: str | None = None) -> "S3Config":
        """One timeout for the whole call: reads wait `timeout_s`, connecting at most 10 s of it."""
        return cls(endpoint_url=endpoint_url, region=region, connect_timeout_s=min(timeout_s, 10.0),
                   read_timeout_s=timeout_s, max_attempts=max_attempts, retry_mode=retry_mode)


def new_client(cfg: S3Config) -> Any:
    """A boto3 S3 client for `cfg`; S3Unavailable without boto3."""
    try:
        import boto3
        import botocore.config
    except ImportError:
        raise S3Unavailable() from None
    retries: dict[str, Any] = {"max_attempts": cfg.max_attempts}
    if cfg.retry_mode:
        retries["mode"] = cfg.retry_mode
    config = botocore.config.Config(connect_timeout=cfg.connect_timeout_s, read_timeout=cfg.read_timeout_s,
                                    retries=retries)
    keys = ({"aws_access_key_id": cfg.access_key_id, "aws_secret_access_key": cfg.secret_access_key}
            if cfg.access_key_id else {})
    return boto3.session.Session().client("s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region,
                                          config=config, **keys)


class ClientCache:
    """One client per config, made on first use (two threads asking at once get the same one)."""

    def __init__(self) -> None:
        self._clients: dict[S3Config, Any] = {}
        self._lock = threading.Lock()

    def get(self, cfg: S3Config) -> Any:
        with self._lock:
            client = self._clients.get(cfg)
            if client is None:
                client = self._clients[cfg] = new_client(cfg)
            return client


def errors() -> tuple[type[BaseException], ...]:
    """What an S3 call can raise besides the caller's own errors (import only once a client exists)."""
    import botocore.exceptions

    return botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, OSError


@dataclass(frozen=True)
class S3Key:
    bucket: str
    key: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def child(self, name: str) -> "S3Key":
        return S3Key(self.bucket, f"{self.key.rstrip('/')}/{name}" if self.key else name)

    def under(self, root: "S3Key") -> bool:
        """In root's bucket, below its key prefix (whole segments: `lib` does not contain `library/x`)."""
        prefix = root.key.strip("/")
        return self.bucket == root.bucket and (not prefix or self.key.startswith(prefix + "/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_uri(uri: str, *, require_key: bool = False, refuse_dot_segments: bool = False) -> S3Key | None:
    """`s3://bucket/key` -> S3Key (key URL-unquoted); None for any other scheme. ValueError without a bucket, without
    a key when `require_key`, or with a `.`/`..` key segment when `refuse_dot_segments`."""
    parsed = urlsplit(uri)
    if parsed.scheme.lower() != "s3":
        return None
    key = unquote(parsed.path.lstrip("/"))
    if not parsed.netloc or (require_key and not key) or (
            refuse_dot_segments and any(part in (".", "..") for part in key.split("/"))):
        raise ValueError("not an s3://bucket/key URI")
    return S3Key(parsed.netloc, key)


Kind = Literal["missing", "denied", "credentials", "transient"]


@dataclass(frozen=True)
class S3Failure:
    kind: Kind
    """missing: no such object or bucket; denied: the server refused these credentials or this object;
    credentials: none configured; transient: anything else (unreachable, timeouts, 5xx, throttling)."""
    code: str
    """The S3 error code, else the exception's type name."""
    status: int | None = None
    answered: bool = False
    """The server answered (an S3 error response), as opposed to no answer at all."""

    def __str__(self) -> str:
        return f"{self.code} (HTTP {self.status})" if self.status else self.code


def classify(exc: BaseException) -> S3Failure:
    """What an error from an S3 call means (see S3Failure.kind); never reads the request."""
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        resp = exc.response or {}
        code = str((resp.get("Error") or {}).get("Code") or "")
        status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        kind: Kind = ("missing" if code in MISSING_CODES or status == 404 else
                      "denied" if code in DENIED_CODES or status == 403 else "transient")
        return S3Failure(kind, code or str(status or type(exc).__name__), status, answered=True)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return S3Failure("credentials", type(exc).__name__)
    return S3Failure("transient", type(exc).__name__)


def describe(exc: BaseException) -> str:
    """The error code and HTTP status (or the exception's type), never the request (it may carry signed headers)."""
    return str(classify(exc))
