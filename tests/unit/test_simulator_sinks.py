"""Sinks, pacing, batching and the command line of the simulator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from events.envelope import Event
from events.membership import read_membership
from events.registry import parse_event
from simulator.cli import app
from simulator.county import SimulationConfig
from simulator.simulation import simulate
from simulator.sinks import JsonLinesSink, Pacer, Pump

START = datetime(2025, 3, 2, 16, tzinfo=UTC)


def few_events() -> list[Event]:
    county = simulate(SimulationConfig(seed=9, days=0.5, population=800, start=START))
    return list(county.events())


class ListSink:
    """Remembers the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.closed = False

    def write(self, events: Sequence[Event]) -> None:
        self.batches.append(list(events))

    def close(self) -> None:
        self.closed = True


class FakeTime:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_json_lines_round_trip_through_parse_event(tmp_path: Path) -> None:
    events = few_events()
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(path)
    sink.write(events)
    sink.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [parse_event(json.loads(line)) for line in lines] == events


def test_pump_delivers_everything_in_order_in_batches() -> None:
    events = few_events()
    sink = ListSink()
    with Pump(sink, batch=100) as pump:
        assert pump.run(events) == len(events)
    assert sink.closed
    assert [e for b in sink.batches for e in b] == events
    assert all(len(b) == 100 for b in sink.batches[:-1])


def test_real_time_times_n_sleeps_the_simulated_gaps_divided_by_n() -> None:
    events = few_events()
    fake = FakeTime()
    sink = ListSink()
    Pump(sink, Pacer(3600.0, fake.clock, fake.sleep), batch=10_000).run(events)
    span = (events[-1].envelope.occurred_at - events[0].envelope.occurred_at).total_seconds()
    assert sum(fake.slept) == pytest.approx(span / 3600.0, rel=1e-6)
    # Events due before a sleep are delivered before it, so batches follow the clock.
    assert len(sink.batches) > 1


def test_cli_writes_events_and_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "e.jsonl", tmp_path / "t.jsonl"
    args = ["run", "--days", "0.5", "--population", "600", "--out", str(out), "--truth", str(truth)]
    result = CliRunner().invoke(app, [*args, "--start", "2025-03-02T16:00:00"])
    assert result.exit_code == 0, result.output
    events = [parse_event(json.loads(line)) for line in out.read_text("utf-8").splitlines()]
    truth_rows = [json.loads(line) for line in truth.read_text("utf-8").splitlines()]
    registered = sum(e.envelope.event_type == "PatientRegistered" for e in events)
    assert registered == sum(r["kind"] == "registration" for r in truth_rows)


def test_cli_refuses_both_or_neither_destination(tmp_path: Path) -> None:
    neither = CliRunner().invoke(app, ["run", "--days", "0.1"])
    both = CliRunner().invoke(app, ["run", "--kafka", "--out", str(tmp_path / "x")])
    assert neither.exit_code != 0 and both.exit_code != 0


