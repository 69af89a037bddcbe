"""Each worker exports how many partitions of its input topics it owns and how many the topics have, so a
partition nobody owns (no lag reported for it) shows as owned < partitions (AssetstreamPartitionsUnowned)."""
from __future__ import annotations

import re
import time

from prometheus_client import generate_latest

from streams.runner import StageRunner
from tests.kafka_support import RunnerThread, make_settings, provision
from tests.stages import EchoStage


def _pair(stage: str, topic: str) -> tuple[float | None, float | None]:
    text = generate_latest().decode()  # what /metrics serves

    def value(name: str) -> float | None:
        m = re.search(rf'^{name}\{{stage="{stage}",topic="{re.escape(topic)}"\}} (\S+)$', text, flags=re.M)
        return float(m.group(1)) if m else None
    return value("assetstream_partitions_assigned"), value("assetstream_topic_partitions")


def _wait(check, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return result


def test_owned_and_total_partitions_follow_the_assignment(broker, unique):
    s = make_settings(broker, f"owned{unique}")  # 3 partitions per topic; retry_mode auto: the retry topic too
    provision(s)
    raw, retry = s.topics.name("raw"), s.topics.retry_name("raw")
    group = f"owned{unique}.echo"
    a = StageRunner(type("EchoA", (EchoStage,), {"name": f"a{unique}"})(s), s, group_id=group)
    b = StageRunner(type("EchoB", (EchoStage,), {"name": f"b{unique}"})(s), s, group_id=group)
    with RunnerThread(a):
        # alone in its group: every partition of both input topics
        assert _wait(lambda: _pair(f"a{unique}", raw) == (3, 3) and _pair(f"a{unique}", retry) == (3, 3)), \
            (_pair(f"a{unique}", raw), _pair(f"a{unique}", retry))
        with RunnerThread(b):
            # a second member: each topic's partitions are shared (range: 2 + 1 of each), each owned by exactly
            # one member, none by nobody, and both members own some of the live input
            def shared():
                pairs = [_pair(f"{w}{unique}", t) for w in "ab" for t in (raw, retry)]
                if any(owned is None or total != 3 for owned, total in pairs):
                    return False
                a_raw, a_retry, b_raw, b_retry = (owned for owned, _ in pairs)
                return a_raw + b_raw == 3 and a_retry + b_retry == 3 and a_raw > 0 and b_raw > 0
            assert _wait(shared, 40), [_pair(f"{w}{unique}", t) for w in "ab" for t in (raw, retry)]
