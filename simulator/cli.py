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
    gateway: Annotated[
        str | None, typer.Option(help="Publish through the gateway at this URL (POST /v1/events).")
    ] = None,
    mllp: Annotated[
        str | None, typer.Option(help="Send HL7 v2 to the gateway's MLLP listener at HOST:PORT.")
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option(
            help="Gateway credential as CODE=TOKEN, one per institution to publish (repeat);"
            " events of institutions without one are skipped and counted."
        ),
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
    speed: Annotated[str, typer.Option(help="'max', or N times real time.")] = "max",
    truth: Annotated[Path | None, typer.Option(help="Write the identity truth here.")] = None,
    membership: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Membership CSV to simulate.")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per batch.")] = 500,
    clean: Annotated[bool, typer.Option("--clean", help="No identity noise.")] = False,
) -> None:
    """Simulate the county; write its events to a file or publish them (Kafka, gateway, MLLP)."""
    from events.membership import load_membership
    from simulator.runner import run_county
    from simulator.simulation import simulate
    from simulator.sinks import JsonLinesSink, KafkaSink, Sink

    chosen = [out is not None, kafka, gateway is not None, mllp is not None]
    if sum(chosen) != 1:
        raise typer.BadParameter("give exactly one of --out FILE, --kafka, --gateway URL, --mllp")
    if (gateway is not None or mllp is not None) and not token:
        raise typer.BadParameter("--gateway and --mllp need --token CODE=TOKEN")
    tokens = dict(t.split("=", 1) for t in token or () if "=" in t)
    if len(tokens) != len(token or ()):
        raise typer.BadParameter("--token takes CODE=TOKEN", param_hint="--token")
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
        where = "published to Kafka (all acknowledged)"
    elif gateway is not None:
        from simulator.gateway_sink import GatewaySink

        sink = GatewaySink(gateway, tokens)
        where = f"published through {gateway} (all acknowledged)"
    elif mllp is not None:
        from simulator.gateway_sink import MllpSink

        host, _, port = mllp.rpartition(":")
        if not port.isdigit():
            raise typer.BadParameter("--mllp takes HOST:PORT")
        sink = MllpSink(host or "127.0.0.1", int(port), tokens)
        where = f"offered as HL7 v2 over MLLP to {mllp}"
    else:
        assert out is not None
        sink = JsonLinesSink(out)
        where = f"written to {out}"
    total, seconds = run_county(county, sink, speed=_speed(speed), batch=batch)
    if truth is not None:
        county.truth.write(truth)
    if gateway is not None or mllp is not None:
        from simulator.gateway_sink import GatewaySink, MllpSink

        assert isinstance(sink, GatewaySink | MllpSink)
        skipped = ", ".join(f"{k} {v:,}" for k, v in sink.skipped.most_common())
        total = sink.sent
        where += f"; skipped (no token or no HL7 mapping): {skipped or 'none'}"
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
