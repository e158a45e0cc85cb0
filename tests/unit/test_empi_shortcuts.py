"""The index's shortcuts give what the functions they replace give (same values, same types)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from events.validation import to_utc_millis
from projections.empi.decisions import NameUuid, _utc_millis

NAMESPACES = st.sampled_from([uuid.NAMESPACE_DNS, uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)])


@given(NAMESPACES | st.uuids(), st.text())
def test_name_uuid_is_uuid5(namespace: uuid.UUID, name: str) -> None:
    made, expected = NameUuid(namespace)(name), uuid.uuid5(namespace, name)
    assert made == expected and hash(made) == hash(expected)
    assert str(made) == str(expected) and made.bytes == expected.bytes
    assert made.version == 5 and made.variant == expected.variant
    assert made.is_safe is expected.is_safe


@given(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])),
)
def test_utc_millis_is_to_utc_millis(value: datetime) -> None:
    made, expected = _utc_millis(value), to_utc_millis(value)
    assert made == expected and repr(made) == repr(expected)
    assert made.tzinfo is expected.tzinfo
