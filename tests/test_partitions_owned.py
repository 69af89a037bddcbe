"""Each worker exports how many partitions of its input topics it owns and how many the topics have, so a
partition nobody owns (no lag reported for it) shows as owned < partitions (AssetstreamPartitionsUnowned)."""
from __future__ import annotations

import re
import time

import httpx
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


def test_a_worker_its_group_refuses_for_the_assignment_protocol_says_so_and_is_not_ready(broker, unique, caplog):
    """Upgrading from a release that used cooperative-sticky (trial 21): the old fleet stopped, tansu keeps the
    empty group's protocol and refuses a range member's JoinGroup for ever. The worker must not look like a
    healthy standby: one error naming the fix, and /readyz 503 with the reason."""
    old = make_settings(broker, f"proto{unique}", kafka={"assignment_strategy": "cooperative-sticky"})
    provision(old)
    group = f"proto{unique}.echo"
    before = StageRunner(type("Old", (EchoStage,), {"name": f"old{unique}"})(old), old, group_id=group)
    with RunnerThread(before):
        assert _wait(lambda: before.assigned, 30)
    new = make_settings(broker, f"proto{unique}", runner={"metrics_port": 0, "metrics_host": "127.0.0.1"})
    after = StageRunner(type("New", (EchoStage,), {"name": f"new{unique}"})(new), new, group_id=group)
    with caplog.at_level("ERROR", logger="assetstream.runner"), RunnerThread(after):
        refused = lambda: [r.getMessage() for r in caplog.records if "refuses this member" in r.getMessage()]  # noqa: E731
        assert _wait(refused, 30), "no error for the refused JoinGroup"
        ready = httpx.get(f"http://127.0.0.1:{after.metrics_port}/readyz")
        time.sleep(3.5)  # librdkafka retries the join: still one error line
        lines = refused()
    assert not after.assigned
    assert ready.status_code == 503, ready.text
    assert "kafka.assignment_strategy=cooperative-sticky" in ready.text and "Inconsistent group protocol" in ready.text
    assert len(lines) == 1, lines
    # the group may as well be a roundrobin one (also refused): the hint names no one protocol as the fix
    assert ("set kafka.assignment_strategy to the protocol the running group uses (kafka.assignment_strategy="
            "cooperative-sticky or kafka.assignment_strategy=roundrobin) for this rollout") in lines[0], lines[0]
    assert "'Upgrading and rolling back'" in lines[0]
