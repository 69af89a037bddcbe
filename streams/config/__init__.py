"""Per-area settings sections. Each file owns one section; `streams.settings.Settings` composes them."""
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every settings section: an unknown key (a typo in config.yaml or an env var) is an error,
    not silently ignored."""

    model_config = ConfigDict(extra="forbid")
