"""Where dead letters keep original values too large to carry inline (issue 22)."""
from __future__ import annotations

from pydantic import Field

from streams.config import Section


class DeadLetterSettings(Section):
    """`dead_letters`: a dead letter always keeps its input's original value. One larger than
    `inline_max_bytes` (or one that makes the letter too large for the broker) is written to `store`, a
    sidecar object referenced from the letter (`original_value_ref`, with its size and SHA-256), where
    `assetstream dlq replay` reads it back."""

    store: str | None = Field(None, description="s3://bucket/prefix (any S3 API; credentials from the usual AWS "
                              "environment/profile chain) or a folder (path or file:///path). None = no sidecar: an "
                              "original too large for the broker is cut to 1 KiB and its letter cannot be replayed")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint for an s3:// store (None = AWS)")
    s3_region: str | None = Field(None, description="S3 region for an s3:// store")
    inline_max_bytes: int = Field(256 * 1024, ge=1024, description="originals larger than this go to the store "
                                  "(when one is configured) instead of into the letter")
