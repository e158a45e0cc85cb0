"""The audit's subjects: a person or a local record, or — for a denied read only — nobody."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import pytest
from fastapi import Request

from gateway.audit import NOBODY, Outcome, Subject, audit
from gateway.principals import Principal, Role


def test_a_subject_names_someone_unless_it_is_nobody() -> None:
    with pytest.raises(ValueError, match="names a person id or a local patient id"):
        Subject()
    with pytest.raises(ValueError, match="nobody names no person"):
        Subject(person_id=uuid.uuid4(), nobody=True)
    with pytest.raises(ValueError, match="nobody names no person"):
        Subject(institution="439901-T03", nobody=True)
    assert Subject(nobody=True) == NOBODY


@pytest.mark.parametrize("outcome", [Outcome.ALLOWED, Outcome.BREAK_GLASS])
def test_only_a_denied_read_may_name_nobody(outcome: Outcome) -> None:
    principal = Principal(uuid.uuid4(), "439901-T03", Role.REFERRAL_DESK)
    request = cast(Request, cast(Any, object()))  # refused before the request is looked at
    with pytest.raises(ValueError, match="only a denied read names nobody"):
        asyncio.run(
            audit(request, principal, [NOBODY], purpose="COC", outcome=outcome, reason="why")
        )
