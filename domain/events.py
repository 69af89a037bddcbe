"""What an asset event must look like to enter the pipeline: the one set of entry rules, shared by the producer
SDK (`app.producer.build_event`, so also `assetstream publish` and `backfill`) and the DAM webhook
(`app/ops/ingest.py`, whose JSON schema takes its limits from here).

An event that breaks a rule is refused before anything is published, with a message naming the field, instead
of being accepted and dead-lettered later (an unsupported URL scheme), rejected by another entry point (an
asset id with spaces), or growing a record past the broker's message size limit (a 1 MiB notes field).

    from domain.events import EventError, check_event
    check_event(event)            # raises EventError(problems=[{"path": "$.source_uri", "message": ...}])
"""
from __future__ import annotations

import re
from typing import Any

from streams.records import to_ms

SUPPORTED_SCHEMES = ("http", "https", "s3", "file")
"""What preprocess can fetch (consumers/preprocess/fetch.py); anything else would always dead-letter as
`unsupported_scheme`."""
URI_PATTERN = r"^(?i:https?|s3|file)://"

MAX_ASSET_ID = 256
MAX_EVENT_ID = 128
MAX_URI = 4096
MAX_TENANT = 128
MAX_TEXT = 4096
"""Short free text: title, alt text, caption, uploader, licence, content type, product fields, keywords,
attribute values."""
MAX_LONG_TEXT = 20_000
"""Long free text: uploader notes and the human description."""
MAX_KEYWORDS = 200
MAX_ATTRIBUTES = 64

ID_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"
"""Asset ids and tenants: no whitespace and no control characters (they name documents, keys and files)."""
_ID_RE = re.compile(ID_PATTERN)
_URI_RE = re.compile(URI_PATTERN)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # text may hold tabs and newlines, nothing else

DEFAULT_TENANT = "default"
TENANT_SEPARATOR = "::"
"""Not allowed in asset ids or tenants, so a tenant-scoped id names one tenant's asset and nothing else."""

LONG_TEXT_FIELDS = ("uploader_notes",)
TEXT_FIELDS = ("content_type", "uploader", "declared_license")
HUMAN_LONG_TEXT = ("description",)
HUMAN_TEXT = ("title", "alt_text", "caption", "creator", "credit_line", "copyright")

REPROCESSED_AT = "reprocessed_at"
"""The attribute (epoch ms, as text) of a reprocess event that keeps the asset's upload time as its `event_time`
(`assetstream publish --event-type reprocess`, `backfill --only-stale`): when the reprocess was sent."""


def sent_ms(asset: dict[str, Any]) -> int | None:
    """When an asset event was sent (epoch ms): a reprocess that kept the upload time says it in its
    `reprocessed_at` attribute (honoured on a reprocess event only, and only when not before the upload: code review
    15b, a DAM's attribute of that name in seconds made 56-year record ages); any other event was sent at its
    `event_time`. What the pipeline's own clocks measure from (record age, the KPIs' time to publish), where
    `event_time` is the upload the review queue shows."""
    uploaded = to_ms(asset.get("event_time"))
    at = (asset.get("attributes") or {}).get(REPROCESSED_AT) if asset.get("event_type") == "reprocess" else None
    if at is not None:  # only a reprocess's, and only after the upload (a DAM's own attribute of that name is not)
        try:
            sent = int(at)
        except ValueError:
            sent = None
        if sent is not None and (uploaded is None or sent >= uploaded):
            return sent
    return uploaded


class EventError(ValueError):
    """An event the pipeline cannot take; `problems` lists [{"path": "$.field", "message": ...}]."""

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p['path']}: {p['message']}" for p in problems))


def _text(problems: list[dict[str, str]], path: str, value: Any, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        problems.append({"path": path, "message": f"must be a string, not {type(value).__name__}"})
    elif len(value) > limit:
        problems.append({"path": path, "message": f"is {len(value):,} characters long; at most {limit:,} are "
                                                  "accepted (shorten it, or keep long documents in the DAM)"})
    elif _CONTROL_RE.search(value):
        problems.append({"path": path, "message": "contains control characters"})


def identifier_problem(value: Any, limit: int, *, scoped: bool = False) -> str | None:
    """What is wrong with an asset id, a tenant name or another identifier, or None: required, at most `limit`
    characters, no spaces or control characters, and (`scoped`: an asset id or a tenant) no TENANT_SEPARATOR."""
    if not isinstance(value, str) or not value:
        return "is required (a non-empty string)"
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit}"
    if not _ID_RE.match(value):
        return f"{value[:80]!r} contains spaces or control characters"
    if scoped and TENANT_SEPARATOR in value:
        return (f"{value[:80]!r} contains {TENANT_SEPARATOR!r}, which separates the tenant from the asset id in keys "
                "and document ids")
    return None


def _identifier(problems: list[dict[str, str]], path: str, value: Any, limit: int) -> None:
    problem = identifier_problem(value, limit, scoped=path in ("$.asset_id", "$.tenant"))
    if problem is not None:
        problems.append({"path": path, "message": problem})


def scoped_id(asset_id: str, tenant: str | None) -> str:
    """The id of one tenant's asset wherever assets of every tenant meet: the Kafka key of each of its records
    (raw, preprocessed, enriched, validated, feedback, dlq), the index document id, the writeback state. Two
    tenants may use the same asset id without touching each other's records: `acme::a1` and `globex::a1`. The
    default tenant's ids stay as they are (`a1`), so documents indexed before tenants existed keep their ids.
    The asset's own id (what a DAM knows it by) stays in the record's `asset_id` and the document's."""
    if not tenant or tenant == DEFAULT_TENANT:
        return asset_id
    return f"{tenant}{TENANT_SEPARATOR}{asset_id}"


