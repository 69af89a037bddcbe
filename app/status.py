"""`assetstream status`: each stage's consumer group as the broker sees it — state, members and their assignment,
per partition the committed offset, the end offset and the lag, and the partitions nobody owns.

A partition nobody owns reports no lag in the workers' metrics (only an owner reports its partitions), so this is
where an operator sees records waiting on one (AssetstreamPartitionsUnowned, docs/monitoring.md).

End offsets are the high watermarks fetch responses report, read by a short-lived assign-only consumer (its own
group id, never joins a group, never commits), as streams/lag.py does: tansu answers ListOffsets(latest) with the
start of the last batch, short of the real end. Committed offsets come from OffsetFetch (`list_consumer_group_offsets`),
members from DescribeGroups. tansu (the embedded broker) answers DescribeGroups without the members of an active
group: the members are then shown as not listed and no partition is called unowned, except in an empty group.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from confluent_kafka import OFFSET_END, ConsumerGroupTopicPartitions, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.lag import probe_config
from streams.settings import RuntimeSettings
from streams.tracker import TP
from streams.work import uses_retry_topic

_QUIET = logging.getLogger("assetstream.status.client")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

IDLE_STATES = {"empty", "dead"}  # no member at all: every partition is owned by nobody


class BrokerUnreachable(RuntimeError):
    """The broker did not answer within the timeout."""


@dataclass
class Member:
    member_id: str
    client_id: str
    host: str
    instance_id: str | None
    assignment: list[dict[str, Any]] = field(default_factory=list)  # [{"topic", "partition"}]

    @property
    def label(self) -> str:
        who = f"{self.client_id}@{self.host}" if self.host else self.client_id or self.member_id
        return f"{who} ({self.instance_id})" if self.instance_id else who


@dataclass
class PartitionState:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on it
    end: int | None  # None: no fetch response within the timeout
    lag: int | None
    owner: str | None  # a member's label; None: owned by nobody, or not known (members not listed)


@dataclass
class GroupState:
    stage: str | None
    group: str
    state: str
    members: list[Member]
    members_listed: bool  # False: an active group whose members the broker did not list (tansu)
    partitions: list[PartitionState]
    note: str | None = None

    @property
    def unowned(self) -> list[PartitionState]:
        return [p for p in self.partitions if p.owner is None] if self.members_listed else []

    @property
    def waiting(self) -> list[PartitionState]:
        """Partitions owned by nobody with records to consume."""
        return [p for p in self.unowned if p.lag]

    @property
    def lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lag"] = self.lag
        d["unowned"] = [{"topic": p.topic, "partition": p.partition, "lag": p.lag} for p in self.unowned]
        return d


def stage_topics(settings: RuntimeSettings, stage_cls: Any, existing: set[str]) -> list[str]:
    """The topics a stage's workers consume: its input, and the input's retry topic where the workers consume it
    (runner.retry_mode topic/auto, a record-by-record stage, the topic exists)."""
    topics = [settings.topics.name(stage_cls.input_topic)]
    retry = settings.topics.retry_name(stage_cls.input_topic)
    if uses_retry_topic(settings.runner, stage_cls) and retry in existing:
        topics.append(retry)
    return topics


class GroupInspector:
    """Reads consumer groups' state from the broker; every call waits at most `timeout_s`."""

    def __init__(self, settings: RuntimeSettings, timeout_s: float = 10.0):
        self.settings, self.timeout_s = settings, timeout_s
        # librdkafka's own lines are not printed: a failure is reported once, as the command's error
        self.client_config = {**settings.kafka.client_config(), "logger": _QUIET, "error_cb": lambda err: None}
        self.admin = AdminClient(self.client_config)
        try:
            self.topics = {name: len(md.partitions) for name, md in
                           self.admin.list_topics(timeout=timeout_s).topics.items() if md.error is None}
        except KafkaException as exc:
            raise BrokerUnreachable(f"the broker at {settings.kafka.bootstrap_servers} did not answer within "
                                    f"{timeout_s:g}s ({exc.args[0].str() if exc.args else exc})") from None

    def groups(self, wanted: list[tuple[str | None, str, list[str]]]) -> list[GroupState]:
        """(stage, group id, topics; empty: the topics the group committed on) -> each group's state."""
        described = self._describe([g for _, g, _ in wanted])
        committed = {g: self._committed(g, topics) for _, g, topics in wanted}
        tps = {tp for offsets in committed.values() for tp in offsets}
        ends = self._ends(tps)
        out = []
        for stage, group, _ in wanted:
            state, members, note = described[group]
            listed = bool(members) or state in IDLE_STATES
            if not listed and note is None:
                note = (f"the broker lists no members of this {state} group (tansu does not): ownership unknown, "
                        "see the workers' assetstream_partitions_assigned")
            owners = {(a["topic"], a["partition"]): m.label for m in members for a in m.assignment}
            parts = []
            for tp, offset in sorted(committed[group].items()):
                end = ends.get(tp)
                start = offset if offset is not None else ends.get(("low",) + tp)
                lag = max(0, end - (start or 0)) if end is not None else None
                parts.append(PartitionState(tp[0], tp[1], offset, end, lag, owners.get(tp)))
            out.append(GroupState(stage, group, state, members, listed, parts, note))
        return out

    def _describe(self, groups: list[str]) -> dict[str, tuple[str, list[Member], str | None]]:
        result: dict[str, tuple[str, list[Member], str | None]] = {}
        futures = self.admin.describe_consumer_groups(groups, request_timeout=self.timeout_s)
        for group, fut in futures.items():
            try:
                d = fut.result(timeout=self.timeout_s + 1)
            except Exception as exc:  # noqa: BLE001 - one group's error is shown with it
                result[group] = ("unknown", [], f"describe failed: {exc}")
                continue
            members = [Member(m.member_id, m.client_id, m.host, m.group_instance_id,
                              [{"topic": tp.topic, "partition": tp.partition}
                               for tp in (m.assignment.topic_partitions if m.assignment else [])])
                       for m in d.members]
            result[group] = (d.state.name.lower(), members, None)
        return result

    def _committed(self, group: str, topics: list[str]) -> dict[TP, int | None]:
        request = [TopicPartition(t, p) for t in topics for p in range(self.topics.get(t, 0))] or None
        fut = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, request)],
                                                     request_timeout=self.timeout_s)[group]
        try:
            answer = fut.result(timeout=self.timeout_s + 1).topic_partitions
        except KafkaException as exc:
            raise BrokerUnreachable(f"committed offsets of {group}: {exc}") from None
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in answer}

    def _ends(self, tps: Iterable[TP]) -> dict[Any, int]:
        """Each partition's high watermark as fetch responses report it (and its low one, keyed ("low", t, p))."""
        tps = sorted(tps)
        if not tps:
            return {}
        probe = Consumer(probe_config(self.client_config, f"{self.settings.groups.prefix}status-{uuid.uuid4().hex[:8]}",
                                      fetch_wait_ms=100))
        ends: dict[Any, int] = {}
        try:
            probe.assign([TopicPartition(t, p, OFFSET_END) for t, p in tps])
            deadline = time.monotonic() + self.timeout_s
            while time.monotonic() < deadline:
                probe.consume(num_messages=1000, timeout=0.1)  # the records themselves are not wanted
                for t, p in tps:
                    low, high = probe.get_watermark_offsets(TopicPartition(t, p), cached=True)
                    if high is not None and high >= 0:
                        ends[(t, p)] = high
                        ends[("low", t, p)] = max(low or 0, 0)
                if all((t, p) in ends for t, p in tps):
                    break
        finally:
            probe.close()
        return ends


