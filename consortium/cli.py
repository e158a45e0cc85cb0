"""The one command-line tool of the backbone; each part registers its own sub-commands."""

from __future__ import annotations

import typer

from consortium import commands
from infra import cli as infra_cli

app = typer.Typer(no_args_is_help=True, help="consortium-backbone: clinical events on Kafka.")
app.add_typer(infra_cli.app, name="infra", help="Start, stop and inspect Kafka and PostgreSQL.")
commands.register(app)


def main() -> None:
    """Run the CLI."""
    app()


if __name__ == "__main__":
    main()
