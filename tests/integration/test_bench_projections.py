"""`consortium bench projections` with tiny numbers: well-formed, positive figures (not speed)."""

from __future__ import annotations

import math

from bench.projections import BASELINE, measure
from infra.runtime import Endpoints

HEADLINE = {
    "projections.all_together_events_per_s": "events/s",
    "projections.sustained_events_per_s": "events/s",
    "projections.rebuild_events_per_s": "events/s",
    "projections.freshness_p50_ms": "ms",
    "projections.freshness_p99_ms": "ms",
}


def test_the_benchmark_reports_every_figure_beside_its_baseline(
    kafka_bootstrap: str, database_url: str
) -> None:
    said: list[str] = []
    figures = measure(
        1_500,
        fresh_seconds=0.5,
        endpoints=Endpoints(kafka_bootstrap, database_url),
        say=said.append,
    )
    by_name = {f.name: f for f in figures}
    assert {n: by_name[n].unit for n in HEADLINE} == HEADLINE
    for name in ("referrals", "transfers", "reporting", "record", "empi"):
        for kind in ("sustained_events_per_s", "rebuild_events_per_s", "freshness_p99_ms"):
            assert f"projections.{name}.{kind}" in by_name
    for f in figures:
        assert math.isfinite(f.value) and f.value > 0, f
        assert f.baseline is not None and math.isfinite(f.baseline) and f.baseline > 0, f
        assert f.baseline_name == BASELINE
    assert by_name["projections.freshness_p50_ms"].value <= (
        by_name["projections.freshness_p99_ms"].value
    )
    assert any("rebuilding" in line for line in said)
