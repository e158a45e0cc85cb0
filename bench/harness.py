"""The common shape of every benchmark: named figures, each beside its baseline and ratio."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import typer

from events.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)


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


_THROWAWAY: list[tuple[str, str]] = []  # (bootstrap servers, consortium id) made by this process


def throwaway_topics(
    bootstrap_servers: str, consortium_id: str, specs: Iterable[TopicSpec] = ALL_TOPICS
) -> None:
    """Create the bench consortium's topics (`specs`); `dropping_throwaways` deletes them.

    Every run makes a fresh consortium (~70 partitions with its dead-letter and derived
    topics); a development broker that kept them all ran out of file descriptors."""
    from consortium.topics import ensure_topics

    _THROWAWAY.append((bootstrap_servers, consortium_id))
    ensure_topics(bootstrap_servers, consortium_id, specs=specs)


@contextmanager
def dropping_throwaways() -> Iterator[None]:
    """Around a bench command: drop the topics of the consortia it made, however it ended.
    (Tests that call a `measure` directly run on a broker their session owns.)"""
    from consortium.topics import drop_topics

    try:
        yield
    finally:
        while _THROWAWAY:
            bootstrap, consortium_id = _THROWAWAY.pop()
            try:
                drop_topics(bootstrap, [consortium_id], timeout=10)
            except Exception as exc:  # the broker may be gone: say so, end as the run did
                log.warning("topics of %s not dropped: %s", consortium_id, exc)


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
