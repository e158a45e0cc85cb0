"""A review of the labelled county and administrators' answers to it, for the index's tests."""

from __future__ import annotations

from datetime import timedelta

from events.envelope import Event
from events.person import MatchReviewDecided, MatchReviewRequested, ReviewDecision
from projections.empi.evaluation import evaluation_config, labelled_identities
from projections.empi.index import IndexState, apply, new_state
from projections.empi.reviews import review_decision


def until_review() -> tuple[IndexState, list[Event], MatchReviewRequested]:
    """The index after the first registration of a labelled county that requested a review,
    the registrations up to it, and the request."""
    state, events = new_state(evaluation_config()), []
    for event in labelled_identities(1500, seed=22).registrations:
        events.append(event)
        state, out = apply(state, event)
        request = next((d for d in out if isinstance(d, MatchReviewRequested)), None)
        if request is not None:
            return state, events, request
    raise AssertionError("no review in the labelled county")


def answer(
    request: MatchReviewRequested, decision: ReviewDecision, minutes: int
) -> MatchReviewDecided:
    """Administrator ADM-<minutes>'s answer, given that many minutes after the request."""
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
