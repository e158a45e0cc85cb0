"""A private PostgreSQL cluster on 127.0.0.1 and a free port, from the machine's binaries."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from consortium.settings import get_settings
from infra.pg_binaries import find_bin_dir
from infra.process import (
    LOOPBACK,
    command_line,
    die_with_parent,
    free_port,
    pid_alive,
    port_open,
    tail,
    terminate,
)
from infra.service_user import ServiceUser, give, reachable, service_user

STATE_FILE = "postgres.json"
SUPERUSER = "consortium"
DATABASE = "consortium"
# A unix socket path longer than ~107 bytes cannot be bound; then TCP only.
MAX_SOCKET_DIR = 90


class PostgresStartError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


class PostgresServer:
    """One private cluster whose state file, log and (usually) data live in data_dir."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        detach: bool = True,
        database: str = DATABASE,
        start_timeout: float = 60.0,
    ) -> None:
        self.data_dir = (data_dir or get_settings().state_dir / "postgres").resolve()
        self.database = database
        # Detached servers outlive the CLI; attached ones (tests) die with their parent.
        self.detach = detach
        self.start_timeout = start_timeout
        self.port = 0
        self.pid: int | None = None
        self.pgdata = self.data_dir / "pgdata"
        self.relocated = False
        self._proc: subprocess.Popen[bytes] | None = None
        if self.state_file.is_file():
            state = json.loads(self.state_file.read_text())
            self.port, self.pid = state["port"], state["pid"]
            self.pgdata, self.relocated = Path(state["pgdata"]), state["relocated"]

    @property
    def state_file(self) -> Path:
        """Where port, pid and the cluster folder are kept for other processes."""
        return self.data_dir / STATE_FILE

    @property
    def log_file(self) -> Path:
        """The server's log (stdout and stderr of the postmaster)."""
        return self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        """The URL of the application database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The URL of any database on this server."""
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def is_running(self) -> bool:
        """Whether the postmaster recorded in the state file is alive and ours."""
        # Our own child is watched directly: its cmdline is briefly empty while it execs.
        if self._proc is not None and self._proc.pid == self.pid:
            return self._proc.poll() is None
        cmd = command_line(self.pid)
        return pid_alive(self.pid) and (cmd is None or str(self.pgdata) in cmd)

    def answers(self, timeout: float = 3.0) -> bool:
        """Whether the server accepts a connection and runs a query."""
        try:
            with psycopg.connect(self.url_for("postgres"), connect_timeout=max(1, int(timeout))):
                return True
        except psycopg.Error:
            return False

    def start(self) -> str:
        """Create the cluster on first use, start it unless running, ensure the database."""
        bin_dir = find_bin_dir()
        user = service_user()
        if not (self.pgdata / "PG_VERSION").is_file():
            self._init(bin_dir, user)
        if not self.is_running():
            self._launch(bin_dir, user)
        self._wait_ready()
        self._ensure_database()
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): roll back open transactions, checkpoint, exit."""
        if self.is_running():
            terminate(self.pid, timeout, sig=signal.SIGINT)
        self.pid = None
        self._save()

    def remove(self) -> None:
        """Stop and delete the cluster's data (also when relocated under /tmp); keep the log."""
        self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)

    def _init(self, bin_dir: Path, user: ServiceUser | None) -> None:
        """initdb as the service user, into a folder that user can reach."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None and not reachable(self.data_dir, user):
            self.pgdata = Path(tempfile.mkdtemp(prefix="consortium-pg-"))
            self.relocated = True
        self.pgdata.mkdir(parents=True, exist_ok=True)
        give(self.pgdata, user)
        self.port = free_port()
        command = [str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER,
                   "--auth=trust", "--encoding=UTF8", "--locale=C"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              **_as(user, self.pgdata))  # fmt: skip
        if done.returncode != 0:
            raise PostgresStartError(f"initdb failed:\n{done.stdout}{done.stderr}")
        sockets = self.pgdata / "sockets"
        sockets.mkdir()
        give(sockets, user)
        socket_dir = str(sockets) if len(str(sockets)) <= MAX_SOCKET_DIR else ""
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# consortium-backbone: loopback only, own port, socket inside the cluster\n"
                f"listen_addresses = '{LOOPBACK}'\nport = {self.port}\n"
                f"unix_socket_directories = '{socket_dir}'\nmax_connections = 200\n"
            )
        self._save()

    def _launch(self, bin_dir: Path, user: ServiceUser | None) -> None:
        """Run the postmaster in its own session, logging to log_file."""
        if port_open(self.port, timeout=0.2):
            raise PostgresStartError(f"port {self.port} is taken by another process")
        prefix = [] if self.detach else list(die_with_parent())
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [*prefix, str(bin_dir / "postgres"), "-D", str(self.pgdata)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **_as(user, self.pgdata),
            )  # fmt: skip
        self._proc = proc
        self.pid = proc.pid
        self._save()

    def _wait_ready(self) -> None:
        """Wait until a connection succeeds; raise with the log tail on failure."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.answers(timeout=2):
                return
            if not self.is_running():
                break
            time.sleep(0.2)
        raise PostgresStartError(f"PostgreSQL did not start.\n{tail(self.log_file)}")

    def _ensure_database(self) -> None:
        """Create the application database when it is missing."""
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _save(self) -> None:
        """Write port, pid and the cluster folder atomically."""
        state = {"port": self.port, "pid": self.pid, "pgdata": str(self.pgdata),
                 "relocated": self.relocated, "url": self.url}  # fmt: skip
        self.data_dir.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2))
        partial.replace(self.state_file)


def _as(user: ServiceUser | None, cwd: Path) -> dict[str, Any]:
    """Popen arguments that run a command as the service user, from a folder it owns."""
    if user is None:
        return {"cwd": cwd}
    return {"cwd": cwd, "user": user.uid, "group": user.gid, "extra_groups": []}
