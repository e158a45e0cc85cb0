"""Report cells of one institution, and moving an entity's contributions into them (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from projections.reporting.entities import Contribution
from projections.reporting.measures import STOCKS
from projections.reporting.windows import Grain, local_date, window_start


@dataclass(frozen=True, slots=True, order=True)
class CellKey:
    """One institution's measure in one window."""

    grain: Grain
    window_start: datetime
    institution: str
    measure: str

    @property
    def day(self) -> date:
        """The local day the window lies in."""
        return local_date(self.window_start)


@dataclass(frozen=True, slots=True)
class Cell:
    """A count (or sum) and, for durations, every value (sorted) so medians are exact."""

    value: int = 0
    samples: tuple[int, ...] = ()


@dataclass
class Delta:
    """What one batch changes in a cell."""

    value: int = 0
    added: Counter[int] = field(default_factory=Counter)
    removed: Counter[int] = field(default_factory=Counter)


def keys_of(contribution: Contribution) -> list[CellKey]:
    """The cells a contribution counts in: its hour (flows only) and its day."""
    grains = (Grain.DAY,) if contribution.measure in STOCKS else (Grain.HOUR, Grain.DAY)
    return [
        CellKey(g, window_start(g, contribution.at), contribution.institution, contribution.measure)
        for g in grains
    ]


def deltas(
    changes: Iterable[tuple[Iterable[Contribution], Iterable[Contribution]]],
) -> dict[CellKey, Delta]:
    """The net change of every cell when each entity's old contributions become its new ones."""
    found: dict[CellKey, Delta] = {}
    for old, new in changes:
        for sign, contributions in ((-1, old), (1, new)):
            for c in contributions:
                for key in keys_of(c):
                    d = found.setdefault(key, Delta())
                    d.value += sign * c.value
                    if c.sample is not None:
                        (d.added if sign > 0 else d.removed)[c.sample] += 1
    return {k: d for k, d in found.items() if d.value or d.added != d.removed}


def apply(cell: Cell | None, delta: Delta) -> Cell:
    """The cell after a delta; a sample removed that the cell does not hold is an error."""
    current = cell or Cell()
    samples = Counter(current.samples)
    samples.update(delta.added)
    samples.subtract(delta.removed)
    if any(n < 0 for n in samples.values()):
        raise ValueError("a delta removes a sample the cell does not hold")
    return Cell(current.value + delta.value, tuple(sorted(samples.elements())))


def fold(contributions: Iterable[Contribution]) -> dict[CellKey, Cell]:
    """The cells that a set of contributions makes from nothing (the reference for tests)."""
    cells: dict[CellKey, Cell] = {}
    for key, delta in deltas([((), contributions)]).items():
        cells[key] = apply(None, delta)
    return cells


def merge(cells: Mapping[CellKey, Cell], more: Mapping[CellKey, Delta]) -> dict[CellKey, Cell]:
    """Cells after applying deltas; cells that become empty are dropped."""
    merged = dict(cells)
    for key, delta in more.items():
        cell = apply(merged.get(key), delta)
        if cell.value or cell.samples:
            merged[key] = cell
        else:
            merged.pop(key, None)
    return merged
