"""What a fault campaign does: how much load, and which faults how often."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """The load and the fault schedule of one campaign (defaults: the issue's full plan)."""

    events: int = 100_000
    rate: float = 1_000.0  # events per second, gateway and SDK together
    leader_kills: int = 5
    pause_s: float = 30.0  # one broker SIGSTOPped this long (0: no pause)
    processor_kills: int = 5
    group_peak: int = 3  # the referrals group grows 1 -> peak -> 1 (1: no resize)
    postgres_restarts: int = 1
    seed: int = 1
    # Time a killed broker stays down before it is started again.
    down_s: float = 2.0
    # Time allowed for the processors to catch up, and for a rebuild, each.
    catch_up_timeout_s: float = 900.0

    @property
    def load_s(self) -> float:
        """How long publishing takes at the target rate; the faults are spread over it."""
        return self.events / self.rate


FULL = Plan()

# The shortened campaign of CI: every kind of fault, a few minutes on two loaded cores.
SHORT = Plan(
    events=2_000,
    rate=100.0,
    leader_kills=2,
    pause_s=5.0,
    processor_kills=2,
    group_peak=2,
    postgres_restarts=1,
    down_s=1.0,
    catch_up_timeout_s=240.0,
)
