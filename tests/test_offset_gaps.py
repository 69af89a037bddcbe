"""Issue 22 item 1: a consumer group notices when the broker returns, for a partition it reads, an offset past
the next one expected: counted in assetstream_offset_gaps_total{stage,topic,partition}, logged once with the
range. The jump is a real one from the real broker: a transaction aborted in the middle of the input topic
(under read_committed its records and its abort marker take offsets no consumer is given). Outside
transactional inputs such a jump is what a broker that lost acknowledged writes looks like (issue 22: tansu on
SIGTERM); where upstream writes transactions a jump is normal, so the detector is off there (the setting)."""
from __future__ import annotations

import logging
import re
import time

from confluent_kafka import Producer
from prometheus_client import REGISTRY

from app.producer import AssetPublisher, build_event
from streams.runner import StageRunner
from streams.tracker import PartitionTracker
from tests.kafka_support import RunnerThread, make_settings, provision, read_topic
from tests.stages import EchoStage

KEYS = [f"asset-{i}" for i in range(6)]


def publish(s, version: int) -> None:
    with AssetPublisher(s) as pub:
        pub.publish_events([build_event(k, f"file:///x/{k}.jpg", version=version) for k in KEYS])


def abort_a_transaction(s, partitions: int) -> None:
    """Records in every partition of raw, then an abort: offsets that read_committed consumers skip."""
    p = Producer({**s.kafka.client_config(), "transactional.id": f"gap-maker-{time.monotonic_ns()}"})
    p.init_transactions(30)
    p.begin_transaction()
    for part in range(partitions):
        p.produce(s.topics.name("raw"), key=b"lost", value=b"never returned", partition=part)
    p.flush(30)
    p.abort_transaction(30)


def gaps(stage: str, topic: str) -> dict[int, float]:
    out = {}
    for part in range(3):
        v = REGISTRY.get_sample_value("assetstream_offset_gaps_total",
                                      {"stage": stage, "topic": topic, "partition": str(part)})
        if v:
            out[part] = v
    return out


def run_over_a_gap(broker, unique, caplog, **runner):
    s = make_settings(broker, f"gap{unique}", runner=runner)
    provision(s)
    publish(s, 1)
    abort_a_transaction(s, s.topics.partitions)
    publish(s, 2)
    stage = type("GapEcho", (EchoStage,), {"name": f"gap{unique}"})(s)  # own metric labels
    with caplog.at_level(logging.ERROR, logger="assetstream.runner"), RunnerThread(StageRunner(stage, s)):
        assert len(read_topic(s, "preprocessed", 2 * len(KEYS))) == 2 * len(KEYS)  # nothing of ours was lost
    return s, stage.name


def test_a_jump_in_offsets_is_counted_and_logged_once_with_its_range(broker, unique, caplog):
    s, stage = run_over_a_gap(broker, unique, caplog, detect_offset_gaps=True)
    raw = s.topics.name("raw")
    counted = gaps(stage, raw)
    used = set(counted)
    assert used and all(v == 1.0 for v in counted.values()), counted  # each partition with records both sides
    lines = [r.getMessage() for r in caplog.records if "offset gap" in r.getMessage()]
    assert len(lines) == len(used), lines  # once per gap
    for line in lines:  # the aborted record (tansu gives the abort marker no offset of its own)
        m = re.search(rf"offset gap in {re.escape(raw)}/(\d): offsets (\d+)-(\d+) \((\d+) record", line)
        assert m and int(m[1]) in used and int(m[4]) == int(m[3]) - int(m[2]) + 1 >= 1, line


def test_transactional_inputs_do_not_count_their_markers_as_gaps(broker, unique, caplog):
    s, stage = run_over_a_gap(broker, unique, caplog, transactional=True)  # detect_offset_gaps: auto (off)
    assert gaps(stage, s.topics.name("raw")) == {}
    assert not [r for r in caplog.records if "offset gap" in r.getMessage()]


def test_tracker_gap_baseline_is_the_first_record_and_resets_when_dropped():
    t = PartitionTracker()
    tp = ("raw", 0)
    assert t.gap(tp, 25) is None  # first record after an assignment: the baseline
    assert t.gap(tp, 26) is None
    assert t.gap(tp, 28) == 27  # 27 was skipped
    t.drop(tp)  # revoked, lost or rewound (a seek back): start again
    assert t.gap(tp, 3) is None and t.gap(tp, 4) is None
