"""`consortium chaos`: the fault campaign; exits non-zero when anything was lost or doubled."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from chaos.plan import FULL


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
        json.dump(summary.as_json(), sys.stdout, indent=2, default=str)
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
