from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PreprocessSettings(BaseModel):
    """Fetch, decode, thumbnail, metadata, OCR and hashing limits (consumers/preprocess)."""

    file_roots: list[str] = Field(default_factory=list, description="file:// URIs are allowed only under these dirs")
    allow_private_networks: bool = Field(False, description="allow fetching from loopback/private/link-local addresses")
    allow_hosts: list[str] = Field(default_factory=list, description="hosts/CIDRs allowed even if private")
    max_bytes: int = 50 * 1024 * 1024
    fetch_timeout_s: float = 20.0
    max_redirects: int = 3
    max_pixels: int = 80_000_000
    thumbnail_edge: int = 768
    thumbnail_max_bytes: int = 256 * 1024
    ocr_enabled: bool = True
    ocr_lang: str = "eng"
    gps_privacy: Literal["keep", "round", "drop"] = "keep"
    gps_round_digits: int = 2
