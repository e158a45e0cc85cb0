"""Top-level sub-commands: topics, publish, schemas and bench."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the top-level sub-commands to the CLI."""
    del app
