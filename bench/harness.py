"""The common shape of every benchmark: named figures, each beside its baseline and ratio."""

from __future__ import annotations

import atexit
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import typer

from events.topics import ALL_TOPICS, TopicSpec


@dataclass(frozen=True)
class Figure:
    """One measured figure; names are stable once published (see docs/benchmarks.md)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None

    @property
    def ratio(self) -> float | None:
        """The figure divided by its baseline measured in the same run."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def throwaway_topics(
    bootstrap_servers: str, consortium_id: str, specs: Iterable[TopicSpec] = ALL_TOPICS
) -> None:
    """Create the bench consortium's topics (`specs`) and drop them when this
    process exits, however the run ended.

    Every run makes a fresh consortium (~70 partitions with its dead-letter and derived
    topics); a development broker that kept them all ran out of file descriptors."""
    from consortium.topics import ensure_topics

    atexit.register(_drop, bootstrap_servers, consortium_id)
    ensure_topics(bootstrap_servers, consortium_id, specs=specs)


def _drop(bootstrap_servers: str, consortium_id: str) -> None:
    from consortium.topics import drop_topics

    try:
        drop_topics(bootstrap_servers, [consortium_id], timeout=10)
    except Exception as exc:  # the broker may be gone by now: say so, exit as the run did
        logging.getLogger(__name__).warning("topics of %s not dropped: %s", consortium_id, exc)


def rate(count: int, run: Callable[[], None]) -> float:
    """Run once and return count divided by the wall-clock seconds it took."""
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def report(figures: Iterable[Figure], *, as_json: bool) -> None:
    """Print figures as text lines, or as one JSON object per line with --json."""
    for fig in figures:
        if as_json:
            row = {k: v for k, v in asdict(fig).items() if k != "baseline_name"}
            row["ratio"] = fig.ratio
            typer.echo(json.dumps(row, ensure_ascii=False))
            continue
        line = f"{fig.name:<40} {fig.value:>14,.1f} {fig.unit}"
        if fig.ratio is not None:
            line += f"   (baseline {fig.baseline_name}: {fig.baseline:,.1f}; ratio {fig.ratio:.2f})"
        typer.echo(line)


def machine() -> str:
    """Describe the machine the figures were measured on."""

    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
