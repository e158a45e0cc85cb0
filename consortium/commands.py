"""Top-level sub-commands: topics and publish; other parts register their own apps here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from consortium.endpoints import kafka_bootstrap
from consortium.settings import get_settings

BootstrapOpt = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap servers (default: settings, then infra up)."),
]

topics_app = typer.Typer(no_args_is_help=True)


@topics_app.command("create")
def topics_create(
    bootstrap: BootstrapOpt = None,
    replication: Annotated[int | None, typer.Option(help="Replication factor override.")] = None,
) -> None:
    """Create the consortium's topics that are missing (idempotent)."""
    from consortium.topics import ensure_topics

    settings = get_settings()
    outcomes = ensure_topics(
        kafka_bootstrap(bootstrap),
        settings.consortium_id,
        replication_factor=replication or settings.topic_replication_factor,
    )
    for o in outcomes:
        state = "created" if o.created else "exists "
        typer.echo(
            f"{state} {o.name}  partitions={o.partitions} replication={o.replication_factor}"
        )


@topics_app.command("list")
def topics_list() -> None:
    """Print every declared topic with its key and values."""
    from events.topics import ALL_TOPICS

    consortium_id = get_settings().consortium_id
    for spec in ALL_TOPICS:
        typer.echo(f"{spec.name(consortium_id)}\n  key:    {spec.key}\n  values: {spec.values}")


def publish(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON lines, one event each.")
    ],
    bootstrap: BootstrapOpt = None,
    batch: Annotated[
        int, typer.Option(min=1, max=10_000, help="Events per acknowledged batch.")
    ] = 500,
) -> None:
    """Validate a JSON-lines file whole, then publish it; a bad line means nothing is sent."""
    from consortium.jsonl import read_batches, validate_file
    from events.publisher import Publisher

    count, errors = validate_file(file)
    if errors:
        for err in errors[:50]:
            typer.echo(f"{file}: {err}", err=True)
        more = " (first 50 shown)" if len(errors) > 50 else ""
        typer.echo(f"{len(errors)} problems{more}; nothing was published.", err=True)
        raise typer.Exit(1)
    columns = (TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with (
        Publisher(kafka_bootstrap(bootstrap), get_settings().consortium_id) as publisher,
        Progress(*columns, transient=False) as progress,
    ):
        task = progress.add_task("publish", total=count)
        for events in read_batches(file, batch):
            publisher.publish(events)
            progress.advance(task, len(events))
    typer.echo(f"published {count} events, all acknowledged by Kafka")


def register(app: typer.Typer) -> None:
    """Attach the top-level sub-commands to the CLI."""
    from bench.cli import app as bench_app
    from events.schemas_cli import app as schemas_app
    from simulator.cli import app as simulate_app

    app.add_typer(schemas_app, name="schemas", help="The schema catalog: ids, lock, compatibility.")
    app.add_typer(simulate_app, name="simulate", help="Run the simulated county consortium.")
    app.add_typer(bench_app, name="bench", help="Benchmarks: figures beside a same-run baseline.")
    app.add_typer(topics_app, name="topics", help="Create and list the consortium's topics.")
    app.command("publish")(publish)
    from consortium.fuzz import fuzz_command

    app.command("fuzz")(fuzz_command)
    from chaos.cli import chaos, soak

    app.command("chaos")(chaos)
    app.command("soak")(soak)
    from consortium.demo import demo
    from gateway.cli import credentials_app, serve
    from processors.cli import process, projections_app
    from projections.empi.cli import app as empi_app
    from projections.reporting.cli import reporting_app

    app.command("demo")(demo)
    app.command("serve")(serve)
    app.add_typer(credentials_app, name="credentials", help="Bearer credentials of principals.")
    app.add_typer(
        empi_app,
        name="empi",
        help="The consortium patient index: evaluate, train, run, rebuild, digest.",
    )
    app.command("process")(process)
    app.add_typer(projections_app, name="projections", help="Rebuild, digest and list projections.")
    app.add_typer(reporting_app, name="reporting", help="The bureau streams: relay and figures.")
