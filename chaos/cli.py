"""`consortium chaos`: the fault campaign; exits non-zero when anything was lost or doubled."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from chaos.plan import FULL
from chaos.soak import FULL as SOAK


def _terminate_as_interrupt() -> None:
    """SIGTERM unwinds like Ctrl-C, so that the servers and processors started are stopped."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def chaos(
    events: Annotated[int, typer.Option(min=1, help="Simulated events to publish.")] = FULL.events,
    rate: Annotated[float, typer.Option(min=1, help="Target events per second.")] = FULL.rate,
    leader_kills: Annotated[
        int, typer.Option(min=0, help="SIGKILLs of a busy partition's leader.")
    ] = FULL.leader_kills,
    pause: Annotated[
        float, typer.Option(min=0, help="Seconds one broker is SIGSTOPped (0: none).")
    ] = FULL.pause_s,
    processor_kills: Annotated[
        int, typer.Option(min=0, help="SIGKILLs of projection processors.")
    ] = FULL.processor_kills,
    group_peak: Annotated[
        int, typer.Option(min=1, help="The referrals group grows 1 -> this -> 1.")
    ] = FULL.group_peak,
    postgres_restarts: Annotated[
        int, typer.Option(min=0, help="PostgreSQL restarts.")
    ] = FULL.postgres_restarts,
    seed: Annotated[int, typer.Option(help="Seed of the simulated county.")] = FULL.seed,
    folder: Annotated[
        Path | None, typer.Option(help="Keep the servers' data and logs here (default: temporary).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The fault campaign on three brokers: publish, kill and pause, then count what survived.

    Events go through the gateway and the SDK while brokers, processors and PostgreSQL are
    killed, paused and restarted; exits non-zero if anything acknowledged was lost or doubled."""
    from chaos.campaign import run_campaign

    _terminate_as_interrupt()
    plan = dataclasses.replace(
        FULL,
        events=events,
        rate=rate,
        leader_kills=leader_kills,
        pause_s=pause,
        processor_kills=processor_kills,
        group_peak=group_peak,
        postgres_restarts=postgres_restarts,
        seed=seed,
    )
    # Progress goes to stderr with --json, so that stdout is the summary alone.
    summary = run_campaign(plan, lambda line: typer.echo(line, err=as_json), folder)
    if as_json:
        json.dump(summary.as_json(), sys.stdout, indent=2, default=str, allow_nan=False)
        sys.stdout.write("\n")
    else:
        for line in summary.lines():
            typer.echo(line)
    if not summary.ok:
        raise typer.Exit(1)


def soak(
    seconds: Annotated[
        float, typer.Option(min=1, help="Seconds of load (the issue: one hour).")
    ] = SOAK.seconds,
    rate: Annotated[float, typer.Option(min=1, help="Events per second offered.")] = SOAK.rate,
    stall: Annotated[
        float, typer.Option(min=0, help="Seconds the processors are stopped halfway (0: none).")
    ] = SOAK.stall_s,
    brokers: Annotated[int, typer.Option(help="Kafka nodes: 1 or 3.")] = SOAK.brokers,
    warm_up: Annotated[
        float, typer.Option(min=0, help="Seconds left out of the steady figures.")
    ] = SOAK.warm_up_s,
    seed: Annotated[int, typer.Option(help="Seed of the simulated county.")] = SOAK.seed,
    folder: Annotated[
        Path | None, typer.Option(help="Keep the servers' data and logs here (default: temporary).")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="Write the timeline as an SVG chart here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The soak: steady load for a long time; gateway p99, freshness, lag recovery, memory drift.

    Exits non-zero if an acknowledged event was lost, a publish was refused, or the lag did not
    come back after the processors' stall."""
    from chaos.soak import run_soak

    _terminate_as_interrupt()
    if brokers not in (1, 3):
        raise typer.BadParameter("a cluster has 1 or 3 nodes", param_hint="--brokers")
    plan = dataclasses.replace(
        SOAK, seconds=seconds, rate=rate, stall_s=stall, brokers=brokers, warm_up_s=warm_up,
        seed=seed,
    )  # fmt: skip
    summary = run_soak(plan, lambda line: typer.echo(line, err=as_json), folder)
    if chart is not None:
        chart.write_text(summary.chart(), encoding="utf-8")
    if as_json:
        json.dump(summary.as_json(), sys.stdout, indent=2, default=str, allow_nan=False)
        sys.stdout.write("\n")
    else:
        for line in summary.lines():
            typer.echo(line)
    if not summary.ok:
        raise typer.Exit(1)


def main() -> None:
    """Run the campaign on its own (`python -m chaos.cli`)."""
    app = typer.Typer()
    app.command()(chaos)
    app()


if __name__ == "__main__":
    main()
