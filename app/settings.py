"""The one typed settings object a deployment configures: the runtime's sections (`streams.settings`) composed
with each consumer group's own section (next to its stage) and the application's (KPI app, ops tools, review app).

    ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092
    ASSETSTREAM_ENRICH__PROVIDER=claude
"""
from __future__ import annotations

from pydantic import AliasChoices, Field

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

    @property
    def validate_settings(self) -> ValidateSettings:
        return self.validate_
