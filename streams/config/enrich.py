from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class EnrichSettings(BaseModel):
    """Providers, models per task, rate limits, cost and dedupe (consumers/enrich)."""

    provider: Literal["local", "claude", "gemini"] = "local"
    anthropic_api_key: SecretStr | None = None
    gemini_api_key: SecretStr | None = None
    max_in_flight: int = 8
    request_timeout_s: float = 60.0
    budget_usd: float | None = Field(None, description="pause consumption when spend reaches this")
    dedupe_max_distance: int = Field(6, description="pHash Hamming distance that counts as a near-duplicate")
