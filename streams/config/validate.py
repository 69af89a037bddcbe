from __future__ import annotations

from pydantic import BaseModel, Field


class ValidateSettings(BaseModel):
    """Automation policy and vocabulary (consumers/validate)."""

    auto_apply_threshold: float = 0.85
    review_threshold: float = 0.7
    taxonomy_path: str | None = Field(None, description="taxonomy file; default = the bundled one")
