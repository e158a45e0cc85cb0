"""Answers to match reviews in the pure index: the first answer read stands, each is reported.

The gateway accepted a second answer while the first was on its way (the review row stays open
until the index has read the first); the index then found no open review, took the second for an
early answer and parked it for ever. And an early answer applied when its request came was not
reported, so the store wrote neither the review's status nor the apart pair.
"""

from __future__ import annotations

from empi_reviews import answer, until_review
from events.person import ReviewDecision
from projections.empi.evaluation import evaluation_config
from projections.empi.index import Decided, apply_outcome, new_state


def test_a_second_answer_to_a_decided_review_is_ignored_not_parked() -> None:
    state, _, request = until_review()
    first = answer(request, ReviewDecision.DIFFERENT_PERSONS, 1)
    state, done = apply_outcome(state, first)
    pair = ((request.institution, request.local_id), request.person_id)
    assert done.decided == [Decided(first, pair)] and not done.ignored
    second = answer(request, ReviewDecision.SAME_PERSON, 2)
    state, again = apply_outcome(state, second)
    assert again.events == [] and again.decided == [] and again.ignored == [second]
    assert request.review_id not in state.parked_decisions
    assert pair in state.apart  # the first answer stands


def test_of_two_early_answers_the_first_read_is_applied_when_the_request_comes() -> None:
    _, events, request = until_review()
    first = answer(request, ReviewDecision.DIFFERENT_PERSONS, 1)
    second = answer(request, ReviewDecision.SAME_PERSON, 2)
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
    state, _, request = until_review()
    unknown = answer(request, ReviewDecision.UNKNOWN, 1)
    state, done = apply_outcome(state, unknown)
    assert done.ignored == [unknown] and done.decided == []
    assert request.review_id in state.reviews and not state.parked_decisions
    state, done = apply_outcome(state, answer(request, ReviewDecision.SAME_PERSON, 2))
    assert len(done.decided) == 1 and request.review_id not in state.reviews
