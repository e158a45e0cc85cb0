"""Runs a simulated county into a sink with a progress bar showing events/s."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from events.envelope import Event
from simulator.county import County
from simulator.sinks import Pacer, Pump, Sink


def run_county(
    county: County, sink: Sink, *, speed: float | None = None, batch: int = 500
) -> tuple[int, float]:
    """Deliver the county's whole period to the sink; return the event count and seconds."""
    console = Console(stderr=True)
    begin, end = county.clock.start.timestamp(), county.clock.end.timestamp()
    columns = (
        TextColumn("simulating"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[count]:>8,} events  {task.fields[rate]:>8,.0f} events/s"),
    )
    started = time.monotonic()
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("run", total=end - begin, count=0, rate=0.0)

        def report(events: Sequence[Event]) -> None:
            done = events[-1].envelope.occurred_at.timestamp() - begin
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done, count=pump.count, rate=pump.count / elapsed)

        with Pump(sink, Pacer(speed), batch, report) as pump:
            total = pump.run(county.events())
        progress.update(task, completed=end - begin)
    return total, time.monotonic() - started
