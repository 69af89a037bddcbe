"""`assetstream status` against the real tansu broker, as an operator runs it: a group with records and no worker
shows them as lag on partitions owned by nobody (exit 1); a running worker's group shows its state, committed
offsets and no lag (exit 0); a broker that is not there is one clear line (exit 2)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from app.producer import AssetPublisher, build_event
from streams.embedded import free_port
from streams.runner import StageRunner
from tests.kafka_support import REPO, RunnerThread, env_for, make_settings, provision, wait_committed
from tests.stages import EchoStage


def _status(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "status", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**env_for(settings), "COLUMNS": "200"})


def test_records_without_a_worker_wait_on_partitions_owned_by_nobody_then_a_worker_takes_them(broker, unique):
    s = make_settings(broker, f"status{unique}")
    provision(s)
    with AssetPublisher(s) as pub:
        pub.publish_events([build_event(f"asset-{i}", f"file:///x/{i}.jpg", version=1) for i in range(6)])
    raw = s.topics.name("raw")

    res = _status(s, "--group", "preprocess", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    [group] = json.loads(res.stdout)["groups"]
    assert group["group"] == f"status{unique}.preprocess" and group["members"] == []
    waiting = {(p["topic"], p["partition"]): p["lag"] for p in group["unowned"] if p["lag"]}
    assert sum(waiting.values()) == 6 and {t for t, _ in waiting} == {raw}
    text = _status(s, "--group", "preprocess")
    assert text.returncode == 1 and "owned by nobody with records waiting" in text.stdout, text.stdout
    # trial 22 / leftover: --rate looks twice; records waiting and nothing committed in between is a stall
    res = _status(s, "--group", "preprocess", "--rate", "2", "--json")
    answer = json.loads(res.stdout)
    assert res.returncode == 1 and answer["stalled"] == [f"status{unique}.preprocess"], res.stdout
    assert answer["groups"][0]["progress"] == {"window_s": 2.0, "committed_in_window": 0, "rate_per_s": 0.0,
                                               "eta_s": None, "stalled": True}
    text = _status(s, "--group", "preprocess", "--rate", "2")
    assert "stalled: nothing committed in 2 s with 6 waiting" in " ".join(text.stdout.split()), text.stdout

    # a worker of the group takes and commits them: no lag, nothing reported as owned by nobody
    runner = StageRunner(EchoStage(s), s, group_id=s.groups.name("preprocess"))
    with RunnerThread(runner):
        assert wait_committed(s, s.groups.name("preprocess"), "raw", 6, timeout_s=30) == 6
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            res = _status(s, "--group", f"status{unique}.preprocess", "--json")  # the group id works as well
            [group] = json.loads(res.stdout)["groups"]
            if group["state"] == "stable":
                break
        assert res.returncode == 0, res.stdout + res.stderr
        assert group["stage"] == "preprocess" and group["lag"] == 0
        assert sum(p["committed"] or 0 for p in group["partitions"] if p["topic"] == raw) == 6
        assert all(p["end"] is not None for p in group["partitions"])
        assert group["unowned"] == []
        # records arriving while --rate looks are counted as the worker commits them
        done = threading.Event()

        def trickle():
            with AssetPublisher(s) as pub:
                for i in range(60):
                    if done.wait(0.25):
                        return
                    pub.publish_events([build_event(f"late-{i}", f"file:///x/l{i}.jpg", version=1)])

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        try:
            res = _status(s, "--group", "preprocess", "--rate", "3", "--json")
        finally:
            done.set()
            feeder.join()
        moved = json.loads(res.stdout)["groups"][0]["progress"]
        assert moved["committed_in_window"] > 0 and moved["stalled"] is False, res.stdout
        assert moved["rate_per_s"] == round(moved["committed_in_window"] / 3, 3)
        if group["members"]:  # a broker that lists members (Kafka): the worker owns every partition
            owned = {(a["topic"], a["partition"]) for m in group["members"] for a in m["assignment"]}
            assert owned == {(p["topic"], p["partition"]) for p in group["partitions"]}
        else:  # tansu lists no members of an active group: ownership is unknown, never "nobody"
            assert not group["members_listed"] and "lists no members" in group["note"], group


def test_an_unreachable_broker_is_one_clear_line():
    s = make_settings(f"127.0.0.1:{free_port()}", "nobroker")
    started = time.monotonic()
    res = _status(s, "--timeout", "2")
    assert res.returncode == 2
    assert time.monotonic() - started < 30
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "did not answer within 2s" in lines[0] and "Traceback" not in res.stderr, res.stderr


def test_without_write_back_targets_status_leaves_out_the_writeback_group_and_its_worker_refuses_to_start(
        broker, unique):
    """Trial 10: with the four stage workers done, `assetstream status` listed the writeback group (never started:
    there is no target) with every validated record waiting on partitions owned by nobody, exit 1 for ever; and a
    writeback worker without a target started and only moved its offsets."""
    s = make_settings(broker, f"nowb{unique}")
    provision(s)
    res = _status(s, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    groups = {g["stage"] for g in json.loads(res.stdout)["groups"]}
    assert "writeback" not in groups and {"preprocess", "enrich", "validate", "index", "review"} <= groups
    worker = subprocess.run([sys.executable, "-m", "app.cli", "worker", "writeback"], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env=env_for(s))
    assert worker.returncode == 2 and "no write-back target configured" in worker.stdout + worker.stderr, worker


def test_a_groups_first_commits_inside_the_window_are_progress_not_a_stall():
    """Review 13: a partition the group had never committed on at the first look added nothing, so a group that
    started in the window (60 done, 40 waiting) was reported stalled, exit 1."""
    from app.status import GroupState, PartitionState, progress

    def look(committed, end, lag):
        return [GroupState("index", "g.index", "stable", [], False,
                           [PartitionState("t.validated", 0, committed, end, lag, None)])]

    moved = progress(look(None, 100, 95), look(65, 105, 40), 10.0)["g.index"]  # the partition starts at 5
    assert (moved.done, moved.stalled, moved.rate) == (60, False, 6.0) and moved.eta_s == 40 / 6.0
    assert progress(look(None, 100, 95), look(None, 100, 95), 10.0)["g.index"].stalled
