"""`consortium serve --workers N`: every worker listens on the port itself, connections reach all
of them, a worker that dies is replaced, and each publishes like one worker does."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from consortium.topics import ensure_topics
from events.topics import EVENT_TOPICS
from examples import TOWNSHIP, example_data
from gateway.launch import Launched, gateway_process
from gateway.testing import issue_token

WORKERS = 2


def _children(pid: int) -> list[int]:
    """The worker processes multiprocessing spawned (not its resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(p) for p in f.read().split()]
    workers = []
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    workers.append(child)
        except FileNotFoundError:
            continue
    return workers


def _sockets(pid: int) -> set[int]:
    """Inodes of the sockets a process holds."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _tcp(port: int) -> list[tuple[str, int]]:
    """(state, inode) of the IPv4 TCP sockets whose local port is `port`."""
    rows = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                rows.append((fields[3], int(fields[9])))
    return rows


def _port(launched: Launched) -> int:
    return int(launched.url.rsplit(":", 1)[1])


def _workers(launched: Launched) -> list[int]:
    """The worker processes (uvicorn's supervisor is `consortium serve` itself)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = _children(launched.process.pid)
        if len(workers) >= WORKERS:
            return workers
        time.sleep(0.2)
    raise AssertionError("the workers did not start")


def _listening_per_worker(launched: Launched) -> dict[int, int]:
    port = int(launched.url.rsplit(":", 1)[1])
    listening = {inode for state, inode in _tcp(port) if state == "0A"}
    return {pid: len(_sockets(pid) & listening) for pid in _workers(launched)}


def _until_every_worker_listens(launched: Launched, without: int | None = None) -> list[int]:
    """The workers, once each listens on a socket of its own (a worker listens only once its
    app has started; `without`: a worker that must have gone)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            listening = _listening_per_worker(launched)
        except FileNotFoundError:  # a process went away meanwhile
            listening = {}
        if without not in listening and sorted(listening.values()) == [1] * WORKERS:
            return sorted(listening)
        time.sleep(0.3)
    raise AssertionError(f"not every worker listens: {listening}")


@pytest.fixture
def gateway(
    kafka_bootstrap: str, database_url: str, fresh_consortium_id: str
) -> Iterator[Launched]:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=EVENT_TOPICS.values())
    with gateway_process(
        fresh_consortium_id, kafka_bootstrap, database_url, workers=WORKERS
    ) as launched:
        yield launched


def test_each_worker_listens_on_the_port_itself_and_connections_reach_every_worker(
    gateway: Launched,
) -> None:
    workers = _until_every_worker_listens(gateway)
    # The supervisor holds the port but does not listen: no connection waits on its socket.
    assert not _sockets(gateway.process.pid) & {i for s, i in _tcp(_port(gateway)) if s == "0A"}
    port = int(gateway.url.rsplit(":", 1)[1])
    # A burst of connections opened at once, as a client's pool does: with one shared accept
    # queue the first worker to wake could take all of them.
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
    try:
        time.sleep(1)
        established = {inode for state, inode in _tcp(port) if state == "01"}
        held = {pid: len(_sockets(pid) & established) for pid in workers}
        assert sum(held.values()) == len(connections)
        # The kernel's hash: all 32 on one of two workers has a chance of 2 ** -31.
        assert all(count > 0 for count in held.values()), held
    finally:
        for connection in connections:
            connection.close()


def test_a_worker_that_dies_is_replaced_with_a_socket_of_its_own_and_publishing_goes_on(
    gateway: Launched, database_url: str
) -> None:
    first = _until_every_worker_listens(gateway)
    os.kill(first[0], signal.SIGKILL)
    assert first[0] not in _until_every_worker_listens(gateway, without=first[0])
    token = issue_token(database_url, TOWNSHIP)
    headers = {"Authorization": f"Bearer {token}"}
    # New connections every time: each lands on a worker by the kernel's hash, so both answer.
    for _ in range(8):
        event = example_data("PatientRegistered")
        event["envelope"].update(event_id=str(uuid.uuid4()), source=TOWNSHIP)
        response = httpx.post(f"{gateway.url}/v1/events", json=[event], headers=headers)
        assert response.status_code == 202, response.text
        assert response.json()["deliveries"][0]["offset"] >= 0
