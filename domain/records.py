"""Reading the pipeline's records: every record (raw AssetEvent, PreprocessedAsset, EnrichedAsset,
ValidatedAsset) embeds the one before it, so the asset event is always inside."""
from __future__ import annotations

from typing import Any


def asset_of(value: dict[str, Any]) -> dict[str, Any]:
    """The AssetEvent inside any pipeline record (raw, preprocessed, enriched, validated)."""
    if "asset_id" in value:
        return value
    if "asset" in value:
        return value["asset"]
    if "pre" in value:
        return value["pre"]["asset"]
    if "enriched" in value:
        return value["enriched"]["pre"]["asset"]
    raise KeyError("not a pipeline record")


def is_deleted(value: dict[str, Any]) -> bool:
    return asset_of(value)["event_type"] == "deleted"
