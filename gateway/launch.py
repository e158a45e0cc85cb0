"""`consortium serve` as a child process that answers before it is used (demo, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Launched:
    """A running gateway: its process, HTTP base URL and MLLP port."""

    process: subprocess.Popen[bytes]
    url: str
    mllp_port: int


@contextmanager
def gateway_process(
    consortium_id: str,
    bootstrap: str,
    database: str,
    *,
    workers: int = 1,
    environment: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Iterator[Launched]:
    """Start `consortium serve` on free ports, wait for /healthz, yield it; stop it after."""
    from gateway.testing import free_port

    port, mllp = free_port(), free_port()
    command = [
        sys.executable,
        "-c",
        "from consortium.cli import main; main()",
        "serve",
        f"--port={port}",
        f"--mllp={mllp}",
        f"--bootstrap={bootstrap}",
        f"--database={database}",
        f"--workers={workers}",
        "--no-access-log",
    ]
    env = {**os.environ, "CONSORTIUM_ID": consortium_id, **(environment or {})}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not answer within {timeout_s:g} s")
            time.sleep(0.2)
        yield Launched(process, url, mllp)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
