"""The unprivileged account PostgreSQL runs as when the launcher itself runs as root."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

PREFERRED = "postgres"
DEDICATED = "consortium-pg"


@dataclass(frozen=True)
class ServiceUser:
    """A system account: name, uid and primary gid."""

    name: str
    uid: int
    gid: int


def service_user() -> ServiceUser | None:
    """None when not root (run as ourselves); else `postgres`, or a dedicated account."""
    # initdb and postgres refuse to run as root, which is how CI containers run.
    if os.geteuid() != 0:
        return None
    for name in (PREFERRED, DEDICATED):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    _create(DEDICATED)
    entry = pwd.getpwnam(DEDICATED)
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create(name: str) -> None:
    """Create a system account without a home or a login shell."""
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [useradd, "--system", "--user-group", "--no-create-home", "--shell",
               "/usr/sbin/nologin", name]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise RuntimeError(f"could not create the system user {name}: {done.stderr}")


def reachable(path: Path, user: ServiceUser) -> bool:
    """Whether the user may traverse every folder above path (pytest's tmp is 0700 root)."""
    groups = set(os.getgrouplist(user.name, user.gid))
    for folder in path.resolve().parents:
        mode = folder.stat()
        if mode.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif mode.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def give(path: Path, user: ServiceUser | None) -> None:
    """Make a folder the user's, recursively (a no-op when not root)."""
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.uid, user.gid)
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
