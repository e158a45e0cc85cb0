"""A review's answer against the index's present state (docs/empi.md, "Review decided").

Between a review's request and its answer the record or the candidate person may change. A
candidate merged away is followed to its survivor. A record whose own demographics or source
merge changed it has its open reviews superseded: a "same person" answer would otherwise split
it from the person its corrected id linked it to, or from the local id its source declared it
one patient with. A "different persons" answer for a record that meanwhile became one person
with its candidate is superseded too (it would keep a record apart from its own person). And a
record kept apart from a person stays apart from the person that one is merged into.
"""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from empi_reviews import (
    FATHER,
    SON,
    SON_BORN,
    SON_ID,
    father,
    first_person,
    registered,
    son,
    son_answer,
    son_review_id,
    source_merge,
    updated,
)
from events.envelope import Event
from events.person import (
    MatchReviewRequested,
    PersonLinked,
    PersonsMerged,
    PersonUnlinked,
    ReviewDecision,
)
from projections.empi.evaluation import evaluation_config
from projections.empi.identity import RecordKey
from projections.empi.index import IndexState, Outcome, Superseded, apply_outcome, new_state

SAME, DIFFERENT = ReviewDecision.SAME_PERSON, ReviewDecision.DIFFERENT_PERSONS
# The son's own record elsewhere, with his own id card, and his village record corrected to it.
OWN = (COUNTY := "439901-C01", "0000000077")
OWN_RECORD = registered(
    OWN, "own", 2, name="李子轩", resident_id_number=SON_ID, birth_date=SON_BORN,
    medical_insurance_number=None, phone=None, address="城关镇", township_division_code=None,
)  # fmt: skip
SON_FIXED = updated(SON, "son fixed", 3, resident_id_number=SON_ID, birth_date=SON_BORN)
# A bare township record that survives a source merge with the father's: his person retires.
DUPLICATE = (FATHER[0], "JD0300002")
BARE = dict(resident_id_number=None, medical_insurance_number=None, phone=None, address=None)
DUPLICATE_RECORD = registered(DUPLICATE, "duplicate", 4, name="某某", **BARE)
FATHER_RETIRED = source_merge(DUPLICATE, FATHER, "father retired", 5)
TOWNSHIP_SON = (FATHER[0], "JD0300003")  # the son at the township, with his father's card
SECOND = (SON[0], "V017-00011")  # a second village record of the son
TOWNSHIP_SON_RECORD = registered(TOWNSHIP_SON, "township son", 2, name="李子轩")
JOINED = source_merge(FATHER, TOWNSHIP_SON, "joined", 3)  # a township clerk joins the two


def run(*events: Event, check: bool = True) -> tuple[IndexState, list[Outcome]]:
    state, outcomes = new_state(evaluation_config()), []
    for event in events:
        state, outcome = apply_outcome(state, event)
        outcomes.append(outcome)
        if check:
            _assert_consistent(state, outcome)
    return state, outcomes


def _assert_consistent(state: IndexState, outcome: Outcome) -> None:
    """Every record's person is alive; no answer keeps a record apart from its own person; no
    pair is kept apart from a retired person; the open reviews' indexes agree."""
    for record, person in state.person_of.items():
        assert person not in state.merged_into and record in state.members[person]
    for decided in outcome.decided:
        if decided.apart is not None:
            record, person = decided.apart
            assert state.person_of[record] != person, "a record kept apart from its own person"
    for _, person in state.apart:
        assert person not in state.merged_into, "a pair kept apart with a retired person"
    assert {r for own in state.open_of.values() for r in own} == set(state.reviews)
    assert not set(state.reviews) & state.decided_reviews


def decisions(outcome: Outcome) -> list[type[Event]]:
    return [type(d) for d in outcome.events]


def test_the_son_is_reviewed_against_his_fathers_first_person() -> None:
    state, [_, registration] = run(father(), son())
    [review] = [d for d in registration.events if isinstance(d, MatchReviewRequested)]
    assert review.review_id == son_review_id() and review.person_id == first_person(FATHER)
    assert review.current_person_id == first_person(SON) == state.person_of[SON]


