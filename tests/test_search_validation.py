"""The degraded parts `search --degraded` accepts (domain/store/degraded.PARTS) are every part a consumer marks."""
from __future__ import annotations

import pytest

from consumers.enrich.settings import TASKS
from consumers.preprocess.ocr import DEGRADING
from consumers.preprocess.stage import SETTLED, SIGNAL_FAILED
from domain.store.api import BadRequest, SearchRequest
from domain.store.degraded import PARTS, VECTOR_PART


def test_every_part_a_consumer_marks_degraded_can_be_searched_for():
    marked = {*SIGNAL_FAILED, *SETTLED, *TASKS, "verify", VECTOR_PART, "event_text"} | ({"ocr"} if DEGRADING else set())
    assert marked <= set(PARTS)
    for part in (*PARTS, "any"):
        SearchRequest(degraded=part).check()
    with pytest.raises(BadRequest, match="degraded must be any or one of ocr"):
        SearchRequest(degraded="bogus").check()
