"""The referral state machine: transitions, deadlines, parking, and order independence."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

import examples
from events.envelope import Event
from events.referral import ReferralCancelled, ReferralRequested
from projections.referrals.lifecycle import (
    Board,
    EntryStatus,
    Referral,
    ReferralState,
    derive,
    evolve,
    needs_sweep,
)
from projections.referrals.synthetic import FATES, referral_flow


def _moved(event: Event, by: timedelta) -> Event:
    """The same event (same id) at another time."""
    env = event.envelope.model_copy(
        update={
            "occurred_at": event.envelope.occurred_at + by,
            "recorded_at": event.envelope.recorded_at + by,
        }
    )
    return event.model_copy(update={"envelope": env})


def _final(events: list[Event], clock: datetime | None = None) -> Board:
    referral = reduce(evolve, events, None)
    assert isinstance(referral, Referral)
    return derive(referral, clock or max(e.envelope.occurred_at for e in events))


def test_a_full_loop_is_requested_accepted_arrived_completed() -> None:
    events: list[Event] = [
        examples.referral_requested(),
        _moved(examples.referral_accepted(), timedelta(hours=1)),
        _moved(examples.referral_patient_arrived(), timedelta(hours=20)),
        _moved(examples.referral_completed(), timedelta(days=3)),
    ]
    board = _final(events)
    assert board.state is ReferralState.COMPLETED
    assert (board.from_institution, board.to_institution) == (examples.VILLAGE, examples.TOWNSHIP)
    assert board.from_patient_local_id == "V017-0088"
    assert board.to_patient_local_id == "T03-P5521"
    assert board.accept_deadline == examples.OCCURRED_AT + timedelta(hours=72)
    assert not board.overdue
    assert [e.status for e in board.timeline] == [EntryStatus.APPLIED] * 4


def test_an_acceptance_before_its_request_is_parked_then_applied() -> None:
    accepted = _moved(examples.referral_accepted(), timedelta(hours=1))
    alone = reduce(evolve, [accepted], None)
    assert alone is not None
    parked = derive(alone, accepted.envelope.occurred_at)
    assert parked.state is ReferralState.AWAITING_REQUEST
    assert [e.status for e in parked.timeline] == [EntryStatus.PARKED]
    both = derive(evolve(alone, examples.referral_requested()), accepted.envelope.occurred_at)
    assert both.state is ReferralState.ACCEPTED
    assert [e.status for e in both.timeline] == [EntryStatus.APPLIED, EntryStatus.APPLIED]


def test_arrival_without_acceptance_stays_parked() -> None:
    board = _final([examples.referral_requested(), examples.referral_patient_arrived()])
    assert board.state is ReferralState.REQUESTED
    assert board.timeline[-1].status is EntryStatus.PARKED


def test_what_follows_a_parked_event_is_parked_too_and_what_follows_an_ignored_one_is_ignored() -> (
    None
):
    accepted = _moved(examples.referral_accepted(), timedelta(hours=1))
    arrived = _moved(examples.referral_patient_arrived(), timedelta(hours=20))
    # Both read before the request: the arrival waits for the acceptance, which waits for it.
    board = derive(reduce(evolve, [accepted, arrived], None), arrived.envelope.occurred_at)
    assert [e.status for e in board.timeline] == [EntryStatus.PARKED, EntryStatus.PARKED]
    # After a rejection the acceptance took another path, and so did the arrival after it.
    rejected = _moved(examples.referral_rejected(), timedelta(minutes=30))
    board = _final([examples.referral_requested(), rejected, accepted, arrived])
    assert board.state is ReferralState.REJECTED
    statuses = {e.kind: e.status for e in board.timeline}
    assert statuses["ReferralAccepted"] is statuses["ReferralPatientArrived"] is EntryStatus.IGNORED


def test_nothing_waits_once_the_referral_is_closed() -> None:
    """An arrival (or completion) without an acceptance, after a rejection or a cancellation:
    nothing can apply once the referral is closed, so it is IGNORED, not PARKED forever, and
    the row counts no parked events."""
    arrived = _moved(examples.referral_patient_arrived(), timedelta(hours=20))
    completed = _moved(examples.referral_completed(), timedelta(days=3))
    for answer in (examples.referral_rejected(), examples.referral_cancelled()):
        board = _final([examples.referral_requested(), _moved(answer, timedelta(hours=1)), arrived])
        assert board.state in (ReferralState.REJECTED, ReferralState.CANCELLED)
        assert {e.kind: e.status for e in board.timeline}["ReferralPatientArrived"] is (
            EntryStatus.IGNORED
        )
        board = _final(
            [examples.referral_requested(), _moved(answer, timedelta(hours=1)), completed]
        )
        assert [e.status for e in board.timeline][-1] is EntryStatus.IGNORED
        assert not any(e.status is EntryStatus.PARKED for e in board.timeline)
    # Expired on the clock: a later acceptance and what follows it are ignored too.
    requested = examples.referral_requested()
    late = _moved(examples.referral_patient_arrived(), timedelta(days=9))
    board = _final([requested, late])
    assert board.state is ReferralState.EXPIRED
    assert {e.kind: e.status for e in board.timeline}[
        "ReferralPatientArrived"
    ] is EntryStatus.IGNORED


def test_an_unanswered_request_is_overdue_when_the_clock_passes_its_deadline() -> None:
    requested = examples.referral_requested()  # ROUTINE: 72 h
    referral = evolve(None, requested)
    at = requested.envelope.occurred_at
    before = derive(referral, at + timedelta(hours=71))
    after = derive(referral, at + timedelta(hours=73))
    assert not before.overdue and after.overdue
    assert after.state is ReferralState.REQUESTED
    assert needs_sweep(before, at + timedelta(hours=73))
    assert not needs_sweep(after, at + timedelta(hours=73))


def test_a_late_acceptance_stays_overdue_and_an_early_one_clears_it() -> None:
    requested = examples.referral_requested()
    late = _moved(examples.referral_accepted(), timedelta(hours=80))
    assert _final([requested, late]).overdue
    early = _moved(examples.referral_accepted(), timedelta(hours=3))
    # Even when the clock is far past the deadline, an answer in time is not overdue.
    assert not _final([requested, early], examples.OCCURRED_AT + timedelta(days=5)).overdue


def test_a_week_without_answer_expires_and_later_answers_are_ignored() -> None:
    requested = examples.referral_requested()
    after_a_week = _moved(examples.referral_accepted(), timedelta(days=8))
    board = _final([requested, after_a_week])
    assert board.state is ReferralState.EXPIRED
    assert board.overdue
    assert [(e.kind, e.status) for e in board.timeline][-2:] == [
        ("ReferralExpired", EntryStatus.DERIVED),
        ("ReferralAccepted", EntryStatus.IGNORED),
    ]


def test_the_earliest_of_competing_answers_wins() -> None:
    requested = examples.referral_requested()
    accepted = _moved(examples.referral_accepted(), timedelta(hours=2))
    rejected = _moved(examples.referral_rejected(), timedelta(hours=1))
    board = _final([requested, accepted, rejected])
    assert board.state is ReferralState.REJECTED
    assert {e.kind: e.status for e in board.timeline}["ReferralAccepted"] is EntryStatus.IGNORED


def test_emergency_deadline_is_two_hours() -> None:
    rng = random.Random(3)
    while True:
        flow = referral_flow(rng, "unanswered")
        if flow[0].urgency == "EMERGENCY":  # type: ignore[attr-defined]
            break
    board = _final(flow)
    assert board.accept_deadline == flow[0].envelope.occurred_at + timedelta(hours=2)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    fates=st.lists(st.sampled_from(FATES), min_size=1, max_size=4),
    data=st.data(),
)
def test_any_arrival_order_with_duplicates_gives_the_same_board(
    seed: int, fates: list[str], data: st.DataObject
) -> None:
    """Interleaved referrals, shuffled, with repeated deliveries and with events from
    institutions that may not send them, end in the same rows; the outsiders change nothing."""
    rng = random.Random(seed)
    events = [e for fate in fates for e in referral_flow(rng, fate)]
    requests = {e.referral_id: e for e in events if isinstance(e, ReferralRequested)}
    # Competing answers and skewed clocks make the order matter if anything does.
    extras = data.draw(st.lists(st.sampled_from(events), max_size=6))
    outsiders = [
        _outsider(event, requests[event.referral_id], nth, minutes)  # type: ignore[attr-defined]
        for nth, (event, minutes) in enumerate(
            data.draw(
                st.lists(st.tuples(st.sampled_from(events), st.integers(-180, 180)), max_size=6)
            )
        )
        if not isinstance(event, ReferralRequested)
    ]
    shuffled = data.draw(st.permutations([*events, *extras, *outsiders]))
    clock = max(e.envelope.occurred_at for e in events)

    def boards(stream: list[Event]) -> dict[object, Board]:
        referrals: dict[object, Referral] = {}
        for event in stream:
            rid = event.referral_id  # type: ignore[attr-defined]
            referrals[rid] = evolve(referrals.get(rid), event)
        return {rid: derive(r, clock) for rid, r in referrals.items()}

    with_outsiders = boards(list(shuffled))
    assert with_outsiders == boards([*events, *outsiders])
    alone = boards(events)
    assert {k: replace(b, timeline=()) for k, b in with_outsiders.items()} == {
        k: replace(b, timeline=()) for k, b in alone.items()
    }
    for rid, board in with_outsiders.items():
        mine = {e.event_id for e in alone[rid].timeline}
        assert all(
            e.status is EntryStatus.NOT_A_PARTY for e in board.timeline if e.event_id not in mine
        )


def _outsider(event: Event, request: ReferralRequested, nth: int, minutes: int) -> Event:
    """The event sent by an institution that may not send it, perhaps earlier than the real one.

    The receiver's events come from the sender or from a member outside the referral; a
    cancellation (either party's to send) from a member outside it.
    """
    by_outside = nth % 2 or isinstance(event, ReferralCancelled)
    source = examples.TCM_HOSPITAL if by_outside else request.from_institution
    return _from(_moved(event, timedelta(minutes=minutes)), source, f"OUT-{nth}")


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), skew=st.integers(-600, 600))
def test_a_receiver_clock_behind_the_sender_still_gives_the_causal_state(
    seed: int, skew: int
) -> None:
    """The receiver's events may carry times before the request; causality still orders them."""
    rng = random.Random(seed)
    flow = referral_flow(rng, "completed")
    skewed = [flow[0], *(_moved(e, timedelta(minutes=skew)) for e in flow[1:])]
    board = _final(list(reversed(skewed)))
    assert board.state is ReferralState.COMPLETED


def _from(event: Event, source: str, patient: str, by: timedelta = timedelta()) -> Event:
    """The same kind of event (a new id) published by another institution."""
    tag = f"{event.envelope.event_id}|{source}|{patient}"
    env = event.envelope.model_copy(
        update={
            "event_id": uuid.uuid5(uuid.NAMESPACE_URL, tag),
            "source": source,
            "patient_local_id": patient,
            "occurred_at": event.envelope.occurred_at + by,
            "recorded_at": event.envelope.recorded_at + by,
        }
    )
    return event.model_copy(update={"envelope": env})


def test_an_answer_from_an_institution_not_receiving_the_referral_is_not_applied() -> None:
    """Only the receiver answers: an outsider's earlier acceptance neither wins nor shows its
    patient as the receiver's."""
    requested = examples.referral_requested()  # village -> township
    real = _moved(examples.referral_accepted(), timedelta(hours=1))
    outsider = _from(real, examples.TCM_HOSPITAL, "TCM-PATIENT-42", timedelta(minutes=-10))
    board = _final([requested, real, outsider])
    assert board.state is ReferralState.ACCEPTED
    assert board.to_patient_local_id == "T03-P5521"
    assert board.answered_at == real.envelope.occurred_at
    statuses = {e.source: e.status for e in board.timeline if e.kind == "ReferralAccepted"}
    assert statuses == {
        examples.TOWNSHIP: EntryStatus.APPLIED,
        examples.TCM_HOSPITAL: EntryStatus.NOT_A_PARTY,
    }


def test_the_sender_cannot_answer_arrive_or_complete_its_own_referral() -> None:
    requested = examples.referral_requested()
    flow = [
        _moved(examples.referral_accepted(), timedelta(hours=1)),
        _moved(examples.referral_patient_arrived(), timedelta(hours=20)),
        _moved(examples.referral_completed(), timedelta(days=3)),
    ]
    by_sender = [_from(e, examples.VILLAGE, "V017-0088") for e in flow]
    board = _final([requested, *by_sender])
    assert board.state is ReferralState.REQUESTED
    assert board.to_patient_local_id is None
    assert [e.status for e in board.timeline][1:] == [EntryStatus.NOT_A_PARTY] * 3
    rejected = _moved(examples.referral_rejected(), timedelta(hours=1))
    rejected = _from(rejected, examples.VILLAGE, "V017-0088")
    assert _final([requested, rejected]).state is ReferralState.REQUESTED


def test_either_party_may_cancel_and_an_outsider_may_not() -> None:
    requested = examples.referral_requested()
    cancelled = _moved(examples.referral_cancelled(), timedelta(hours=1))  # by the township
    assert _final([requested, cancelled]).state is ReferralState.CANCELLED
    by_sender = _from(cancelled, examples.VILLAGE, "V017-0088")
    assert _final([requested, by_sender]).state is ReferralState.CANCELLED
    by_outsider = _from(cancelled, examples.COUNTY_HOSPITAL, "C01-1")
    board = _final([requested, by_outsider])
    assert board.state is ReferralState.REQUESTED
    assert board.timeline[-1].status is EntryStatus.NOT_A_PARTY


def test_an_outsiders_answer_before_the_request_is_parked_then_not_applied() -> None:
    outsider = _from(_moved(examples.referral_accepted(), timedelta(hours=1)), "439901-S01", "x")
    alone = evolve(None, outsider)
    assert [e.status for e in derive(alone, None).timeline] == [EntryStatus.PARKED]
    board = derive(evolve(alone, examples.referral_requested()), None)
    assert board.state is ReferralState.REQUESTED
    assert [e.status for e in board.timeline] == [EntryStatus.APPLIED, EntryStatus.NOT_A_PARTY]


def test_a_second_request_of_the_id_is_ignored_and_its_receiver_is_no_party() -> None:
    """Why the gateway answers a changed request of a referral id 409 (docs/referrals.md): the
    board keeps the earliest request, so a re-referral under the same id to another member is
    IGNORED and that member's acceptance NOT_A_PARTY, in any order."""
    requested = examples.referral_requested()  # village -> township
    again = requested.model_copy(
        update={
            "to_institution": examples.COUNTY_HOSPITAL,
            "envelope": requested.envelope.model_copy(
                update={
                    "event_id": uuid.uuid4(),
                    "occurred_at": requested.envelope.occurred_at + timedelta(hours=1),
                }
            ),
        }
    )
    answer = _from(
        _moved(examples.referral_accepted(), timedelta(hours=2)), examples.COUNTY_HOSPITAL, "C-1"
    )
    for order in ([requested, again, answer], [answer, again, requested]):
        board = _final(order)
        assert (board.state, board.to_institution) == (
            ReferralState.REQUESTED,
            examples.TOWNSHIP,
        )
        assert [e.status for e in board.timeline] == [
            EntryStatus.APPLIED,
            EntryStatus.IGNORED,
            EntryStatus.NOT_A_PARTY,
        ]


def _re_referral(rng: random.Random, rejected: list[Event], fate: str) -> list[Event]:
    """The same patient referred again by the same sender after the rejection: a new referral
    id (its own flow, `fate`), requested after the rejection."""
    request = rejected[0]
    assert isinstance(request, ReferralRequested)
    later = rejected[-1].envelope.occurred_at + timedelta(minutes=rng.randrange(1, 600))
    flow = referral_flow(rng, fate, start=later)
    first = flow[0]
    assert isinstance(first, ReferralRequested)
    same_patient = first.envelope.model_copy(
        update={
            "source": request.from_institution,
            "patient_local_id": request.envelope.patient_local_id,
        }
    )
    again = first.model_copy(
        update={
            "envelope": same_patient,
            "from_institution": request.from_institution,
            "direction": request.direction,
            "to_institution": request.to_institution,
        }
    )
    # The receiver's events come from the request's receiver.
    rest = [
        e.model_copy(
            update={"envelope": e.envelope.model_copy(update={"source": request.to_institution})}
        )
        if e.envelope.source == first.to_institution
        else e.model_copy(
            update={"envelope": e.envelope.model_copy(update={"source": request.from_institution})}
        )
        for e in flow[1:]
    ]
    return [again, *rest]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    fates=st.lists(st.sampled_from(FATES), min_size=1, max_size=3),
    data=st.data(),
)
def test_a_re_referral_of_the_same_patient_is_its_own_board_in_any_order(
    seed: int, fates: list[str], data: st.DataObject
) -> None:
    """Rejected, then referred again (a new id) with any fate: shuffled with repeats, every
    board equals the one of its own events alone; the first stays REJECTED."""
    rng = random.Random(seed)
    rejected = referral_flow(rng, "rejected")
    flows = [rejected, *(_re_referral(rng, rejected, fate) for fate in fates)]
    events = [e for f in flows for e in f]
    stream = data.draw(st.permutations([*events, *data.draw(st.lists(st.sampled_from(events)))]))
    clock = max(e.envelope.occurred_at for e in events)
    referrals: dict[object, Referral] = {}
    for event in stream:
        rid = event.referral_id  # type: ignore[attr-defined]
        referrals[rid] = evolve(referrals.get(rid), event)
    for flow in flows:
        rid = flow[0].referral_id  # type: ignore[attr-defined]
        alone = derive(reduce(evolve, flow, None), clock)  # type: ignore[arg-type]
        assert derive(referrals[rid], clock) == alone
    assert derive(referrals[rejected[0].referral_id], clock).state is ReferralState.REJECTED  # type: ignore[attr-defined]
