"""`consortium simulate run|membership`: run the simulated county, or make another consortium."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from simulator.county import SimulationConfig
from simulator.noise import NO_NOISE, NoiseRates

app = typer.Typer(no_args_is_help=True, help="A seeded, simulated county consortium.")


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    speed = float(value)
    if speed <= 0:
        raise typer.BadParameter("speed must be 'max' or a positive factor of real time")
    return speed


@app.command("run")
def run(
    seed: Annotated[int, typer.Option(help="Same seed, same county, same events.")] = 1,
    days: Annotated[float, typer.Option(min=0.01, help="Simulated period in days.")] = 7.0,
    population: Annotated[int, typer.Option(min=100, help="Residents simulated.")] = 20_000,
    start: Annotated[
        datetime | None,
        typer.Option(help="UTC start of the period (default: ends before yesterday's midnight)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write JSON lines here.")] = None,
    kafka: Annotated[bool, typer.Option("--kafka", help="Publish to Kafka.")] = False,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
    speed: Annotated[str, typer.Option(help="'max', or N times real time.")] = "max",
    truth: Annotated[Path | None, typer.Option(help="Write the identity truth here.")] = None,
    membership: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Membership CSV to simulate.")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per batch.")] = 500,
    clean: Annotated[bool, typer.Option("--clean", help="No identity noise.")] = False,
) -> None:
    """Simulate the county and write its events to a file or publish them to Kafka."""
    from events.membership import load_membership
    from simulator.runner import run_county
    from simulator.simulation import simulate
    from simulator.sinks import JsonLinesSink, KafkaSink, Sink

    if (out is None) == (not kafka):
        raise typer.BadParameter("give exactly one of --out FILE or --kafka")
    if start is not None and start.tzinfo is None:
        from datetime import UTC

        start = start.replace(tzinfo=UTC)
    config = SimulationConfig(
        seed=seed,
        days=days,
        population=population,
        start=start,
        noise=NO_NOISE if clean else NoiseRates(),
    )
    county = simulate(config, load_membership(membership))
    sink: Sink
    if kafka:
        from consortium.endpoints import kafka_bootstrap
        from consortium.settings import get_settings

        sink = KafkaSink(kafka_bootstrap(bootstrap), get_settings().consortium_id)
    else:
        assert out is not None
        sink = JsonLinesSink(out)
    total, seconds = run_county(county, sink, speed=_speed(speed), batch=batch)
    if truth is not None:
        county.truth.write(truth)
    where = "published to Kafka (all acknowledged)" if kafka else f"written to {out}"
    Console(stderr=True).print(
        f"{total:,} events {where} in {seconds:.1f} s; "
        f"{len(county.population.people):,} residents, {len(county.truth.records):,} registrations"
    )


@app.command("membership")
def membership_command(
    out: Annotated[Path, typer.Option(help="Where to write the membership CSV.")],
    townships: Annotated[int, typer.Option(min=1, max=99)] = 15,
    villages: Annotated[int, typer.Option(min=1, max=999)] = 120,
    seed: Annotated[int, typer.Option()] = 1,
    division: Annotated[str, typer.Option(help="6-digit county division code.")] = "439902",
    name: Annotated[str, typer.Option(help="County name.")] = "青川县",
) -> None:
    """Write another consortium's membership; point MEMBERSHIP_FILE at it to use it."""
    from simulator.consortium import generate, write_csv

    if len(division) != 6 or not division.isdigit():
        raise typer.BadParameter("division must be 6 digits")
    try:
        members = generate(seed, townships, villages, division, name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    write_csv(members, out)
    typer.echo(f"{len(members)} institutions written to {out}; export MEMBERSHIP_FILE={out}")
