"""Referral access in the shared record: the board's course of the referral, per direction.

Regression tests for the review of projections/record/referrals.py: a request alone opened the
receiver's record to the sender, an unanswered request never lapsed, a non-party's cancellation
or rejection ended access, and a cancellation after completion cut the follow-up.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

import examples
from events.envelope import Event
from projections.record.access import AccessInputs, AccessRequest, Basis, decide
from projections.record.entries import Entry, entries_of
from projections.record.referrals import ACCESS_AFTER_COMPLETION, referral_links
from projections.referrals.lifecycle import EXPIRY

SENDER, RECEIVER, OTHER = examples.VILLAGE, examples.TOWNSHIP, examples.COUNTY_HOSPITAL
T0 = examples.OCCURRED_AT
MAKERS = {
    "ReferralRequested": examples.referral_requested,
    "ReferralAccepted": examples.referral_accepted,
    "ReferralRejected": examples.referral_rejected,
    "ReferralCancelled": examples.referral_cancelled,
    "ReferralPatientArrived": examples.referral_patient_arrived,
    "ReferralCompleted": examples.referral_completed,
}


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def event(kind: str, at: float, source: str = RECEIVER) -> Event:
    """A referral event of the examples' referral, sent by `source` at T0 + `at` hours."""
    made = MAKERS[kind]()
    env = made.envelope.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "source": source,
            "patient_local_id": "L-" + source,
            "occurred_at": hours(at),
            "recorded_at": hours(at),
        }
    )
    return made.model_copy(update={"envelope": env})


REQUEST = event("ReferralRequested", 0, SENDER)


def entries(*events: Event) -> list[Entry]:
    return [e for ev in events for e in entries_of(ev)]


def basis(reader: str, recorder: str, at: float, *events: Event) -> Basis:
    inputs = AccessInputs("p", referrals=tuple(referral_links(entries(*events))))
    return decide(AccessRequest(reader, recorder, hours(at)), inputs).basis


def test_a_request_alone_opens_the_senders_record_to_the_receiver_only() -> None:
    assert basis(RECEIVER, SENDER, 1, REQUEST) is Basis.REFERRAL
    assert basis(SENDER, RECEIVER, 1, REQUEST) is Basis.DENIED
    assert basis(OTHER, SENDER, 1, REQUEST) is Basis.DENIED


def test_a_denied_sender_is_told_the_receiver_has_not_accepted() -> None:
    inputs = AccessInputs("p", referrals=tuple(referral_links(entries(REQUEST))))
    decision = decide(AccessRequest(SENDER, RECEIVER, hours(1)), inputs)
    assert not decision.allowed and "has not accepted" in decision.reason


def test_an_acceptance_by_the_receiver_opens_both_directions_from_then() -> None:
    accepted = event("ReferralAccepted", 5)
    assert basis(SENDER, RECEIVER, 4, REQUEST, accepted) is Basis.DENIED
    assert basis(SENDER, RECEIVER, 5, REQUEST, accepted) is Basis.REFERRAL
    assert basis(RECEIVER, SENDER, 5, REQUEST, accepted) is Basis.REFERRAL
    # An acceptance the sender sent itself is no acceptance (only to_institution answers).
    own = event("ReferralAccepted", 5, SENDER)
    assert basis(SENDER, RECEIVER, 6, REQUEST, own) is Basis.DENIED


def test_an_unanswered_request_lapses_with_the_boards_expiry() -> None:
    week = EXPIRY / timedelta(hours=1)
    assert basis(RECEIVER, SENDER, week - 1, REQUEST) is Basis.REFERRAL
    assert basis(RECEIVER, SENDER, week, REQUEST) is Basis.DENIED
    assert basis(RECEIVER, SENDER, 24 * 365, REQUEST) is Basis.DENIED
    inputs = AccessInputs("p", referrals=tuple(referral_links(entries(REQUEST))))
    late = decide(AccessRequest(RECEIVER, SENDER, hours(week + 1)), inputs)
    assert "expired" in late.reason
    # An acceptance after the expiry is ignored by the board, and so here.
    too_late = event("ReferralAccepted", week + 1)
    assert basis(SENDER, RECEIVER, week + 2, REQUEST, too_late) is Basis.DENIED
    assert basis(RECEIVER, SENDER, week + 2, REQUEST, too_late) is Basis.DENIED


def test_a_cancellation_by_a_third_member_changes_nothing() -> None:
    accepted = event("ReferralAccepted", 1)
    stray = event("ReferralCancelled", 2, OTHER)
    assert basis(RECEIVER, SENDER, 3, REQUEST, accepted, stray) is Basis.REFERRAL
    assert basis(SENDER, RECEIVER, 3, REQUEST, accepted, stray) is Basis.REFERRAL