def test_an_answer_after_the_candidate_person_was_merged_away_goes_to_its_survivor() -> None:
    """Not a bug: the candidate's retired person id is resolved (`current_person`)."""
    events = (father(), DUPLICATE_RECORD, son(), FATHER_RETIRED)
    survivor = first_person(DUPLICATE)
    state, *_ = run(*events)
    assert state.merged_into == {first_person(FATHER): survivor}
    state, outcomes = run(*events, son_answer(SAME, 9))
    [merged] = outcomes[-1].events
    assert isinstance(merged, PersonsMerged)
    assert (merged.person_id, merged.retired_person_id) == (survivor, first_person(SON))
    assert state.person_of[SON] == state.person_of[FATHER] == survivor
    state, outcomes = run(*events, son_answer(DIFFERENT, 9))
    assert outcomes[-1].events == [] and state.apart == {(SON, survivor)}


def test_a_same_person_answer_does_not_split_a_record_from_its_corrected_id_link() -> None:
    """The son's id was corrected after the request and linked him to his own record; the
    answer to the old question moved him out of that person into his father's."""
    answer = son_answer(SAME, 9)
    state, outcomes = run(father(), son(), OWN_RECORD, SON_FIXED, answer)
    assert outcomes[-1].events == [] and outcomes[-1].ignored == [answer]
    assert state.person_of[SON] == state.person_of[OWN] != state.person_of[FATHER]
    fixed = outcomes[-2]  # the correction closed the review: it asked about the old id
    assert decisions(fixed) == [PersonsMerged]
    assert fixed.superseded == [Superseded(son_review_id(), None)]
    assert son_review_id() in state.decided_reviews


def test_a_same_person_answer_does_not_move_back_a_record_its_corrected_id_moved() -> None:
    """The son had company (a bare village record linked by score): the corrected id moved him
    alone (`PersonUnlinked` DEMOGRAPHICS_CHANGED) to his own record; the old question's answer
    moved him on to his father's person."""
    second = registered(SECOND, "second", 2, name="李子轩", **BARE)
    answer = son_answer(SAME, 9)
    state, outcomes = run(father(), son(), second, OWN_RECORD, SON_FIXED, answer)
    assert decisions(outcomes[-2]) == [PersonUnlinked, PersonLinked]
    assert outcomes[-1].events == [] and outcomes[-1].ignored == [answer]
    assert state.person_of[SON] == state.person_of[OWN] != state.person_of[FATHER]


def test_a_different_persons_answer_after_a_source_merge_joined_record_and_candidate() -> None:
    """The township registers the son with the father's card too (linked to the son's person by
    the id) and then merges that local id into the father's: the son's record is now in his
    father's person. The answer kept the son's record apart from his own person."""
    township_son, joined = TOWNSHIP_SON_RECORD, JOINED
    state, outcomes = run(father(), son(), township_son, joined)
    assert state.person_of[SON] == state.person_of[FATHER] == first_person(FATHER)
    assert son_review_id() in state.reviews  # another record's merge: the question stood
    answer = son_answer(DIFFERENT, 9)
    state, outcomes = run(father(), son(), township_son, joined, answer)
    assert outcomes[-1].events == [] and outcomes[-1].decided == []
    assert outcomes[-1].superseded == [Superseded(son_review_id(), answer)]
    assert not state.apart and son_review_id() in state.decided_reviews
    assert state.person_of[SON] == first_person(FATHER)


def test_a_source_merge_of_the_record_supersedes_its_review() -> None:
    """The village says two of its local ids are one patient; a same-person answer moved one of
    them to the candidate and left the other behind."""
    second = registered(SECOND, "second", 2, name="李子轩", **BARE)
    merged = source_merge(SON, SECOND, "village merge", 3)
    state, outcomes = run(father(), son(), second, merged, son_answer(SAME, 9))
    assert outcomes[-1].events == [] and len(outcomes[-1].ignored) == 1
    assert state.person_of[SON] == state.person_of[SECOND] != state.person_of[FATHER]
    assert outcomes[-2].superseded == [Superseded(son_review_id(), None)]


