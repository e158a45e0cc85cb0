"""Helpers for tests and benchmarks: a gateway served on a free port, tokens issued directly."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg import AsyncConnection

from gateway import credentials
from gateway.app import create_app
from gateway.audit import close_audit_log
from gateway.config import GatewayConfig
from gateway.fhir.reads import close_record_pool
from gateway.principals import Role


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Run the app with uvicorn in a thread on 127.0.0.1; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def gateway_client(config: GatewayConfig) -> Iterator[TestClient]:
    """An in-process client of the gateway for `config`; its audit log and record pool (which
    outlive the app's lifespan) are closed after it, however the block ends."""
    app = create_app(config)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        close_audit_log(app)
        close_record_pool(app)


def issue_token(database_url: str, institution: str, role: Role = Role.PUBLISHER) -> str:
    """Issue a credential straight in the database and return its token."""

    async def run() -> str:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return (await credentials.issue(conn, institution, role, "test")).token

    return asyncio.run(run())
