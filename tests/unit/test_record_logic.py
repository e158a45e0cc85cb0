"""The shared record's pure logic: entries, links, results, consents, access, recognition."""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import examples
from events.consent import ConsentPurpose, ConsentScope
from events.encounter import PatientDischarged
from events.envelope import CodedConcept
from projections.persons import LinkFact, current_person, members, resolve
from projections.record.access import AccessInputs, AccessRequest, Basis, decide
from projections.record.aggregates import evolve, key_of
from projections.record.consents import Consent
from projections.record.entries import Entry, EntryKind, entries_of
from projections.record.recognition import (
    OrderedTest,
    PriorResult,
    RecognitionTable,
    possible_repeat,
    recognizable,
)
from projections.record.referrals import ACCESS_AFTER_COMPLETION, ReferralLink
from projections.record.results import current_order, current_result

T0 = datetime(2024, 5, 1, tzinfo=UTC)
A, B, C = "439901-T03", "439901-C01", "439901-S01"
TABLE = RecognitionTable.load()


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def lab(status: str, at: float, **detail: Any) -> Entry:
    kind, event_type = EntryKind.LAB_RESULT, "LabResultReported"
    if status == "AMENDED":
        event_type = "ResultAmended"
    code = CodedConcept(system="LOINC", code="718-7", display="血红蛋白")
    return Entry(uuid.uuid4(), 0, kind, A, "P1", hours(at), event_type, "R1", status, code, detail)


# Entries


def test_a_discharge_to_another_member_is_an_encounter_diagnoses_and_a_transfer() -> None:
    moved = examples.patient_discharged()  # down to the township centre
    assert moved.transferred_to_institution == examples.TOWNSHIP
    home = PatientDischarged(
        **{
            **moved.model_dump(),
            "discharge_disposition": "HOME",
            "transferred_to_institution": None,
        }
    )
    kinds = [e.kind for e in entries_of(moved)]
    assert kinds[0] is EntryKind.ENCOUNTER and kinds[-1] is EntryKind.TRANSFER
    assert kinds.count(EntryKind.DIAGNOSIS) == len(moved.discharge_diagnoses)
    assert [e.seq for e in entries_of(moved)] == list(range(len(kinds)))
    assert EntryKind.TRANSFER not in [e.kind for e in entries_of(home)]


def test_registrations_census_and_reviews_are_not_the_records_business() -> None:
    for event in (
        examples.patient_registered(),
        examples.bed_census_reported(),
        examples.match_review_requested(),
    ):
        assert key_of(event) is None


def test_an_event_applied_twice_adds_its_entries_once() -> None:
    event = examples.lab_result_reported()
    once = evolve(None, event)
    assert evolve(once, event) == once
    link = examples.person_linked()
    linked = evolve(None, link)
    assert evolve(linked, link) == linked
    assert key_of(link) == ("patient", link.institution, link.local_id)
    assert key_of(examples.persons_merged()) == ("person", str(examples.OTHER), "")


# Links and merges


def fact(person: str, linked: bool, at: float) -> LinkFact:
    return LinkFact(hours(at), uuid.uuid4(), person, linked)


def test_a_move_reads_the_same_in_both_orders_and_a_later_link_back_wins() -> None:
    move = [fact("P", True, 0), fact("P", False, 5), fact("Q", True, 5)]
    assert current_person(move) == current_person(reversed(move)) == "Q"
    assert current_person([*move, fact("P", True, 9)]) == "P"
    assert current_person([fact("P", True, 0), fact("P", False, 0)]) is None
    assert current_person([]) is None


@given(st.lists(st.tuples(st.sampled_from("PQR"), st.booleans(), st.integers(0, 5))), st.randoms())
def test_the_current_person_is_a_function_of_the_set(
    raw: list[tuple[str, bool, int]], rng: Any
) -> None:
    facts = [fact(p, linked, at) for p, linked, at in raw]
    shuffled = list(facts)
    rng.shuffle(shuffled)
    assert current_person(facts) == current_person(shuffled + facts[:2])


def test_merges_resolve_along_chains_and_stop_at_cycles() -> None:
    survivors = {"Q": "P", "R": "Q", "X": "Y", "Y": "X"}
    assert resolve(survivors, "R") == "P" and resolve(survivors, "P") == "P"
    assert members(survivors, "Q") == {"P", "Q", "R"}
    assert resolve(survivors, "X") in {"X", "Y"}  # a cycle ends instead of looping


# Results and orders


