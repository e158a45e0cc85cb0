"""A consent id belongs to the member and local patient of its first grant (pure).

Another member (or another local patient) re-granting the same consent id must not move the
consent away from the person who signed it; the owner's own later grant still replaces the
earlier one. The answer is a function of the set of statements, whatever their arrival order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from events.consent import ConsentScope
from projections.record.consents import current_consent
from projections.record.entries import Entry, EntryKind

T0 = datetime(2024, 5, 1, tzinfo=UTC)
A, B = "439901-T03", "439901-C01"


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def statement(
    status: str, institution: str, local_id: str, at: float, scope: str = "NAMED_INSTITUTIONS"
) -> Entry:
    detail = {
        "scope": scope,
        "institutions": [A, B],
        "purposes": ["TREATMENT"],
        "valid_from": hours(at).isoformat(),
        "expires_at": None,
    }
    event_type = "ConsentGranted" if status == "GRANTED" else "ConsentRevoked"
    return Entry(
        uuid.uuid4(), 0, EntryKind.CONSENT, institution, local_id, hours(at), event_type, "c1",
        status, None, detail,
    )  # fmt: skip


SIGNED = statement("GRANTED", A, "P1", 1)
TAKEOVER = statement("GRANTED", B, "Q1", 2, scope="CONSORTIUM_WIDE")
OTHER_PATIENT = statement("GRANTED", A, "P2", 3, scope="CONSORTIUM_WIDE")
RENEWED = statement("GRANTED", A, "P1", 4)
REVOKED = statement("REVOKED", B, "Q1", 5)
STORY = [SIGNED, TAKEOVER, OTHER_PATIENT, RENEWED, REVOKED]


def test_a_grant_of_the_same_id_from_another_member_or_patient_is_ignored() -> None:
    for later in ([TAKEOVER], [OTHER_PATIENT], [TAKEOVER, OTHER_PATIENT]):
        c = current_consent([SIGNED, *later])
        assert c is not None
        assert (c.institution, c.local_id, c.scope) == (A, "P1", ConsentScope.NAMED_INSTITUTIONS)
        assert c.granted_at == hours(1)


def test_the_owners_later_grant_still_replaces_its_first() -> None:
    c = current_consent(STORY)
    assert c is not None
    assert (c.institution, c.local_id, c.granted_at) == (A, "P1", hours(4))
    assert c.revoked_at == hours(5)  # revocations count from any member, as before


@given(st.permutations(STORY), st.lists(st.sampled_from(STORY), max_size=4))
def test_the_owner_does_not_depend_on_arrival_order(
    order: list[Entry], duplicates: list[Entry]
) -> None:
    assert current_consent([*order, *duplicates]) == current_consent(STORY)
