"""`assetstream run DIR --serve` and the decisions made in it, as the user trial drove it (issue 15): a real
subprocess with the embedded broker and store, `publish --event-type reprocess` and `feedback --approve` from
another shell, Ctrl-C, and a later `assetstream run` over the same files and --out.

One session is shared by the checks (the CI is close to its time budget): the serve session's sidecars are the
input of the rerun test."""
from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.embedded_run import decisions_of_review, sidecar_name
from app.kpis.compute import audit_for_decision
from app.kpis.settings import KpiSettings
from app.producer import asset_id_for
from tests.writeback_support import FakeDam

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)

EDITED = "Coffee mug on a desk, edited by Ana"
TITLE = "Red mug (Ana)"
URL_EDITED = "A church by the river, chosen by Ana"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
    # the session's and the reruns' preprocess fetch the image published by URL from a loopback web server
    env.update({"PYTHONPATH": str(REPO), "OMP_THREAD_LIMIT": "1",
                "ASSETSTREAM_PREPROCESS__ALLOW_HOSTS": '["127.0.0.1"]', **extra})
    return env


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=str(REPO), capture_output=True,
                          text=True, timeout=timeout)


def _sidecar_path(out: Path, path: Path) -> Path:
    return out / f"{sidecar_name(asset_id_for(path))}.jsonld"


def _sidecar(out: Path, path: Path) -> dict:
    return json.loads(_sidecar_path(out, path).read_text())


def _who(review: dict) -> tuple:
    """Who decided what and when: per field and for the verdict (and the image it was given on)."""
    return (sorted((f["field"], f["action"], f["value"], f["editor"], f["at"]) for f in review["fields"]),
            review["status"], review["editor"], review["decided_at"], review.get("content_sha256"))


def _audit(decision: dict) -> dict:
    return audit_for_decision(decision, None, KpiSettings())


def _summary(out: Path, path: Path) -> dict:
    return next(r for r in json.loads((out / "summary.json").read_text()) if r["asset_id"] == asset_id_for(path))


