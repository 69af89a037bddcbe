"""The partition offset tracker on its own (no broker): the commit position is the first unfinished offset."""
from __future__ import annotations

from streams.tracker import PartitionTracker

A = ("t", 0)
B = ("t", 1)


def positions(tracker: PartitionTracker) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): tp.offset for tp in tracker.to_commit()}


def test_in_order_finishes_move_the_position_one_past_the_last():
    t = PartitionTracker()
    for off in (10, 11, 12):
        t.add(A, off)
    t.finish(A, 10)
    assert t.position[A] == 11
    t.finish(A, 11)
    t.finish(A, 12)
    assert t.position[A] == 13 and t.in_flight(A) == 0
    assert positions(t) == {A: 13}


def test_out_of_order_finish_never_passes_an_unfinished_record():
    t = PartitionTracker()
    for off in (5, 6, 7, 8):
        t.add(A, off)
    t.finish(A, 7)
    t.finish(A, 6)
    assert A not in t.position and t.to_commit() == []  # 5 is still being worked on
    assert t.in_flight(A) == 4
    t.finish(A, 5)
    assert t.position[A] == 8  # 5, 6, 7 done: the first unfinished offset is 8
    assert t.in_flight(A) == 1 and t.done[A] == set()
    t.finish(A, 8)
    assert t.position[A] == 9


def test_offset_gaps_from_compaction_or_transactions_are_skipped():
    t = PartitionTracker()
    for off in (3, 9, 20):
        t.add(A, off)
    t.finish(A, 20)
    t.finish(A, 3)
    assert t.position[A] == 4  # one past the last finished one: a restart reads 9 next, nothing is skipped
    t.finish(A, 9)
    assert t.position[A] == 21


def test_partitions_are_tracked_independently():
    t = PartitionTracker()
    t.add(A, 0)
    t.add(A, 1)
    t.add(B, 100)
    t.finish(B, 100)
    t.finish(A, 1)
    assert positions(t) == {B: 101}
    assert t.in_flight() == 2 and t.in_flight(A) == 2 and t.in_flight(B) == 0
    assert t.in_flight(("t", 9)) == 0
    assert {(tp.topic, tp.partition) for tp in t.to_commit({A})} == set()
    assert [(tp.partition, tp.offset) for tp in t.to_commit({B})] == [(1, 101)]


def test_mark_committed_leaves_only_positions_that_moved_since():
    t = PartitionTracker()
    for off in range(4):
        t.add(A, off)
    t.add(B, 0)
    t.finish(A, 0)
    t.finish(B, 0)
    t.mark_committed(t.to_commit())
    assert t.committed == {A: 1, B: 1}
    assert t.to_commit() == []
    t.finish(A, 1)
    assert positions(t) == {A: 2}


def test_drop_forgets_a_partition_and_late_finishes_are_ignored():
    t = PartitionTracker()
    t.add(A, 0)
    t.add(A, 1)
    t.finish(A, 0)
    t.mark_committed(t.to_commit())
    t.drop(A)
    assert t.in_flight() == 0 and t.to_commit() == [] and A not in t.committed
    t.finish(A, 1)  # a result that arrives after the partition was revoked
    assert t.to_commit() == [] and A not in t.position
    t.add(A, 7)  # assigned again later: tracked from scratch
    t.finish(A, 7)
    assert positions(t) == {A: 8}


def test_pending_leaves_out_abandoned_records():
    t = PartitionTracker()
    for off in (0, 1, 2):
        t.add(A, off)
    t.add(B, 0)
    assert t.pending([A, B], set()) == 4
    assert t.pending([A], {(A, 1)}) == 2
    t.finish(A, 0)
    assert t.pending([A, B], {(A, 1), (B, 0)}) == 1  # only A@2 can still finish
    assert t.pending([("t", 5)], set()) == 0