def test_an_amendment_replaces_what_it_amends_and_the_count_keeps_the_history() -> None:
    report = lab("FINAL", 1, value_numeric=98.0, unit="g/L", abnormal_flag="LOW")
    amended = lab("AMENDED", 5, value_numeric=128.0, abnormal_flag="NORMAL", unit=None)
    for order in ([report, amended], [amended, report]):
        now = current_result(order)
        assert now is not None
        assert now.values["value_numeric"] == 128.0 and now.values["unit"] == "g/L"
        assert now.values["abnormal_flag"] == "NORMAL" and now.amendments == 1
    assert current_result([amended]) is None  # waits for its report


def test_a_late_preliminary_never_replaces_the_final_report() -> None:
    final = lab("FINAL", 3, value_numeric=120.0)
    preliminary = lab("PRELIMINARY", 4, value_numeric=100.0)
    now = current_result([preliminary, final])
    assert now is not None and now.status == "FINAL" and now.values["value_numeric"] == 120.0


def test_an_order_is_cancelled_resulted_preliminary_or_placed() -> None:
    code = CodedConcept(system="LOINC", code="58410-2", display="血常规")
    placed = Entry(uuid.uuid4(), 0, EntryKind.ORDER, A, "P1", hours(0), "OrderPlaced", "O1",
                   "PLACED", code, {"category": "LAB"})  # fmt: skip
    cancelled = Entry(uuid.uuid4(), 0, EntryKind.ORDER, A, "P1", hours(1), "OrderCancelled",
                      "O1", "CANCELLED")  # fmt: skip
    statuses = {
        "PLACED": current_order([placed], []),
        "RESULTED": current_order([placed], ["PRELIMINARY", "FINAL"]),
        "PRELIMINARY": current_order([placed], ["PRELIMINARY"]),
        "CANCELLED": current_order([cancelled, placed], []),
    }
    assert {k: v.status if v else None for k, v in statuses.items()} == {k: k for k in statuses}
    only_cancel = current_order([cancelled], [])
    assert only_cancel is not None and only_cancel.placed_at is None
    assert current_order([], []) is None


# Consent and access


def consent(**changes: Any) -> Consent:
    fields: dict[str, Any] = {
        "consent_id": "c1",
        "institution": A,
        "local_id": "P1",
        "scope": ConsentScope.NAMED_INSTITUTIONS,
        "institutions": (A, B),
        "purposes": (ConsentPurpose.TREATMENT,),
        "valid_from": hours(0),
        "expires_at": hours(48),
        "granted_at": hours(0),
    }
    return Consent(**{**fields, **changes})


def referral(status: str = "ACCEPTED", ended: float | None = None) -> ReferralLink:
    return ReferralLink("r1", A, B, hours(1), status, None if ended is None else hours(ended))


def ask(reader: str = B, at: float = 10, **changes: Any) -> AccessRequest:
    return AccessRequest(reader=reader, recorder=A, now=hours(at), **changes)


def test_a_member_reads_its_own_record_without_consent() -> None:
    assert decide(ask(reader=A), AccessInputs("p")).basis is Basis.OWN_RECORD


def test_consent_covers_named_members_for_its_purposes_until_expiry_or_revocation() -> None:
    inputs = AccessInputs("p", consents=(consent(),))
    assert decide(ask(), inputs).basis is Basis.CONSENT
    assert decide(ask(reader=C), inputs).basis is Basis.DENIED
    expired = decide(ask(at=48), inputs)
    assert not expired.allowed and "expired" in expired.reason
    not_yet = decide(ask(at=-1), inputs)
    assert not not_yet.allowed and "pending" in not_yet.reason
    recognition = ask(purpose=ConsentPurpose.RESULT_RECOGNITION)
    assert not decide(recognition, inputs).allowed
    revoked = AccessInputs("p", consents=(consent(revoked_at=hours(5)),))
    assert decide(ask(at=4), revoked).allowed and not decide(ask(at=5), revoked).allowed
    wide = AccessInputs("p", consents=(consent(scope=ConsentScope.CONSORTIUM_WIDE),))
    assert decide(ask(reader=C), wide).allowed


def test_an_active_referral_between_the_two_members_allows_until_it_ends() -> None:
    open_ = AccessInputs("p", referrals=(referral(),))
    decision = decide(ask(), open_)
    assert decision.basis is Basis.REFERRAL and decision.referral_id == "r1"
    assert not decide(ask(reader=C), open_).allowed  # not a party to the referral
    assert not decide(ask(at=0.5), open_).allowed  # before it was requested
    grace = ACCESS_AFTER_COMPLETION / timedelta(hours=1)
    done = AccessInputs("p", referrals=(referral("COMPLETED", ended=20 + grace),))
    assert decide(ask(at=20 + grace - 1), done).allowed
    assert not decide(ask(at=20 + grace), done).allowed


