"""`assetstream run PATH_OR_GLOB`: the whole fleet on one machine with nothing configured.

Starts a tansu broker and an osmem-server store on free loopback ports (unless --bootstrap / --es-url name
real ones), provisions topics and the index, starts one worker process per consumer group (preprocess,
enrich, validate, index), publishes one AssetEvent per image, follows every asset through the topics with a
progress bar per stage, and ends with a table plus a JSON-LD file and an XMP sidecar per image.
"""
from __future__ import annotations

import contextlib
import faulthandler
import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pydantic import SecretStr

from app.settings import Settings
from domain.records import FAMILY_FIELDS, media_type_of, thumbnail_of, with_family
from domain.review import has_decision
from streams.embedded import die_with_parent

log = logging.getLogger(__name__)

STAGE_ORDER = ("preprocess", "enrich", "validate", "index")
STAGE_OUTPUT = {"preprocess": "preprocessed", "enrich": "enriched", "validate": "validated"}


def find_images(patterns: list[str], extensions: list[str] | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """(images, skipped): the files to publish and every file a directory or glob matched but that is not
    picked up, with the reason (never skipped silently). A file named explicitly is always taken (preprocess
    sniffs its content). `extensions`: ops.image_extensions, the same list a directory backfill uses."""
    from app.ops.settings import DEFAULT_IMAGE_EXTENSIONS

    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in (extensions or DEFAULT_IMAGE_EXTENSIONS)}
    found: list[Path] = []
    skipped: list[tuple[str, str]] = []

    def sort(candidates: list[Path]) -> None:
        for f in candidates:
            if not f.is_file():
                if f.is_symlink() and not f.exists():
                    skipped.append((str(f), f"broken symbolic link (to {os.readlink(f)})"))
                elif not f.is_dir():
                    skipped.append((str(f), "not a regular file"))
            elif f.name.startswith("."):
                skipped.append((str(f), "hidden file"))
            elif f.suffix.lower() in exts:
                found.append(f)
            else:
                skipped.append((str(f), f"not an image extension ({f.suffix or 'none'}; "
                                        f"known: {' '.join(sorted(exts))})"))

    for pattern in patterns:
        p = Path(pattern).expanduser()
        if p.is_dir():  # like a directory backfill: hidden directories (.git, .thumbnails) are not searched
            for dirpath, dirnames, filenames in os.walk(p):
                skipped.extend((os.path.join(dirpath, d), "hidden directory, not searched")
                               for d in sorted(dirnames) if d.startswith("."))
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                sort([Path(dirpath) / name for name in sorted(filenames)])
        elif any(ch in pattern for ch in "*?["):
            sort([Path(f) for f in sorted(glob.glob(pattern, recursive=True))])
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{pattern}: no such file, directory or matching glob")
    unique: dict[Path, Path] = {}  # resolved -> the first name found for it
    for f in found:
        first = unique.setdefault(f.resolve(), f)
        if first != f:  # a symbolic link to a file already taken (or the file named twice): one asset
            skipped.append((str(f), f"same file as {first}"))
    return list(unique), skipped


def file_roots_for(inputs: list[str], images: list[Path]) -> list[str]:
    """A run's preprocess.file_roots (what its workers, and a `backfill` into a `--serve` session, may read): each
    folder given to `run`, and the folder of each file named or matched by a glob as it was given, symlinks
    resolved; a file reached through a symbolic link to outside them is admitted as that one file. Trial 24b: the
    roots were the folders of the resolved images, so a link in a run folder admitted its target's whole folder."""
    folders: set[Path] = set()
    for pattern in inputs:
        p = Path(pattern).expanduser()
        if p.is_dir():
            folders.add(Path(os.path.realpath(p)))
        elif any(ch in pattern for ch in "*?["):
            folders.update(Path(os.path.realpath(Path(f).parent)) for f in glob.glob(pattern, recursive=True))
        else:
            folders.add(Path(os.path.realpath(p.parent)))
    roots = {str(f) for f in folders}
    for image in images:
        real = Path(os.path.realpath(image))
        if not any(real == f or real.is_relative_to(f) for f in folders):
            roots.add(str(real))
    return sorted(roots)


def _reveal(node: Any) -> Any:
    if isinstance(node, SecretStr):
        return node.get_secret_value()
    if isinstance(node, dict):
        return {k: _reveal(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_reveal(v) for v in node]
    return node


def write_settings_file(settings: Settings, directory: Path) -> Path:
    """The settings for worker processes, secrets included, readable by the owner only."""
    path = directory / "settings.json"
    data = _reveal(settings.model_dump(mode="python", by_alias=True))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, default=str)
    return path


PRIVATE_PREFIX = "assetstream-run-"
OWNER_FILE = "owner.pid"


def remove_abandoned_private_dirs(root: str | None = None) -> list[Path]:
    """Remove the private folders (settings file with secrets) that runs killed with SIGKILL left in the temporary
    directory: this user's `assetstream-run-*` folders whose owner.pid names a process that no longer exists.
    A folder without owner.pid, of another user, or whose owner lives (or whose pid was reused) is left alone.
    Returns the folders removed."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(PRIVATE_PREFIX + "*"):
        try:
            if folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / OWNER_FILE).read_text().strip())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except (OSError, ValueError):  # no owner file, not ours to signal, or unreadable: not ours to judge
            continue
    return removed


@dataclass
class Tracker:
    """Which stage each published asset has reached, read from the topics themselves."""

    event_ids: dict[str, str]  # asset id -> event id we published
    reached: dict[str, set[str]] = field(default_factory=dict)  # stage -> asset ids
    validated: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead: dict[str, dict[str, Any]] = field(default_factory=dict)
    families: dict[str, dict[str, Any]] = field(default_factory=dict)
    """asset id -> its document's duplicate family fields (domain.records.FAMILY_FIELDS), read from the index
    once the index group is done (`read_families`): the run's rows and sidecars say what the index says"""

    def __post_init__(self) -> None:
        for stage in STAGE_ORDER:
            self.reached.setdefault(stage, set())

    def finished(self, asset_id: str) -> bool:
        return asset_id in self.dead or asset_id in self.reached["index"]

    def all_finished(self) -> bool:
        return all(self.finished(a) for a in self.event_ids)


