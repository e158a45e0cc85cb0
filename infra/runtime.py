"""Where Kafka and PostgreSQL are for this environment, starting the project's own if needed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consortium.settings import Settings, get_settings
from infra.kafka import KafkaCluster
from infra.migrate import apply_migrations
from infra.postgres import PostgresServer

Report = Callable[[str], None]


def _silent(message: str) -> None:
    """Report nothing."""
    del message


@dataclass(frozen=True)
class Endpoints:
    """How to reach the servers: Kafka bootstrap servers and a PostgreSQL URL."""

    bootstrap_servers: str
    database_url: str
    # The servers this call started ("kafka", "postgres"): whoever called it stops those only.
    started: frozenset[str] = frozenset()

    def export_lines(self) -> str:
        """Shell lines that point other processes at these servers."""
        return (
            f"export KAFKA_BOOTSTRAP_SERVERS={self.bootstrap_servers}\n"
            f"export DATABASE_URL={self.database_url}\n"
        )


def ensure_up(nodes: int = 1, report: Report = _silent) -> Endpoints:
    """Use KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else start (or reuse) our own."""
    settings = get_settings()
    started: set[str] = set()
    endpoints = Endpoints(
        _kafka(settings, nodes, report, started),
        _postgres(settings, report, started),
        frozenset(started),
    )
    applied = apply_migrations(endpoints.database_url)
    report(f"migrations applied: {', '.join(applied)}" if applied else "migrations up to date")
    _record_own(settings, endpoints)
    return endpoints


def _record_own(settings: Settings, endpoints: Endpoints) -> None:
    """Write the servers into the state folder's `env` file (`infra env`, `. .state/env`).

    A server named by an environment variable replaces the file's line only when the folder's
    own server of that kind is not running: a bench run with `DATABASE_URL` at a scratch
    database beside `infra up` once pointed every later `. .state/env` at that database. With no
    servers of its own (Docker users), the file names the ones the variables name."""
    env_file = settings.state_dir / "env"
    lines: dict[str, str] = {}
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            lines[line.removeprefix("export ").partition("=")[0]] = line
    kafka = KafkaCluster.existing(settings.state_dir / "kafka")
    folder_runs = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka is not None and kafka.is_running(),
        "DATABASE_URL": PostgresServer(settings.state_dir / "postgres").is_running(),
    }
    named = {
        "KAFKA_BOOTSTRAP_SERVERS": bool(settings.kafka_bootstrap_servers),
        "DATABASE_URL": settings.database_url is not None,
    }
    for line in endpoints.export_lines().splitlines():
        name = line.removeprefix("export ").partition("=")[0]
        if not (named[name] and folder_runs[name] and name in lines):
            lines[name] = line
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("".join(f"{line}\n" for line in lines.values()))


def _kafka(settings: Settings, nodes: int, report: Report, started: set[str]) -> str:
    """The configured bootstrap servers, or those of the project's own cluster."""
    if settings.kafka_bootstrap_servers:
        report(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}")
        return settings.kafka_bootstrap_servers
    cluster = KafkaCluster(nodes, settings.state_dir / "kafka")
    if cluster.is_running() and cluster.answers():
        report(f"Kafka: already up ({nodes} node(s)) at {cluster.bootstrap}")
        return cluster.bootstrap
    report(f"Kafka: starting {nodes} node(s) …")
    bootstrap = cluster.start()
    started.add("kafka")
    report(f"Kafka: up at {bootstrap} (pids {', '.join(map(str, cluster.pids.values()))})")
    return bootstrap


def _postgres(settings: Settings, report: Report, started: set[str]) -> str:
    """The configured DATABASE_URL, or that of the project's own cluster."""
    if settings.database_url is not None:
        report("PostgreSQL: using DATABASE_URL")
        return settings.database_url.get_secret_value()
    server = PostgresServer(settings.state_dir / "postgres")
    if server.is_running() and server.answers():
        report(f"PostgreSQL: already up at {server.url}")
        return server.url
    url = server.start()
    started.add("postgres")
    report(f"PostgreSQL: up at {url} (pid {server.pid})")
    return url


SERVERS = frozenset({"kafka", "postgres"})


def shut_down(
    timeout: float = 30.0, report: Report = _silent, only: frozenset[str] = SERVERS
) -> None:
    """Stop the project's own Kafka and PostgreSQL in the state folder, `only` those of them.

    Servers named by env vars are never ours to stop. A command that found a server already up
    (`Endpoints.started` does not name it) passes `only=endpoints.started` and leaves it running:
    `make demo` beside `consortium infra up` must not stop the developer's servers."""
    state_dir = get_settings().state_dir
    if "kafka" not in only:
        report("Kafka: left running (not started by this command)")
    elif (cluster := KafkaCluster.existing(state_dir / "kafka")) and any(cluster.pids.values()):
        cluster.stop(timeout)
        report("Kafka: stopped")
    else:
        report("Kafka: not running")
    server = PostgresServer(state_dir / "postgres")
    if "postgres" not in only:
        report("PostgreSQL: left running (not started by this command)")
    elif server.is_running():
        server.stop(timeout)
        report("PostgreSQL: stopped")
    else:
        report("PostgreSQL: not running")
    if only >= SERVERS:
        (state_dir / "env").unlink(missing_ok=True)
