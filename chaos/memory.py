"""Resident memory of a process and everything it started, read from /proc."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _parents() -> dict[int, int]:
    """Every live process's parent, from /proc/PID/stat."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        # The command name (field 2) is in parentheses and may hold spaces: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def _rss(pid: int) -> int:
    """Resident bytes of one process (0 when it is gone)."""
    try:
        pages = (PROC / str(pid) / "statm").read_text().split()[1]
    except (OSError, IndexError):
        return 0
    return int(pages) * PAGE


def tree_rss_mib(roots: dict[str, int]) -> dict[str, float]:
    """For each named process, the MiB resident in it and all its descendants (0 when gone)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    out: dict[str, float] = {}
    for name, root in roots.items():
        total, todo = 0, [root] if root in parents else []
        while todo:
            pid = todo.pop()
            total += _rss(pid)
            todo.extend(children.get(pid, ()))
        out[name] = total / 2**20
    return out
