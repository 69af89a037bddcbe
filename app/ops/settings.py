"""Operations: the webhook ingest server, backfills, dead-letter tooling (app/ops). See docs/operations.md.

    ASSETSTREAM_OPS__WEBHOOK_SECRET=...          (HMAC-SHA256 shared secret; never logged)
    ASSETSTREAM_OPS__WEBHOOK_PORT=8080
"""
from __future__ import annotations

from pydantic import Field, SecretStr

from streams.config import Section

DEFAULT_IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif", ".bmp", ".heic", ".heif",
                            ".mp4", ".m4v", ".mov", ".webm", ".mkv"]
"""Image and video suffixes (preprocess checks the content either way)."""


class OpsSettings(Section):
    """Webhook ingest, backfill and dead-letter tooling (app/ops)."""

    # --- webhook ingest -------------------------------------------------------------------------------------
    webhook_secret: SecretStr | None = Field(
        None, description="shared secret for the X-Assetstream-Signature HMAC-SHA256; the server refuses to "
                          "start without it unless --insecure-no-auth is given")
    webhook_host: str = Field("127.0.0.1", description="interface the ingest server binds to")
    webhook_port: int = Field(8080, ge=0, le=65535, description="0 = any free port")
    webhook_tolerance_s: int = Field(300, ge=1, description="accepted clock skew / age of X-Assetstream-Timestamp "
                                                            "(replay window)")
    webhook_max_body_bytes: int = Field(1024 * 1024, ge=1024, description="larger bodies get 413")
    webhook_max_batch: int = Field(500, ge=1, description="most events in one JSON-list body")
    webhook_ack_timeout_s: float = Field(10.0, gt=0, description="wait this long for the broker's ack, else 503")
    # --- backfill -------------------------------------------------------------------------------------------
    backfill_rate: float = Field(50.0, gt=0, description="events per second (token bucket)")
    backfill_burst: int = Field(10, ge=1, description="token bucket size")
    backfill_wait_timeout_s: float = Field(3600.0, gt=0, description="`backfill --wait`: give up (exit 1) when the "
                                           "published assets are not all indexed or dead-lettered after this long")
    progress_interval_s: float = Field(10.0, gt=0, description="off a terminal (CI, `| tee`, pod logs): a plain "
                                       "progress line every this many seconds instead of a bar")
    image_extensions: list[str] = Field(default_factory=lambda: list(DEFAULT_IMAGE_EXTENSIONS),
                                        description="file suffixes (lower-case) a directory backfill and `assetstream run` "
                                                    "pick up: images and videos")
    run_writeback_wait_s: float = Field(
        20.0, gt=0, description="`assetstream run` with write-back targets: once the index is done, how long it "
                                "still waits while the writeback group is paused on an unavailable target or state "
                                "store (it may come back); then the rows say `not_written` with the reason")
    expected_model_versions: dict[str, str] = Field(
        default_factory=dict,
        description="task -> model_version the current configuration produces (for cloud models, whose dated "
                    "snapshot is only known from a response); provenance with another model_version is stale "
                    "for `backfill --only-stale`. Local models: computed automatically")
    # --- dead letters ---------------------------------------------------------------------------------------
    dlq_read_timeout_s: float = Field(30.0, gt=0, description="give up reading the DLQ after this long")


def ops_settings(settings: object) -> OpsSettings:
    """The ops section of the settings (env ASSETSTREAM_OPS__*, the config file's `ops:`, defaults)."""
    return settings.ops
