"""The one typed settings object a deployment configures: the runtime's sections (`streams.settings`) composed
with each consumer group's own section (next to its stage) and the application's (KPI app, ops tools, review app).

    ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092
    ASSETSTREAM_ENRICH__PROVIDER=claude
"""
from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from typing import Any, Mapping, get_args, get_origin

import yaml
from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

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

__all__ = ["CONFIG_ENV", "OTHER_ENV", "Settings"]

OTHER_ENV = frozenset({
    CONFIG_ENV,                        # the settings file (streams/settings.py)
    "ASSETSTREAM_PROMPTS_DIR",         # domain/__init__.py: where the prompt templates are
    "ASSETSTREAM_AVRO_DIR",            # streams/__init__.py: where the Avro contracts are
    "ASSETSTREAM_CPU_SLOTS",           # streams/cpu.py: how many CPU-heavy parts run at once
    "ASSETSTREAM_LOCAL_CLASSIFIER",    # domain/vision/classifier.py: lite0 | lite2
    "ASSETSTREAM_REVIEW_SCREENSHOT",   # tests/test_review_web.py: where to copy the review app's screenshot
    "ASSETSTREAM_REVIEW_QUEUE_SCREENSHOT",  # tests/test_review_web.py: the queue at 320 px
})
"""The ASSETSTREAM_* variables that are not settings: every other ASSETSTREAM_<SECTION>[__<KEY>] must name a
section (or top-level key) of the settings, or the settings are refused like a misspelt key."""


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
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        sources = super().settings_customise_sources(settings_cls, init_settings, env_settings, dotenv_settings,
                                                     file_secret_settings)
        return (UnknownEnvSections(settings_cls), *sources)

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


def env_not_json(environ: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with each ASSETSTREAM_<SECTION>[__<KEY>...] variable whose setting is a list, a mapping or a
    section (pydantic-settings reads those as JSON) but whose value is not JSON: the variable, the setting, and an
    example of the JSON it takes built from the setting's type. pydantic-settings names only the section ("error
    parsing value for field "review" from source "EnvSettingsSource""). Never echoes a value (it may be a secret:
    review.users, kafka.extra)."""
    lines = []
    for var, value in sorted((os.environ if environ is None else environ).items()):
        upper = var.upper()
        if not upper.startswith("ASSETSTREAM_") or upper in OTHER_ENV:
            continue
        path = upper.removeprefix("ASSETSTREAM_").lower().split("__")
        annotation = _setting_type(path)
        shape = _json_example(annotation) if annotation is not None else None
        if shape is None:
            continue
        try:
            json.loads(value)
        except ValueError:
            lines.append(f"{upper} ({'.'.join(path)}): must be JSON ({shape[0]}), e.g. {upper}='{shape[1]}'; "
                         "the value given is not JSON (not shown: it may be a secret)")
    return lines


def setting_origin(loc: tuple[Any, ...], environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(where, syntax) of the setting at a validation error's loc: the environment variable that set it (its value
    is JSON) or the settings file (ASSETSTREAM_CONFIG: yaml, toml or json by its suffix), as the settings load
    them (a variable over the file); None when neither names it (a default, or a command's option)."""
    environ = os.environ if environ is None else environ
    names = {k.upper() for k in environ}
    keys = [str(p) for p in loc[:next((i for i, p in enumerate(loc) if isinstance(p, int)), len(loc))]]
    for n in range(len(keys), 0, -1):
        var = "ASSETSTREAM_" + "__".join(k.upper() for k in keys[:n])
        if var in names:
            return var, "json"
    path = next((v for k, v in environ.items() if k.upper() == CONFIG_ENV), None)
    syntax = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}.get(
        os.path.splitext(path or "")[1].lower())
    if not (path and syntax and loc):
        return None
    try:
        with open(path, "rb") as f:
            node = (yaml.safe_load(f) if syntax == "yaml" else tomllib.load(f) if syntax == "toml" else json.load(f))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return (path, syntax) if isinstance(node, dict) and loc[0] in node else None


def _setting_type(path: list[str]) -> Any:
    """The type of the setting an environment variable's lower-cased key path names, or None."""
    model: Any = Settings
    annotation = None
    for part in path:
        if model is None:
            return None
        field = next((f for name, f in model.model_fields.items()
                      if part in (n.lower() for n in (name, *_names(name, f)))), None)
        if field is None:
            return None
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return annotation


def _json_example(annotation: Any) -> tuple[str, str] | None:
    """(what JSON a setting of this type takes, an example) when an environment variable must give it as JSON:
    list -> '["a", "b"]', dict -> '{"k": "v"}', a section -> its first key with its default (a list of sections:
    a list of those). None for a plain value, and for an optional or union type (pydantic-settings then hands a
    non-JSON value on, and validation names the field)."""
    origin = get_origin(annotation) or annotation
    if origin in (list, tuple, set, frozenset):
        item = (get_args(annotation) or (str,))[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return "a list of objects", f"[{_section_example(item)}]"
        return "a list", ("[1, 2]" if item in (int, float) else '["a", "b"]')
    if origin is dict:
        return "an object", '{"k": "v"}'
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "an object of its keys", _section_example(annotation)
    return None


def _section_example(model: type[BaseModel]) -> str:
    name, field = next(iter(model.model_fields.items()))
    default = field.default if isinstance(field.default, str | int | float | bool) else "..."
    return json.dumps({_names(name, field)[0]: default})


# Kubernetes puts every Service's address into every pod of its namespace (enableServiceLinks, on by default):
# services named assetstream-ingest, assetstream-kpis, ... give ASSETSTREAM_INGEST_SERVICE_HOST, ASSETSTREAM_KPIS_PORT,
# ASSETSTREAM_INGEST_PORT_8080_TCP_ADDR, ... (and a release named assetstream, ASSETSTREAM_PORT). They are not settings.
SERVICE_LINK = re.compile(r"ASSETSTREAM_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
                          r"|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)")


class UnknownEnvSections(PydanticBaseSettingsSource):
    """ASSETSTREAM_* environment variables whose section the settings do not have (`ASSETSTREAM_ENRICHH__PROVIDER`),
    handed on as that unknown key so they are refused like a misspelt key of the settings file
    (`enrichh: Extra inputs are not permitted (did you mean 'enrich'?)`) instead of being ignored. The variables'
    values are never read (they may be secrets)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        known = {n.lower() for name, f in self.settings_cls.model_fields.items() for n in (name, *_names(name, f))}
        unknown: dict[str, Any] = {}
        for var in os.environ:
            upper = var.upper()
            if not upper.startswith("ASSETSTREAM_") or upper in OTHER_ENV:
                continue
            if "__" not in upper and SERVICE_LINK.fullmatch(upper):  # a Kubernetes service link, not a setting
                continue
            section = upper.removeprefix("ASSETSTREAM_").split("__", 1)[0].lower()
            if section and section not in known:
                unknown[section] = "(not read)"
        return unknown
