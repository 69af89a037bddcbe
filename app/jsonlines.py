"""Reading JSON Lines input files (backfill manifests, editor-decision files) one line at a time, so a bad
line becomes a problem to report and never hides the good lines around it."""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator


def json_objects(lines: Iterable[str], name: str) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
    """(where, object, problem) for every non-blank line; `where` is 'name:line', exactly one of object and
    problem is set ('not JSON (...)', 'not a JSON object')."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{n}"
        try:
            doc = json.loads(line)
        except ValueError as exc:
            yield where, None, f"not JSON ({exc})"
            continue
        if isinstance(doc, dict):
            yield where, doc, None
        else:
            yield where, None, "not a JSON object"
