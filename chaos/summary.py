"""The campaign's outcome: counts, verdicts and phase durations, for people and for CI."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.faults import Fault
from chaos.plan import Plan
from chaos.verify import ProjectionVerdict


def strict_json(value: Any) -> Any:
    """The same data with NaN and infinities as null: strict JSON parsers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


@dataclass
class TwoDown:
    """Publishing with two of three brokers down, and again after they returned."""

    statuses_down: list[int] = field(default_factory=list)
    stored_down: int = 0  # events the gateway reported stored while two were down
    status_back: int = 0
    back_after_s: float = 0.0

    @property
    def ok(self) -> bool:
        """No success while down (every answer 503, nothing stored), a 202 once back."""
        down = bool(self.statuses_down) and all(s == 503 for s in self.statuses_down)
        return down and self.stored_down == 0 and self.status_back == 202


@dataclass
class Summary:
    """Everything the campaign counted."""

    plan: Plan
    machine: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    offered: int = 0
    acknowledged: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    log_records: int = 0
    log_distinct: int = 0
    undecodable: int = 0
    lost: int = 0
    lost_sample: list[str] = field(default_factory=list)
    sdk_keys: int = 0
    order_violations: int = 0
    projections: list[ProjectionVerdict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    processor_kills: int = 0
    unplanned_exits: int = 0
    two_down: TwoDown = field(default_factory=TwoDown)
    failures: list[str] = field(default_factory=list)

    @property
    def doubled(self) -> int:
        """Events a projection counted beyond a clean replay (or whose content differs)."""
        return sum(p.extra + (p.digest_live != p.digest_rebuilt) for p in self.projections)

    @property
    def digests_equal(self) -> bool:
        """Every projection's live digest equals its clean rebuild's."""
        return bool(self.projections) and all(
            p.digest_live == p.digest_rebuilt for p in self.projections
        )

    def problems(self) -> list[str]:
        """What is off; empty when the campaign passed."""
        found = list(self.failures)
        acknowledged = sum(self.acknowledged.values())
        if acknowledged < self.offered:
            found.append(f"{self.offered - acknowledged:,} offered events never acknowledged")
        if self.refusals:
            found.append(f"{len(self.refusals)} publishes refused: {self.refusals[0]}")
        if self.lost:
            found.append(f"{self.lost:,} acknowledged events are not in the log")
        if self.undecodable:
            found.append(f"{self.undecodable:,} undecodable records in the log")
        if self.order_violations:
            found.append(f"{self.order_violations:,} keys out of order")
        for p in self.projections:
            if not p.ok:
                found.append(f"projection {p.name} differs from its rebuild: {p}")
        if len(self.projections) == 0 and not self.failures:
            found.append("no projection was verified")
        if not self.two_down.ok:
            found.append(f"two brokers down: {self.two_down}")
        return found

    @property
    def ok(self) -> bool:
        """Whether nothing is off."""
        return not self.problems()

    def as_json(self) -> dict[str, Any]:
        """The summary as JSON-ready data, verdicts included."""
        data = asdict(self)
        data.update(
            ok=self.ok,
            problems=self.problems(),
            doubled=self.doubled,
            digests_equal=self.digests_equal,
            two_down_ok=self.two_down.ok,
            load_s=self.plan.load_s,
        )
        return strict_json(data)  # type: ignore[no-any-return]

    def lines(self) -> list[str]:
        """The summary for a terminal."""
        acked = sum(self.acknowledged.values())
        by_path = ", ".join(f"{k} {v:,}" for k, v in sorted(self.acknowledged.items()))
        out = [
            f"offered {self.offered:,} events; acknowledged {acked:,} ({by_path})",
            f"log: {self.log_records:,} records, {self.log_distinct:,} distinct events,"
            f" {self.log_records - self.log_distinct:,} extra copies",
            f"lost: {self.lost:,}   counted twice: {self.doubled:,}   "
            f"keys out of order: {self.order_violations:,} of {self.sdk_keys:,} SDK keys",
        ]
        for p in self.projections:
            same = "equal" if p.digest_live == p.digest_rebuilt else "DIFFERENT"
            out.append(
                f"  {p.name:<10} applied {p.applied:,} = distinct {p.distinct:,}"
                f" (missing {p.missing}, extra {p.extra}); digest {same}"
                f" {p.digest_live[:12]}; rebuild {p.rebuild_s:.1f} s"
            )
        two = self.two_down
        out.append(
            f"two of three brokers down: answers {sorted(set(two.statuses_down))}, stored"
            f" {two.stored_down}; back: {two.status_back} after {two.back_after_s:.1f} s"
        )
        out.append(
            f"faults: {len(self.faults)} "
            f"(processor kills {self.processor_kills}, unplanned exits {self.unplanned_exits})"
        )
        for f in self.faults:
            out.append(f"  +{f.at_s:6.1f} s  {f.kind:<18} {f.target} ({f.took_s:.1f} s)")
        answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.answers.items()))
        out.append(f"answers: {answers}")
        out.append("phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items()))
        problems = self.problems()
        out.append("PASSED" if not problems else "FAILED:\n  " + "\n  ".join(problems))
        return out
