"""`consortium serve` and `consortium credentials issue|list|revoke`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from gateway import credentials
from gateway.principals import Role

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

BootstrapOpt = Annotated[
    str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers (default: settings).")
]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database", help="PostgreSQL URL (default: settings).")
]


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP port.")] = 8080,
    mllp: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Also accept HL7 v2 over MLLP here.")
    ] = None,
    bootstrap: BootstrapOpt = None,
    database: DatabaseOpt = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes sharing the HTTP and MLLP ports.")
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request (costs CPU).")] = True,
) -> None:
    """Run the gateway (FastAPI on uvicorn), configured from the environment."""
    import os

    import uvicorn

    from gateway.config import GatewayConfig

    config = GatewayConfig.from_settings(bootstrap, database)
    # Worker processes build their own app from the environment: hand them what the options said.
    os.environ.update(
        KAFKA_BOOTSTRAP_SERVERS=config.bootstrap_servers,
        DATABASE_URL=config.database_url,
        GATEWAY_MLLP=f"{host}:{mllp}" if mllp is not None else "",
    )
    from consortium.settings import get_settings

    get_settings.cache_clear()  # one worker builds its app in this process: re-read them
    server_config = uvicorn.Config(
        "gateway.cli:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
        proxy_headers=False,
    )
    if workers > 1:
        _serve_workers(server_config)
        return
    server = uvicorn.Server(server_config)
    server.run()
    if not server.started:
        from uvicorn.config import STARTUP_FAILURE

        raise SystemExit(STARTUP_FAILURE)


def _serve_workers(config: uvicorn.Config) -> None:
    """uvicorn's supervisor (restarts, signals) with a listening socket per worker instead of one
    shared: the kernel spreads connections over the workers (gateway/listening.py)."""
    import logging

    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from gateway.listening import reserve

    log = logging.getLogger("uvicorn.error")
    try:
        sock = reserve(config.host, config.port, config.backlog)
    except OSError as exc:
        log.error(exc)
        raise SystemExit(STARTUP_FAILURE) from None
    log.info(
        "Uvicorn running on http://%s:%d with a socket per worker (Press CTRL+C to quit)",
        config.host,
        sock.getsockname()[1],
    )
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def app_from_environment() -> FastAPI:
    """The app `consortium serve` runs in each worker, from the settings and GATEWAY_MLLP."""
    import os

    from gateway.app import create_app
    from gateway.config import GatewayConfig
    from gateway.tracing import configure_tracing

    configure_tracing()
    host, _, port = os.environ.get("GATEWAY_MLLP", "").rpartition(":")
    return create_app(
        GatewayConfig.from_settings(),
        mllp_port=int(port) if port else None,
        mllp_host=host or "127.0.0.1",
    )


credentials_app = typer.Typer(no_args_is_help=True, help="Bearer credentials of principals.")


@asynccontextmanager
async def _connect(database: str | None) -> AsyncIterator[AsyncConnection[TupleRow]]:
    from consortium.endpoints import database_url

    async with await AsyncConnection.connect(database_url(database), autocommit=True) as conn:
        yield conn


@credentials_app.command("issue")
def issue(
    institution: Annotated[str, typer.Option(help="Institution code, e.g. 439901-T03.")],
    role: Annotated[Role, typer.Option(help="The principal's role.")] = Role.PUBLISHER,
    label: Annotated[str, typer.Option(help="A note: which system uses it.")] = "",
    database: DatabaseOpt = None,
) -> None:
    """Issue a token for an institution and role; the token is printed once, never stored."""
    from events.membership import load_membership

    if institution not in load_membership():
        raise typer.BadParameter(
            f"{institution!r} is not a member institution", param_hint="--institution"
        )

    async def run() -> credentials.IssuedCredential:
        async with _connect(database) as conn:
            return await credentials.issue(conn, institution, role, label)

    issued = asyncio.run(run())
    typer.echo(f"credential {issued.credential_id} for {institution} as {role.value}", err=True)
    typer.echo(issued.token)


@credentials_app.command("list")
def list_(
    institution: Annotated[str | None, typer.Option(help="Only this institution.")] = None,
    database: DatabaseOpt = None,
) -> None:
    """List credentials (never their tokens)."""

    async def run() -> list[credentials.CredentialInfo]:
        async with _connect(database) as conn:
            return await credentials.list_credentials(conn, institution)

    for c in asyncio.run(run()):
        state = f"revoked {c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "active"
        typer.echo(
            f"{c.credential_id}  {c.institution:<12} {c.role.value:<14} {state:<22} "
            f"issued {c.issued_at:%Y-%m-%d %H:%M}  {c.label}"
        )


@credentials_app.command("revoke")
def revoke(
    credential_id: Annotated[uuid.UUID, typer.Argument(help="The credential to revoke.")],
    database: DatabaseOpt = None,
) -> None:
    """Revoke a credential; the next request that uses it is refused."""

    async def run() -> bool:
        async with _connect(database) as conn:
            return await credentials.revoke(conn, credential_id)

    if not asyncio.run(run()):
        typer.echo(f"no active credential {credential_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {credential_id}")
