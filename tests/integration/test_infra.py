"""The launched single-node Kafka and PostgreSQL answer, keep writes, and migrate once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer

from infra.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations
from infra.probe import create_topic, produce_all, safe_producer
from infra.process import pid_alive


def test_idempotent_acks_all_writes_come_back_in_key_order(
    kafka_bootstrap: str, fresh_consortium_id: str, fresh_group: str
) -> None:
    topic = f"{fresh_consortium_id}.encounter.v1"
    create_topic(kafka_bootstrap, topic, partitions=3)
    records = [(f"H01|p{i % 7}".encode(), f"event-{i}".encode()) for i in range(90)]

    reports = produce_all(safe_producer(kafka_bootstrap), topic, records)

    assert reports == [None] * len(records)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": fresh_group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    seen: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(240):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append((message.key() or b"", message.value() or b""))
            if len(seen) >= len(records):
                break
    finally:
        consumer.close()
    assert sorted(seen) == sorted(records)
    for key in {k for k, _ in records}:
        # One patient at one institution: the order written is the order read.
        assert [v for k, v in seen if k == key] == [v for k, v in records if k == key]


def test_migrations_are_recorded_and_not_applied_twice(database_url: str) -> None:
    expected = hashlib.sha256((MIGRATIONS_DIR / "0001_processing_frame.sql").read_bytes())

    assert apply_migrations(database_url) == []

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
        assert ("0001", "processing_frame", expected.hexdigest()) in rows
        event_id = uuid.uuid4()
        conn.execute("INSERT INTO consumed_events VALUES ('infra-test', %s)", (event_id,))
        # The primary key is what makes a redelivered event a no-op for a projection.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO consumed_events VALUES ('infra-test', %s)", (event_id,))
        conn.rollback()


def test_a_changed_applied_migration_is_refused(scratch_database_url: str, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    every = sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))
    assert apply_migrations(scratch_database_url, tmp_path) == every
    first = tmp_path / "0001_processing_frame.sql"
    first.write_text(first.read_text() + "\n-- an edit after release\n")

    with pytest.raises(MigrationError, match="0001_processing_frame was changed"):
        apply_migrations(scratch_database_url, tmp_path)


def test_a_failing_migration_leaves_nothing_behind(
    scratch_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_column;")

    with pytest.raises(psycopg.errors.UndefinedColumn):
        apply_migrations(scratch_database_url, tmp_path)

    with psycopg.connect(scratch_database_url) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [("0001",)]
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int);")
    assert apply_migrations(scratch_database_url, tmp_path) == ["0002_bad"]


def test_concurrent_migrators_apply_each_migration_once(
    scratch_database_url: str, tmp_path: Path
) -> None:
    for n in range(1, 6):
        # Not idempotent on purpose: a second run of any of these would fail.
        (tmp_path / f"{n:04d}_step_{n}.sql").write_text(f"CREATE TABLE step_{n} (id int);")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            results.append(apply_migrations(scratch_database_url, tmp_path))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    applied = sorted(label for result in results for label in result)
    assert applied == [f"{n:04d}_step_{n}" for n in range(1, 6)]


VISITOR = """
from infra.runtime import ensure_up, shut_down
endpoints = ensure_up()
print("started:", sorted(endpoints.started))
shut_down(report=print, only=endpoints.started)
"""


def visit(env: dict[str, str]) -> str:
    """Run VISITOR (ensure_up, then stop what it started) with `env`; its output."""
    done = subprocess.run(
        [sys.executable, "-c", VISITOR],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_cli_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    env["STATE_DIR"] = str(tmp_path)
    cli = [sys.executable, "-c", "from consortium.cli import main; main()"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*cli, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    try:
        first = run("infra", "up")
        assert "Kafka: up at 127.0.0.1:" in first
        second = run("infra", "up")
        assert "Kafka: already up" in second and "PostgreSQL: already up" in second
        exports = run("infra", "env")
        assert exports == (tmp_path / "env").read_text()
        assert "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:" in exports
        assert "export DATABASE_URL=postgresql://consortium@127.0.0.1:" in exports
        kafka_pid = json.loads((tmp_path / "kafka" / "cluster.json").read_text())["nodes"][0]["pid"]
        pg_pid = json.loads((tmp_path / "postgres" / "postgres.json").read_text())["pid"]
        assert "yes" in run("infra", "status")
        # A command that found them up (the demo beside `infra up`) leaves them running.
        visited = visit(env)
        assert visited.splitlines()[0] == "started: []"
        assert "Kafka: left running" in visited
        assert "PostgreSQL: left running" in visited
        assert pid_alive(kafka_pid) and pid_alive(pg_pid) and "yes" in run("infra", "status")
        # One that names a database of its own (a bench into a scratch database) leaves the
        # folder's env file naming the folder's servers.
        url = exports.split("export DATABASE_URL=")[1].strip()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE visited")
        visit({**env, "DATABASE_URL": url.rsplit("/", 1)[0] + "/visited"})
        assert run("infra", "env") == exports
    finally:
        stopped = run("infra", "down")
        pgdata = json.loads((tmp_path / "postgres" / "postgres.json").read_text())["pgdata"]
        shutil.rmtree(pgdata, ignore_errors=True)
    assert "Kafka: stopped" in stopped and "PostgreSQL: stopped" in stopped
    assert not pid_alive(kafka_pid)
    assert not pid_alive(pg_pid)


def test_with_no_servers_of_its_own_the_env_file_names_the_given_ones(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    """Docker users: `infra up` with both variables set starts nothing and writes them down."""
    env = {**os.environ, "STATE_DIR": str(tmp_path)}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url}
    visit(env)
    assert (tmp_path / "env").read_text() == (
        f"export KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap}\nexport DATABASE_URL={database_url}\n"
    )
