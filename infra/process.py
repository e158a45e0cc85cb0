"""Process helpers shared by the launchers: free ports, liveness, stopping, log tails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); /proc tells it apart on Linux.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def command_line(pid: int | None) -> str | None:
    """The command line of a process, empty when it is gone; None where /proc is missing."""
    if not Path("/proc/self").exists():
        return None
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def reap(pid: int) -> None:
    """Collect the exit status of our own child so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pid: int | None, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Send sig, wait up to timeout, then SIGKILL; True when the process had to be killed."""
    if not pid_alive(pid):
        return False
    assert pid is not None
    # A stopped process cannot handle SIGTERM until it runs again.
    for first in (signal.SIGCONT, sig):
        try:
            os.kill(pid, first)
        except ProcessLookupError:
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not pid_alive(pid):
            return False
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    for _ in range(100):
        reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    return True


def die_with_parent() -> Sequence[str]:
    """A command prefix that SIGKILLs the child when the process that started it dies."""
    # prctl(PR_SET_PDEATHSIG) through setpriv keeps preexec_fn (unsafe with threads) out.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