def test_a_rejection_by_the_requester_itself_changes_nothing() -> None:
    reject = event("ReferralRejected", 2, SENDER)  # only to_institution may reject
    assert basis(RECEIVER, SENDER, 3, REQUEST, reject) is Basis.REFERRAL


def test_a_rejection_by_the_receiver_and_a_cancellation_by_either_party_end_access() -> None:
    reject = event("ReferralRejected", 2)
    assert basis(RECEIVER, SENDER, 1, REQUEST, reject) is Basis.REFERRAL
    assert basis(RECEIVER, SENDER, 2, REQUEST, reject) is Basis.DENIED
    accepted = event("ReferralAccepted", 1)
    for party in (SENDER, RECEIVER):
        cancel = event("ReferralCancelled", 3, party)
        for reader, recorder in ((SENDER, RECEIVER), (RECEIVER, SENDER)):
            assert basis(reader, recorder, 2, REQUEST, accepted, cancel) is Basis.REFERRAL
            assert basis(reader, recorder, 3, REQUEST, accepted, cancel) is Basis.DENIED


def test_completion_keeps_both_directions_30_days_even_after_a_late_cancellation() -> None:
    done = (
        REQUEST,
        event("ReferralAccepted", 1),
        event("ReferralPatientArrived", 2),
        event("ReferralCompleted", 10),
    )
    grace = ACCESS_AFTER_COMPLETION / timedelta(hours=1)
    late_cancel = event("ReferralCancelled", 11)  # the board ignores it: completion is final
    for reader, recorder in ((SENDER, RECEIVER), (RECEIVER, SENDER)):
        assert basis(reader, recorder, 48, *done, late_cancel) is Basis.REFERRAL
        assert basis(reader, recorder, 10 + grace - 1, *done, late_cancel) is Basis.REFERRAL
        assert basis(reader, recorder, 10 + grace, *done, late_cancel) is Basis.DENIED


# Any arrival order, any duplicates: the same access; and its invariants.

CANDIDATES = [
    ("ReferralAccepted", RECEIVER),
    ("ReferralAccepted", SENDER),
    ("ReferralRejected", RECEIVER),
    ("ReferralRejected", SENDER),
    ("ReferralCancelled", SENDER),
    ("ReferralCancelled", RECEIVER),
    ("ReferralCancelled", OTHER),
    ("ReferralPatientArrived", RECEIVER),
    ("ReferralCompleted", RECEIVER),
    ("ReferralCompleted", OTHER),
]
PAIRS = [(SENDER, RECEIVER), (RECEIVER, SENDER), (OTHER, SENDER), (SENDER, OTHER)]


@st.composite
def stories(draw: st.DrawFn) -> tuple[list[Event], list[Entry]]:
    picked = draw(st.lists(st.sampled_from(CANDIDATES), max_size=6))
    times = draw(st.lists(st.integers(1, 400), min_size=len(picked), max_size=len(picked)))
    made = [REQUEST, *(event(k, t, s) for (k, s), t in zip(picked, times, strict=True))]
    rows = entries(*made)
    shuffled = draw(st.permutations(rows))
    repeated = draw(st.lists(st.sampled_from(rows), max_size=3))
    return made, [*shuffled, *repeated]


@settings(max_examples=150, deadline=None)
@given(story=stories(), at=st.integers(0, 24 * 40))
def test_access_is_a_function_of_the_set_of_entries(
    story: tuple[list[Event], list[Entry]], at: int
) -> None:
    made, arrived = story
    canonical = referral_links(entries(*made))
    assert referral_links(arrived) == canonical
    inputs = AccessInputs("p", referrals=tuple(canonical))
    now = hours(at)
    for reader, recorder in PAIRS:
        allowed = decide(AccessRequest(reader, recorder, now), inputs).allowed
        if OTHER in (reader, recorder) or now < REQUEST.envelope.occurred_at:
            assert not allowed
        if allowed and reader == SENDER:  # only a timely acceptance by the receiver opens it
            assert any(
                e.event_type == "ReferralAccepted"
                and e.envelope.source == RECEIVER
                and e.envelope.occurred_at <= min(now, T0 + EXPIRY)
                for e in made
            )
        parties = [e for e in made[1:] if e.envelope.source in (SENDER, RECEIVER)]
        if not parties and reader == RECEIVER and recorder == SENDER:
            assert allowed == (now < T0 + EXPIRY)  # strays alone change nothing