def _wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError, StopIteration):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A `run --serve` session over two images: the mug is reprocessed, then approved with an edited alt text; the
    logo is approved as it is; an image published into the session by URL is approved with an edited alt text
    once the DAM refuses our credentials; a second `run --serve` is started on the session's review port; then
    Ctrl-C."""
    tmp = tmp_path_factory.mktemp("serve")
    images, out = tmp / "images", tmp / "out"
    images.mkdir()
    mug, logo = images / "product_red_mug.jpg", images / "logo_badge_alpha.png"
    for f in (mug, logo):
        shutil.copy(REPO / "samples" / f.name, f)
    env = _env(ASSETSTREAM_REVIEW__PORT="0")
    # a DAM write-back target (trial 35 F2): it refuses the logo (404: a dead letter), takes the rest, and refuses
    # our credentials (401: the group pauses) from the last decision on
    dam, refusing = FakeDam().start(), threading.Event()
    # a web server with an image the session is given by URL only (trial 35 F4: `assetstream publish https://…`)
    web_dir = tmp / "web"
    web_dir.mkdir()
    shutil.copy(REPO / "samples" / "photo_paris_sunset_copy.jpg", web_dir / "url_church.jpg")
    web = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(web_dir)))
    threading.Thread(target=web.serve_forever, daemon=True).start()
    dam.answer = lambda method, path, headers: (
        (401, b'{"code": "incorrect_password"}') if refusing.is_set() else
        (404, b'{"error": "no such asset in the DAM"}') if "logo_badge" in path else None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", str(images), "--out", str(out), "--serve",
                             "--writeback-url", dam.url],
                            env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    errors: list[str] = []
    err_reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
    err_reader.start()
    seen: list[str] = []
    url = f"http://127.0.0.1:{web.server_address[1]}/url_church.jpg"
    result: dict = {"images": images, "out": out, "mug": mug, "logo": logo, "url": url, "dam": dam,
                    "refusing": refusing}
    try:
        deadline = time.monotonic() + 180
        while not any(line.startswith("review: ") for line in seen):
            assert proc.poll() is None and time.monotonic() < deadline, "\n".join(seen + errors)
            try:
                seen.append(lines.get(timeout=1).rstrip("\n"))
            except queue.Empty:
                pass
        review = next(line for line in seen if line.startswith("review: ")).split(" ", 1)[1]
        port = review.split("/login")[0].rsplit(":", 1)[1]
        fleet = dict(item.split("=", 1)
                     for item in shlex.split(next(line for line in seen if line.startswith("env: "))[5:]))
        other = {**_env(), **fleet}
        mug_id, logo_id = asset_id_for(mug), asset_id_for(logo)

        # a backfill from a folder the session was not given (trial 24 F10)
        elsewhere = tmp / "elsewhere"
        elsewhere.mkdir()
        shutil.copy(mug, elsewhere / "other_mug.jpg")
        result["outside"] = _cli(["backfill", str(elsewhere), "--state", str(tmp / "state.jsonl")], other)

        # a file backfilled into the session (trial 24b N1: its approval was lost at Ctrl-C)
        later = images / "later"
        later.mkdir()
        result["later"] = Path(shutil.copy(REPO / "samples" / "gradient_decorative.jpg", later / "gradient.jpg"))
        backfilled = _cli(["backfill", str(later), "--state", str(tmp / "state2.jsonl"), "--wait"], other)
        assert backfilled.returncode == 0, backfilled.stderr

        # an image published into the session by URL (trial 35 F4), decided below
        published = _cli(["publish", url], other)
        assert published.returncode == 0, published.stderr

        # a later event for the mug, then the decisions (as in the trial)
        published = _cli(["publish", str(mug), "--event-type", "reprocess"], other)
        assert published.returncode == 0, published.stderr
        decisions = tmp / "decisions.jsonl"
        decisions.write_text("\n".join(json.dumps(d) for d in (
            {"asset_id": mug_id, "editor": "ana", "status": "approved",
             "fields": [{"field": "alt_text", "action": "edited", "value": EDITED}]},
            {"asset_id": logo_id, "editor": "ana", "status": "approved", "fields": []},
            {"asset_id": asset_id_for(result["later"]), "editor": "ana", "status": "approved", "fields": []})))
        sent = _cli(["feedback", "--file", str(decisions)], other)
        assert sent.returncode == 0, sent.stderr
        result["searched"] = _wait_for(
            lambda: (lambda hits: hits if all(h.get("status") == "approved" for h in hits) and len(hits) == 3
                     else None)([h for h in json.loads(_cli(["search", "--json"], other).stdout)["hits"]
                                 if h["asset_id"] != asset_id_for(url)]), 60,
            "the index to hold the three approvals")

        def sidecars():
            return _sidecar(out, mug), _sidecar(out, logo), _summary(out, mug), _summary(out, logo)

        try:  # what the sidecars say once they followed both decisions (checked by the first test)
            result["serving"] = _wait_for(
                lambda: sidecars() if _sidecar(out, mug).get("accessibilitySummary") == EDITED
                and _sidecar(out, logo).get("creativeWorkStatus") == "approved" else None, 15, "the sidecars")
        except AssertionError:
            result["serving"] = sidecars()

        # a second session while this one holds the review port
        started = time.monotonic()
        second = _cli(["run", str(images), "--out", str(tmp / "out2"), "--serve"],
                      _env(ASSETSTREAM_REVIEW__PORT=port), timeout=60)
        result["second"] = (second, time.monotonic() - started)

        # the DAM has the approvals (the logo's refused), then refuses our credentials
        result["dam_before"] = _wait_for(lambda: (lambda paths: paths if all(any(a in p for p in paths) for a in (
            mug_id, logo_id, asset_id_for(result["later"]))) and dam.writes(mug_id) else None)(
            [r.get("path") or r["id"] for r in dam.requests]), 30, "the DAM to get the approvals")
        refusing.set()

        # the image published by URL is approved now: not written (the DAM refuses our credentials)
        _wait_for(lambda: any(h["asset_id"] == asset_id_for(url) for h in json.loads(
            _cli(["search", "--json"], other).stdout)["hits"]), 60, "the image published by URL to be indexed")
        sent = _cli(["feedback", asset_id_for(url), "--editor", "ana", "--approve", "--field",
                     f"alt_text=edited:{URL_EDITED}"], other)
        assert sent.returncode == 0, sent.stderr
        # one more edit, and Ctrl-C at once: the session applies it before it stops
        sent = _cli(["feedback", mug_id, "--editor", "ana", "--field", f"title=edited:{TITLE}"], other)
        assert sent.returncode == 0, sent.stderr
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        result["exit"] = proc.wait(60)
        err_reader.join(10)
        result["stderr"] = "".join(errors)
        result["stdout"] = "\n".join(seen)
        shutil.rmtree(later)  # the reruns below are over the session's own files
        yield result
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        dam.stop()
        web.shutdown()


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_sidecars_and_summary_follow_decisions_on_assets_with_later_events(session):
    """Trial: after `publish --event-type reprocess` the mug's sidecar stayed needs_review with the model's alt
    text while the index said approved with the editor's text (only decisions on the run's own event counted)."""
    mug_doc, logo_doc, mug_row, logo_row = session["serving"]
    hits = {h["asset_id"]: h for h in session["searched"]}
    mug_hit = hits[asset_id_for(session["mug"])]
    assert mug_hit["status"] == "approved"
    assert mug_doc["creativeWorkStatus"] == "approved" and mug_doc["accessibilitySummary"] == EDITED
    assert mug_doc["assetstream:reviewedBy"] == "ana"
    assert mug_row["status"] == "approved" and mug_row["alt_text"] == EDITED
    assert logo_doc["creativeWorkStatus"] == "approved" and logo_row["status"] == "approved"
    assert json.loads(mug_doc["assetstream:review"])["status"] == "approved"


def test_a_backfill_from_a_folder_outside_the_session_is_refused_before_publishing(session):
    """Trial 24 F10: the env: line invites `backfill`, and a folder the session was not given was published and
    dead-lettered `forbidden_url` ("outside the configured file_roots") naming neither the roots nor the fix."""
    outside = session["outside"]
    said = " ".join(outside.stderr.split())
    assert outside.returncode == 2, said
    assert f"outside preprocess.file_roots ({session['images']})" in said and "nothing was published" in said
    assert "other_mug.jpg" in said and "admits only the folders given to `run`" in said


def test_serve_says_the_embedded_broker_and_store_have_no_login(session):
    """Trial 16: the review app asks for a token, the broker and store it started do not (`feedback` above sent
    decisions with the `env:` line alone); the session says so once, as it starts serving."""
    said = [line for line in session["stderr"].splitlines() if "have no login" in line]
    assert len(said) == 1 and "embedded broker and store" in said[0] and "single-user machine" in said[0], said


def test_a_second_serve_on_a_port_in_use_fails_at_once_with_a_clear_error(session):
    second, took = session["second"]
    assert second.returncode == 2, second.stdout + second.stderr
    assert "Traceback" not in second.stderr and "env:" not in second.stdout and "published" not in second.stderr
    assert "cannot listen on 127.0.0.1:" in second.stderr and "Address already in use" in second.stderr
    assert "ASSETSTREAM_REVIEW__PORT=0" in second.stderr
    assert took < 15, f"took {took:.1f}s: it started something before checking the port"


def test_ctrl_c_names_the_sessions_decisions_whose_write_back_did_not_happen(session):
    """Trial 35 F2: approvals the target refused (401: the group paused) or dead-lettered were dropped silently at
    Ctrl-C, and summary.json said `"writeback": []` for written and not written alike. The session end names them
    with the target's reason, the rows say each outcome, and the exit code is 1, as for `run` without --serve."""
    assert session["exit"] == 1, session["stderr"]
    said = " ".join(session["stderr"].split())
    # code review 18 F6: the check is said before it runs (it took up to a minute in silence)
    assert "checking the write-back of the session's decisions on 4 asset(s)" in said
    mug, logo, later, url = (asset_id_for(session[k]) for k in ("mug", "logo", "later", "url"))
    assert ("write-back: 2 decision(s) of this session not written to 'dam' (target refusing our credentials "
            "(401) at http://127.0.0.1:") in said and "check the target's password or token" in said
    assert f"): {mug}, {url} write-back: " in said
    assert "1 decision(s) of this session dead-lettered by write-back to 'dam' (http_404: " in said
    assert "no such asset in the DAM" in said and f"): {logo} write-back: " in said
    assert "write-back: the session's embedded broker, with their records and dead letters, is gone" in said
    # trial 36 N5: what works once the session has ended (its dead letters are gone: not `dlq replay`), exactly
    rerun = shlex.join(["assetstream", "run", str(session["images"]), "--out", str(session["out"].resolve()),
                        "--writeback-url", session["dam"].url])
    assert f"(`assetstream dlq replay` cannot reach them): the decisions are in the sidecars, and once the target " \
           f"is fixed `{rerun}` re-applies and writes them" in said, said
    assert "published again from their URL" in said
    rows = {r["asset_id"]: r for r in json.loads((session["out"] / "summary.json").read_text())}
    assert rows[later]["writeback"] == [{"target": "dam", "outcome": "written", "reason": None}]
    assert rows[mug]["writeback"][0]["outcome"] == "not_written"
    assert "refusing our credentials (401)" in rows[mug]["writeback"][0]["reason"]
    assert rows[logo]["writeback"][0]["outcome"] == "dead_lettered"
    assert rows[logo]["writeback"][0]["reason"] == "http_404"
    assert rows[url]["writeback"][0]["outcome"] == "not_written" and rows[url]["file"] == session["url"]