def test_cli_writes_a_membership_in_the_bundled_format(tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    result = CliRunner().invoke(
        app, ["membership", "--townships", "5", "--villages", "30", "--out", str(path)]
    )
    assert result.exit_code == 0, result.output
    members = read_membership(path)
    levels = [i.level.value for i in members]
    assert levels.count("county_hospital") == 1
    assert levels.count("specialist_hospital") == 2
    assert levels.count("township_centre") == 5
    assert levels.count("village_clinic") == 30


def test_cli_gateway_and_mllp_need_a_token_per_institution() -> None:
    base = ["run", "--days", "0.1", "--population", "200"]
    no_token = CliRunner().invoke(app, [*base, "--gateway", "http://127.0.0.1:1"])
    bare = CliRunner().invoke(app, [*base, "--mllp", "127.0.0.1:1", "--token", "cbt_x"])
    two = CliRunner().invoke(app, [*base, "--kafka", "--gateway", "http://x", "--token", "A=b"])
    assert no_token.exit_code != 0 and "--token" in no_token.output
    assert bare.exit_code != 0 and "CODE=TOKEN" in bare.output
    assert two.exit_code != 0


# Fields an HL7 v2 message cannot carry, or that the gateway derives (docs/simulator.md).
DERIVED = {"event_id", "correlation_id", "causation_id"}
LOST = {
    "LabResultReported": {"result_id"},  # the gateway appends OBX-1: "<OBR-3>-1"
    "ResultAmended": {"result_id", "reason"},  # reason is fixed by OBX-11 = C
    "PatientRegistered": {"township_division_code"},
    "ReferralRejected": {"suggested_institution"},
    "OrderPlaced": {"category"},  # PROCEDURE and MEDICATION have no diagnostic section
    "PatientAdmitted": {"admission_source"},  # OUTPATIENT has no HL7 table 0023 code
}


def test_events_become_hl7_messages_the_gateway_maps_back_to_the_same_events() -> None:
    from gateway.hl7.service import Answer, _prepare
    from simulator.gateway_sink import to_hl7

    mapped = 0
    for event in few_events():
        message = to_hl7(event, "token", event.envelope.event_id.hex)
        if message is None:
            continue
        _, drafts = _prepare(message)
        assert not isinstance(drafts, Answer), drafts.ack
        [back] = [parse_event(d) for d in drafts]
        want, got = event.model_dump(mode="json"), back.model_dump(mode="json")
        lost = LOST.get(event.event_type, set())
        for name in set(want) - {"envelope"} - lost:
            assert got[name] == want[name], (event.event_type, name)
        for name in set(want["envelope"]) - DERIVED:
            assert got["envelope"][name] == want["envelope"][name], (event.event_type, name)
        if event.event_type == "LabResultReported":
            assert got["result_id"] == want["result_id"] + "-1"
        mapped += 1
    assert mapped > 100


def test_event_types_without_an_hl7_mapping_give_no_message() -> None:
    from simulator.gateway_sink import to_hl7

    kinds = {e.event_type for e in few_events() if to_hl7(e, "t", "1") is None}
    assert "OutpatientVisitStarted" in kinds and "BedCensusReported" in kinds
    assert not kinds & {"LabResultReported", "OrderPlaced", "PatientAdmitted"}


@given(st.text(min_size=1).filter(lambda t: t.strip() == t and "\r" not in t))
def test_any_text_survives_er7_escaping(value: str) -> None:
    from gateway.hl7.values import unescape
    from simulator.gateway_sink import esc

    escaped = esc(value)
    assert not set("|^&~") & set(escaped)
    assert unescape(escaped) == value


@given(
    # Control characters other than CR/LF cannot stand in an HL7 field (hl7apy drops NUL).
    st.text(alphabet=st.characters(codec="utf-8", min_codepoint=32), max_size=12),
    st.sampled_from(["HIS", "LIS 2", "检验科"]),
    st.sampled_from(["R01", "A01", ""]),
)
def test_the_acks_the_sinks_read_are_what_hl7apy_would_write(
    control: str, sender: str, trigger: str
) -> None:
    from gateway.hl7.ack import AckCode, build_ack, hl7apy_ack
    from gateway.hl7.service import _parse
    from gateway.hl7.values import text
    from simulator.gateway_sink import esc

    message = _parse(
        f"MSH|^~\\&|{sender}|439901-C01|GATEWAY|439901|20250301120000+0800||ORU^{trigger}"
        f"|{esc(control)}|P|2.5\rPID|1||X^^^439901-C01^MR"
    )

    def steady(ack: str) -> list[str]:
        msh, *rest = ack.split("\r")
        fields = msh.split("|")
        return [*fields[:6], *fields[7:9], *fields[10:], *rest]  # without MSH-7 and MSH-10

    fast = build_ack(message, AckCode.ACCEPT, [])
    # The control id comes back whole; hl7apy itself writes ^ and & unescaped (see _plain).
    assert text(_parse(fast).msa.msa_2) == (control.strip() or None)
    if not set("^&") & set(control):
        assert steady(fast) == steady(hl7apy_ack(message, AckCode.ACCEPT, []))
