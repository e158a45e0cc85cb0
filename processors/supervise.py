"""Keep child processes running: one per projection under `consortium process all`.

A processor exits when it cannot go on (PostgreSQL away while faust recovers, a fatal Kafka
error); its positions are in PostgreSQL, so starting it again loses nothing and counts nothing
twice. The supervisor restarts an exited child after a backoff that doubles per quick exit
(1 s … 60 s) and resets once a child has run for a minute, and stops every child together.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
HEALTHY_AFTER_S = 60.0


@dataclass
class Child:
    """One supervised command and its restart bookkeeping."""

    name: str
    command: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = FIRST_BACKOFF_S
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(list(self.command))
        self.started_at = time.monotonic()
        self.restart_at = None


def supervise(
    commands: Mapping[str, Sequence[str]],
    stop: threading.Event,
    *,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    poll_s: float = 0.5,
    first_backoff_s: float = FIRST_BACKOFF_S,
    healthy_after_s: float = HEALTHY_AFTER_S,
) -> dict[str, list[int]]:
    """Run every command until `stop` is set, restarting any that exits; the exit codes seen."""
    children = [Child(n, c, backoff_s=first_backoff_s) for n, c in commands.items()]
    for child in children:
        child.start()
    try:
        while not stop.wait(poll_s):
            now = time.monotonic()
            for child in children:
                _tend(child, now, say, first_backoff_s, healthy_after_s)
    finally:
        _stop_all(children)
    return {child.name: child.exits for child in children}


def _tend(
    child: Child,
    now: float,
    say: Callable[[str], None],
    first_backoff_s: float,
    healthy_after_s: float,
) -> None:
    if child.restart_at is not None:
        if now >= child.restart_at:
            say(f"process {child.name}: starting again")
            child.start()
        return
    assert child.process is not None
    code = child.process.poll()
    if code is None:
        return
    child.exits.append(code)
    if now - child.started_at >= healthy_after_s:
        child.backoff_s = first_backoff_s  # it had been running well: a fresh failure
    say(f"process {child.name} exited with {code}; restarting in {child.backoff_s:g} s")
    child.restart_at = now + child.backoff_s
    child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)


def _stop_all(children: Sequence[Child], timeout_s: float = 30.0) -> None:
    running = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