def test_ctrl_c_says_where_the_sessions_decisions_are_kept(session):
    said = " ".join(session["stderr"].split())
    assert f"4 asset(s) carry a person's decision: kept in the sidecars in {session['out'].resolve()}" in said
    assert "the embedded store and broker of this session are gone" in said
    # trial 24b N1: the file backfilled into the session has its approval in its sidecars and summary row too
    later = session["later"]
    assert _sidecar(session["out"], later)["creativeWorkStatus"] == "approved"
    assert _summary(session["out"], later)["status"] == "approved"
    assert _summary(session["out"], later)["file"] == str(later.resolve())
    mug = _sidecar(session["out"], session["mug"])  # the edit sent just before Ctrl-C is in the files too
    assert mug["name"] == TITLE and mug["accessibilitySummary"] == EDITED and mug["creativeWorkStatus"] == "approved"
    assert _summary(session["out"], session["mug"])["title"] == TITLE


def test_a_later_run_reapplies_the_decisions_in_the_sidecars(session):
    """Trial: the next `assetstream run` over the same folder and --out overwrote the approved sidecars with the
    model's values. The decisions come back through the review group: the index, the sidecars and the rows keep
    them."""
    out, mug, logo = session["out"], session["mug"], session["logo"]
    # the logo's sidecar as written before sidecars carried the decision itself: kept aside, never overwritten
    old = out / f"{sidecar_name(asset_id_for(logo))}.jsonld"
    doc = json.loads(old.read_text())
    assert doc.pop("assetstream:review") and doc["assetstream:reviewedBy"] == "ana"
    old.write_text(json.dumps(doc))
    # trial 18: each person's field edits keep their editor and time (bob's alt text before dave's approval,
    # carol's title after it), and the verdict its editor, time and image
    mug_doc = _sidecar(out, mug)
    review = json.loads(mug_doc["assetstream:review"])
    verdict_at = review["decided_at"]
    for f in review["fields"]:
        f.update({"alt_text": {"editor": "bob", "at": verdict_at - 60_000}, "title": {"editor": "carol"}}.get(
            f["field"], {"editor": "dave"}))
    review["editor"] = "dave"
    title_at = next(f["at"] for f in review["fields"] if f["field"] == "title")
    assert title_at > verdict_at
    mug_doc["assetstream:review"] = json.dumps(review)
    _sidecar_path(out, mug).write_text(json.dumps(mug_doc))
    session["crafted"] = review
    res = _cli(["run", str(session["images"]), "--out", str(out), "--json"], _env(), timeout=180)
    assert res.returncode == 0, res.stderr
    rows = {r["asset_id"]: r for r in json.loads(res.stdout)}
    assert rows[asset_id_for(mug)]["status"] == "approved" and rows[asset_id_for(mug)]["alt_text"] == EDITED
    assert _sidecar(out, mug)["accessibilitySummary"] == EDITED and _sidecar(out, mug)["name"] == TITLE
    assert rows[asset_id_for(mug)]["title"] == TITLE
    assert _sidecar(out, mug)["creativeWorkStatus"] == "approved"
    assert _sidecar(out, mug)["assetstream:reviewedBy"] == "dave"
    assert _summary(out, mug)["status"] == "approved"
    assert _who(json.loads(_sidecar(out, mug)["assetstream:review"])) == _who(review)
    assert {(f["field"], e["actor"], e["at"]) for e in map(_audit, decisions_of_review(asset_id_for(mug), review))
            for f in e["fields"]} >= {("alt_text", "bob", verdict_at - 60_000), ("tags", "dave", verdict_at),
                                      ("title", "carol", title_at)}
    said = " ".join(res.stderr.split())
    assert "re-applied 2 person's decision(s) from the sidecars" in said  # the mug's, and the image's published by URL
    name = sidecar_name(asset_id_for(logo))
    assert f"kept aside {name}.reviewed.jsonld, {name}.reviewed.xmp" in said
    assert json.loads((out / f"{name}.reviewed.jsonld").read_text()) == doc
    assert rows[asset_id_for(logo)]["status"] == _sidecar(out, logo)["creativeWorkStatus"] == "needs_review"



