"""The feedback path: a DAM or review tool reports what people did with the suggestions for an asset as an
EditorDecision on `feedback` (key = asset id, acks=all, waits for delivery)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from confluent_kafka import KafkaException, Producer

from app.jsonlines import json_objects
from domain import review
from domain.events import scoped_id
from streams import avro
from streams.avro import Serde
from streams.topics import check_broker_reachable
from streams.clientlog import client_logging
from app.settings import Settings

ACTIONS = ("accepted", "edited", "rejected")


def _serde(settings: Settings) -> Serde:
    return Serde.for_settings(settings)


def normalize_decision(decision: dict[str, Any]) -> dict[str, Any]:
    """Fill decision_id (uuid4) and decided_at (now) when missing; check it against the EditorDecision schema."""
    out = dict(decision)
    out.setdefault("decision_id", uuid.uuid4().hex)
    if out.get("decided_at") is None:
        out["decided_at"] = int(datetime.now(timezone.utc).timestamp() * 1000)
    elif isinstance(out["decided_at"], str):
        out["decided_at"] = int(datetime.fromisoformat(out["decided_at"].replace("Z", "+00:00")).timestamp() * 1000)
    out["fields"] = [{"field": f["field"], "action": f["action"], "value": f.get("value")} for f in out["fields"]]
    for f in out["fields"]:
        if f["action"] not in ACTIONS:
            raise ValueError(f"field {f['field']}: action must be one of {', '.join(ACTIONS)}, not {f['action']!r}")
        if f["field"] not in review.FIELDS:
            raise ValueError(f"field {f['field']!r} cannot be reviewed (one of {', '.join(review.FIELDS)})")
    out.setdefault("status", None)
    out.setdefault("tenant", None)
    if out["status"] not in (None, *review.VERDICTS):
        raise ValueError(f"status must be one of {', '.join(review.VERDICTS)}, not {out['status']!r}")
    avro.validate("EditorDecision", out)
    return out


def alt_text_length(decision: dict[str, Any], max_chars: int, hard_max_chars: int) -> tuple[list[str], list[str]]:
    """(warnings, refusals) about the alt text a person wrote in a decision; the text itself is never changed.

    Over `max_chars` (validate.alt_text_max_chars, 125: WCAG practice is ~125-150) is a warning: screen readers
    read alt text in one go, but a complex image may need more. Over `hard_max_chars`
    (validate.alt_text_hard_max_chars, 250: no model or file alt text is published longer) the decision is refused
    unless the person confirms it as written (`--force`, the review form's "send as written"); confirmed, it is
    published as written, with the asset's verdict (an approval publishes it as approved)."""
    warnings: list[str] = []
    refusals: list[str] = []
    for f in decision.get("fields") or []:
        if f.get("field") != "alt_text" or f.get("action") != "edited" or not f.get("value"):
            continue
        n = len(" ".join(str(f["value"]).split()))
        if n > hard_max_chars:
            refusals.append(f"{decision.get('asset_id')}: alt_text is {n} characters, more than the "
                            f"{hard_max_chars} any model or file alt text is published with "
                            "(validate.alt_text_hard_max_chars); shorten it to its leading sentence(s): it is never "
                            "cut for you")
        elif n > max_chars:
            warnings.append(f"{decision.get('asset_id')}: alt_text is {n} characters, over the {max_chars} screen "
                            "readers handle well (validate.alt_text_max_chars; WCAG practice ~125-150): sent as "
                            "written")
    return warnings, refusals


def alt_text_hints(decision: dict[str, Any]) -> list[str]:
    """Warnings from validate's alt-text rules (consumers/validate/alttext.py `judge`) about an alt text a person
    wrote in a decision: a file name ("IMG_4032.JPG"), a leading "image of". The text is sent as written: a
    person's decision is final (the length has its own warning, `alt_text_length`)."""
    from consumers.validate.alttext import judge

    return [f"{decision.get('asset_id')}: {w}: sent as written"
            for f in decision.get("fields") or []
            if f.get("field") == "alt_text" and f.get("action") == "edited" and f.get("value")
            for w in judge(str(f["value"]), None)]


def alt_text_missing(decision: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """Warnings about a decision that leaves a non-decorative image (`doc`: the asset as indexed) without alt text
    (it rejects the alt text without writing another, or approves an asset that has none): the asset then stays in
    review (domain/review.py apply_review). A rejection says the text is wrong, not that the image is decorative;
    an empty alt text says that."""
    if doc.get("decorative") or decision.get("status") == "rejected":
        return []
    alt = next((f for f in decision.get("fields") or [] if f.get("field") == "alt_text"), None)
    if alt and alt.get("action") == "edited" and alt.get("value") is not None:
        return []  # a text written, or the empty one that marks the image decorative
    if alt and alt.get("action") == "rejected":
        what = "alt_text rejected and none written"
    elif decision.get("status") == "approved" and not str(doc.get("alt_text") or "").strip():
        what = "no alt_text"
    else:
        return []
    return [f"{decision.get('asset_id')}: {what}, and the image is not decorative: it stays in review until you "
            "write one, or mark the image decorative"]


def parse_field_spec(spec: str) -> dict[str, Any]:
    """'alt_text=accepted', 'title=edited:New title', 'tags=rejected' -> FieldDecision."""
    if "=" not in spec:
        raise ValueError(f"--field {spec!r}: expected FIELD=ACTION[:VALUE]")
    field, rest = spec.split("=", 1)
    action, _, value = rest.partition(":")
    if action not in ACTIONS:
        raise ValueError(f"--field {spec!r}: action must be one of {', '.join(ACTIONS)}")
    return {"field": field.strip(), "action": action, "value": value if value else None}


def read_decisions_file(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(decisions, problems) of a JSON Lines file, one EditorDecision per line (decision_id / decided_at
    optional; decided_at may be ISO 8601). Each line is checked on its own: a bad line is a problem
    ("file:line: why") and never hides the valid decisions around it."""
    decisions: list[dict[str, Any]] = []
    problems: list[str] = []
    for where, doc, problem in json_objects(Path(path).read_text().splitlines(), Path(path).name):
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        try:
            decisions.append(normalize_decision(doc))
        except KeyError as exc:
            problems.append(f"{where}: missing {exc}")
        except Exception as exc:  # noqa: BLE001 - ValueError, TypeError, fastavro's ValidationError
            problems.append(f"{where}: {exc}")
    return decisions, problems


def publish_decisions(settings: Settings, decisions: Iterable[dict[str, Any]], timeout_s: float = 30.0,
                      producer: Producer | None = None) -> list[dict[str, Any]]:
    """Publish EditorDecision records (key = asset id) and wait until the broker acknowledged every one.
    Returns the records as sent (with generated decision_id / decided_at)."""
    serde = _serde(settings)
    topic = settings.topics.name("feedback")
    one_shot = producer is None  # `assetstream feedback`: say soon when no broker can be reached
    if one_shot:
        check_broker_reachable(settings.kafka)
    producer = producer or Producer({**settings.kafka.client_config(), **client_logging("feedback"), "acks": "all",
                                     "enable.idempotence": True, "linger.ms": 5})
    if one_shot:  # something listens: it must answer within kafka.connect_timeout_s, not only by the flush's end
        producer.list_topics(topic, timeout=settings.kafka.connect_timeout_s)
    errors: list[str] = []
    sent: list[dict[str, Any]] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")

    for decision in decisions:
        record = normalize_decision(decision)
        producer.produce(topic, key=scoped_id(record["asset_id"], record.get("tenant")).encode(), value=serde.serialize("feedback", record),
                         on_delivery=on_delivery)
        producer.poll(0)
        sent.append(record)
    remaining = producer.flush(timeout_s)
    if remaining:
        raise TimeoutError(f"{remaining} editor decision(s) not acknowledged within {timeout_s}s")
    if errors:
        raise KafkaException(f"editor decisions not delivered: {'; '.join(errors)}")
    return sent


def publish_decision(settings: Settings, decision: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    """Publish one EditorDecision {asset_id, fields: [{field, action, value}], editor[, decision_id, decided_at]}."""
    return publish_decisions(settings, [decision], timeout_s)[0]
