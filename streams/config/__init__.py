"""Per-area settings sections. `Section` is the base of every section; the runtime's own sections are in `kafka.py`, each stage keeps its section next to its code, and `app.settings.Settings` composes them all."""
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every settings section: an unknown key (a typo in config.yaml or an env var) is an error,
    not silently ignored."""

    model_config = ConfigDict(extra="forbid")
