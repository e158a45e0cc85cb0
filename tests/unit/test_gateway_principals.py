"""What each role may publish, decided before anything reaches Kafka."""

from __future__ import annotations

import uuid

import pytest

from events.topics import DERIVED_FAMILIES, Family
from examples import EXAMPLES, example
from gateway.principals import Principal, Role


def principal(role: Role, institution: str) -> Principal:
    return Principal(credential_id=uuid.uuid4(), institution=institution, role=role)


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_a_publisher_may_publish_its_own_clinical_events_but_no_identity_decision(
    event_type: str,
) -> None:
    event = example(event_type)
    why = principal(Role.PUBLISHER, event.envelope.source).may_publish(event)
    if event.family is Family.PERSON or event.family in DERIVED_FAMILIES:
        assert why is not None and "may not publish" in why
    else:
        assert why is None


def test_nobody_publishes_as_another_institution() -> None:
    event = example("PatientAdmitted")
    why = principal(Role.PUBLISHER, "439901-T01").may_publish(event)
    assert why is not None and "publishes only as '439901-T01'" in why


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.BUREAU_ANALYST])
def test_readers_publish_nothing(role: Role) -> None:
    event = example("LabResultReported")
    assert principal(role, event.envelope.source).may_publish(event) is not None


def test_a_referral_desk_publishes_referral_events_only() -> None:
    referral, admission = example("ReferralAccepted"), example("PatientAdmitted")
    assert principal(Role.REFERRAL_DESK, referral.envelope.source).may_publish(referral) is None
    desk = principal(Role.REFERRAL_DESK, admission.envelope.source)
    assert desk.may_publish(admission) is not None
