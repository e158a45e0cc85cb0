"""The campaign's own servers: three Kafka nodes, a PostgreSQL, the gateway, in one folder."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from psycopg import AsyncConnection

from consortium.processes import stop_group
from consortium.topics import ensure_topics
from gateway import credentials
from gateway.principals import Role
from gateway.testing import free_port
from infra.kafka import KafkaCluster
from infra.migrate import apply_migrations
from infra.postgres import PostgresServer


@dataclass
class Stage:
    """The running servers of one campaign."""

    cluster: KafkaCluster
    postgres: PostgresServer
    database_url: str
    gateway_url: str
    consortium_id: str
    folder: Path
    launcher: ThreadPoolExecutor
    gateway_pid: int = 0

    def launch(self, start: Callable[[], object]) -> None:
        """Start a server from the stage's own thread, never from a passing fault thread.

        Servers die with the thread that started them (PR_SET_PDEATHSIG is per thread), so a
        broker restarted by a fault thread would be killed when that thread ends.
        """
        self.launcher.submit(start).result()


@contextmanager
def staged(folder: Path, consortium_id: str, nodes: int = 3) -> Iterator[Stage]:
    """Start the servers (stopped again whatever happens) with topics and migrations in place.

    Topics are replicated to every node (three copies on three nodes, one on one)."""
    cluster = KafkaCluster(nodes, folder / "kafka", detach=False, heap_mb=512)
    postgres = PostgresServer(folder / "postgres", detach=False)
    gateway: subprocess.Popen[bytes] | None = None
    # Two long-lived threads: Kafka and PostgreSQL start side by side.
    launcher = ThreadPoolExecutor(2, thread_name_prefix="launcher")
    try:
        kafka_ready = launcher.submit(cluster.start)
        url = launcher.submit(postgres.start).result()
        kafka_ready.result()
        apply_migrations(url)
        ensure_topics(cluster.bootstrap, consortium_id, replication_factor=nodes)
        port = free_port()
        gateway = _serve(cluster.bootstrap, url, consortium_id, port, folder / "gateway.log")
        gateway_url = f"http://127.0.0.1:{port}"
        yield Stage(
            cluster, postgres, url, gateway_url, consortium_id, folder, launcher, gateway.pid
        )
    finally:
        if gateway is not None:
            stop_group(gateway, timeout=20)
        cluster.stop(timeout=20)
        postgres.stop()
        launcher.shutdown()


def _serve(
    bootstrap: str, url: str, consortium_id: str, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """`consortium serve` in a process of its own; returns once it answers."""
    # The environment, not only the options: with one worker, `serve` builds its app from
    # settings cached before it applied --bootstrap and --database (see docs/reliability.md).
    env = {
        **os.environ,
        "CONSORTIUM_ID": consortium_id,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": url,
    }
    command = [sys.executable, "-m", "consortium.cli", "serve", "--port", str(port),
               "--bootstrap", bootstrap, "--database", url, "--no-access-log"]  # fmt: skip
    with log.open("ab") as out:
        child = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the gateway exited ({child.returncode}); see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/subjects", timeout=2).status_code == 200:
                return child
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_group(child)
    raise RuntimeError(f"the gateway did not answer within 120 s; see {log}")


def publisher_tokens(database_url: str, institutions: Iterable[str]) -> dict[str, str]:
    """One publisher credential per institution (a principal publishes only as itself)."""

    async def issue_all() -> dict[str, str]:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return {
                code: (await credentials.issue(conn, code, Role.PUBLISHER, "chaos")).token
                for code in institutions
            }

    return asyncio.run(issue_all())
