"""`consortium infra up|down|status|env`: the project's own Kafka and PostgreSQL."""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from consortium.settings import get_settings
from infra.jars import JarResolutionError
from infra.kafka import KafkaCluster, KafkaStartError, admin_client
from infra.migrate import MigrationError
from infra.pg_binaries import PostgresNotFoundError
from infra.postgres import PostgresServer, PostgresStartError
from infra.runtime import ensure_up, shut_down
from infra.security import (
    SCRAM,
    KafkaSecurity,
    apply_grants,
    consortium_principals,
    grants,
    register_principals,
)

app = typer.Typer(no_args_is_help=True)
console = Console()
FAILURES = (
    JarResolutionError, KafkaStartError, PostgresNotFoundError, PostgresStartError,
    MigrationError, ValueError,
)  # fmt: skip


@app.command()
def up(
    nodes: Annotated[int, typer.Option(help="Kafka nodes: 1, or 3 for fault tests.")] = 1,
    secure: Annotated[
        bool, typer.Option(help="Kafka with TLS, SCRAM and ACLs only (docs/security.md).")
    ] = False,
) -> None:
    """Start Kafka and PostgreSQL (unless the environment names them) and migrate."""
    try:
        if secure:
            _secure_kafka(nodes)
        endpoints = ensure_up(nodes, report=console.print)
    except FAILURES as error:
        console.print(f"[red]infra up failed:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(1) from error
    console.print(f"KAFKA_BOOTSTRAP_SERVERS={endpoints.bootstrap_servers}")
    console.print(f"DATABASE_URL={endpoints.database_url}")
    env_file = get_settings().state_dir / "env"
    if secure:  # every process started from that environment connects as its own principal
        security_dir = (get_settings().state_dir / "kafka" / "security").resolve()
        with env_file.open("a") as out:
            out.write(f"export KAFKA_SECURITY_DIR={security_dir}\n")
        console.print(f"KAFKA_SECURITY_DIR={security_dir}")
    console.print(f"written to {env_file} (source it)")


def _secure_kafka(nodes: int) -> None:
    """Start (or find) the secure cluster, then register the consortium's principals and grants."""
    settings = get_settings()
    if settings.kafka_bootstrap_servers:
        raise ValueError("--secure runs the project's own Kafka; unset KAFKA_BOOTSTRAP_SERVERS")
    folder = settings.state_dir / "kafka"
    roster = consortium_principals(settings.consortium_id)
    cluster = KafkaCluster(nodes, folder, security=KafkaSecurity(folder / "security", roster))
    if not (cluster.is_running() and cluster.answers()):
        console.print(f"Kafka: starting {nodes} secure node(s) …")
        cluster.start()
    assert cluster.security is not None
    added = register_principals(cluster.bootstrap, cluster.security, cluster.nodes)
    count = apply_grants(cluster.bootstrap, cluster.client_config, grants(settings.consortium_id))
    console.print(
        f"Kafka: SASL_SSL ({SCRAM}) only at {cluster.bootstrap}; {count} grants for "
        f"{settings.consortium_id}; principals added now: {', '.join(added) or 'none'}"
    )
    console.print(
        f"certificates and passwords: {cluster.security.folder} "
        "(client settings: infra.security.client_config(principal))"
    )


@app.command()
def down(
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30.0,
) -> None:
    """Stop the project's own Kafka and PostgreSQL: SIGTERM, then SIGKILL after timeout."""
    shut_down(timeout, report=console.print)


@app.command()
def status() -> None:
    """Show what runs, on which ports, with which pids, and whether it answers."""
    settings = get_settings()
    table = Table("server", "where", "pid", "running", "answers")
    table.columns[1].overflow = "fold"
    if settings.kafka_bootstrap_servers:
        answers = _kafka_answers(settings.kafka_bootstrap_servers)
        table.add_row("kafka (env)", settings.kafka_bootstrap_servers, "-", "-", _yes(answers))
    elif (cluster := KafkaCluster.existing(settings.state_dir / "kafka")) is not None:
        answers = cluster.answers()
        for node_id, pid in cluster.pids.items():
            node = cluster.nodes[node_id]
            where = f"127.0.0.1:{node.broker_port} (controller {node.controller_port})"
            table.add_row(f"kafka node {node_id}", where, str(pid or "-"), _yes(pid), _yes(answers))
    else:
        table.add_row("kafka", "-", "-", "no", "no")
    if settings.database_url is not None:
        answers = _postgres_answers(settings.database_url.get_secret_value())
        table.add_row("postgres (env)", "DATABASE_URL", "-", "-", _yes(answers))
    else:
        server = PostgresServer(settings.state_dir / "postgres")
        running = server.is_running()
        table.add_row("postgres", server.url if server.port else "-", str(server.pid or "-"),
                      _yes(running), _yes(running and server.answers()))  # fmt: skip
    console.print(table)


@app.command()
def env() -> None:
    """Print the export lines of the running servers (as `consortium infra up` wrote them)."""
    env_file = get_settings().state_dir / "env"
    if not env_file.is_file():
        console.print("nothing is up; run `consortium infra up`", style="red")
        raise typer.Exit(1)
    typer.echo(env_file.read_text(), nl=False)


def _kafka_answers(bootstrap: str) -> bool:
    """Whether a metadata request to these bootstrap servers is answered."""
    try:
        admin_client(bootstrap).list_topics(timeout=5)
    except Exception:
        return False
    return True


def _postgres_answers(url: str) -> bool:
    """Whether PostgreSQL at this URL accepts a connection."""
    try:
        with psycopg.connect(url, connect_timeout=5):
            return True
    except psycopg.Error:
        return False


def _yes(value: object) -> str:
    """yes or no."""
    return "yes" if value else "no"
