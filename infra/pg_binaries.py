"""Find the machine's PostgreSQL server binaries, installing Debian's package when missing."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

NEEDED = ("initdb", "pg_ctl", "postgres")
SEARCH_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server binaries here, and they could not be installed."""


def _version(bin_dir: Path) -> tuple[int, ...]:
    """The server version of a bin folder, (0,) when it does not run."""
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return (0,)
    found = re.search(r"(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in found.groups() if g) if found else (0,)


def _candidates() -> set[Path]:
    """Folders holding initdb, pg_ctl and postgres: PATH first, then the usual places."""
    dirs: set[Path] = set()
    on_path = shutil.which("pg_ctl")
    if on_path:
        dirs.add(Path(on_path).resolve().parent)
    for pattern in SEARCH_GLOBS:
        dirs.update(Path(d) for d in glob.glob(pattern))
    return {d for d in dirs if all((d / name).is_file() for name in NEEDED)}


def find_bin_dir(install: bool = True) -> Path:
    """The bin folder of the newest PostgreSQL here; apt-get installs one as root on Debian."""
    found = _candidates()
    if not found and install:
        _apt_install()
        found = _candidates()
    if not found:
        raise PostgresNotFoundError(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install the "
            "'postgresql' package, or set DATABASE_URL to an existing server"
        )
    return max(found, key=_version)


def _apt_install() -> None:
    """Install Debian's postgresql package non-interactively (root only)."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-q"], [apt, "install", "-y", "-q", "postgresql"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresNotFoundError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
