"""Where the files target reads originals and keeps its copies: a local folder or an S3 bucket prefix.

A location is a `Path` (local) or an `S3Key` (bucket, key). ExifTool works on local files, so an S3 object is
downloaded into a private temporary folder (bounded by `max_bytes`) and a finished copy is uploaded with one
PutObject, which S3 makes visible atomically, as `os.replace` does for a folder.

Originals are read only under the configured roots: a folder (resolved, no way out through `..` or links) or an
`s3://bucket/prefix/` (the key must start with the prefix and has no `.`/`..` segment). Errors keep the project's
split: a missing or forbidden object is permanent (dead letter with its reason), an unreachable store transient.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from streams.errors import PermanentError, TransientError

CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Key:
    bucket: str
    key: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def child(self, name: str) -> "S3Key":
        return S3Key(self.bucket, f"{self.key.rstrip('/')}/{name}" if self.key else name)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


Location = Path | S3Key


def parse_s3(uri: str) -> S3Key | None:
    """`s3://bucket/key` -> S3Key (key URL-unquoted); None for anything else. Refuses `.`/`..` key segments."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        return None
    key = unquote(parsed.path.lstrip("/"))
    if not parsed.netloc or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return S3Key(parsed.netloc, key)


def folder(spec: str) -> Location:
    """A configured folder: a local directory or s3://bucket/prefix."""
    return parse_s3(spec) or Path(spec)


def under(loc: Location, root: Location) -> bool:
    if isinstance(loc, Path) and isinstance(root, Path):
        return loc.is_relative_to(root)
    if isinstance(loc, S3Key) and isinstance(root, S3Key):
        prefix = root.key.rstrip("/")
        return loc.bucket == root.bucket and (not prefix or loc.key.startswith(prefix + "/"))
    return False


class Objects:
    """S3 reads and writes for one target (one boto3 client, made on first use; boto3 is the `s3` extra)."""

    def __init__(self, target: str, endpoint_url: str | None, region: str | None, timeout_s: float, max_bytes: int):
        self.target, self.endpoint_url, self.region = target, endpoint_url, region
        self.timeout_s, self.max_bytes = timeout_s, max_bytes
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self):
        with self._lock:
            if self._client is None:
                try:
                    import boto3
                    import botocore.config
                except ImportError:
                    raise PermanentError(f"{self.target}: s3:// locations need boto3 (pip install 'assetstream[s3]')",
                                         reason="s3_unavailable", details={"target": self.target}) from None
                cfg = botocore.config.Config(connect_timeout=min(self.timeout_s, 10.0), read_timeout=self.timeout_s,
                                             retries={"max_attempts": 2, "mode": "standard"})
                self._client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url,
                                                              region_name=self.region, config=cfg)
            return self._client

    def _error(self, exc: BaseException, loc: S3Key, missing_ok: bool = False) -> Exception | None:
        """Map a boto error: None = the object does not exist (and that is allowed)."""
        import botocore.exceptions

        d = {"target": self.target, "bucket": loc.bucket}
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("404", "NoSuchKey", "NotFound") or status == 404:
                return None if missing_ok else PermanentError(
                    f"{self.target}: {loc.name} does not exist in s3://{loc.bucket}", reason="source_missing",
                    details=d)
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
                return PermanentError(f"{self.target}: access to s3://{loc.bucket} denied ({code})",
                                      reason="access_denied", details=d)
            if code == "NoSuchBucket":
                return PermanentError(f"{self.target}: bucket {loc.bucket} does not exist", reason="no_bucket",
                                      details=d)
            return TransientError(f"{self.target}: s3 error {code or status}", reason="output_unavailable", details=d)
        return TransientError(f"{self.target}: s3 unreachable: {type(exc).__name__}", reason="output_unavailable",
                              details=d)

    def download(self, loc: S3Key, into: Path, missing_ok: bool = False) -> Path | None:
        """Copy the object into the folder `into`; None when it does not exist and missing_ok."""
        import botocore.exceptions

        dest = into / f"{len(list(into.iterdir()))}{loc.suffix.lower()}"
        try:
            obj = self._s3().get_object(Bucket=loc.bucket, Key=loc.key)
            size = obj.get("ContentLength") or 0
            if size > self.max_bytes:
                obj["Body"].close()
                raise PermanentError(f"{self.target}: {loc.name} is {size} bytes, over max_bytes={self.max_bytes}",
                                     reason="too_large", details={"target": self.target})
            got = 0
            with dest.open("wb") as f:
                for chunk in obj["Body"].iter_chunks(CHUNK):
                    got += len(chunk)
                    if got > self.max_bytes:
                        raise PermanentError(f"{self.target}: {loc.name} is over max_bytes={self.max_bytes}",
                                             reason="too_large", details={"target": self.target})
                    f.write(chunk)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, OSError) as exc:
            err = self._error(exc, loc, missing_ok)
            if err is None:
                return None
            raise err from None
        return dest

    def upload(self, path: Path, loc: S3Key, content_type: str | None) -> None:
        import botocore.exceptions

        extra = {"ContentType": content_type} if content_type else {}
        try:
            with path.open("rb") as f:
                self._s3().put_object(Bucket=loc.bucket, Key=loc.key, Body=f, **extra)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, OSError) as exc:
            raise self._error(exc, loc) from None