def test_break_glass_needs_a_reason_and_is_flagged() -> None:
    nothing = AccessInputs("p")
    glass = decide(ask(break_glass_reason="意识不清，急诊抢救"), nothing)
    assert glass.allowed and glass.flagged and "急诊抢救" in glass.reason
    blank = decide(ask(break_glass_reason="  "), nothing)
    assert not blank.allowed and not blank.flagged and blank.basis is Basis.DENIED


# Recognition


def prior(institution: str = A, days: float = 0, **changes: Any) -> PriorResult:
    fields: dict[str, Any] = {
        "institution": institution,
        "result_id": "R1",
        "local_id": "P1",
        "kind": "LAB",
        "codes": frozenset({("LOINC", "718-7"), ("LOINC", "58410-2")}),
        "modality": None,
        "body_site": None,
        "status": "FINAL",
        "effective_at": T0 + timedelta(days=days),
        "reported_at": T0 + timedelta(days=days, hours=2),
    }
    return PriorResult(**{**fields, **changes})


def cbc_order(days: float, institution: str = B, code: str = "58410-2") -> OrderedTest:
    return OrderedTest(institution, "O9", "Z1", "LOINC", code, T0 + timedelta(days=days), "PLACED")


def test_the_bundled_table_is_complete_and_documented() -> None:
    assert len(TABLE.tests) >= 8
    assert {t.kind for t in TABLE.tests} == {"LAB", "IMAGING"}
    assert all(t.validity > timedelta(0) and t.basis for t in TABLE.tests)
    assert all(t.modality for t in TABLE.tests if t.kind == "IMAGING")


def test_an_order_within_the_window_at_another_member_is_a_possible_repeat() -> None:
    window = TABLE.test("LOINC", "58410-2")
    assert window is not None
    days = window.validity.days
    assert possible_repeat(cbc_order(days - 0.5), [prior()], TABLE) is not None
    assert possible_repeat(cbc_order(days + 0.5), [prior()], TABLE) is None  # too old
    assert possible_repeat(cbc_order(1, institution=A), [prior()], TABLE) is None  # same member
    assert possible_repeat(cbc_order(0.05), [prior()], TABLE) is None  # not reported yet
    assert possible_repeat(cbc_order(1), [prior(status="PRELIMINARY")], TABLE) is None
    assert possible_repeat(cbc_order(1, code="99999-9"), [prior()], TABLE) is None  # not listed


def test_imaging_counts_by_order_code_or_by_modality_and_body_site() -> None:
    ct = TABLE.test("LOCAL", "CT003")
    assert ct is not None
    order = OrderedTest(B, "O9", "Z1", "LOCAL", "CT003", T0 + timedelta(days=3), "CANCELLED")
    by_code = prior(kind="IMAGING", codes=frozenset({("LOCAL", "CT003")}))
    by_site = prior(kind="IMAGING", codes=frozenset(), modality="CT", body_site="胸部")
    elsewhere = prior(kind="IMAGING", codes=frozenset(), modality="CT", body_site="头颅")
    for p in (by_code, by_site):
        found = possible_repeat(order, [p], TABLE)
        assert found is not None and found.avoided  # cancelled after the flag: avoided
    assert possible_repeat(order, [elsewhere], TABLE) is None


def test_recognizable_results_are_those_still_valid_now() -> None:
    fresh, stale = prior(days=5), prior(days=-30, result_id="R0")
    found = recognizable([fresh, stale], TABLE, T0 + timedelta(days=6))
    assert {r.prior.result_id for r in found} == {"R1"}
    assert all(r.valid_until == fresh.effective_at + r.test.validity for r in found)


def test_a_configured_table_replaces_the_bundled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consortium.settings import get_settings
    from projections.record import queries
    from projections.record.recognition import TABLE_PATH

    with TABLE_PATH.open(encoding="utf-8", newline="") as bundled:
        reader = csv.DictReader(bundled)
        header, rows = reader.fieldnames or [], list(reader)[:2]
    rows[0]["validity_days"] = "30"  # this county recognises a blood count for a month
    table = tmp_path / "recognition.csv"
    with table.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, header)
        writer.writeheader()
        writer.writerows(rows)
    monkeypatch.setenv("RECOGNITION_TABLE", str(table))
    monkeypatch.setattr(queries, "_DEFAULT_TABLE", None)
    get_settings.cache_clear()
    try:
        configured = queries.default_table()
    finally:
        get_settings.cache_clear()
        monkeypatch.setattr(queries, "_DEFAULT_TABLE", None)
    assert len(configured.tests) == 2
    assert configured.tests[0].validity == timedelta(days=30)
