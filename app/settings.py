"""The one typed settings object a deployment configures: the runtime's sections (`streams.settings`) composed
with each consumer group's own section (next to its stage) and the application's (KPI app, ops tools, review app).

    ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092
    ASSETSTREAM_ENRICH__PROVIDER=claude
"""
from __future__ import annotations

import difflib
from typing import Any

from pydantic import AliasChoices, BaseModel, Field

from app.kpis.settings import KpiSettings
from app.ops.settings import OpsSettings
from app.review.settings import ReviewSettings
from consumers.enrich.settings import EnrichSettings
from consumers.preprocess.settings import PreprocessSettings
from consumers.validate.settings import ValidateSettings
from consumers.writeback.settings import WritebackSettings
from domain.store.settings import IndexSettings
from domain.vision.settings import VisionSettings
from streams.settings import CONFIG_ENV, RuntimeSettings

__all__ = ["CONFIG_ENV", "Settings"]


class Settings(RuntimeSettings):
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    enrich: EnrichSettings = Field(default_factory=EnrichSettings)
    validate_: ValidateSettings = Field(default_factory=ValidateSettings,
                                        validation_alias=AliasChoices("validate", "assetstream_validate"),
                                        serialization_alias="validate")
    index: IndexSettings = Field(default_factory=IndexSettings)
    writeback: WritebackSettings = Field(default_factory=WritebackSettings)
    kpis: KpiSettings = Field(default_factory=KpiSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    vision: VisionSettings = Field(default_factory=VisionSettings)

    @classmethod
    def near_keys(cls, loc: tuple[Any, ...]) -> list[str]:
        """The keys of the section at loc[:-1] spelt most like loc[-1] (an unknown key a configuration named):
        `kafka.bootstrap_server` -> ['bootstrap_servers']. Empty when nothing is close or the path is not a
        section of these settings."""
        model: Any = cls
        for part in loc[:-1]:
            if isinstance(part, int):
                continue  # an item of a list of sections (writeback.targets.0): the list's model
            field = next((f for name, f in model.model_fields.items() if part in _names(name, f)), None)
            model = _section_model(field.annotation) if field is not None else None
            if model is None:
                return []
        keys = [n for name, f in model.model_fields.items() for n in _names(name, f)]
        return difflib.get_close_matches(str(loc[-1]), keys, n=2, cutoff=0.6)

    @property
    def validate_settings(self) -> ValidateSettings:
        return self.validate_


def _names(name: str, field: Any) -> list[str]:
    """The keys a configuration may give a field under: its alias(es) where it has them, else its name."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [a for a in alias.choices if isinstance(a, str) and not a.startswith("assetstream_")]
    return [alias or field.alias or name] if isinstance(alias, str | None) else [name]


def _section_model(annotation: Any) -> Any:
    """The settings model a field's type names: itself, or the model inside list[...] / Optional[...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_model(arg)
        if found is not None:
            return found
    return None
