"""The runtime part of the one typed settings object: environment variables (ASSETSTREAM_..., nested with __)
over an optional config file (ASSETSTREAM_CONFIG=path to .yaml/.toml/.json) over defaults.

`RuntimeSettings` holds what the streaming runtime reads (Kafka, registry, topics, groups, runner). The
application composes it with every stage's own section into `app.settings.Settings`, the object a deployment
configures; the runtime only ever reads its own sections of it.

    ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092
    ASSETSTREAM_ENRICH__PROVIDER=claude
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (BaseSettings, JsonConfigSettingsSource, PydanticBaseSettingsSource,
                               SettingsConfigDict, TomlConfigSettingsSource, YamlConfigSettingsSource)

from streams.config.deadletters import DeadLetterSettings
from streams.config.kafka import (GroupSettings, KafkaSettings, RegistrySettings, RunnerSettings,
                                  TopicSettings)

CONFIG_ENV = "ASSETSTREAM_CONFIG"


class SettingsFix(ValueError):
    """A settings problem whose message shows its fix as settings to write: `parts` are text and {key: value}
    mappings, each mapping shown in the syntax of the place the setting came from (`render`: yaml, toml or json;
    str() is YAML's flow style), so it can be pasted there as it is."""

    def __init__(self, *parts: str | dict[str, Any]):
        self.parts = parts
        super().__init__(self.render("yaml"))

    def render(self, syntax: str) -> str:
        return "".join(p if isinstance(p, str) else settings_text(p, syntax) for p in self.parts)


def settings_text(values: dict[str, Any], syntax: str) -> str:
    """`{"mode": "write"}` as a file of that syntax writes it: `mode: write` (yaml), `mode = "write"` (toml),
    `"mode": "write"` (json)."""
    sep = {"yaml": ": ", "toml": " = ", "json": ": "}[syntax]
    return ", ".join(f"{_settings_key(k, syntax)}{sep}{_settings_value(v, syntax)}" for k, v in values.items())


def _settings_key(key: str, syntax: str) -> str:
    bare = re.fullmatch(r"[A-Za-z0-9_-]+" if syntax == "toml" else r"[A-Za-z_][A-Za-z0-9_.-]*", key)
    return key if bare and syntax != "json" else json.dumps(key)


def _settings_value(value: Any, syntax: str) -> str:
    if isinstance(value, dict):
        return "{" + settings_text(value, syntax) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_settings_value(v, syntax) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value) if syntax != "toml" or value is not None else '""'
    if isinstance(value, str) and syntax == "yaml" and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*", value) \
            and value not in ("true", "false", "null", "yes", "no", "on", "off"):
        return value
    return json.dumps(value, ensure_ascii=False)


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSETSTREAM_", env_nested_delimiter="__", extra="forbid",
                                      populate_by_name=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    groups: GroupSettings = Field(default_factory=GroupSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    dead_letters: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    log_level: str = Field("INFO", description="level of the root logger: DEBUG, INFO, WARNING, ERROR or CRITICAL")
    log_levels: dict[str, str] = Field(
        default_factory=dict, description="per-logger levels over log_level, e.g. {\"elastic_transport\": \"INFO\"} "
        "(it starts at WARNING unless log_level is DEBUG: one line per store request otherwise)")

    @field_validator("log_levels")
    @classmethod
    def _known_levels(cls, levels: dict[str, str]) -> dict[str, str]:
        bad = [f"{name}={level}" for name, level in levels.items()
               if not isinstance(logging.getLevelName(level.upper()), int)]
        if bad:
            raise ValueError(f"unknown log level in {', '.join(bad)}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return {name: level.upper() for name, level in levels.items()}

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(CONFIG_ENV)
        if path:
            suffix = Path(path).suffix.lower()
            if not Path(path).is_file():
                raise FileNotFoundError(f"{CONFIG_ENV}={path}: no such config file")
            if suffix in (".yaml", ".yml"):
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
            elif suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            elif suffix == ".json":
                sources.append(JsonConfigSettingsSource(settings_cls, json_file=path))
            else:
                raise ValueError(f"{CONFIG_ENV}={path}: use a .yaml, .toml or .json file")
        sources.append(file_secret_settings)
        return tuple(sources)

    @model_validator(mode="after")
    def _pause_well_within_poll_interval(self):
        # at max_in_flight the poll loop stops calling consume() for up to runner.pause_after_s: that must stay
        # well inside max.poll.interval.ms, or the group would drop the worker and hand its partitions on
        if self.runner.pause_after_s * 1000 > self.kafka.max_poll_interval_ms / 2:
            raise ValueError(f"runner.pause_after_s ({self.runner.pause_after_s}) must be at most half of "
                             f"kafka.max_poll_interval_ms ({self.kafka.max_poll_interval_ms} ms)")
        return self

    def with_overrides(self, **sections: dict[str, Any]):
        """A copy with some section fields replaced: s.with_overrides(kafka={"bootstrap_servers": "x:1"})."""
        data = self.model_dump(by_alias=True)
        for section, values in sections.items():
            data.setdefault(section, {}).update(values)
        return type(self).model_validate(data)

    def redacted(self) -> dict[str, Any]:
        """For logs and `assetstream config`: SecretStr fields print as '**********', and a password inside a URL
        (`https://elastic:pw@es:9200`) as '***'."""
        return redact_urls(self.model_dump(mode="json", by_alias=True))


def redact_url(url: str) -> str:
    """A URL fit to print: a password in its userinfo (`https://elastic:pw@es:9200`) replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def redact_urls(value: object) -> object:
    """Every string in a JSON-like value that is a URL with a password, redacted (`redact_url`)."""
    if isinstance(value, dict):
        return {k: redact_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_urls(v) for v in value]
    return redact_url(value) if isinstance(value, str) and "://" in value and "@" in value else value
