"""Sidecar store for dead letters' original values (issue 22): a value too large to carry in its letter is
written here and the letter references it (`original_value_ref`, `original_value_size`,
`original_value_sha256`), so `assetstream dlq replay` can restore it byte-identical.

Two kinds, chosen by `dead_letters.store`: an S3 API bucket (`s3://bucket/prefix`, boto3, credentials from
the usual AWS chain) for a fleet, a folder (a path or `file:///path`) for the embedded run. Reading only
follows references under the configured store: a letter naming any other place is refused, so a forged
letter cannot make a replay publish an arbitrary file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlparse

from streams import s3
from streams.config.deadletters import DeadLetterSettings


class OriginalUnavailable(Exception):
    """The store cannot take or give back an original value (down, missing object, foreign reference)."""


class OriginalStore(Protocol):
    uri: str

    def put(self, name: str, data: bytes) -> str:
        """Store `data` under `name` (a relative path); returns the reference to put in the letter."""

    def get(self, ref: str) -> bytes:
        """The bytes behind a reference this store returned."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def object_name(dead_letter_topic: str, topic: str, partition: int, offset: int, data: bytes) -> str:
    """One object per input record and content: a record dead-lettered again overwrites it with the same bytes."""
    return f"{dead_letter_topic}/{topic}/{partition}/{offset}-{sha256(data)[:16]}"


class FolderStore:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.uri = self.root.as_uri()

    def put(self, name: str, data: bytes) -> str:
        path = self.root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # a reader never sees half an object
        except OSError as exc:
            raise OriginalUnavailable(f"cannot write {path}: {exc}") from exc
        return path.as_uri()

    def get(self, ref: str) -> bytes:
        u = urlparse(ref)
        path = Path(unquote(u.path)).resolve() if u.scheme == "file" else None
        if path is None or not path.is_relative_to(self.root):
            raise OriginalUnavailable(f"{ref} is not in the configured dead-letter store {self.uri}")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise OriginalUnavailable(f"cannot read {ref}: {exc.strerror or exc}") from exc


class S3Store:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, region: str | None):
        try:
            self.client = s3.new_client(s3.S3Config(endpoint_url=endpoint_url, region=region, connect_timeout_s=5,
                                                    read_timeout_s=30, max_attempts=3))
        except s3.S3Unavailable as exc:
            raise OriginalUnavailable(f"the dead-letter store: {exc}") from None
        self.root = s3.S3Key(bucket, prefix.strip("/"))
        self.bucket, self.prefix = bucket, self.root.key
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._bucket_ready = False

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, name: str, data: bytes) -> str:
        key = self._key(name)
        try:
            if not self._bucket_ready:
                self._ensure_bucket()
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except s3.errors() as exc:
            raise OriginalUnavailable(f"cannot write s3://{self.bucket}/{key}: {s3.describe(exc)}") from exc
        return f"s3://{self.bucket}/{quote(key)}"

    def _ensure_bucket(self) -> None:
        import botocore.exceptions

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError:
            self.client.create_bucket(Bucket=self.bucket)  # refused without the right: put_object then says why
        self._bucket_ready = True

    def get(self, ref: str) -> bytes:
        try:
            loc = s3.parse_uri(ref, require_key=True, refuse_dot_segments=True)
        except ValueError:
            loc = None
        if loc is None or not loc.under(self.root):
            raise OriginalUnavailable(f"{ref} is not in the configured dead-letter store {self.uri}")
        try:
            return self.client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        except s3.errors() as exc:
            raise OriginalUnavailable(f"cannot read {ref}: {s3.describe(exc)}") from exc


def open_store(settings: DeadLetterSettings) -> OriginalStore | None:
    """The configured store, or None when `dead_letters.store` is not set."""
    if not settings.store:
        return None
    try:
        root = s3.parse_uri(settings.store)
    except ValueError:
        raise ValueError(f"dead_letters.store {settings.store!r}: use s3://bucket/prefix") from None
    if root is not None:
        return S3Store(root.bucket, root.key, settings.s3_endpoint_url, settings.s3_region)
    u = urlparse(settings.store)
    if u.scheme == "file":
        return FolderStore(Path(unquote(u.path)))
    if u.scheme:
        raise ValueError(f"dead_letters.store {settings.store!r}: use s3://bucket/prefix or a folder")
    return FolderStore(Path(settings.store).expanduser())
