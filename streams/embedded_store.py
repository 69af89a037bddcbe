"""The search store the embedded `assetstream run` and the tests use: an `osmem-server` subprocess (an
in-memory OpenSearch-API server shipped in the `osmem-server` wheel) on a free loopback port.

    with OsmemStore() as store:
        client = make_client(IndexSettings(url=store.url, server_mode="serverless"))

Everything is in memory: `restart()` keeps the port but loses the data (tests use it to simulate an outage).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from streams.embedded import bundled_binary, free_port, stop_process, wait_port


def osmem_binary() -> Path:
    try:
        from osmem_server import resolve_binary
    except ImportError as e:  # the [embedded] extra: never in the production image
        raise FileNotFoundError("the embedded store (osmem-server) is not installed: pip install "
                                "'assetstream[embedded]', or give a real store with --es-url") from e

    return bundled_binary(Path(resolve_binary()), "osmem-server", "osmem-server")


@dataclass
class OsmemStore:
    """An osmem-server subprocess on 127.0.0.1:<port> (0 = pick a free port at the first start)."""

    port: int = 0
    japanese: bool = False
    """Japanese (kuromoji) analysis: off by default, it slows the start."""
    log_path: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def index_overrides(self) -> dict[str, object]:
        """settings.with_overrides(index=store.index_overrides()) points the index sink at this store."""
        return {"url": self.url, "server_mode": "serverless", "number_of_replicas": 0}

    def start(self, timeout_s: float = 20.0) -> "OsmemStore":
        if self.running:
            return self
        if not self.port:
            self.port = free_port()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="osmem-", suffix=".log")[1])
        args = [str(osmem_binary()), "--addr", f"127.0.0.1:{self.port}", "--no-stdin-watch",
                "--parent-pid", str(os.getpid())]
        if not self.japanese:
            args.append("--no-ja")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_port("127.0.0.1", self.port, timeout_s, self.proc, "osmem-server")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_process(self.proc, timeout_s)
        self.proc = None

    def restart(self, timeout_s: float = 20.0) -> "OsmemStore":
        """Stop and start again on the same port (in-memory: the data is gone)."""
        self.stop()
        return self.start(timeout_s)

    def __enter__(self) -> "OsmemStore":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
