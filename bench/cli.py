"""`consortium bench`: the project's benchmarks, each printed beside its baseline."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from bench import codec as codec_bench
from bench import gateway as gateway_defaults
from bench.harness import dropping_throwaways, report

app = typer.Typer(no_args_is_help=True, help="Measure throughput beside a baseline.")


@app.callback()
def bench() -> None:
    """Benchmarks of the backbone; each figure is printed beside its baseline and ratio."""


@app.command()
def codec(
    records: Annotated[int, typer.Option("--records", min=100, help="Events per round.")] = 20_000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per figure.")] = False,
) -> None:
    """Encode and decode a county's event mix through the codec, beside plain fastavro."""
    # Progress goes to stderr so that --json output stays machine-readable.
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("codec", total=codec_bench.rounds_total())
        figures = codec_bench.measure(records, tick=lambda: progress.advance(task))
    report(figures, as_json=as_json)


@app.command()
def gateway(
    events: Annotated[
        int, typer.Option("--events", min=1000, help="County hospital events per round.")
    ] = 10_000,
    seconds: Annotated[
        float, typer.Option("--seconds", min=1, help="Duration of the single-event load.")
    ] = 20.0,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Gateway worker processes.")] = 2,
    hl7_connections: Annotated[
        int,
        typer.Option(
            min=1, max=256, help="MLLP connections (interfaces), one message in flight each."
        ),
    ] = gateway_defaults.HL7_CONNECTIONS,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per figure.")] = False,
) -> None:
    """Batched, single-event and HL7 v2 ingest through the gateway, beside raw Kafka produce."""
    from bench import gateway as gateway_bench

    console = Console(stderr=True)
    with dropping_throwaways():
        figures = gateway_bench.measure(
            events,
            single_seconds=seconds,
            workers=workers,
            hl7_connections=hl7_connections,
            say=console.print,
        )
    report(figures, as_json=as_json)


def _register() -> None:
    from bench.fhir import fhir_command
    from bench.projections import projections_command

    app.command("projections")(projections_command)
    app.command("fhir")(fhir_command)


_register()
