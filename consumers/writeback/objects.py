"""Where the files target reads originals and keeps its copies: a local folder or an S3 bucket prefix.

A location is a `Path` (local) or an `S3Key` (bucket, key). ExifTool works on local files, so an S3 object is
downloaded into a private temporary folder (bounded by `max_bytes`) and a finished copy is uploaded with one
PutObject, which S3 makes visible atomically, as `os.replace` does for a folder.

Originals are read only under the configured roots: a folder (resolved, no way out through `..` or links) or an
`s3://bucket/prefix/` (the key must start with the prefix and has no `.`/`..` segment). Errors keep the project's
split: a missing or forbidden object is permanent (dead letter with its reason), an unreachable store transient.
"""
from __future__ import annotations

from pathlib import Path

from streams import s3
from streams.errors import PermanentError, TransientError
from streams.s3 import S3Key

CHUNK = 1 << 20

Location = Path | S3Key


def parse_s3(uri: str) -> S3Key | None:
    """`s3://bucket/key` -> S3Key (key URL-unquoted); None for anything else. Refuses `.`/`..` key segments."""
    return s3.parse_uri(uri, refuse_dot_segments=True)


def folder(spec: str) -> Location:
    """A configured folder: a local directory or s3://bucket/prefix."""
    return parse_s3(spec) or Path(spec)


def under(loc: Location, root: Location) -> bool:
    if isinstance(loc, Path) and isinstance(root, Path):
        return loc.is_relative_to(root)
    if isinstance(loc, S3Key) and isinstance(root, S3Key):
        return loc.under(root)
    return False


class Objects:
    """S3 reads and writes for one target (one boto3 client, made on first use; boto3 is the `s3` extra)."""

    def __init__(self, target: str, endpoint_url: str | None, region: str | None, timeout_s: float, max_bytes: int):
        self.target, self.max_bytes = target, max_bytes
        self.config = s3.S3Config.for_timeout(endpoint_url, region, timeout_s, max_attempts=2, retry_mode="standard")
        self._clients = s3.ClientCache()

    def _s3(self):
        try:
            return self._clients.get(self.config)
        except s3.S3Unavailable as exc:
            raise PermanentError(f"{self.target}: {exc}", reason="s3_unavailable",
                                 details={"target": self.target}) from None

    def _error(self, exc: BaseException, loc: S3Key, missing_ok: bool = False) -> Exception | None:
        """Map a boto error: None = the object does not exist (and that is allowed)."""
        failure = s3.classify(exc)
        d = {"target": self.target, "bucket": loc.bucket}
        if failure.code == "NoSuchBucket" and not missing_ok:  # (no bucket, no earlier copy: the upload says so)
            return PermanentError(f"{self.target}: bucket {loc.bucket} does not exist", reason="no_bucket", details=d)
        if failure.kind == "missing":
            return None if missing_ok else PermanentError(
                f"{self.target}: {loc.name} does not exist in s3://{loc.bucket}", reason="source_missing", details=d)
        if failure.kind == "denied":
            return PermanentError(f"{self.target}: access to s3://{loc.bucket} denied ({failure.code})",
                                  reason="access_denied", details=d)
        if failure.answered:
            return TransientError(f"{self.target}: s3 error {failure.code}", reason="output_unavailable", details=d)
        return TransientError(f"{self.target}: s3 unreachable: {failure.code}", reason="output_unavailable",
                              details=d)

    def download(self, loc: S3Key, into: Path, missing_ok: bool = False) -> Path | None:
        """Copy the object into the folder `into`; None when it does not exist and missing_ok."""
        dest = into / f"{len(list(into.iterdir()))}{loc.suffix.lower()}"
        client = self._s3()
        try:
            obj = client.get_object(Bucket=loc.bucket, Key=loc.key)
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
        except s3.errors() as exc:
            err = self._error(exc, loc, missing_ok)
            if err is None:
                return None
            raise err from None
        return dest

    def upload(self, path: Path, loc: S3Key, content_type: str | None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        client = self._s3()
        try:
            with path.open("rb") as f:
                client.put_object(Bucket=loc.bucket, Key=loc.key, Body=f, **extra)
        except s3.errors() as exc:
            raise self._error(exc, loc) from None
