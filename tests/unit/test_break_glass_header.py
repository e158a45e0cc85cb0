"""The break-glass reason header refuses control characters (before any audit is written)."""

from __future__ import annotations

import uuid

import pytest

from gateway.fhir.access import BadReaderError, reader_of
from gateway.principals import Principal, Role

CLINICIAN = Principal(uuid.uuid4(), "439901-S01", Role.CLINICIAN)


@pytest.mark.parametrize("header", ["a%00b", "a\x00b", "why%0Anot", "tab%09here", "%7F"])
def test_a_reason_with_a_control_character_is_refused(header: str) -> None:
    with pytest.raises(BadReaderError, match="control"):
        reader_of(CLINICIAN, None, header)


def test_a_percent_encoded_chinese_reason_passes() -> None:
    reader = reader_of(CLINICIAN, None, "%E6%98%8F%E8%BF%B7%E6%80%A5%E8%AF%8A")
    assert reader.break_glass == "昏迷急诊"