@dataclass
class Progress:
    """A group's progress between two looks `seconds` apart (`assetstream status --rate`)."""
    seconds: float
    done: int  # records committed in the window, over its partitions
    lag: int  # the lag at the second look

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds until the lag is worked off at this rate: 0 with no lag, None when nothing moved."""
        return 0.0 if not self.lag else (self.lag / self.rate if self.rate > 0 else None)

    @property
    def stalled(self) -> bool:
        """Records wait and nothing was committed in the window: no worker, or workers that do not get on
        (the one sign tansu gives of a stuck group, since it lists no members)."""
        return self.lag > 0 and self.done == 0

    def as_dict(self) -> dict[str, Any]:
        return {"window_s": self.seconds, "committed_in_window": self.done, "rate_per_s": round(self.rate, 3),
                "eta_s": None if self.eta_s is None else round(self.eta_s, 1), "stalled": self.stalled}

    def label(self) -> str:
        if self.stalled:
            return f"stalled: nothing committed in {self.seconds:g} s with {self.lag} waiting"
        eta = "" if not self.lag else f" · done in ~{duration_text(self.eta_s or 0)}"
        return f"{self.rate:.1f} records/s{eta}"


def duration_text(seconds: float) -> str:
    """A duration as an operator reads it: `45 s`, `12 min`, `1.5 h`."""
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def progress(before: list[GroupState], after: list[GroupState], seconds: float) -> dict[str, Progress]:
    """Per group id: what was committed between the two looks (a partition the group had not committed on at the
    first look counts from its first commit on), and the lag at the second."""
    first = {(g.group, p.topic, p.partition): _baseline(p) for g in before for p in g.partitions}
    out = {}
    for g in after:
        done = 0
        for p in g.partitions:
            was = first.get((g.group, p.topic, p.partition))
            if p.committed is not None and was is not None:
                done += max(0, p.committed - was)
        out[g.group] = Progress(seconds=seconds, done=done, lag=g.lag)
    return out


def _baseline(p: PartitionState) -> int | None:
    """Where the group stood on a partition at the first look: its committed offset, or where it would start
    (the partition's start, end − lag) when it had never committed there — a group's first commits inside the
    window are progress, not a stall (review 13)."""
    if p.committed is not None:
        return p.committed
    return p.end - p.lag if p.end is not None and p.lag is not None else None

