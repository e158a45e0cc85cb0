"""The soak in its CI form: every figure of `consortium soak`, from real servers, in a minute."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chaos.soak import SHORT, SoakSummary, run_soak


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> SoakSummary:
    """One short soak on servers of its own (its progress lines go to the test log)."""
    outcome = run_soak(SHORT, print, Path(tmp_path_factory.mktemp("soak")))
    print("\n".join(outcome.lines()))
    return outcome


def test_the_soak_publishes_its_load_and_loses_nothing(summary: SoakSummary) -> None:
    assert summary.failures == [] and summary.refusals == []
    assert summary.offered == SHORT.events
    assert summary.acknowledged == SHORT.events
    assert summary.log_distinct >= SHORT.events
    assert summary.lost == 0
    assert summary.unplanned_exits == 0
    assert summary.ok


def test_gateway_answers_and_freshness_are_measured_for_every_projection(
    summary: SoakSummary,
) -> None:
    assert 0 < summary.gateway_requests <= summary.gateway_events < SHORT.events
    assert 0 < summary.gateway_ms["p50"] <= summary.gateway_ms["p99"]
    assert set(summary.freshness_ms) == {"referrals", "transfers", "reporting", "record"}
    for name, fresh in summary.freshness_ms.items():
        assert fresh["samples"] > 0, name
        # Freshness is publish-to-stored: never below the stored-position polling's resolution.
        assert 0 < fresh["p50"] <= fresh["p99"] < 60_000, name


def test_the_stall_builds_lag_that_the_processors_work_off(summary: SoakSummary) -> None:
    stall = summary.stall
    assert stall is not None
    # Five seconds at 50 events/s, read by several projections: records pile up, then go.
    assert stall.lag_at_resume > 0
    assert not math.isnan(stall.recovered_after_s) and stall.recovered_after_s < 240
    assert "catch up" in summary.phases  # every projection reached the log's end afterwards


def test_memory_is_watched_for_every_server(summary: SoakSummary) -> None:
    names = {d.name for d in summary.memory}
    assert {"gateway", "postgres", "kafka 1"} <= names
    assert {f"process {p}" for p in ("referrals", "transfers", "reporting", "record", "empi")} <= (
        names
    )
    assert all(d.start_mib > 10 and d.end_mib > 10 for d in summary.memory)


def test_the_chart_is_an_svg_of_four_panels(summary: SoakSummary) -> None:
    root = ET.fromstring(summary.chart())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    # One gateway line, four freshness lines, four lag lines, and one per watched server.
    assert len(lines) >= 1 + 4 + 4 + len(summary.memory)
    assert all(line.get("points") for line in lines)
