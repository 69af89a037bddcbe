"""JSON Schema validation of model output.

Two layers, both with `jsonschema` (Draft 2020-12):

1. `ENRICHMENT_SCHEMA`: the merged `Enrichment` record (Avro fields + the documented constraints, mirroring
   prompts/<task>/v1.schema.json). Always checked.
2. The prompt's own output schema, `prompts/<task>/<prompt_version>.schema.json`, for each task named in the
   record's provenance, against `enrichment.raw_outputs[task]` (the model's JSON text). Checked when the file
   exists (settings.validate.prompt_schemas).

Some violations are *fixable*: a deterministic rule repairs them afterwards (alt text longer than the limit is
cut at a sentence boundary). Those are returned separately and never reject a record on their own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from domain import PROMPTS_DIR

PROMPT_TASKS = ("tagging", "alt_text", "rights")


def _opt_str(max_len: int) -> dict[str, Any]:
    return {"type": ["string", "null"], "maxLength": max_len}


def enrichment_schema(alt_text_max_chars: int = 125) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "assetstream Enrichment (model suggestions before validation)",
        "type": "object",
        "properties": {
            "tags": {"type": "array", "maxItems": 100, "items": {
                "type": "object",
                "properties": {"tag": {"type": "string", "minLength": 1, "maxLength": 100},
                               "score": {"type": "number", "minimum": 0, "maximum": 1}},
                "required": ["tag", "score"]}},
            "alt_text": _opt_str(alt_text_max_chars),
            "decorative": {"type": "boolean"},
            "caption": _opt_str(400),
            "title": _opt_str(120),
            "summary": _opt_str(600),
            "visible_text": _opt_str(1000),
            "licensing": _opt_str(300),
            "must_display_credit": {"type": "boolean"},
            "credit_text": _opt_str(300),
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "raw_outputs": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["tags", "decorative", "confidence"],
    }


ENRICHMENT_SCHEMA = enrichment_schema()

FIXABLE = {("alt_text", "maxLength")}
"""(top-level field, failing keyword) pairs a deterministic rule repairs later."""


@dataclass(frozen=True)
class Violation:
    path: str
    """JSON path of the failing value, e.g. '$.tags[3].score' or '$.raw_outputs.tagging.tags[0]'."""
    message: str
    keyword: str
    fixable: bool = False


def _json_path(prefix: str, parts: Any) -> str:
    out = prefix
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


@lru_cache(maxsize=8)
def _validator(alt_text_max_chars: int) -> Draft202012Validator:
    return Draft202012Validator(enrichment_schema(alt_text_max_chars))


def check_enrichment(enrichment: dict[str, Any], alt_text_max_chars: int = 125) -> list[Violation]:
    out = []
    for err in _validator(alt_text_max_chars).iter_errors(enrichment):
        parts = list(err.absolute_path)
        top = parts[0] if parts else None
        out.append(Violation(_json_path("$", parts), err.message[:300], str(err.validator),
                             (top, str(err.validator)) in FIXABLE))
    return sorted(out, key=lambda v: v.path)


@lru_cache(maxsize=64)
def _prompt_validator(task: str, version: str, prompts_dir: str) -> Draft202012Validator | None:
    for name in (version, f"v{version}", version.split("+")[0]):
        path = Path(prompts_dir) / task / f"{name}.schema.json"
        if path.is_file():
            return Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))
    return None


def _loads_lenient(text: str) -> Any:
    """The model's JSON text; tolerates a ```json fence or prose around one JSON object (providers parse the
    same way), but nothing else."""
    try:
        return json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            raise
        return json.loads(text[start:end + 1])


def check_raw_outputs(enrichment: dict[str, Any], provenance: list[dict[str, Any]],
                      prompts_dir: Path = PROMPTS_DIR) -> tuple[list[Violation], list[str]]:
    """Validate raw_outputs[task] against the prompt schema of the version that produced it.
    Returns (violations, checked 'task@version' names)."""
    raw = enrichment.get("raw_outputs") or {}
    out: list[Violation] = []
    checked: list[str] = []
    seen: set[str] = set()
    for prov in provenance or []:
        task, version = prov.get("task"), str(prov.get("prompt_version") or "")
        if task not in PROMPT_TASKS or task in seen or task not in raw or not version:
            continue
        seen.add(task)
        validator = _prompt_validator(task, version, str(prompts_dir))
        if validator is None:
            continue
        checked.append(f"{task}@{version}")
        prefix = f"$.raw_outputs.{task}"
        try:
            data = _loads_lenient(raw[task])
        except (TypeError, ValueError) as exc:
            out.append(Violation(prefix, f"not valid JSON: {exc}"[:300], "json"))
            continue
        for err in validator.iter_errors(data):
            parts = list(err.absolute_path)
            fixable = task == "alt_text" and parts[:1] == ["alt_text"] and err.validator == "maxLength"
            out.append(Violation(_json_path(prefix, parts), err.message[:300], str(err.validator), fixable))
    return sorted(out, key=lambda v: v.path), checked