def test_a_second_rerun_changes_nothing(session):
    """The re-applied decisions' ids derive from what they say: the next run puts back exactly the same review."""
    out, mug = session["out"], session["mug"]
    before = json.loads(_sidecar(out, mug)["assetstream:review"])
    assert before.get("content_sha256")
    res = _cli(["run", str(session["images"]), "--out", str(out), "--json"], _env(), timeout=180)
    assert res.returncode == 0, res.stderr
    after = json.loads(_sidecar(out, mug)["assetstream:review"])
    assert _who(after) == _who(before) == _who(session["crafted"]) and after == before


def test_a_later_run_publishes_again_and_writes_back_a_decision_on_an_image_published_by_url(session):
    """Trial 35 F4: an image `publish`ed into a `run --serve` session by URL, approved there while the target
    refused our credentials: a later `run` over the same files and --out neither re-applied its decision nor wrote
    it back (the DAM never got it), and its summary.json dropped the asset's row. The later run publishes it again
    from its URL, re-applies the decision and writes it; an asset whose file is gone says why not."""
    out, dam, url = session["out"], session["dam"], session["url"]
    url_id = asset_id_for(url)
    session["refusing"].clear()  # the target is fixed
    res = _cli(["run", str(session["images"]), "--out", str(out), "--writeback-url", dam.url, "--json"], _env(),
               timeout=180)
    said = " ".join(res.stderr.split())
    rows = {r["asset_id"]: r for r in json.loads(res.stdout)}
    assert rows[url_id]["status"] == "approved" and rows[url_id]["alt_text"] == URL_EDITED, said
    assert rows[url_id]["file"] == url
    assert rows[url_id]["writeback"] == [{"target": "dam", "outcome": "written", "reason": None}]
    assert dam.assets[url_id]["alt_text"] == URL_EDITED
    assert "published into an earlier session and none of this run's files, published again from their source" in said
    summary = {r["asset_id"]: r for r in json.loads((out / "summary.json").read_text())}
    assert summary[url_id]["status"] == "approved" and summary[url_id]["writeback"][0]["outcome"] == "written"
    assert json.loads((out / f"{sidecar_name(url_id)}.jsonld").read_text())["accessibilitySummary"] == URL_EDITED
    # the file backfilled into the session is gone: its decision is not re-applied, and the run says why
    later = asset_id_for(session["later"])
    assert (f"not re-applied: the decision on {later} in {out.resolve()} (its file {session['later'].resolve()} is "
            "none of this run's files") in said
    assert res.returncode == 0, said


