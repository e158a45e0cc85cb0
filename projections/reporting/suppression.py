"""Small-count suppression with complementary suppression along additive lines (pure).

A line says `total = sum(parts)` for published cells (a level and its institutions, a day and
its hours, received referrals and the three directions). Zeros are published (a window without
activity has no record at all, so hiding zeros would hide nothing). Primary suppression hides
every count from 1 to 4. Then, until nothing changes, every line must satisfy:

- total published: no part is hidden, or at least two are and they sum to more than their
  number (hidden parts are at least 1, so a remainder equal to their number would give all 1s);
- total hidden: at least one part is hidden too (or the parts would add up to it).

A line that fails gets its smallest non-zero published part hidden (ties by cell id), or, when
there is none, its total. Hiding only grows, so this ends; the result depends on nothing but
the values and the lines, so every generation publishes the same cells.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
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


def suppress(
    values: Mapping[Any, int], lines: Sequence[Line], threshold: int = THRESHOLD
) -> set[Hashable]:
    """The cells to hide so that no line gives a hidden value away by subtraction."""
    hidden: set[Any] = {cell for cell, v in values.items() if 0 < v < threshold}
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
    return hidden
