"""The projection processors of a campaign: one process per worker, killed and grown at will."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from consortium.processes import stop_group

# Short sessions: a SIGKILLed worker's partitions move to the others within seconds.
WORKER_OPTIONS = (
    "--batch-size", "500", "--within", "0.05", "--session-timeout", "6", "--stall-after", "10",
)  # fmt: skip


@dataclass
class Worker:
    """One `process NAME` child and what happened to it."""

    projection: str
    process: subprocess.Popen[bytes]
    extra: bool = False  # grown beyond the first worker of its group


@dataclass
class Fleet:
    """Every processor worker of the campaign; a supervisor restarts workers that died."""

    bootstrap: str
    database_url: str
    consortium_id: str
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # beside the connection settings
    kills: int = 0
    unplanned_exits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _spawn(self, projection: str, extra: bool = False) -> Worker:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DATABASE_URL": self.database_url,
            "CONSORTIUM_ID": self.consortium_id,
            **self.env,
        }
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{projection}.log").open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "processors.cli", "process", projection, *WORKER_OPTIONS],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return Worker(projection, child, extra)

    def start(self, projections: list[str]) -> None:
        """One worker per projection."""
        with self._lock:
            self.workers = [self._spawn(name) for name in projections]

    def kill(self, projection: str) -> None:
        """SIGKILL the projection's first worker (and anything it started), then start it again."""
        with self._lock:
            worker = next(w for w in self.workers if w.projection == projection and not w.extra)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(timeout=30)
            self.kills += 1
            self.workers[self.workers.index(worker)] = self._spawn(projection)

    def grow(self, projection: str, size: int) -> None:
        """Add workers to the projection's group until it has size of them."""
        with self._lock:
            have = sum(1 for w in self.workers if w.projection == projection)
            self.workers += [self._spawn(projection, extra=True) for _ in range(size - have)]

    def shrink(self, projection: str) -> None:
        """Stop (SIGTERM) the extra workers of the projection; its first one stays."""
        with self._lock:
            extras = [w for w in self.workers if w.projection == projection and w.extra]
            self.workers = [w for w in self.workers if w not in extras]
        for worker in extras:
            stop_group(worker.process)

    def size(self, projection: str) -> int:
        """Live workers in the projection's group."""
        with self._lock:
            return sum(
                1 for w in self.workers if w.projection == projection and w.process.poll() is None
            )

    def supervise(self) -> None:
        """Start again any worker that exited on its own (counted: it should not happen)."""
        with self._lock:
            for i, worker in enumerate(self.workers):
                if worker.process.poll() is not None:
                    self.unplanned_exits += 1
                    self.workers[i] = self._spawn(worker.projection, worker.extra)

    def stop(self) -> None:
        """SIGTERM every worker's process group and wait for them."""
        with self._lock:
            workers, self.workers = self.workers, []
        for worker in workers:
            stop_group(worker.process)
