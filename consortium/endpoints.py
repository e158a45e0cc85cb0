"""Finds the servers to talk to: an option, then the environment, then what `infra up` started."""

from __future__ import annotations

import shlex

import typer

from consortium.settings import get_settings


def _from_state(name: str) -> str | None:
    env_file = get_settings().state_dir / "env"
    if not env_file.exists():
        return None
    for line in env_file.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and words[1].startswith(f"{name}="):
            return words[1].split("=", 1)[1]
    return None


def kafka_bootstrap(option: str | None = None) -> str:
    """The Kafka bootstrap servers, or a clear error saying how to get some."""
    found = (
        option or get_settings().kafka_bootstrap_servers or _from_state("KAFKA_BOOTSTRAP_SERVERS")
    )
    if not found:
        raise typer.BadParameter(
            "no Kafka: pass --bootstrap, set KAFKA_BOOTSTRAP_SERVERS, or run `consortium infra up`"
        )
    return found


def database_url(option: str | None = None) -> str:
    """The PostgreSQL URL, or a clear error saying how to get one."""
    configured = get_settings().database_url
    found = (
        option
        or (configured.get_secret_value() if configured else None)
        or _from_state("DATABASE_URL")
    )
    if not found:
        raise typer.BadParameter("no PostgreSQL: set DATABASE_URL or run `consortium infra up`")
    return found
