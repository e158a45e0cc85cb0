"""The patient index as pure logic: (state, event) -> (state, decision events).

Pure in the projection sense: no I/O, no clock, no randomness; the same events in the same order
give the same decisions, person ids and review ids, so the index can be rebuilt from the log.
For speed on whole-county replays the state is updated in place and returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from events.envelope import Event
from events.patient import PatientDemographicsUpdated, PatientIdentifiersMerged, PatientRegistered
from events.person import (
    MatchMethod,
    MatchReviewDecided,
    MatchReviewRequested,
    PersonLinked,
    PersonsMerged,
    PersonUnlinked,
    ReviewDecision,
    UnlinkReason,
)
from projections.empi.decisions import Decisions, NameUuid
from projections.empi.identity import (
    Demographics,
    DemographicsChange,
    Identity,
    IdHasher,
    RecordKey,
    identity_of,
)
from projections.empi.matcher import WEIGHTS, Comparison, Thresholds, blocking_keys, compare

PERSON_NAMESPACE = uuid.UUID("5e0f8a7c-2b3d-4c1e-8f9a-0d1e2f3a4b5c")
REVIEW_NAMESPACE = uuid.UUID("c4d5e6f7-0a1b-4c2d-9e3f-4a5b6c7d8e9f")
_person_id, _review_id = NameUuid(PERSON_NAMESPACE), NameUuid(REVIEW_NAMESPACE)


@dataclass(frozen=True)
class IndexConfig:
    """What the index decides with: the id hash key, who publishes, weights, thresholds."""

    hasher: IdHasher
    index_institution: str
    weights: Mapping[str, float] = field(default_factory=lambda: WEIGHTS)
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_block: int = 2000


@dataclass(frozen=True)
class Review:
    """An open question: does this record belong to this person?"""

    review_id: uuid.UUID
    record: RecordKey
    person_id: uuid.UUID


@dataclass
class IndexState:
    """Every record, its person, the blocking index, open reviews and parked events."""

    config: IndexConfig
    demographics: dict[RecordKey, Demographics] = field(default_factory=dict)
    identities: dict[RecordKey, Identity] = field(default_factory=dict)
    person_of: dict[RecordKey, uuid.UUID] = field(default_factory=dict)
    members: dict[uuid.UUID, dict[RecordKey, None]] = field(default_factory=dict)
    blocks: dict[str, dict[RecordKey, None]] = field(default_factory=dict)
    merged_into: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    source_partners: dict[RecordKey, list[RecordKey]] = field(default_factory=dict)
    reviews: dict[uuid.UUID, Review] = field(default_factory=dict)
    open_pairs: dict[tuple[RecordKey, uuid.UUID], uuid.UUID] = field(default_factory=dict)
    # The open reviews of each record (of its own, not as a candidate): superseded together.
    open_of: dict[RecordKey, dict[uuid.UUID, None]] = field(default_factory=dict)
    apart: set[tuple[RecordKey, uuid.UUID]] = field(default_factory=set)
    # Updates read before their registration, as the index keeps them (the resident id hashed).
    parked_updates: dict[RecordKey, list[DemographicsChange]] = field(default_factory=dict)
    parked_decisions: dict[uuid.UUID, MatchReviewDecided] = field(default_factory=dict)
    # Reviews answered (same or different persons) or superseded: a later answer to one of them
    # is ignored, not parked.
    decided_reviews: set[uuid.UUID] = field(default_factory=set)
    # When each record was last placed in its blocks and in its person: block and member order
    # decide ties, so a state reloaded from PostgreSQL sorts by these to decide the same way.
    serial: int = 0
    indexed_at: dict[RecordKey, int] = field(default_factory=dict)
    assigned_at: dict[RecordKey, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decided:
    """A review decision the index applied, and the pair it keeps apart (DIFFERENT_PERSONS)."""

    decision: MatchReviewDecided
    apart: tuple[RecordKey, uuid.UUID] | None


@dataclass(frozen=True, slots=True)
class Superseded:
    """An open review closed because its question no longer stands, and the answer that found
    it so (None when the record's own event closed it)."""

    review_id: uuid.UUID
    answer: MatchReviewDecided | None


class Outcome(Decisions):
    """What one event did: its decisions, the review decisions it applied — its own or one
    parked until the review's request came — the reviews it closed as superseded, and the
    answers it ignored (the review was answered or superseded already, or the answer decides
    nothing). The store persists all of them."""

    def __init__(self, cause: Event, index_institution: str) -> None:
        super().__init__(cause, index_institution)
        self.decided: list[Decided] = []
        self.superseded: list[Superseded] = []
        self.ignored: list[MatchReviewDecided] = []


def new_state(config: IndexConfig) -> IndexState:
    """An empty index."""
    return IndexState(config)


def person_for(state: IndexState, institution: str, local_id: str) -> uuid.UUID | None:
    """Re-keying: the consortium person id of a member's local patient, if the index knows it."""
    return state.person_of.get((institution, local_id))


def current_person(state: IndexState, person_id: uuid.UUID) -> uuid.UUID:
    """The person id in use now for a person id that may have been merged away."""
    while person_id in state.merged_into:
        person_id = state.merged_into[person_id]
    return person_id


def apply(state: IndexState, event: Event) -> tuple[IndexState, list[Event]]:
    """Apply one event; return the state and the decisions it caused (other events: none)."""
    state, outcome = apply_outcome(state, event)
    return state, outcome.events


def apply_outcome(state: IndexState, event: Event) -> tuple[IndexState, Outcome]:
    """Apply one event; return the state and all it did (`Outcome`)."""
    outcome = Outcome(event, state.config.index_institution)
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(state, event, outcome)
    return state, outcome


# --- registrations -----------------------------------------------------------------------------


def _registered(state: IndexState, event: Any, out: Outcome) -> None:
    key: RecordKey = (event.envelope.source, event.envelope.patient_local_id)
    demographics = Demographics.of(event, state.config.hasher)
    parked = state.parked_updates.pop(key, None)
    if parked is not None:
        for change in parked:
            demographics = demographics.changed(change, state.config.hasher)
    if key in state.demographics:
        _restated(state, key, demographics, out)
        return
    blocks = _index(state, key, demographics)
    partners = state.source_partners.get(key)  # rare: no generator for the others
    partner = next((p for p in partners if p in state.person_of), None) if partners else None
    if partner is not None:
        # The source already said this local id and a known one are the same patient.
        _link(
            state, key, state.person_of[partner], MatchMethod.SOURCE_MERGE, 0.0, partner, None, out
        )
        return
    ranked = _ranked(state, key, blocks, exclude=None)
    if ranked and _links(state, ranked[0][1]):
        person, comparison, matched = ranked[0]
        method = comparison.deterministic or MatchMethod.PROBABILISTIC
        _link(state, key, person, method, comparison.score, matched, comparison, out)
        if len(ranked) > 1 and _reviewable(state, ranked[1][1]):
            _request_review(state, key, ranked[1], out)
        return
    _link(state, key, _new_person_id(state, key), MatchMethod.NEW_PERSON, 0.0, None, None, out)
    if ranked and _reviewable(state, ranked[0][1]):
        _request_review(state, key, ranked[0], out)


def _updated(state: IndexState, event: Any, out: Outcome) -> None:
    key: RecordKey = (event.envelope.source, event.envelope.patient_local_id)
    known = state.demographics.get(key)
    if known is None:
        # The update overtook its registration (e.g. one was dead-lettered): apply it later,
        # kept hashed as it will be applied (no resident id in clear, in memory or in `parked`).
        change = DemographicsChange.of(event, state.config.hasher)
        state.parked_updates.setdefault(key, []).append(change)
        return
    _restated(state, key, known.updated(event, state.config.hasher), out)


def _restated(state: IndexState, key: RecordKey, demographics: Demographics, out: Outcome) -> None:
    """A known record's demographics changed: re-index it and see whether it belongs elsewhere."""
    before = state.identities[key]
    blocks = _index(state, key, demographics)
    if state.identities[key] == before:
        return
    # Its open reviews asked about the old demographics: their answers would apply to a
    # question nobody asked (docs/empi.md, "Review decided").
    _supersede(state, (key,), out)
    current = state.person_of[key]
    ranked = _ranked(state, key, blocks, exclude=current)
    if not ranked:
        return
    best = ranked[0]
    person, comparison, _ = best
    if not _links(state, comparison):
        if _reviewable(state, comparison):
            _request_review(state, key, best, out)
        return
    if len(state.members[current]) == 1:
        _merge(state, person, current, comparison.deterministic or MatchMethod.PROBABILISTIC,
               comparison.score, key, out)  # fmt: skip
        return
    own = _ranked_within(state, key, current)
    if comparison.deterministic is not None and (own is None or own.deterministic is None):
        # A corrected identifier outweighs a probabilistic link made on the old demographics.
        _move(state, key, best, UnlinkReason.DEMOGRAPHICS_CHANGED, out)
    elif comparison.deterministic is not None and own is not None and own.deterministic:
        _merge(state, current, person, comparison.deterministic, comparison.score, key, out)
    else:
        _request_review(state, key, best, out)


# --- source merges and reviews -----------------------------------------------------------------


def _merged(state: IndexState, event: Any, out: Outcome) -> None:
    source = event.envelope.source
    surviving: RecordKey = (source, event.surviving_local_id)
    retired: RecordKey = (source, event.retired_local_id)
    state.source_partners.setdefault(surviving, []).append(retired)
    state.source_partners.setdefault(retired, []).append(surviving)
    _supersede(state, (surviving, retired), out)  # the source said who these records are
    keep, gone = state.person_of.get(surviving), state.person_of.get(retired)
    if keep is None and gone is not None:
        # The survivor's registration is still to come: it will join the retired id's person.
        return
    if keep is not None and gone is not None and keep != gone:
        _merge(state, keep, gone, MatchMethod.SOURCE_MERGE, None, surviving, out)


def _decided(state: IndexState, event: Any, out: Outcome) -> None:
    review_id = event.review_id
    if (
        event.decision not in _ANSWERS
        or review_id in state.decided_reviews
        or review_id in state.parked_decisions
    ):
        # Decides nothing, or a second answer (two administrators, a double click): the first
        # answer read stands. Never parked — its request came long ago, or a first answer waits.
        out.ignored.append(event)
        return
    review = state.reviews.pop(review_id, None)
    if review is None:
        # The decision was read before the request that it answers: apply it when that comes.
        state.parked_decisions[review_id] = event
        return
    _close(state, review)
    person = current_person(state, review.person_id)
    current = state.person_of.get(review.record)
    if event.decision is ReviewDecision.DIFFERENT_PERSONS and current == person:
        # Other records' evidence made record and candidate one person since the request:
        # keeping them apart now would contradict a link the index stands by.
        out.superseded.append(Superseded(review_id, event))
        return
    if event.decision is ReviewDecision.DIFFERENT_PERSONS:
        state.apart.add((review.record, person))
        out.decided.append(Decided(event, (review.record, person)))
        return
    out.decided.append(Decided(event, None))
    if current is None or current == person:
        return
    if len(state.members[current]) == 1:
        _merge(state, person, current, MatchMethod.REVIEW, None, None, out)
        return
    out.add(
        PersonUnlinked,
        current,
        institution=review.record[0],
        local_id=review.record[1],
        reason=UnlinkReason.REVIEW,
        relinked_person_id=person,
    )
    _unassign(state, review.record)
    _link(state, review.record, person, MatchMethod.REVIEW, 0.0, None, None, out)


_ANSWERS = frozenset({ReviewDecision.SAME_PERSON, ReviewDecision.DIFFERENT_PERSONS})

_HANDLERS: Mapping[type[Event], Callable[[IndexState, Any, Outcome], None]] = MappingProxyType(
    {
        PatientRegistered: _registered,
        PatientDemographicsUpdated: _updated,
        PatientIdentifiersMerged: _merged,
        MatchReviewDecided: _decided,
    }
)


# --- helpers -----------------------------------------------------------------------------------

Candidate = tuple[uuid.UUID, Comparison, RecordKey]


def _index(state: IndexState, key: RecordKey, demographics: Demographics) -> tuple[str, ...]:
    """Store the record's demographics and features and (re)place it in its blocks (returned)."""
    old = state.identities.get(key)
    blocks = state.blocks
    if old is not None:
        for block in blocking_keys(old):
            blocks[block].pop(key, None)
    identity = identity_of(demographics)
    state.demographics[key] = demographics
    state.identities[key] = identity
    state.serial += 1
    state.indexed_at[key] = state.serial
    keys = blocking_keys(identity)
    for block in keys:
        members = blocks.get(block)
        if members is None:  # not `setdefault`: that built an empty dict per key and record
            blocks[block] = {key: None}
        else:
            members[key] = None
    return keys


def _rank(comparison: Comparison) -> tuple[bool, float]:
    return (comparison.deterministic is not None and not comparison.conflict, comparison.score)


def _ranked(
    state: IndexState, key: RecordKey, keys: tuple[str, ...], exclude: uuid.UUID | None
) -> list[Candidate]:
    """The best comparison per candidate person, best first (ties: first seen).

    `keys` are the record's blocking keys (`_index` just computed them).
    """
    identity = state.identities[key]
    weights, limit = state.config.weights, state.config.max_block
    # person (its uuid's int: `UUID.__hash__` is Python code) -> (its best comparison's rank,
    # the candidate); `_rank` inline, held with its rank
    best: dict[int, tuple[tuple[bool, float], Candidate]] = {}
    seen: set[RecordKey] = {key}
    apart, person_of, identities, blocks = (
        state.apart,
        state.person_of,
        state.identities,
        state.blocks,
    )
    for block in keys:
        members = blocks.get(block)
        if members is None or len(members) > limit:
            continue  # a block this large says nothing (e.g. a clinic's shared phone)
        for other in members:
            if other in seen:
                continue
            seen.add(other)
            person = person_of[other]
            # uuid hashing is Python code: ask `apart` only when it holds anything
            if (exclude is not None and person == exclude) or (apart and (key, person) in apart):
                continue
            comparison = compare(identity, identities[other], weights)
            rank = (comparison[2] is not None and not comparison[3], comparison[0])
            number = person.int
            held = best.get(number)
            if held is None or rank > held[0]:
                best[number] = (rank, (person, comparison, other))
    ranked = sorted(best.values(), key=_first, reverse=True)
    return [candidate for _, candidate in ranked]


def _first(pair: tuple[tuple[bool, float], Candidate]) -> tuple[bool, float]:
    return pair[0]


def _ranked_within(state: IndexState, key: RecordKey, person: uuid.UUID) -> Comparison | None:
    """The record's best comparison with the other records of its own person."""
    identity = state.identities[key]
    found = [
        compare(identity, state.identities[other], state.config.weights)
        for other in state.members[person]
        if other != key
    ]
    return max(found, key=_rank) if found else None


def _links(state: IndexState, comparison: Comparison) -> bool:
    if comparison.conflict:
        return False
    return comparison.deterministic is not None or comparison.score >= state.config.thresholds.link


def _reviewable(state: IndexState, comparison: Comparison) -> bool:
    return comparison.conflict or comparison.score >= state.config.thresholds.review


def _new_person_id(state: IndexState, key: RecordKey) -> uuid.UUID:
    """uuid5 of the person's first local record (and a counter if that id was used before)."""
    name = f"{key[0]}|{key[1]}"
    person = _person_id(name)
    attempt = 0
    while person in state.members or person in state.merged_into:
        attempt += 1
        person = _person_id(f"{name}|{attempt}")
    return person


def _assign(state: IndexState, key: RecordKey, person: uuid.UUID) -> None:
    state.person_of[key] = person
    members = state.members.get(person)
    if members is None:  # a new person (no empty dict built for `setdefault` otherwise)
        state.members[person] = {key: None}
    else:
        members[key] = None
    state.serial += 1
    state.assigned_at[key] = state.serial


def _unassign(state: IndexState, key: RecordKey) -> None:
    person = state.person_of.pop(key)
    state.members[person].pop(key, None)
    if not state.members[person]:
        del state.members[person]


def _link(
    state: IndexState,
    key: RecordKey,
    person: uuid.UUID,
    method: MatchMethod,
    score: float,
    matched: RecordKey | None,
    comparison: Comparison | None,
    out: Outcome,
) -> None:
    _assign(state, key, person)
    out.add(
        PersonLinked,
        person,
        institution=key[0],
        local_id=key[1],
        method=method,
        score=score,
        matched_institution=matched[0] if matched else None,
        matched_local_id=matched[1] if matched else None,
        agreement=comparison.agreement(state.config.weights) if comparison else (),
    )


def _move(
    state: IndexState, key: RecordKey, target: Candidate, reason: UnlinkReason, out: Outcome
) -> None:
    person, comparison, matched = target
    current = state.person_of[key]
    out.add(
        PersonUnlinked,
        current,
        institution=key[0],
        local_id=key[1],
        reason=reason,
        relinked_person_id=person,
    )
    _unassign(state, key)
    method = comparison.deterministic or MatchMethod.PROBABILISTIC
    _link(state, key, person, method, comparison.score, matched, comparison, out)


def _merge(
    state: IndexState,
    keep: uuid.UUID,
    gone: uuid.UUID,
    method: MatchMethod,
    score: float | None,
    cause: RecordKey | None,
    out: Outcome,
) -> None:
    """Every record of `gone` joins `keep`; `gone` is retired for good."""
    out.add(
        PersonsMerged,
        keep,
        retired_person_id=gone,
        method=method,
        score=score,
        institution=cause[0] if cause else None,
        local_id=cause[1] if cause else None,
    )
    for record in list(state.members.pop(gone, {})):
        _assign(state, record, keep)
    state.merged_into[gone] = keep
    if state.apart:  # a record kept apart from `gone` stays apart from the person it joined
        moved = [pair for pair in state.apart if pair[1] == gone]
        for record, _ in moved:
            state.apart.discard((record, gone))
            state.apart.add((record, keep))


def _supersede(state: IndexState, records: tuple[RecordKey, ...], out: Outcome) -> None:
    """Close the open reviews of these records: their questions no longer stand."""
    for record in records:
        for review_id in list(state.open_of.get(record, ())):
            _close(state, state.reviews.pop(review_id))
            out.superseded.append(Superseded(review_id, None))


def open_review(state: IndexState, review: Review) -> None:
    """Hold a review as open (requested now, or reloaded)."""
    state.reviews[review.review_id] = review
    state.open_pairs[(review.record, review.person_id)] = review.review_id
    state.open_of.setdefault(review.record, {})[review.review_id] = None


def _close(state: IndexState, review: Review) -> None:
    """Forget an open review (already taken out of `reviews`): decided or superseded."""
    state.decided_reviews.add(review.review_id)
    state.open_pairs.pop((review.record, review.person_id), None)
    own = state.open_of[review.record]
    del own[review.review_id]
    if not own:
        del state.open_of[review.record]


def _request_review(state: IndexState, key: RecordKey, candidate: Candidate, out: Outcome) -> None:
    person, comparison, matched = candidate
    if (key, person) in state.open_pairs:
        return
    cause = out.cause.envelope.event_id
    review_id = _review_id(f"{cause}|{person}")
    open_review(state, Review(review_id, key, person))
    out.add(
        MatchReviewRequested,
        person,
        review_id=review_id,
        institution=key[0],
        local_id=key[1],
        current_person_id=state.person_of[key],
        candidate_institution=matched[0],
        candidate_local_id=matched[1],
        score=comparison.score,
        agreement=comparison.agreement(state.config.weights),
    )
    parked = state.parked_decisions.pop(review_id, None)
    if parked is not None:
        _decided(state, parked, out)
