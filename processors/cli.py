"""`consortium process NAME|all` and `consortium projections rebuild|digest|list`."""

from __future__ import annotations

import signal
import sys
import time
from typing import Annotated

import typer

from consortium.endpoints import database_url, kafka_bootstrap
from consortium.settings import get_settings

BootstrapOpt = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap servers (default: settings, then infra up)."),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict/--lenient",
        help="Strict: canonical bytes and every contract rule; lenient trusts the log.",
    ),
]

projections_app = typer.Typer(no_args_is_help=True, help="Rebuild, digest and list projections.")


def process(
    name: Annotated[str, typer.Argument(help="A projection's name, `empi`, or `all`.")],
    bootstrap: BootstrapOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Records per batch at most.")] = 2_000,
    within: Annotated[float, typer.Option(help="Seconds to wait for a batch to fill.")] = 0.05,
    strict: StrictOpt = False,
    session_timeout: Annotated[
        float, typer.Option(min=6.0, help="Seconds before a dead worker's partitions move.")
    ] = 10.0,
    stall_after: Annotated[
        float,
        typer.Option(
            min=1.0, help="Seconds a partition may stand behind its log end before it is moved."
        ),
    ] = 20.0,
    loglevel: Annotated[str, typer.Option(help="faust/mode log level.")] = "warning",
) -> None:
    """Run a projection's processor (a faust worker in its own consumer group) until stopped."""
    from processors.wiring import PROJECTIONS, projection

    if name == "all":
        options = ["--batch-size", str(batch_size), "--within", str(within)]
        options += [
            "--strict" if strict else "--lenient",
            "--session-timeout",
            str(session_timeout),
            "--stall-after",
            str(stall_after),
        ]
        if bootstrap:
            options += ["--bootstrap", bootstrap]
        _run_all([*PROJECTIONS, "empi"], [*options, "--loglevel", loglevel])
        return
    if name == "empi":  # the patient index: one global state, its own runner (docs/empi.md)
        import logging

        from processors.empi import RunnerConfig, run_until_signalled

        logging.basicConfig(level=loglevel.upper())
        run_until_signalled(
            RunnerConfig(
                bootstrap_servers=kafka_bootstrap(bootstrap),
                database_url=database_url(),
                consortium_id=get_settings().consortium_id,
                batch_size=batch_size,
                batch_within_s=within,
                strict_decoding=strict,
            )
        )
        return
    from processors.app import ProcessorConfig, run
    from processors.wiring import companions

    config = ProcessorConfig(
        bootstrap_servers=kafka_bootstrap(bootstrap),
        database_url=database_url(),
        consortium_id=get_settings().consortium_id,
        batch_size=batch_size,
        batch_within_s=within,
        strict_decoding=strict,
        session_timeout_s=session_timeout,
        stall_after_s=stall_after,
    )
    beside = companions(name, config.bootstrap_servers, config.database_url, config.consortium_id)
    run(projection(name, config.consortium_id), config, loglevel=loglevel, companions=beside)


def _run_all(names: list[str], options: list[str]) -> None:
    """One child process per projection (faust runs one app per process), restarted when one
    exits (processors.supervise); SIGTERM or Ctrl-C stops them all together."""
    import threading

    from processors.supervise import supervise

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    commands = {n: [sys.executable, "-m", "processors.cli", "process", n, *options] for n in names}
    supervise(commands, stop)


@projections_app.command("list")
def list_projections() -> None:
    """Every registered projection with its topics and live generation."""
    import psycopg

    from events.topics import event_topic
    from processors.wiring import PROJECTIONS
    from projections.frame import generations

    consortium_id = get_settings().consortium_id
    with psycopg.connect(database_url()) as conn, conn.cursor() as cur:
        for p in PROJECTIONS.values():
            live = generations.live(cur, p.name)
            topics = ", ".join(event_topic(f, consortium_id) for f in p.families)
            where = live.schema if live else "no generation yet"
            typer.echo(f"{p.name:<12} live: {where:<16} reads: {topics}")


@projections_app.command("rebuild")
def rebuild_command(
    name: Annotated[str, typer.Argument(help="The projection to rebuild.")],
    bootstrap: BootstrapOpt = None,
    strict: StrictOpt = False,
    switch: Annotated[
        bool, typer.Option("--switch/--no-switch", help="Make it live once caught up.")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Replay processes, each with its own partitions (pays with cores to spare).",
        ),
    ] = 1,
) -> None:
    """Replay the log from offset 0 into a new generation; switch readers once caught up."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from processors.rebuild import rebuild
    from processors.wiring import projection
    from projections.frame.deadletters import KafkaDeadLetters

    settings = get_settings()
    chosen = projection(name, settings.consortium_id)
    servers = kafka_bootstrap(bootstrap)
    columns = (
        TextColumn(f"rebuilding {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} events/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    with (
        Progress(*columns) as bar,
        KafkaDeadLetters(servers, settings.consortium_id, name) as dead_letters,
    ):
        task = bar.add_task(name, total=None, rate=0.0)

        def advance(done: int, known: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, total=known, rate=rate)

        result = rebuild(
            chosen,
            bootstrap_servers=servers,
            database_url=database_url(),
            consortium_id=settings.consortium_id,
            dead_letters=dead_letters,
            strict_decoding=strict,
            switch=switch,
            progress=advance,
            workers=workers,
        )
    o = result.outcome
    state = "live" if result.switched else "built (not switched)"
    typer.echo(
        f"{result.generation.schema} {state}: {o.records:,} records, {o.applied:,} applied,"
        f" {o.ignored:,} ignored, {o.duplicates:,} duplicates, {o.dead_lettered:,} dead letters"
        + (f", {o.gaps:,} partitions began past their position (records missing)" if o.gaps else "")
    )


@projections_app.command("digest")
def digest_command(
    name: Annotated[str, typer.Argument(help="The projection.")],
    generation: Annotated[
        int | None, typer.Option(help="A generation number (default: the live one).")
    ] = None,
) -> None:
    """Print a SHA-256 digest of the projection's content (bookkeeping excluded)."""
    import psycopg

    from processors.wiring import projection
    from projections.frame import generations
    from projections.frame.digest import digest
    from projections.frame.generations import Generation

    chosen = projection(name)
    with psycopg.connect(database_url()) as conn:
        if generation is None:
            with conn.cursor() as cur:
                live = generations.live(cur, name)
            if live is None:
                typer.echo(f"{name} has no live generation", err=True)
                raise typer.Exit(1)
            generation = live.number
        typer.echo(f"{digest(conn, chosen, Generation(name, generation))}  {name}_g{generation}")


def main() -> None:
    """Run the processors' commands on their own (`python -m processors.cli`)."""
    app = typer.Typer(no_args_is_help=True)
    app.command("process")(process)
    app.add_typer(projections_app, name="projections")
    app()


if __name__ == "__main__":
    main()
