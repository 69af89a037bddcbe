"""Which offsets of each partition are finished, and so how far each partition may be committed.

Records of one partition are handed out in offset order but may finish out of order (a thread pool, an
asyncio loop, child processes). The commit position of a partition is the first offset handed out that is
not finished yet (or one past the last handed-out offset when all are): committing never passes an
unfinished record. No Kafka calls in here; `to_commit` only builds the TopicPartitions to commit.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable

from confluent_kafka import TopicPartition

TP = tuple[str, int]  # (topic, partition)


class PartitionTracker:
    """Offsets handed out per partition, in order; the commit position is the first one not finished.

    Single writer: the runner's poll thread calls every method (workers hand results over to it)."""

    def __init__(self) -> None:
        self.order: dict[TP, deque[int]] = {}  # offsets handed out and not finished before a smaller one
        self.done: dict[TP, set[int]] = {}  # finished out of order, waiting for the ones before them
        self.position: dict[TP, int] = {}  # the commit position (next offset to read after a restart)
        self.committed: dict[TP, int] = {}  # the last position committed
        self.next_offset: dict[TP, int] = {}  # the offset the broker should return next (offset gap detection)
        self.first: dict[TP, int] = {}  # the first offset handed out since assigned (the group's committed one)

    def add(self, tp: TP, offset: int) -> None:
        """An offset is handed out (offsets of one partition are added in increasing order)."""
        order = self.order.get(tp)
        if order is None:
            order = self.order[tp] = deque()
            self.done[tp] = set()
            self.first.setdefault(tp, offset)
        order.append(offset)

    def gap(self, tp: TP, offset: int) -> int | None:
        """A record at `offset` was returned: the first offset skipped before it (the gap is first..offset-1), or
        None. The first record of a partition after it is assigned (or dropped, e.g. rewound) sets the baseline."""
        expected = self.next_offset.get(tp)
        self.next_offset[tp] = offset + 1
        return expected if expected is not None and offset > expected else None

    def finish(self, tp: TP, offset: int) -> None:
        """An offset is finished: advance the position over every finished offset at the head."""
        order = self.order.get(tp)
        if order is None:
            return  # partition was revoked meanwhile
        if order and order[0] == offset:  # the common case: records finish in the order they came
            order.popleft()
            position = offset + 1
        elif not order or offset < order[0] or offset > order[-1]:
            return  # not handed out now (a copy from before the partition was revoked and given back): kept
            # out of `done`, where it would stay for good and make working() count one record too few
        else:
            self.done[tp].add(offset)
            return
        done = self.done[tp]
        while order and order[0] in done:
            done.discard(order[0])
            position = order.popleft() + 1
        self.position[tp] = position

    def in_flight(self, tp: TP | None = None) -> int:
        """Offsets handed out and not yet below the commit position (of one partition, or of all)."""
        if tp is not None:
            return len(self.order.get(tp, ()))
        return sum(len(o) for o in self.order.values())

    def working(self) -> int:
        """Offsets handed out and not finished yet, of all partitions: what runner.max_in_flight bounds. Finished
        offsets waiting behind an unfinished one of their partition (in `in_flight`, not here) hold no work."""
        done = self.done
        return sum(len(o) - len(done[tp]) for tp, o in self.order.items())

    def pending(self, tps: Iterable[TP], abandoned: set[tuple[TP, int]]) -> int:
        """Records still being worked on (abandoned ones never finish: they are left uncommitted)."""
        return sum(1 for tp in tps for off in self.order.get(tp, ()) if (tp, off) not in abandoned)

    def to_commit(self, tps: set[TP] | None = None) -> list[TopicPartition]:
        """Positions that moved since they were last committed (of these partitions, or of all)."""
        out = []
        for tp, pos in self.position.items():
            if (tps is None or tp in tps) and self.committed.get(tp) != pos:
                out.append(TopicPartition(tp[0], tp[1], pos))
        return out

    def committed_from(self, tp: TP) -> int | None:
        """The partition's committed offset as far as this worker knows: what it last committed, else where it
        started taking records (None: nothing taken since it was assigned)."""
        return self.committed.get(tp, self.first.get(tp))

    def mark_committed(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.committed[(tp.topic, tp.partition)] = tp.offset

    def drop(self, tp: TP) -> None:
        """Forget a partition (revoked, lost, or rewound): nothing of it is committed any more."""
        for d in (self.order, self.done, self.position, self.committed, self.next_offset, self.first):
            d.pop(tp, None)
