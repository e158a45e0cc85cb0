"""`consortium reporting relay|show`: the bureau streams' relay, and a look at the figures."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from consortium.endpoints import database_url, kafka_bootstrap
from consortium.settings import get_settings

reporting_app = typer.Typer(no_args_is_help=True, help="The bureau streams (de-identified).")


@reporting_app.command("relay")
def relay_command(
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers.")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls when idle.")] = 0.5,
    once: Annotated[bool, typer.Option("--once", help="Drain the outbox once and exit.")] = False,
) -> None:
    """Publish changed figures from the outbox to the reporting topics until stopped."""
    from consortium.topics import ensure_topics
    from events.topics import REPORTING_TOPICS
    from projections.reporting.relay import Relay

    settings = get_settings()
    servers = kafka_bootstrap(bootstrap)
    ensure_topics(
        servers,
        settings.consortium_id,
        replication_factor=settings.topic_replication_factor,
        specs=REPORTING_TOPICS.values(),
    )
    relay = Relay(database_url(), servers, settings.consortium_id)
    if once:
        typer.echo(f"{relay.drain()} records published")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        relay.run(stop, interval)
    except KeyboardInterrupt:
        stop.set()


@reporting_app.command("show")
def show_command(
    grain: Annotated[str, typer.Option(help="HOUR or DAY.")] = "DAY",
    institution: Annotated[str | None, typer.Option(help="An institution code.")] = None,
) -> None:
    """Print the consortium's (or an institution's) figures, suppressed cells as '<5'."""
    import psycopg

    from projections.reporting.queries import consortium_figures, institution_figures

    with psycopg.connect(database_url()) as conn:
        if institution:
            rows = institution_figures(conn, institution, grain)
        else:
            rows = consortium_figures(conn, grain)
    columns = ("admissions", "discharges", "outpatient_visits", "referrals_up", "referrals_down")
    typer.echo(f"{'window':<26}" + "".join(f"{c:>20}" for c in columns))
    for row in rows:
        cells = [row[c] for c in columns]
        shown = ["<5" if c["suppressed"] else str(c["value"]) for c in cells]
        typer.echo(f"{row['window_start']:<26}" + "".join(f"{s:>20}" for s in shown))
