"""Assemble a simulated county with all its flows scheduled, ready to run."""

from __future__ import annotations

from events.membership import Membership
from simulator import census, flows
from simulator.county import County, SimulationConfig


def simulate(config: SimulationConfig, membership: Membership | None = None) -> County:
    """A county whose `events()` yields the whole simulated period's events in order."""
    county = County(config, membership)
    flows.start(county)
    census.start(county)
    return county
