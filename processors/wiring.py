"""Every projection the processors run, by name: the one place they are assembled."""

from __future__ import annotations

from typing import Any

from projections.frame.declaration import Projection
from projections.referrals.projection import REFERRALS
from projections.transfers.projection import TRANSFERS

PROJECTIONS: dict[str, Projection[Any, Any]] = {p.name: p for p in (REFERRALS, TRANSFERS)}


def projection(name: str) -> Projection[Any, Any]:
    """A registered projection, or a KeyError naming the known ones."""
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise KeyError(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}") from None
