"""Bad lines in a backfill manifest or a feedback file are reported one by one, in the JSON summary too, and
never cost the valid lines around them; the exit code says something was not sent."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.kafka_support import env_for, make_settings, provision, read_topic


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_backfill_json_lists_the_rows_it_skipped(broker, unique, tmp_path):
    s = make_settings(broker, f"bfp{unique}")
    provision(s)
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri,asset_id,version\n"
                        "https://cdn.example.com/a.jpg,a-1,\n"
                        ",no-uri,\n"
                        "https://cdn.example.com/b.jpg,b-1,minus-one\n"
                        "https://cdn.example.com/c.jpg,c-1,3\n")
    r = cli("backfill", str(manifest), "--json", "--no-index", "--state", str(tmp_path / "st.jsonl"),
            env=env_for(s), cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["published"] == 2 and summary["failed"] == 0
    assert len(summary["problems"]) == 2
    assert summary["problems"][0].startswith("m.csv:3:") and "no 'uri'" in summary["problems"][0]
    assert summary["problems"][1].startswith("m.csv:4:") and "version must be an integer" in summary["problems"][1]
    assert sorted(x["key"] for x in read_topic(s, "raw", 2)) == ["a-1", "c-1"]

    dry = cli("backfill", str(manifest), "--json", "--dry-run", "--no-index", "--state", str(tmp_path / "s2.jsonl"),
              env=env_for(s), cwd=tmp_path)
    assert dry.returncode == 1 and len(json.loads(dry.stdout)["problems"]) == 2


def test_feedback_file_sends_the_valid_lines_and_reports_the_bad_ones(broker, unique, tmp_path):
    s = make_settings(broker, f"fbp{unique}")
    provision(s)
    good = lambda a: json.dumps({"asset_id": a, "editor": "ed", "fields": [{"field": "alt_text",  # noqa: E731
                                                                             "action": "accepted"}]})
    lines = [good("asset-1"),
             good("asset-2"),
             '{"asset_id": "asset-3", "editor": ',                                   # line 3: not JSON
             json.dumps({"asset_id": "asset-4", "editor": "ed",
                         "fields": [{"field": "title", "action": "approved"}]}),    # line 4: unknown action
             "",
             json.dumps({"editor": "ed", "fields": []}),                             # line 6: no asset id
             good("asset-7")]
    path = tmp_path / "decisions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = cli("feedback", "--file", str(path), "--json", env=env_for(s), cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    sent = json.loads(r.stdout)
    assert [d["asset_id"] for d in sent] == ["asset-1", "asset-2", "asset-7"]
    err = " ".join(r.stderr.split())
    assert "decisions.jsonl:3: not JSON" in err and "decisions.jsonl:4:" in err and "approved" in err
    assert "decisions.jsonl:6:" in err and "3 line(s) not sent" in err
    assert sorted(x["key"] for x in read_topic(s, "feedback", 3)) == ["asset-1", "asset-2", "asset-7"]
