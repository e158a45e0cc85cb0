"""The processors' registry of projections."""

from __future__ import annotations

import pytest

from processors.wiring import PROJECTIONS, projection


def test_every_registered_projection_is_found_by_name() -> None:
    assert set(PROJECTIONS) == {"referrals", "transfers", "reporting", "record"}
    for name, registered in PROJECTIONS.items():
        assert projection(name) is registered


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: referrals, transfers, reporting, record"):
        projection("billing")


def test_reporting_takes_the_consortium_it_is_given() -> None:
    # A rebuild for consortium X in a process configured for Y must scope X's figures to X.
    scoped = projection("reporting", "county-x")
    assert scoped.store.consortium_id == "county-x"  # type: ignore[attr-defined]
    assert projection("referrals", "county-x") is PROJECTIONS["referrals"]
