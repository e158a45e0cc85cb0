"""Small-count suppression with complementary suppression along additive lines (pure).

A line says `total = sum(parts)` for published cells (a level and its institutions, a day and
its hours, received referrals and the three directions). Zeros are published (a window without
activity has no record at all, so hiding zeros would hide nothing). Primary suppression hides
every count from 1 to 4. Then, until nothing changes, every line must satisfy:

- total published: no part is hidden, or at least two are and they sum to more than their
  number (hidden parts are at least 1, so a remainder equal to their number would give all 1s);
- total hidden: at least one part is hidden too (or the parts would add up to it).

A line that fails gets its smallest non-zero published part hidden (ties by cell id), or, when
there is none, its total. Then an audit solves all lines at once: a reader who knows every line
and every published count can eliminate hidden cells across lines (a day minus the other
hours, minus a direction, ...), and a primary cell (1 to 4) that the lines together pin down
exactly gets the smallest published non-zero cell of one of its lines hidden beside it; then
the rules above again, until neither hides anything more. Hiding only grows, so this ends; the
result depends on nothing but the values and the lines, so every generation publishes the same
cells.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from projections.reporting.measures import THRESHOLD


@dataclass(frozen=True, slots=True)
class Line:
    """One additive relation between published cells."""

    total: Any
    parts: tuple[Any, ...]


def _safe(line: Line, values: Mapping[Any, int], hidden: set[Any]) -> bool:
    hidden_parts = [p for p in line.parts if p in hidden]
    if line.total in hidden:
        return bool(hidden_parts) or values.get(line.total, 0) == 0
    if not hidden_parts:
        return True
    return len(hidden_parts) >= 2 and sum(values.get(p, 0) for p in hidden_parts) > len(
        hidden_parts
    )


def _lines_rule(values: Mapping[Any, int], lines: Sequence[Line], hidden: set[Any]) -> None:
    """Each line on its own: hide until every line is safe."""
    changed = True
    while changed:
        changed = False
        for line in lines:
            if _safe(line, values, hidden):
                continue
            candidates = sorted(
                (values.get(p, 0), p)
                for p in line.parts
                if p not in hidden and values.get(p, 0) > 0
            )
            chosen = candidates[0][1] if candidates else line.total
            if chosen not in hidden:  # an inconsistent line must not loop forever
                hidden.add(chosen)
                changed = True


def _normal(row: dict[int, int]) -> dict[int, int]:
    """A row divided by the gcd of its entries, its first entry positive."""
    if not row:
        return row
    g = math.gcd(*row.values())
    g = -g if row[min(row)] < 0 else g
    return {c: v // g for c, v in row.items()}


def _eliminate(row: dict[int, int], col: int, pivot: dict[int, int]) -> dict[int, int]:
    """The row without column `col`, by a multiple of the pivot row (exact, integers)."""
    factor = row.get(col, 0)
    if not factor:
        return row
    scale = pivot[col]
    out = {c: v * scale for c, v in row.items()}
    for c, v in pivot.items():
        out[c] = out.get(c, 0) - factor * v
    return _normal({c: v for c, v in out.items() if v})


def determined(lines: Iterable[Line], hidden: Iterable[Any]) -> set[Any]:
    """The hidden cells whose values all the lines together give, from the published cells.

    Published cells are known numbers, so each line is an equation over its hidden cells; a
    hidden cell is determined exactly when its unit vector lies in the span of the equations:
    in their reduced row echelon form (integers, exact), some row is that cell alone."""
    order = sorted(hidden)
    index = {cell: i for i, cell in enumerate(order)}
    basis: dict[int, dict[int, int]] = {}  # pivot column -> row; no row has another's pivot
    holders: dict[int, set[int]] = {}  # column -> the pivots of the rows that hold it

    def put(pivot: int, row: dict[int, int]) -> None:
        for c in basis.get(pivot, ()):
            holders[c].discard(pivot)
        basis[pivot] = row
        for c in row:
            holders.setdefault(c, set()).add(pivot)

    for line in lines:
        row: dict[int, int] = {}
        for cell, sign in ((line.total, 1), *((p, -1) for p in line.parts)):
            if cell in index:
                row[index[cell]] = row.get(index[cell], 0) + sign
        row = {c: v for c, v in row.items() if v}
        for col in sorted(c for c in row if c in basis):
            row = _eliminate(row, col, basis[col])
        if not row:
            continue
        row = _normal(row)
        col = min(row)
        for other in sorted(holders.get(col, ())):
            put(other, _eliminate(basis[other], col, row))
        put(col, row)
    return {order[col] for col, row in basis.items() if len(row) == 1}


def _complement(
    cell: Any, values: Mapping[Any, int], touching: Mapping[Any, list[Line]], hidden: set[Any]
) -> Any | None:
    """The published cell to hide beside a determined one: the smallest non-zero published
    cell of its lines, else of the lines of the hidden cells they share (nearest first)."""
    frontier, seen = [cell], {cell}
    while frontier:
        cells = {
            c for f in frontier for line in touching.get(f, ()) for c in (line.total, *line.parts)
        }
        candidates = sorted((values.get(c, 0), c) for c in cells - hidden if values.get(c, 0) > 0)
        if candidates:
            return candidates[0][1]
        frontier = sorted(c for c in cells & hidden if c not in seen)
        seen.update(frontier)
    return None


def suppress(
    values: Mapping[Any, int], lines: Sequence[Line], threshold: int = THRESHOLD
) -> set[Hashable]:
    """The cells to hide so that no line, nor all lines together, gives a small count away."""
    primary: set[Any] = {cell for cell, v in values.items() if 0 < v < threshold}
    hidden = set(primary)
    touching: dict[Any, list[Line]] = {}
    while True:
        _lines_rule(values, lines, hidden)
        found = sorted(determined(lines, hidden) & primary)
        if found and not touching:
            for line in lines:
                for cell in (line.total, *line.parts):
                    touching.setdefault(cell, []).append(line)
        more = {_complement(cell, values, touching, hidden) for cell in found} - {None}
        if not more:
            return hidden
        hidden |= more