def test_a_pair_kept_apart_stays_apart_after_the_candidate_person_is_merged_away() -> None:
    """After the father's person retired into the duplicate's, the son's next update proposed
    him against his father again ("never proposed again")."""
    phone = updated(SON, "phone", 6, phone="13900000000")
    events = (father(), DUPLICATE_RECORD, son(), son_answer(DIFFERENT, 3), FATHER_RETIRED, phone)
    state, outcomes = run(*events, check=False)
    assert outcomes[-1].events == []  # no review requested again
    assert state.apart == {(SON, first_person(DUPLICATE))}
    run(*events)  # and consistent throughout


# --- any order ---------------------------------------------------------------------------------

POOL: tuple[Event, ...] = (
    OWN_RECORD, SON_FIXED, DUPLICATE_RECORD, FATHER_RETIRED, TOWNSHIP_SON_RECORD, JOINED
)  # fmt: skip


def _partition(state: IndexState) -> set[frozenset[RecordKey]]:
    return {frozenset(members) for members in state.members.values()}


@settings(max_examples=150, deadline=None)
@given(
    others=st.permutations(POOL),
    after=st.integers(0, len(POOL)),
    before_father=st.booleans(),
    decision=st.sampled_from([SAME, DIFFERENT]),
)
def test_answers_in_any_interleaving(
    others: list[Event], after: int, before_father: bool, decision: ReviewDecision
) -> None:
    """Father and son come first and in order (the son's registration requests the review);
    the other events and the answer come in any order, the answer possibly before the request.
    The index stays consistent, the son's corrected record is never split from his own, and an
    answer read before its request decides as one read right after it."""
    answer = son_answer(decision, 60)
    head = [father(), son()]
    late = [*head, *others[:after], answer, *others[after:]]
    state, outcomes = run(*late)
    assert state.person_of[SON] == state.person_of[OWN]
    review = son_review_id()
    closed = [d for o in outcomes for d in o.decided if d.decision.review_id == review]
    closed += [s for o in outcomes for s in o.superseded if s.review_id == review]
    assert len(closed) == 1  # answered or superseded, once
    for outcome in outcomes:
        retired = _retired_before(outcomes, outcome)
        for d in outcome.events:
            if isinstance(d, PersonLinked | PersonsMerged):
                assert d.person_id not in retired
            if isinstance(d, PersonUnlinked):
                assert d.relinked_person_id not in retired
    early = [answer, *head] if before_father else [head[0], answer, head[1]]
    early_state, _ = run(*early, *others)
    prompt_state, _ = run(*head, answer, *others)
    assert _partition(early_state) == _partition(prompt_state)
    assert early_state.apart == prompt_state.apart
    assert early_state.merged_into == prompt_state.merged_into


def _retired_before(outcomes: list[Outcome], outcome: Outcome) -> set[uuid.UUID]:
    retired: set[uuid.UUID] = set()
    for o in outcomes:
        if o is outcome:
            break
        retired |= {d.retired_person_id for d in o.events if isinstance(d, PersonsMerged)}
    return retired


def test_an_update_that_keeps_the_record_reviewable_asks_again() -> None:
    """A superseded review is replaced by the update's own question, if it still has one."""
    phone = updated(SON, "phone", 6, phone="13900000000")
    answer = son_answer(SAME, 9)
    state, outcomes = run(father(), son(), phone, answer)
    [again] = outcomes[2].events
    assert outcomes[2].superseded == [Superseded(son_review_id(), None)]
    assert isinstance(again, MatchReviewRequested) and again.review_id != son_review_id()
    assert again.person_id == first_person(FATHER) and set(state.reviews) == {again.review_id}
    assert outcomes[3].ignored == [answer] and outcomes[3].events == []
