"""Answers to match reviews in the pure index: the first answer read stands, each is reported.

The gateway accepted a second answer while the first was on its way (the review row stays open
until the index has read the first); the index then found no open review, took the second for an
early answer and parked it for ever. And an early answer applied when its request came was not
reported, so the store wrote neither the review's status nor the apart pair.
"""

from __future__ import annotations

from datetime import timedelta

from events.envelope import Event
from events.person import MatchReviewDecided, MatchReviewRequested, ReviewDecision
from projections.empi.evaluation import evaluation_config, labelled_identities
from projections.empi.index import Decided, IndexState, apply, apply_outcome, new_state
from projections.empi.reviews import review_decision


def _until_review() -> tuple[IndexState, list[Event], MatchReviewRequested]:
    """The state after the first labelled registration that requested a review, the events up
    to it, and the request."""
    state, events = new_state(evaluation_config()), []
    for event in labelled_identities(1500, seed=22).registrations:
        events.append(event)
        state, out = apply(state, event)
        request = next((d for d in out if isinstance(d, MatchReviewRequested)), None)
        if request is not None:
            return state, events, request
    raise AssertionError("no review in the labelled county")


def _answer(
    request: MatchReviewRequested, decision: ReviewDecision, minutes: int
) -> MatchReviewDecided:
    return review_decision(
        review_id=request.review_id,
        person_id=request.person_id,
        institution=request.institution,
        local_id=request.local_id,
        decision=decision,
        decided_by=f"ADM-{minutes}",
        administrator_institution=request.envelope.source,
        decided_at=request.envelope.occurred_at + timedelta(minutes=minutes),
    )


def test_a_second_answer_to_a_decided_review_is_ignored_not_parked() -> None:
    state, _, request = _until_review()
    first = _answer(request, ReviewDecision.DIFFERENT_PERSONS, 1)
    state, done = apply_outcome(state, first)
    pair = ((request.institution, request.local_id), request.person_id)
    assert done.decided == [Decided(first, pair)] and not done.ignored
    second = _answer(request, ReviewDecision.SAME_PERSON, 2)
    state, again = apply_outcome(state, second)
    assert again.events == [] and again.decided == [] and again.ignored == [second]
    assert request.review_id not in state.parked_decisions
    assert pair in state.apart  # the first answer stands


def test_of_two_early_answers_the_first_read_is_applied_when_the_request_comes() -> None:
    _, events, request = _until_review()
    first = _answer(request, ReviewDecision.DIFFERENT_PERSONS, 1)
    second = _answer(request, ReviewDecision.SAME_PERSON, 2)
    state = new_state(evaluation_config())
    state, done = apply_outcome(state, first)
    assert done.decided == [] and state.parked_decisions == {request.review_id: first}
    state, done = apply_outcome(state, second)
    assert done.ignored == [second] and state.parked_decisions == {request.review_id: first}
    for event in events:
        state, done = apply_outcome(state, event)
    # The request's event applies the parked answer, and says so for the store to persist.
    pair = ((request.institution, request.local_id), request.person_id)
    assert done.decided == [Decided(first, pair)]
    assert request in done.events and request.review_id not in state.reviews
    assert not state.parked_decisions and pair in state.apart


def test_an_answer_that_decides_nothing_leaves_the_review_open() -> None:
    state, _, request = _until_review()
    unknown = _answer(request, ReviewDecision.UNKNOWN, 1)
    state, done = apply_outcome(state, unknown)
    assert done.ignored == [unknown] and done.decided == []
    assert request.review_id in state.reviews and not state.parked_decisions
    state, done = apply_outcome(state, _answer(request, ReviewDecision.SAME_PERSON, 2))
    assert len(done.decided) == 1 and request.review_id not in state.reviews