def test_a_write_back_dead_letter_of_an_embedded_run_names_what_works_once_its_broker_is_gone(tmp_path):
    """Trial 36 N5: at the end of a session a write-back dead letter (WordPress's kses_would_change) told the user
    to `assetstream dlq replay`, but the letter was gone with the session's embedded broker. Its row, summary.json
    and the session's end name the command that works then; with --bootstrap (the letters stay on the cluster)
    the letter's own advice stands."""
    from app.embedded_run import EmbeddedRun
    from app.run_writeback import session_problems
    from app.settings import Settings
    from consumers.writeback.limits import Pacer
    from consumers.writeback.wordpress import WordPressTarget
    from streams.errors import PermanentError

    settings = Settings().with_overrides(writeback={"targets": [
        {"name": "blog", "type": "wordpress", "url": "http://127.0.0.1:9", "username": "writer",
         "application_password": "abcd efgh ijkl mnop qrst uvwx"}]})
    with pytest.raises(PermanentError) as refused:  # a person's `<3` in the title, the user lacks unfiltered_html
        WordPressTarget(settings.writeback.targets[0], Pacer(5))._refuse_refiltering(
            14, {"title": {"raw": "Balloons <3 party"}, "_links": {}}, {"alt_text": "A red balloon"})
    letter = {"target": "blog", "outcome": "dead_lettered", "reason": "kses_would_change", "message": str(refused.value)}
    assert "then `assetstream dlq replay`" in letter["message"]  # as a fleet's `dlq list` shows it: true there
    out = tmp_path / "out"
    job = EmbeddedRun(["imgs/"], out_dir=out)
    shown = job.as_shown({"a1": [letter]})
    rerun = shlex.join(["assetstream", "run", "imgs/", "--out", str(out.resolve())])
    assert "assetstream dlq replay" not in shown["a1"][0]["message"]
    assert f"give the user unfiltered_html (docs/writeback.md), then run `{rerun}` (`dlq replay` cannot: the run's " \
           "broker, with its dead letters, is gone)" in shown["a1"][0]["message"]
    said = " ".join(session_problems(settings, shown, None, None, job.rerun_command()))
    assert said.count("dlq replay") == 2 and "(`assetstream dlq replay` cannot reach them)" in said, said
    assert f"`{rerun}` re-applies and writes them" in said
    kept = EmbeddedRun(["imgs/"], out_dir=out, bootstrap="kafka:9092").as_shown({"a1": [letter]})
    assert kept["a1"][0]["message"] == letter["message"]