def uri_problem(uri: str) -> str | None:
    """Why the pipeline cannot fetch this source URI, or None."""
    if len(uri) > MAX_URI:
        return f"is {len(uri):,} characters long; at most {MAX_URI}"
    if not _URI_RE.match(uri):
        scheme = uri.split("://", 1)[0] if "://" in uri else ""
        what = f"the {scheme}:// scheme is not supported" if scheme else "is not a URL"
        return (f"{what} ({uri[:80]!r}); preprocess fetches "
                + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES))
    if _CONTROL_RE.search(uri) or any(c.isspace() for c in uri):
        return "contains spaces or control characters (percent-encode them)"
    return None


def event_problems(event: dict[str, Any]) -> list[dict[str, str]]:
    """Every rule an AssetEvent dict (as `build_event` makes it) breaks; empty when it may be published."""
    problems: list[dict[str, str]] = []
    _identifier(problems, "$.asset_id", event.get("asset_id"), MAX_ASSET_ID)
    if event.get("event_id") is not None:
        _identifier(problems, "$.event_id", event.get("event_id"), MAX_EVENT_ID)
    _identifier(problems, "$.tenant", event.get("tenant"), MAX_TENANT)
    uri = event.get("source_uri")
    if uri is not None:
        why = uri_problem(uri) if isinstance(uri, str) else "must be a string"
        if why:
            problems.append({"path": "$.source_uri", "message": why})
    for name in LONG_TEXT_FIELDS:
        _text(problems, f"$.{name}", event.get(name), MAX_LONG_TEXT)
    for name in TEXT_FIELDS:
        _text(problems, f"$.{name}", event.get(name), MAX_TEXT)
    for name, value in (event.get("product_context") or {}).items():
        _text(problems, f"$.product_context.{name}", value, MAX_TEXT)
    human = event.get("human_fields") or {}
    for name in HUMAN_LONG_TEXT:
        _text(problems, f"$.human_fields.{name}", human.get(name), MAX_LONG_TEXT)
    for name in HUMAN_TEXT:
        _text(problems, f"$.human_fields.{name}", human.get(name), MAX_TEXT)
    keywords = human.get("keywords") or []
    if len(keywords) > MAX_KEYWORDS:
        problems.append({"path": "$.human_fields.keywords", "message": f"{len(keywords)} keywords; at most "
                                                                      f"{MAX_KEYWORDS}"})
    for i, kw in enumerate(keywords[:MAX_KEYWORDS]):
        _text(problems, f"$.human_fields.keywords[{i}]", kw, MAX_TEXT)
    attributes = event.get("attributes") or {}
    if len(attributes) > MAX_ATTRIBUTES:
        problems.append({"path": "$.attributes", "message": f"{len(attributes)} attributes; at most "
                                                            f"{MAX_ATTRIBUTES}"})
    for key, value in list(attributes.items())[:MAX_ATTRIBUTES]:
        _text(problems, f"$.attributes.{key}", value, MAX_TEXT)
        if len(key) > MAX_TEXT:
            problems.append({"path": "$.attributes", "message": f"an attribute name is {len(key):,} characters "
                                                                f"long; at most {MAX_TEXT:,}"})
    return problems


def check_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event, if it may enter the pipeline; else EventError naming every problem."""
    problems = event_problems(event)
    if problems:
        raise EventError(problems)
    return event


def _cut(notes: list[str], path: str, value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        notes.append(f"{path} cut from {len(value):,} to {limit:,} characters")
        return value[:limit]
    return value


def capped_event(event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The event with every free-text field cut to the entry limits above (what a stage carries forward from
    an event that did not come through the SDK or the webhook), and what was cut. The same dict, untouched,
    when nothing is over a limit; otherwise a copy (the input is never changed)."""
    notes: list[str] = []
    out = dict(event)
    for name in (*LONG_TEXT_FIELDS, *TEXT_FIELDS):
        if name in out:
            out[name] = _cut(notes, name, out[name], MAX_LONG_TEXT if name in LONG_TEXT_FIELDS else MAX_TEXT)
    if out.get("product_context"):
        out["product_context"] = {k: _cut(notes, f"product_context.{k}", v, MAX_TEXT)
                                  for k, v in out["product_context"].items()}
    if out.get("human_fields"):
        human = dict(out["human_fields"])
        for name in (*HUMAN_LONG_TEXT, *HUMAN_TEXT):
            if name in human:
                limit = MAX_LONG_TEXT if name in HUMAN_LONG_TEXT else MAX_TEXT
                human[name] = _cut(notes, f"human_fields.{name}", human[name], limit)
        keywords = human.get("keywords") or []
        if len(keywords) > MAX_KEYWORDS:
            notes.append(f"human_fields.keywords cut from {len(keywords)} to {MAX_KEYWORDS}")
        if keywords:
            human["keywords"] = [_cut(notes, "human_fields.keywords[]", kw, MAX_TEXT) for kw in keywords[:MAX_KEYWORDS]]
        out["human_fields"] = human
    attributes = out.get("attributes") or {}
    if len(attributes) > MAX_ATTRIBUTES:
        notes.append(f"attributes cut from {len(attributes)} to {MAX_ATTRIBUTES}")
    if attributes:
        out["attributes"] = {k[:MAX_TEXT]: _cut(notes, f"attributes.{k[:80]}", v, MAX_TEXT)
                             for k, v in list(attributes.items())[:MAX_ATTRIBUTES]}
    return (out, notes) if notes else (event, [])
