"""Versioned SQL migrations (infra/migrations/NNNN_name.sql), applied once each, in order."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every migrating process.
LOCK_KEY = 0x636F6E736F7274  # "consort"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The database's migration history disagrees with the files."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version, name, text and checksum."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text; an applied migration must never change."""
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        """`NNNN_name`, as reported to callers."""
        return f"{self.version}_{self.name}"


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations of a folder, sorted by version; misnamed .sql files are an error."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: expected NNNN_lower_case_name.sql")
        version, name = match.groups()
        if version in found:
            raise MigrationError(f"two migrations share version {version}")
        found[version] = Migration(version, name, path.read_text())
    return [found[v] for v in sorted(found)]


def apply_migrations(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations, each in its own transaction; the labels of those applied."""
    migrations = load_migrations(directory)
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        # A session lock: concurrent migrators queue here and then find nothing to do.
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(CREATE_TABLE)
            rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
            applied = {version: (name, checksum) for version, name, checksum in rows}
            _check_history(migrations, applied)
            for migration in migrations:
                if migration.version in applied:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.label)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def _check_history(migrations: list[Migration], applied: dict[str, tuple[str, str]]) -> None:
    """Refuse edited migrations and a database that ran migrations these files lack."""
    known = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(f"the database ran {version}_{name}, which has no file here")
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.label} was changed after it was applied "
                f"(checksum {checksum[:12]}… in the database, {migration.checksum[:12]}… now); "
                "write a new migration instead"
            )