@contextlib.contextmanager
def quiet_store_client() -> Iterator[None]:
    """While the run stops its embedded store: the search client's connection errors are expected, not worth a
    WARNING each (trial 33 N7: `elastic_transport.node_pool: Node … has failed for 1/2/3 times in a row` after
    Ctrl-C of `run --serve`); errors, and every warning before and after the stop, are logged as ever."""
    logger = logging.getLogger("elastic_transport")
    level = logger.level
    logger.setLevel(max(logging.ERROR, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(level)


class EmbeddedRun:
    def __init__(self, inputs: list[str], *, out_dir: Path, bootstrap: str | None = None,
                 registry: str | None = None, es_url: str | None = None, provider: str | None = None,
                 timeout_s: float = 600.0, console: Any = None, settings: Settings | None = None,
                 show_progress: bool = True, writeback_url: str | None = None, writeback_mode: str = "write"):
        self.inputs = inputs
        self.writeback_url, self.writeback_mode = writeback_url, writeback_mode
        self.out_dir = out_dir
        self.bootstrap = bootstrap
        self.registry = registry
        self.es_url = es_url
        self.provider = provider
        self.timeout_s = timeout_s
        self.console = console
        self.base_settings = settings or Settings()
        self.show_progress = show_progress
        self.services: list[Any] = []
        self.workers: dict[str, subprocess.Popen] = {}
        # the logs of the last run (workers, broker, store) live with its outputs, not in a new /tmp folder per run;
        # the workers' settings file (secrets) sits in a private temporary folder removed at the stop
        self.workdir = Path(out_dir) / "logs"
        self._private: Path | None = None
        self.skipped: list[tuple[str, str]] = []  # (file, why) for every file found but not published
        # what the run has done so far, for the summary of an interrupted run (`interrupted_rows`)
        self.images: list[Path] = []
        self.tracker = Tracker({})
        self.paths: dict[str, Path | str] = {}  # asset id -> its file (a URI for an asset published by URL)
        self.settings: Settings | None = None  # once configured
        self.drain_timeout_s = 10.0 if bootstrap else 2.0  # see configure()
        self.set_aside_files: list[str] = []  # reviewed sidecars renamed rather than overwritten (set_aside)
        self.carried_pending: set[str] = set()  # carried decisions not re-applied yet: their sidecars stay as they are
        # assets that are none of this run's files: published into a --serve session (by URL, or a file from another
        # shell) and followed from a person's decision, or published into an earlier session and published again
        # by this run to re-apply their decisions (asset id -> what a later run publishes again: session_event)
        self.published_into: dict[str, dict[str, Any]] = {}
        self.republish: dict[str, dict[str, Any]] = {}  # those this run publishes again (read_carried_decisions)
        self.started_ms = 0  # when the run published its events: write-back letters and writes since then count
        # with write-back targets: asset id -> one outcome per target (app/run_writeback.py), and what kept the
        # writeback group from finishing (an unreachable target), said once after the table
        self.writeback: dict[str, list[dict[str, Any]]] = {}
        self.writeback_problems: list[str] = []
        # with --serve: where each decision made in the session is on `validated` (asset id -> partition, offset of
        # its newest decided record), and what the session end says about the write-back of those decisions
        self.decision_records: dict[str, tuple[int, int]] = {}
        self.session_writeback_problems: list[str] = []
        self._serve_log_size = 0
        self._serving_ms = sys.maxsize
        # which run wrote a sidecar (record_files), and the sidecars in --out an earlier run wrote, this one not
        self.run_stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{os.getpid()}"
        self.earlier_files: list[str] = []

    # ------------------------------------------------------------------------------------------ setup
    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def configure(self, images: list[Path]) -> Settings:
        from streams.embedded import Tansu

        self.workdir.mkdir(parents=True, exist_ok=True)
        for old in self.workdir.glob("*.log"):  # an earlier run's
            old.unlink()

        overrides: dict[str, dict[str, Any]] = {
            # retry topics (created below with the others): a slow or failing source holds back no other image
            # how long an interrupted worker finishes what it has taken (Ctrl-C, SIGTERM, SIGHUP): 10 s against a
            # real cluster (--bootstrap: its offsets outlive the run); 2 s on the embedded broker, whose memory
            # storage is gone once the run stops, so a longer drain only made Ctrl-C wait (11 s with OCR busy on
            # 300 large images: preprocess sat out its whole drain timeout on 61 taken records).
            # /metrics on loopback like the broker and store: the default 0.0.0.0 is for a pod's probes, and on a
            # laptop it served every worker's metrics to the network (trial 16)
            "runner": {"metrics_port": 0, "metrics_host": "127.0.0.1", "drain_timeout_s": self.drain_timeout_s,
                       **({"retry_mode": "topic"} if self.base_settings.runner.retry_mode == "auto" else {})},
            "preprocess": {"file_roots": file_roots_for(self.inputs, images)},
        }
        if self.bootstrap:
            overrides["kafka"] = {"bootstrap_servers": self.bootstrap}
        else:
            broker = Tansu(log_path=self.workdir / "tansu.log").start()
            self.services.append(broker)
            overrides["kafka"] = {"bootstrap_servers": broker.bootstrap, "session_timeout_ms": 6000,
                                  "heartbeat_interval_ms": 1000, "static_membership": False}
            self._say(f"[dim]started embedded Kafka-protocol broker (tansu) at {broker.bootstrap}[/dim]")
        # the workers are this run's own processes; with no --registry they share the in-process registry's
        # stable schema ids (streams/avro.py), which a production worker is refused (registry.allow_in_process)
        overrides["registry"] = {"allow_in_process": True, **({"url": self.registry} if self.registry else {})}
        if self.es_url:
            overrides["index"] = {"url": self.es_url}
        else:
            from streams.embedded_store import OsmemStore

            store = OsmemStore(log_path=self.workdir / "osmem.log").start()
            self.services.append(store)
            overrides["index"] = {"url": store.url, "server_mode": "serverless", "number_of_replicas": 0}
            self._say(f"[dim]started embedded search store (osmem-server) at {store.url}[/dim]")
        if not self.base_settings.dead_letters.store:  # originals too large for a dead letter, for `dlq replay`
            overrides["dead_letters"] = {"store": str((self.out_dir / "dead-letter-originals").resolve())}
        if self.provider:
            overrides["enrich"] = {"provider": self.provider}
        if self.writeback_url:  # the generic DAM target (docs/writeback.md); its fingerprints go to the store
            overrides["writeback"] = {"targets": [{"name": "dam", "type": "webhook", "url": self.writeback_url,
                                                   "mode": self.writeback_mode}]}
        return self.base_settings.with_overrides(**overrides)

    def start_workers(self, settings: Settings, stages: tuple[str, ...] = STAGE_ORDER) -> None:
        remove_abandoned_private_dirs()
        self._private = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX))
        (self._private / OWNER_FILE).write_text(str(os.getpid()))
        config = write_settings_file(settings, self._private)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
        env.update({"ASSETSTREAM_CONFIG": str(config), "OMP_THREAD_LIMIT": "1"})
        # glibc's per-thread malloc arenas doubled preprocess's memory (bench/preprocess_memory.py): capped as in
        # the image (Dockerfile), unless the caller chose a value
        env.setdefault("MALLOC_ARENA_MAX", "2")
        for stage in stages:
            log = open(self.workdir / f"{stage}.log", "ab")
            self.workers[stage] = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", stage], env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # a worker exits within its drain timeout (runner.drain_timeout_s, see configure(); abandoned work is not
        # waited for): a little more, then it is killed
        deadline = time.monotonic() + self.drain_timeout_s + 2
        for proc in self.workers.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        with quiet_store_client():
            if self.settings is not None:
                from domain.store.vector_cache import stop_refreshers

                stop_refreshers(self.settings.index.url)  # the review app's searches polled it in the background
            for service in reversed(self.services):
                service.stop()
        if self._private is not None:  # the settings file holds secrets; the logs stay
            shutil.rmtree(self._private, ignore_errors=True)

    def check_workers(self, only: str | None = None) -> None:
        for stage, proc in self.workers.items():
            if only in (None, stage) and proc.poll() is not None:
                tail = (self.workdir / f"{stage}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the {stage} worker exited with code {proc.returncode}:\n{tail}")

    # ------------------------------------------------------------------------------------------ run
    def run(self, after: Callable[[Settings], None] | None = None) -> tuple[Tracker, Settings]:
        """Process the images; `after(settings)` runs while broker, store and workers are still up (`--serve`)."""
        from domain.store.client import make_client
        from domain.store.management import ensure_index
        from streams.topics import create_topics

        images, self.skipped = find_images(self.inputs, self.base_settings.ops.image_extensions)
        self.images = images
        for name, why in self.skipped:
            self._say(f"[yellow]skipped[/yellow] {name}: {why}")
        if not images:
            raise FileNotFoundError(f"no images found in {' '.join(self.inputs)}"
                                    + (f" ({len(self.skipped)} file(s) skipped, see above)" if self.skipped else ""))
        # SIGTERM and SIGHUP stop the run like Ctrl-C: the finally below stops every worker, the broker and the
        # store (each child runs in its own session, so nothing else would reach them)
        signalled = Interrupts()
        previous = {sig: signal.signal(sig, signalled.handle) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        finished = False
        try:
            # the decisions people made on these assets in an earlier run (its sidecars in --out): re-applied
            # below through the review group, never overwritten with the model's values
            carried = self.read_carried_decisions(images)
            settings = self.settings = self.configure(images)
            create_topics(settings)
            ensure_index(make_client(settings), settings)
            # serving or carrying decisions: the review group too, so a decision reaches the index and the
            # sidecars; with write-back targets, the writeback group
            self.start_workers(settings, STAGE_ORDER + (("review",) if after is not None or carried else ())
                               + (("writeback",) if settings.writeback.targets else ()))
            tracker, paths = self.tracker, self.paths
            self.started_ms = int(time.time() * 1000) - 1000  # the broker's clock may lag a little
            self.publish(settings, images, event_ids=tracker.event_ids, paths=paths, again=self.republish)
            self._say(f"published {len(images)} asset event(s) to {settings.topics.name('raw')}"
                      + (f", and {len(self.republish)} again for the assets published into an earlier session "
                         f"({', '.join(sorted(self.republish))})" if self.republish else ""))
            self.follow(settings, tracker)
            # the index's duplicate families: a later original re-points a family the sink wrote before it, so
            # they are read once the index group has handled every validated record
            self.wait_for_group(settings, "index", "validated")
            # the documents the re-applied decisions were read back from already gave their families
            reread = self.reapply_decisions(settings, carried) if carried else []
            self.read_families(settings, skip=reread)
            if "writeback" in self.workers:  # after the re-applied decisions, which the group writes too
                self.follow_writeback(settings)
            self.rows = self.summary_rows()
            self.write_sidecars(tracker, paths, self.rows)
            if after is not None:
                done = threading.Event()
                self._serving_ms = int(time.time() * 1000)  # decisions from here on are the session's
                follower = threading.Thread(target=self.follow_decisions, args=(settings, tracker, paths, done),
                                            name="sidecars", daemon=True)
                follower.start()
                self._serve_log_size = _size(self.workdir / "writeback.log")
                try:
                    after(settings)
                    # a decision sent just before Ctrl-C: the review group applies it (a few seconds at most), the
                    # follower writes it once the index holds it (its last pass, when `done` is set)
                    from confluent_kafka import KafkaException

                    try:
                        self.wait_for_group(settings, "review", "feedback", timeout_s=5.0, quiet=True)
                    except (TimeoutError, RuntimeError, KafkaException) as exc:
                        log.warning("decisions still on their way when the session ended: %s", exc)
                finally:
                    done.set()
                    follower.join(8)
                if "writeback" in self.workers:  # the session's decisions: written, refused, or still waiting
                    # said first, and a second Ctrl-C waits for it: it is the report this check is for (code
                    # review 18 F6: up to a minute in silence, and a second Ctrl-C lost it)
                    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
                    try:
                        if self.decision_records:
                            self._say(f"checking the write-back of the session's decisions on "
                                      f"{len(self.decision_records)} asset(s) (a few seconds; Ctrl-C is held "
                                      "until it is done)")
                        self.follow_session_writeback(settings)
                    finally:
                        signal.signal(signal.SIGINT, sigint)
            finished = True
            return tracker, settings
        except BaseException as exc:  # interrupted (or failed): what the index says about the finished assets so far
            if self.settings is not None:
                self.read_families(self.settings, timeout_s=5.0, quiet=True)
            signalled.reraise(exc)
            raise
        finally:
            # the work is done and its rows are built: a Ctrl-C while the workers drain and the broker and store
            # stop (seconds) would only cut that short, leave processes running and lose the rows
            sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if finished else None
            try:
                self.stop()
            finally:
                if sigint is not None:
                    signal.signal(signal.SIGINT, sigint)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def read_families(self, settings: Settings | None, timeout_s: float = 30.0, quiet: bool = False,
                      skip: Iterable[str] = ()) -> None:
        """Each indexed asset's duplicate family as its index document has it (`tracker.families`), but those in
        `skip` (just read by `read_indexed`). `quiet`: an interrupted run's last look; a store that does not
        answer leaves those assets with enrich's link."""
        ids = sorted(self.tracker.reached["index"] - set(skip))
        if settings is None or not ids:
            return
        try:
            docs = _index_docs(settings, ids, list(FAMILY_FIELDS), timeout_s)
        except Exception as exc:  # noqa: BLE001 - the rows and sidecars are still written, with enrich's link
            if not quiet:
                raise
            log.warning("could not read the duplicate families of the interrupted run: %s", type(exc).__name__)
            return
        for d in docs:
            if d.get("found"):
                self.tracker.families[d["_id"]] = _family_of(d)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per published input (`summary_row`), with its write-back outcomes when targets are configured."""
        rows = [summary_row(asset_id, path, self.tracker) for asset_id, path in self.paths.items()]
        if "writeback" in self.workers:  # started only with write-back targets
            for r in rows:
                if r["status"] != "dead_lettered":
                    r["writeback"] = self.writeback.get(r["asset_id"], [])
        return rows

    def follow_writeback(self, settings: Settings) -> None:
        """Wait for the writeback group, then read each asset's write-back outcome (`self.writeback`). Never
        fails the run: the rows, sidecars and summary come whatever write-back does. The wait ends when the group
        has handled every record, or `ops.run_writeback_wait_s` after it paused on an unavailable target or
        state store (its worker says so), or at the run's timeout, or when the worker exits; the assets it has
        not written are then `not_written` with the reason, said once in `writeback_problems`."""
        from app import run_writeback as wb

        pending = self.wait_for_writeback(settings, grace_s=settings.ops.run_writeback_wait_s)
        letters = wb.read_dead_letters(settings, "writeback", set(self.tracker.event_ids), self.started_ms)
        self.writeback = self.as_shown(wb.outcomes(settings, self.tracker.validated, letters, self.started_ms,
                                                   pending))
        stuck = sum(w["outcome"] == "not_written" for ws in self.writeback.values() for w in ws)
        if pending and stuck:
            self.writeback_problems.append(wb.describe_pause(settings, pending, stuck, self.bootstrap)
                                           if "unavailable" in pending else f"{pending}: {stuck} asset(s) not "
                                           f"written (logs: {self.workdir / 'writeback.log'})")

    def follow_session_writeback(self, settings: Settings, wait_s: float = 10.0) -> None:
        """At the end of a `--serve` session: the write-back outcome of each decision made in it (trial 35 F2: an
        approval the target refused, or that the group dead-lettered, was dropped silently at Ctrl-C, and
        summary.json said the same for written and not written). Waits a little for the writeback group (2 s
        once it has paused on its target since the session began serving and stopped moving), then per decided
        asset and target: the decision's record not handled yet -> `not_written` with the target's reason; else
        what the group left since the decision (written, unchanged, left alone, dead-lettered). The rows and
        summary.json take them; `session_writeback_problems` names the assets not written, and why."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from app import run_writeback as wb
        from streams.records import to_ms

        decided = {a: at for a, at in self.decision_records.items() if a in self.tracker.validated}
        if not decided:
            return
        pending = self.wait_for_writeback(settings, grace_s=2.0, since=self._serve_log_size,
                                          deadline_s=min(wait_s, settings.ops.run_writeback_wait_s))
        topic = settings.topics.name("validated")
        c = Consumer({**settings.kafka.client_config(), "group.id": settings.groups.name("writeback"),
                      "enable.auto.commit": False})
        try:  # the group's offsets, never joined
            parts = sorted({p for p, _ in decided.values()})
            committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts],
                                                                       timeout=10)}
        except KafkaException:
            committed = {}
        finally:
            c.close()
        since = {a: decided_ms((self.tracker.validated[a]).get("review")) for a in decided}
        letters = {a: [x for x in found if to_ms(x.get("last_failure_time") or 0) >= since[a]]
                   for a, found in wb.read_dead_letters(settings, "writeback", set(decided), self.started_ms).items()}
        outcomes = wb.outcomes(settings, {a: self.tracker.validated[a] for a in decided}, letters,
                               self.started_ms, pending or wb.NOT_HANDLED, since_of=since)
        for asset_id, (partition, offset) in decided.items():
            if committed.get(partition, -1) <= offset:  # the decision's record is not handled: nothing of it written
                outcomes[asset_id] = [w if w["outcome"] == "skipped" else
                                      {"target": w["target"], "outcome": "not_written",
                                       "reason": wb.short_reason(pending, w["target"]) or wb.NOT_HANDLED}
                                      for w in outcomes[asset_id]]
        outcomes = self.as_shown(outcomes)
        self.writeback.update(outcomes)
        self.rows = self.summary_rows()
        self.write_sidecars(self.tracker, self.paths, self.rows)
        self.session_writeback_problems = wb.session_problems(settings, outcomes, pending, self.bootstrap,
                                                              self.rerun_command())

    def wait_for_writeback(self, settings: Settings, grace_s: float, since: int = 0,
                           deadline_s: float | None = None) -> str | None:
        """Wait until the writeback group has handled every `validated` record (None), unless it is stuck on its
        target: then why it did not finish (its worker's latest pause line after byte `since` of its log, a
        timeout, or the worker's exit). Stuck = paused on an unavailable target or state store (the worker logs
        it) and not moving for `grace_s` since the pause was seen; records it commits start the wait again (a
        target that came back), and a pause logged before that no longer counts. `deadline_s`: the wait's limit
        (default: the run's timeout)."""
        from confluent_kafka import KafkaException

        from app import run_writeback as wb

        worker_log = self.workdir / "writeback.log"
        started = time.monotonic()
        offset = [since]  # where in the worker's log a pause counts from
        least = [sys.maxsize]  # the fewest records left seen so far
        paused_at: list[float] = []  # since when the group has been paused and has not committed anything

        def give_up(left: int) -> bool:
            now = time.monotonic()
            if left < least[0]:  # it moved on: the wait starts again at the next pause
                if least[0] != sys.maxsize:  # (a pause before the first look counts)
                    paused_at.clear()
                    offset[0] = _size(worker_log)
                least[0] = left
            if not paused_at and wb.pause_reason(worker_log, since=offset[0]):
                paused_at.append(now)
            return (deadline_s is not None and now - started > deadline_s
                    or bool(paused_at) and now - paused_at[0] > grace_s)

        try:
            if self.wait_for_group(settings, "writeback", "validated", give_up=give_up, quiet=deadline_s is not None,
                                   timeout_s=None if deadline_s is None else deadline_s + 5,
                                   check=lambda: self.check_workers(only="writeback")):
                return None
            return wb.pause_reason(worker_log, since=since) or ("writeback group paused" if paused_at else None)
        except TimeoutError as exc:
            return str(exc)
        except (RuntimeError, KafkaException) as exc:
            return str(exc).splitlines()[0]

    def as_shown(self, outcomes: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        """Write-back outcomes as this run shows them: after a run on the embedded broker its dead letters are gone
        with it, so a letter's advice to `dlq replay` names the command that works then (trial 36 N5)."""
        from app import run_writeback as wb

        return outcomes if self.bootstrap else wb.without_replay(outcomes, self.rerun_command())

    def rerun_command(self) -> str:
        """What re-applies this run's decisions from its sidecars and writes them back once its embedded broker is
        gone: `assetstream run` over the same inputs, with the same --out and write-back options (the settings,
        e.g. targets in ASSETSTREAM_CONFIG, the same too; a URL with a password shown without it)."""
        import shlex

        from streams.settings import redact_url

        return shlex.join(["assetstream", "run", *self.inputs, "--out", str(self.out_dir.resolve()),
                           *(["--writeback-url", redact_url(self.writeback_url)] if self.writeback_url else []),
                           *(["--writeback-mode", self.writeback_mode] if self.writeback_mode != "write" else []),
                           *(["--provider", self.provider] if self.provider else [])])

    def wait_for_group(self, settings: Settings, stage: str, logical: str, timeout_s: float | None = None,
                       quiet: bool = False, give_up: Callable[[int], bool] | None = None,
                       check: Callable[[], None] | None = None) -> bool:
        """Until the group has committed everything on its input topic (its work is done: True); TimeoutError
        after `timeout_s` (default: the run's timeout). `give_up(records left)`: asked while waiting, True stops the wait
        (returns False). `check`: raises when a worker has exited (default: any of the run's workers)."""
        from confluent_kafka import Consumer, TopicPartition

        from streams.avro import topic_names

        topic = topic_names(settings)[logical]
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        c = Consumer({**settings.kafka.client_config(), "group.id": settings.groups.name(stage),
                      "enable.auto.commit": False})
        try:
            tps = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
            ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
            deadline = time.monotonic() + timeout_s
            while (left := sum(max(0, ends[tp.partition] - max(0, tp.offset))
                               for tp in c.committed(tps, timeout=10))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the {stage} group did not finish within {timeout_s:.0f}s")
                (check or self.check_workers)()
                if give_up is not None and give_up(left):
                    return False
                time.sleep(0.3)
        finally:
            c.close()
        if not quiet:
            self._say(f"[dim]{stage}: every {logical} record handled (logs: {self.workdir / (stage + '.log')})[/dim]")
        return True

    @staticmethod
    def publish(settings: Settings, images: list[Path], *, event_ids: dict[str, str] | None = None,
                paths: dict[str, Path | str] | None = None, again: dict[str, dict[str, Any]] | None = None,
                ) -> tuple[dict[str, str], dict[str, Path | str]]:
        """One AssetEvent per image, and one per asset of `again` (asset id -> session_event: an asset published
        into an earlier session, published again as it was then, now); the producer is gone when this returns (no
        client outlives the run). event_ids / paths (asset id -> event id / file or URI) are filled as each event
        is handed to the producer."""
        from app.producer import AssetPublisher, asset_id_for, source_uri_for

        event_ids = {} if event_ids is None else event_ids
        paths = {} if paths is None else paths
        with AssetPublisher(settings) as pub:
            for path in images:
                asset_id = asset_id_for(path)  # the same id `publish` and `backfill` give this file
                event = pub.publish_asset(asset_id, source_uri_for(path), wait=False, uploader="assetstream run")
                event_ids[asset_id] = event["event_id"]
                paths[asset_id] = path
            for asset_id, fields in (again or {}).items():
                uri = fields["source_uri"]
                event = pub.publish_asset(asset_id, uri, wait=False, version=int(time.time() * 1000),
                                          **{k: v for k, v in fields.items() if k != "source_uri"})
                event_ids[asset_id] = event["event_id"]
                paths[asset_id] = shown_source(uri)
        return event_ids, paths

    def follow(self, settings: Settings, tracker: Tracker) -> None:
        """Read the stage topics and the index until every asset is indexed or dead-lettered."""
        from confluent_kafka import Consumer

        from domain.store.client import make_client
        from domain.store.management import read_alias
        from streams.avro import Serde, topic_names

        names = topic_names(settings)
        serde = Serde.for_settings(settings)
        consumer = Consumer({**settings.kafka.client_config(), "group.id": f"assetstream-run-{os.getpid()}",
                             "enable.auto.commit": False})
        watched = {names[t]: t for t in ("preprocessed", "enriched", "validated", "dead_letter")}
        _read_from_start(consumer, list(watched))
        es = make_client(settings)
        progress = None
        bars: dict[str, Any] = {}
        if self.show_progress and self.console is not None:
            progress = run_progress(self.console)
            progress.start()
            for stage in STAGE_ORDER:
                bars[stage] = progress.add_task(stage, total=len(tracker.event_ids))
            bars["dead"] = progress.add_task("dlq", total=None, count="dead-lettered")
        deadline = time.monotonic() + self.timeout_s
        last_index_check = 0.0
        try:
            while not tracker.all_finished():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not every asset was processed within {self.timeout_s:.0f}s")
                self.check_workers()
                msg = consumer.poll(0.2)
                if msg is not None and not msg.error():
                    self._observe(watched[msg.topic()], msg, serde, tracker)
                if time.monotonic() - last_index_check > 0.5:
                    last_index_check = time.monotonic()
                    todo = [a for a in tracker.reached["validate"] if a not in tracker.reached["index"]]
                    if todo:
                        es.indices.refresh(index=read_alias(settings))
                        found = es.mget(index=read_alias(settings), ids=todo, source=False)["docs"]
                        tracker.reached["index"].update(d["_id"] for d in found if d.get("found"))
                if progress is not None:  # a dead-lettered asset goes no further: done for every stage's bar
                    for stage in STAGE_ORDER:
                        progress.update(bars[stage], completed=len(tracker.reached[stage] | tracker.dead.keys()))
                    progress.update(bars["dead"], completed=len(tracker.dead))
        finally:
            if progress is not None:
                progress.stop()
            consumer.close()
            es.close()

    def _observe(self, logical: str, msg: Any, serde: Any, tracker: Tracker) -> None:
        key = msg.key().decode() if msg.key() else None
        if key not in tracker.event_ids:
            return
        if logical == "dead_letter":
            letter = serde.deserialize("dead_letter", msg.value())
            if letter.get("stage") != "writeback":  # the asset went on to the index: its row says the write-back
                tracker.dead[key] = letter          # outcome (follow_writeback), whenever the letter comes
            return
        value = serde.deserialize(logical, msg.value())
        from domain.records import asset_of

        if asset_of(value)["event_id"] != tracker.event_ids[key]:
            return  # an older event for the same asset (external broker)
        stage = {v: k for k, v in STAGE_OUTPUT.items()}[logical]
        tracker.reached[stage].add(key)
        if logical == "validated":
            tracker.validated[key] = value

    def follow_decisions(self, settings: Settings, tracker: Tracker, paths: dict[str, Path],
                         done: threading.Event) -> None:
        """While serving: the sidecars and summary row of each of the run's assets, and of each asset backfilled or
        published into the session once a person decides on it, follow the index. Every later
        record of the asset on `validated` (an editor's decision applied by the review group, whatever event it
        was applied to; a reprocess; a replay) is followed by what the index made of it: once the index group
        has committed past that record, the document's stored record (every review on it, per field the newest
        decision: the sink merges them) and its duplicate family replace the run's. Reading the index, not the
        topic, keeps the order right: a reprocess arriving after a decision is written with the decision on top.
        When `done` is set, what is still on its way is waited for a few seconds (the last decision before
        Ctrl-C)."""
        from confluent_kafka import Consumer, TopicPartition

        from domain.records import asset_of
        from streams.avro import Serde

        serde = Serde.for_settings(settings)
        topic = settings.topics.name("validated")
        common = {**settings.kafka.client_config(), "enable.auto.commit": False}
        consumer = Consumer({**common, "group.id": f"assetstream-run-review-{os.getpid()}"})
        index_group = Consumer({**common, "group.id": settings.groups.name("index")})  # its offsets, never joined
        _read_from_start(consumer, [topic])
        pending: dict[str, tuple[int, int]] = {}  # asset id -> (partition, offset) of its newest record not yet
        final_deadline = None
        try:
            while True:
                if done.is_set() and final_deadline is None:
                    final_deadline = time.monotonic() + 4.0
                for msg in consumer.consume(100, 0.5 if final_deadline is None else 0.2):
                    if msg.error() or msg.key() is None:
                        continue
                    asset_id = msg.key().decode()
                    value = serde.deserialize("validated", msg.value())
                    decided = (value.get("stamp") or {}).get("stage") == "review"
                    if asset_id not in tracker.event_ids:
                        # an asset backfilled or published into the session (trial 24b): followed from the first
                        # decision on it, so its sidecars and summary row keep that decision too
                        if not decided and asset_id not in paths:
                            continue
                        paths.setdefault(asset_id, shown_source(asset_of(value).get("source_uri") or asset_id))
                        # what a later run over the same --out publishes again to re-apply its decision (trial 35 F4)
                        self.published_into.setdefault(asset_id, session_event(asset_of(value)))
                    elif not decided and asset_of(value)["event_id"] == tracker.event_ids[asset_id]:
                        continue  # the run's own record: already followed by the run
                    pending[asset_id] = (msg.partition(), msg.offset())
                    if decided and decided_ms(value.get("review")) >= self._serving_ms:  # not a carried one
                        self.decision_records[asset_id] = (msg.partition(), msg.offset())
                if pending:
                    parts = sorted({p for p, _ in pending.values()})
                    committed = {tp.partition: tp.offset
                                 for tp in index_group.committed([TopicPartition(topic, p) for p in parts], timeout=10)}
                    indexed = [a for a, (p, o) in pending.items() if committed.get(p, -1) > o]
                    if indexed and self.read_indexed(settings, indexed, serde):
                        self.rows = self.summary_rows()
                        self.write_sidecars(tracker, paths, self.rows)
                    for a in indexed:
                        pending.pop(a, None)
                if final_deadline is not None and (not pending or time.monotonic() > final_deadline):
                    break
        except Exception:  # noqa: BLE001 - the review app keeps serving; the sidecars just stop following
            log.warning("sidecars stopped following decisions", exc_info=True)
        finally:
            consumer.close()
            index_group.close()

    def read_indexed(self, settings: Settings, asset_ids: list[str], serde: Any = None) -> list[str]:
        """Replace the run's record and duplicate family of these assets with the index's (the stored record, as
        the sink wrote it: every review applied). Returns the assets whose record changed; an asset the index
        does not hold (deleted since) keeps its record. An asset the index dead-lettered earlier in the run and
        holds now (fixed, replayed, decided on while serving: trial 33 N1) is no longer dead-lettered: its row and
        sidecars say what the index holds, the person's decision with it."""
        from domain.records import record_from_doc
        from streams.avro import Serde

        serde = serde or Serde.for_settings(settings)
        docs = _index_docs(settings, list(asset_ids), ["record", "thumbnail", *FAMILY_FIELDS])
        changed = []
        for d in docs:
            if not d.get("found"):
                continue
            self.tracker.families[d["_id"]] = _family_of(d)
            record = record_from_doc(d.get("_source") or {})
            if record is None:
                continue
            # through Avro, as the topics carry it (times as datetimes): the same sidecars either way
            record = serde.deserialize("validated", serde.serialize("validated", record))
            record = with_thumbnail_of(self.tracker.validated.get(d["_id"]), record)
            was_dead = self.tracker.dead.pop(d["_id"], None) is not None
            self.tracker.reached["index"].add(d["_id"])
            if record != self.tracker.validated.get(d["_id"]) or was_dead:
                self.tracker.validated[d["_id"]] = record
                changed.append(d["_id"])
        return changed

    # ------------------------------------------------------------------------------------------ decisions
    def read_carried_decisions(self, images: list[Path]) -> dict[str, dict[str, Any]]:
        """asset id -> the HumanReview its sidecar in --out records (`assetstream:review`, written by an earlier
        run or `run --serve` session), for the images of this run. A sidecar that says a person reviewed it but
        whose decision cannot be read (hand-edited, or written before sidecars carried the decision) is set
        aside (`<name>.reviewed.jsonld`), never overwritten."""
        from app.producer import asset_id_for
        from domain.render import review_of_jsonld

        carried: dict[str, dict[str, Any]] = {}
        for path in images:
            asset_id = asset_id_for(path)
            jsonld = self.out_dir / f"{sidecar_name(asset_id)}.jsonld"
            if not jsonld.is_file():
                continue
            try:
                doc = json.loads(jsonld.read_text())
                review = review_of_jsonld(doc) if isinstance(doc, dict) else None
            except (OSError, ValueError) as exc:
                self.set_aside(asset_id, f"its decision cannot be read ({exc})")
                continue
            if review is not None:
                carried[asset_id] = review
            elif isinstance(doc, dict) and doc.get("assetstream:reviewedBy"):
                self.set_aside(asset_id, "it records a review but not the decision itself")
        own = {asset_id_for(path) for path in images}
        for asset_id, (event, review) in self.published_earlier(own).items():
            why = cannot_publish_again(event)
            if why:  # its sidecars stay as they are (not this run's asset: nothing writes them)
                self._say(f"[yellow]not re-applied[/yellow]: the decision on {asset_id} in "
                          f"{self.out_dir.resolve()} ({why}); its sidecars are kept as they are")
                continue
            carried[asset_id] = review
            self.republish[asset_id] = self.published_into[asset_id] = event
        self.carried_pending = set(carried)
        if carried:
            self._say(f"{len(carried)} asset(s) carry a person's decision in {self.out_dir.resolve()}: "
                      "re-applied after processing (never overwritten with the model's values)"
                      + (f"; {len(self.republish)} of them, published into an earlier session and none of this "
                         "run's files, published again from their source" if self.republish else ""))
        return carried

    def published_earlier(self, own: set[str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """asset id -> (session_event, HumanReview) of each asset in --out that was published into an earlier
        `--serve` session (by URL, or a file from another shell) and decided there, but is none of `own` (this
        run's files): the manifest's `published` entries (MANIFEST, written since trial 35 F4), and for a folder
        an older version wrote, its sidecars whose `contentUrl` is not a local file (published by URL). Without
        this a later run never re-applied (nor wrote back) those decisions, and its summary.json dropped their
        rows (trial 35 F4)."""
        from domain.render import review_of_jsonld

        manifest = self.read_manifest()
        published = manifest.get("published") if isinstance(manifest.get("published"), dict) else {}
        files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
        names = {sidecar_name(a) for a in own}
        # (asset id, session_event) from the manifest, then (None, sidecar name) for an older version's folder
        candidates: list[tuple[str | None, Any]] = [
            (a, e) for a, e in published.items() if isinstance(e, dict) and isinstance(e.get("source_uri"), str)]
        candidates += [(None, name) for name in sorted(files) if isinstance(name, str) and name.endswith(".jsonld")
                       and ".reviewed." not in name and name[:-len(".jsonld")] not in names]
        found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for asset_id, event in candidates:
            name = f"{sidecar_name(asset_id)}.jsonld" if asset_id is not None else event
            try:
                doc = json.loads((self.out_dir / name).read_text())
                review = review_of_jsonld(doc) if isinstance(doc, dict) else None
            except (OSError, ValueError):
                continue
            if asset_id is None:  # the sidecar names its asset and source: taken when published by URL
                asset_id, uri = jsonld_asset_id(doc), doc.get("contentUrl")
                if not asset_id or asset_id in published or not isinstance(uri, str) or "://" not in uri \
                        or uri.startswith("file:"):
                    continue
                event = {"source_uri": uri}
            if review is not None and asset_id not in own and asset_id not in found:
                found[asset_id] = (event, review)
        return found

    def read_manifest(self) -> dict[str, Any]:
        """The manifest in --out (MANIFEST), {} when there is none or it cannot be read."""
        try:
            manifest = json.loads((self.out_dir / MANIFEST).read_text())
        except (OSError, ValueError):
            return {}
        return manifest if isinstance(manifest, dict) else {}

    def reapply_decisions(self, settings: Settings, carried: dict[str, dict[str, Any]]) -> list[str]:
        """Send each carried decision to `feedback` as an EditorDecision (the path `assetstream feedback` and the
        review app take), wait until the review and index groups have applied them, and take the index's records.
        A decision the index did not take (the asset was dead-lettered this time, or the decision names a tag
        the vocabulary no longer holds: see the review group's dead letters) keeps its old sidecars, set aside.
        Returns the assets whose index documents it read back (`read_indexed`: their records and families)."""
        from app.kpis.feedback import publish_decisions

        # a store that outlives runs (--es-url) may hold the decision already, or a newer one (enrich and validate
        # put the indexed review on the run's records): nothing to send
        indexed = {a: r for a, r in carried.items() if a in self.tracker.reached["index"]
                   and decided_ms((self.tracker.validated.get(a) or {}).get("review")) < decided_ms(r)}
        held = [a for a in carried if a in self.tracker.reached["index"] and a not in indexed]
        if indexed:
            publish_decisions(settings, [d for a, r in indexed.items() for d in decisions_of_review(a, r)])
            self.wait_for_group(settings, "review", "feedback")
            self.wait_for_group(settings, "index", "validated")
            self.read_indexed(settings, list(indexed))
        kept = [a for a in [*indexed, *held] if has_decision((self.tracker.validated.get(a) or {}).get("review"))]
        for asset_id in carried:
            if asset_id not in kept and asset_id in self.tracker.validated:
                self.set_aside(asset_id, "its decision could not be re-applied")
        self.carried_pending.clear()
        if kept:
            self._say(f"re-applied {len(kept)} person's decision(s) from the sidecars in {self.out_dir.resolve()}: "
                      "the index and the new sidecars keep them")
        return list(indexed)

    def set_aside(self, asset_id: str, why: str) -> None:
        """Keep an asset's reviewed sidecars under another name (`<name>.reviewed.jsonld` / `.xmp`, numbered when
        taken) so this run's files never replace what a person decided; say so."""
        name = sidecar_name(asset_id)
        n = 0
        while any((self.out_dir / f"{name}.reviewed{'.' + str(n) if n else ''}.{ext}").exists()
                  for ext in ("jsonld", "xmp")):
            n += 1
        moved = []
        for ext in ("jsonld", "xmp"):
            src = self.out_dir / f"{name}.{ext}"
            if src.exists():
                dst = self.out_dir / f"{name}.reviewed{'.' + str(n) if n else ''}.{ext}"
                src.rename(dst)
                moved.append(dst.name)
        if moved:
            self._say(f"[yellow]kept aside[/yellow] {', '.join(moved)} in {self.out_dir.resolve()}: {why}; "
                      "this run's sidecars have the model's values")
            self.set_aside_files.extend(moved)

    def decided_assets(self) -> list[str]:
        """The assets whose record carries a person's decision (after `--serve`: the run's and those backfilled into the
        session; or carried over)."""
        return sorted(a for a, v in self.tracker.validated.items() if has_decision(v.get("review")))

    def write_sidecars(self, tracker: Tracker, paths: dict[str, Path], rows: list[dict[str, Any]]) -> None:
        from domain.render import jsonld_text, to_jsonld, to_xmp

        self.out_dir.mkdir(parents=True, exist_ok=True)
        by_id = {r["asset_id"]: r for r in rows}
        written: list[str] = []
        for asset_id, value in tracker.validated.items():
            if asset_id in self.carried_pending:  # a person's decision not re-applied yet: its files stay
                continue
            if asset_id in tracker.dead:  # dead-lettered after validate (at the index): not published, no files
                continue
            value = family_view(value, tracker, asset_id)
            name = sidecar_name(asset_id)  # a.jpg, a.png and sub/a.jpg are three assets: three pairs of files
            files = [f"{name}.jsonld", f"{name}.xmp"]
            poster = thumbnail_of(value) if media_type_of(value) == "video" else None
            if poster and poster.get("data"):  # a video's poster frame, next to its JSON-LD (its thumbnailUrl)
                files.append(f"{name}.poster.jpg")
                (self.out_dir / files[-1]).write_bytes(poster["data"])
            (self.out_dir / files[0]).write_text(jsonld_text(
                to_jsonld(value, thumbnail_url=files[2] if len(files) > 2 else None)))
            (self.out_dir / files[1]).write_text(to_xmp(value))
            written += files
            if asset_id in by_id:
                by_id[asset_id]["sidecars"] = files
        # every input, as `run --json` prints them: the published rows, then the files found but not published
        (self.out_dir / "summary.json").write_text(json.dumps([*rows, *skipped_rows(self.skipped)], indent=2,
                                                              default=str))
        self.record_files(written)

    def record_files(self, written: list[str]) -> None:
        """Keep the list of sidecars the runs into --out wrote (MANIFEST, each file with the run that last wrote
        it), and note those an earlier run wrote that this one did not (`earlier_files`): they stay, named at the
        end of the run as not in this summary.json (trial 32 F8). Nothing is deleted: an earlier run's sidecars
        may carry people's decisions (re-applied by a later run over those files), and a file the manifest does
        not name was not written by assetstream."""
        manifest = self.read_manifest()
        known = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
        files = {name: run for name, run in known.items()
                 if isinstance(name, str) and "/" not in name and (self.out_dir / name).is_file()}
        files.update(dict.fromkeys(written, self.run_stamp))
        self.earlier_files = sorted(name for name, run in files.items() if run != self.run_stamp)
        # the assets published into a session (none of its files) whose sidecars are here: what a later run over
        # this --out publishes again, to re-apply their decisions (published_earlier; trial 35 F4)
        earlier = manifest.get("published") if isinstance(manifest.get("published"), dict) else {}
        published = {a: e for a, e in {**earlier, **self.published_into}.items()
                     if f"{sidecar_name(a)}.jsonld" in files}
        (self.out_dir / MANIFEST).write_text(json.dumps(
            {"written_by": "assetstream run", "files": files, **({"published": published} if published else {})},
            indent=1, sort_keys=True, default=str))


    def interrupted_rows(self, cause: str = "the run was interrupted") -> list[dict[str, Any]]:
        """After an interrupted run (Ctrl-C, SIGTERM, SIGHUP), or one that timed out or lost a worker (`cause`
        says which, in each unfinished row's reason): one row per image found, as far as it got. An
        indexed or dead-lettered asset has its usual row; any other has status `interrupted`, the last stage
        whose output it reached (`raw`: published only; null: not published) and the reason. Its sidecars and
        summary.json are written for what finished. The files found but not published are added by the caller
        (`skipped_rows`), as after a finished run."""
        from app.producer import asset_id_for

        tracker = self.tracker
        rows: list[dict[str, Any]] = []
        again = [(a, shown_source(e["source_uri"])) for a, e in self.republish.items()]
        for asset_id, path in [(asset_id_for(p), p) for p in self.images] + again:
            if asset_id in tracker.event_ids and tracker.finished(asset_id):
                rows.append(summary_row(asset_id, path, tracker))
                continue
            reached = [s for s in STAGE_ORDER if asset_id in tracker.reached[s]]
            last = reached[-1] if reached else "raw" if asset_id in tracker.event_ids else None
            rows.append({"asset_id": asset_id, "file": str(path), "status": "interrupted", "reached": last,
                         "reason": f"{cause} before this input was "
                                   + ("published" if last is None else f"indexed (its last output: {last})")})
        finished = {a: p for a, p in self.paths.items() if a in tracker.validated and tracker.finished(a)}
        try:
            self.write_sidecars(Tracker(tracker.event_ids, tracker.reached,
                                        {a: v for a, v in tracker.validated.items() if a in finished}, tracker.dead,
                                        tracker.families),
                                finished, rows)
        except OSError as exc:  # the summary is still printed; the files are a convenience
            log.warning("could not write the interrupted run's sidecars in %s: %s", self.out_dir, exc)
        return rows


def _index_docs(settings: Settings, ids: list[str], includes: list[str],
                timeout_s: float | None = None) -> list[dict[str, Any]]:
    """The index documents of these assets (mget after a refresh of the read alias, `includes` of each source)."""
    from domain.store.client import make_client
    from domain.store.management import read_alias

    es = make_client(settings)
    if timeout_s is not None:
        es = es.options(request_timeout=timeout_s)
    try:
        alias = read_alias(settings)
        es.indices.refresh(index=alias)
        return es.mget(index=alias, ids=ids, source_includes=includes)["docs"]
    finally:
        es.close()


def _family_of(doc: dict[str, Any]) -> dict[str, Any]:
    """An index document's duplicate family (FAMILY_FIELDS), as the run's rows and sidecars show it."""
    return {k: (doc.get("_source") or {}).get(k) for k in FAMILY_FIELDS}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from_start(consumer: Any, topics: list[str]) -> None:
    """Every partition of these topics assigned from its first record, without joining a consumer group: the run
    commits nothing, and a group member's close() waits for a join in flight (on tansu each join is held for half
    the session timeout: a SIGTERM during one kept the run from stopping for ~5 s)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    meta = consumer.list_topics(timeout=10).topics
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in sorted(meta[t].partitions)])


def run_progress(console: Any) -> Any:
    """The run's progress display: a bar per stage (assets through it, of all), and the dead letters as a count
    (`dlq  2 dead-lettered`, a task added with `count=` its noun): a bar `0/2` there looked like work still to do
    (trial 33 N6), though a dead letter is not something the run waits for."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Bar(BarColumn):
        def render(self, task: Any) -> Any:
            return Text("") if task.fields.get("count") else super().render(task)

    class Done(MofNCompleteColumn):
        def render(self, task: Any) -> Any:
            noun = task.fields.get("count")
            return Text(f"{int(task.completed)} {noun}", style="progress.download") if noun else super().render(task)

    return Progress(TextColumn("{task.description:>10}"), Bar(), Done(), TimeElapsedColumn(), console=console)


MANIFEST = ".assetstream-files.json"
"""in --out: the sidecars `assetstream run` wrote there, each with the run that last wrote it (EmbeddedRun.record_files)"""

STOP_WITHIN_S = 30.0
"""An interrupted run stops its workers (their drain timeout), broker and store within seconds. Should anything
still hang this long after the signal, every thread's stack goes to stderr and the process exits 1; its children
follow it (they die with their parent, as after a kill -9)."""


class Interrupts:
    """The run's SIGINT/SIGTERM/SIGHUP handler: raises KeyboardInterrupt where the main thread is, and keeps the
    signal. A handler runs wherever Python code runs next, which can be a callback inside a C extension: there
    confluent-kafka replaces the KeyboardInterrupt with its own error (a SIGTERM while a consumer read its
    configuration surfaced as `TypeError: expected configuration property value as type unicode string`, exit 1
    instead of 130). `reraise` turns whatever the run raised after a signal back into the interruption it was."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        faulthandler.dump_traceback_later(STOP_WITHIN_S, exit=True)
        raise KeyboardInterrupt(f"signal {signum}")

    def reraise(self, exc: BaseException) -> None:
        """After a signal, raise `exc` as KeyboardInterrupt (itself when it already is one); before, return."""
        if self.signum is not None and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(f"signal {self.signum}") from exc


def sidecar_name(asset_id: str) -> str:
    """The sidecar file stem of an asset: its id (readable stem + hash of the file's URI, unique per file),
    made safe as a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in asset_id).strip(".") or "asset"


SESSION_EVENT_FIELDS = ("tenant", "content_type", "uploader", "uploader_notes", "declared_license", "product_context",
                       "human_fields", "attributes")
"""What a later run publishes again of an asset published into a session (`session_event`), besides its source:
what its publisher gave. Its upload time is kept (`event_time_ms`); its version is the new event's time."""


def session_event(asset: dict[str, Any]) -> dict[str, Any]:
    """An AssetEvent as a later run publishes it again (the manifest's `published` entries): its source, what its
    publisher gave (SESSION_EVENT_FIELDS, those set) and its upload time."""
    from domain.events import REPROCESSED_AT
    from streams.records import to_ms

    event = {"source_uri": asset.get("source_uri"),
             **{k: asset[k] for k in SESSION_EVENT_FIELDS if asset.get(k) not in (None, {}, [])}}
    if REPROCESSED_AT in (event.get("attributes") or {}):  # when a reprocess was sent: not the new event's
        event["attributes"] = {k: v for k, v in event["attributes"].items() if k != REPROCESSED_AT}
    if asset.get("event_time") is not None:
        event["event_time_ms"] = to_ms(asset["event_time"])
    return event


def cannot_publish_again(event: dict[str, Any]) -> str | None:
    """Why a later run cannot publish an asset of an earlier session again to re-apply its decision, or None."""
    from domain.sources import file_path

    uri = event["source_uri"]
    if (event.get("tenant") or "default") != "default":
        return (f"published for tenant {event['tenant']}: a run re-applies the default tenant's decisions only; "
                "publish it into a session with --tenant and decide it again")
    if uri.startswith("file:"):
        return (f"its file {file_path(uri)} is none of this run's files: give it (or its folder) to `assetstream "
                "run` with this --out")
    return None


def shown_source(uri: str) -> Path | str:
    """Where an asset published into a session comes from, as its row's `file` says it: the local path of a
    file:// URI, any other URI as it is (a URL's path alone named no file anyone has)."""
    from domain.sources import file_path

    return Path(file_path(uri)) if uri.startswith("file:") or "://" not in uri else uri


def jsonld_asset_id(doc: dict[str, Any]) -> str | None:
    """The asset id a run's JSON-LD sidecar names (its `assetstream:asset_id` identifier)."""
    for ident in doc.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("propertyID") == "assetstream:asset_id":
            return ident.get("value") if isinstance(ident.get("value"), str) else None
    return None


def decided_ms(review: dict[str, Any] | None) -> int:
    """When a HumanReview was last changed (its verdict or newest field decision, epoch ms; -1: nobody decided)."""
    from streams.records import to_ms

    if not has_decision(review):
        return -1
    times = [review.get("decided_at"), *((f or {}).get("at") for f in review.get("fields") or [])]
    return max((to_ms(t) for t in times if t is not None), default=0)


def with_thumbnail_of(previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    """`record` (read from the index, which keeps a smaller preview) with the thumbnail of the run's own record of
    the asset when it has one: a video's poster sidecar stays the frame preprocess made."""
    thumb = ((((previous or {}).get("enriched") or {}).get("pre") or {}).get("thumbnail"))
    if not thumb or not (record.get("enriched") or {}).get("pre"):
        return record
    enriched = record["enriched"]
    return {**record, "enriched": {**enriched, "pre": {**enriched["pre"], "thumbnail": thumb}}}


def decisions_of_review(asset_id: str, review: dict[str, Any]) -> list[dict[str, Any]]:
    """The EditorDecisions that put a recorded HumanReview back on an asset, each person's at their own time: one
    per (editor, time) of the field decisions, in time order, every field named with its action and value (so an
    approval adds nothing of the new record's), and the verdict with its editor, time and the image it was given
    on (`content_sha256`), together with the fields decided with it. Their ids are derived from what they say, so
    sending them again (a second re-run, whose sidecars they wrote) changes nothing."""
    import hashlib

    from domain.review import FIELDS
    from streams.records import to_ms

    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for f in review.get("fields") or []:
        if isinstance(f, dict) and f.get("field") in FIELDS:
            key = (f.get("editor") or review.get("editor") or "unknown",
                   to_ms(f["at"]) if f.get("at") is not None else -1)
            groups.setdefault(key, []).append({"field": f["field"], "action": f["action"], "value": f.get("value")})
    status = review.get("status")
    verdict = None
    if status is not None:
        verdict = (review.get("editor") or "unknown",
                   to_ms(review["decided_at"]) if review.get("decided_at") is not None else -1)
        groups.setdefault(verdict, [])
    newest = max((at for _, at in groups), default=-1)
    decisions = []
    for editor, at in sorted(groups, key=lambda k: (k[1], k == verdict, k[0])):
        decision = {"asset_id": asset_id, "fields": groups[(editor, at)], "editor": editor,
                    "decided_at": at if at >= 0 else (newest if newest >= 0 else None),
                    "status": status if (editor, at) == verdict else None}
        if (editor, at) == verdict:
            decision["content_sha256"] = review.get("content_sha256")
        digest = hashlib.sha256(json.dumps(decision, sort_keys=True, default=str).encode()).hexdigest()
        decisions.append({**decision, "decision_id": f"sidecar-{digest[:32]}"})
    return decisions


def skipped_rows(skipped: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The summary rows of the files a run found but did not publish (status `skipped`, with the reason): the
    same in `run --json` and in summary.json."""
    return [{"asset_id": None, "file": name, "status": "skipped", "reason": why} for name, why in skipped]


def family_view(validated: dict[str, Any], tracker: Tracker, asset_id: str) -> dict[str, Any]:
    """The validated record as the run shows it: with the index's duplicate family when it was read (enrich's
    link depends on which copy arrived first; the index's canonical member does not), else as validate wrote it."""
    family = tracker.families.get(asset_id)
    return with_family(validated, family) if family is not None else validated


def summary_row(asset_id: str, path: Path, tracker: Tracker) -> dict[str, Any]:
    v = tracker.validated.get(asset_id)
    # a dead letter from any stage wins: one from the index sink comes after validate's record (trial 32 F3: the row
    # said validate's `needs_review`, with sidecars, for an asset the index does not hold)
    if v is None or asset_id in tracker.dead:
        dead = tracker.dead.get(asset_id, {})
        return {"asset_id": asset_id, "file": str(path), "status": "dead_lettered",
                "stage": dead.get("stage"),
                "reason": (dead.get("details") or {}).get("reason") or dead.get("error_type"),
                "message": dead.get("message")}
    v = family_view(v, tracker, asset_id)
    family = v.get("family") or {}
    return {"asset_id": asset_id, "file": str(path), "media_type": media_type_of(v), "title": v.get("title"),
            "alt_text": v.get("alt_text"),
            "tags": [t["tag"] for t in v.get("tags", [])], "status": v.get("status"),
            "usage_flag": v.get("usage_flag"), "cost_usd": v["enriched"].get("cost_usd", 0.0),
            "duplicate_of": v["enriched"].get("duplicate_of"), "family_id": family.get("family_id"),
            "family_size": family.get("family_size"), "reasons": v.get("reasons", [])}
