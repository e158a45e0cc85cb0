"""The replay decoder: the same events as validated decoding, and still only DecodeError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from events.catalog import Catalog
from events.codec import Codec, DecodeError, InvalidEventError
from events.envelope import Event
from events.registry import to_record
from events.replay import ReplayCodec, log_codec
from examples import EXAMPLES

VALIDATED = Codec(Catalog.load(), strict=False)
TRUSTED = ReplayCodec(VALIDATED.catalog, strict=False)


def assert_same(trusted: BaseModel, validated: BaseModel) -> None:
    """Equal, and equal in every nested value's type (enums are members, arrays tuples)."""
    assert trusted == validated
    assert type(trusted) is type(validated)
    assert trusted.model_fields_set == validated.model_fields_set
    for name in type(validated).model_fields:
        a, b = getattr(trusted, name), getattr(validated, name)
        assert type(a) is type(b), name
        if isinstance(b, BaseModel):
            assert_same(a, b)
        elif isinstance(b, tuple):
            for x, y in zip(a, b, strict=True):
                assert type(x) is type(y)
                if isinstance(y, BaseModel):
                    assert_same(x, y)


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_example_decodes_to_the_validated_event(event_type: str) -> None:
    data = VALIDATED.encode_event(EXAMPLES[event_type]())
    assert_same(TRUSTED.decode_event(data), VALIDATED.decode_event(data))


def test_the_simulated_county_decodes_to_the_validated_events() -> None:
    from bench.codec import workload

    w = workload(VALIDATED, 400)
    for data, event in zip(w.framed, w.events, strict=True):
        trusted = TRUSTED.decode_event(data)
        assert trusted == event
        assert_same(trusted, VALIDATED.decode_event(data))


def test_a_record_under_another_types_schema_is_refused() -> None:
    admitted, discharged = EXAMPLES["PatientAdmitted"](), EXAMPLES["PatientDischarged"]()
    record = to_record(admitted)
    record["envelope"]["event_type"] = discharged.event_type
    data = VALIDATED.encode("PatientAdmitted", record)
    with pytest.raises(InvalidEventError, match="PatientDischarged"):
        TRUSTED.decode_event(data)


def test_trusting_the_log_skips_the_contracts_python_rules_and_strict_keeps_them() -> None:
    """The documented trade (docs/processing.md): a bad check digit the publisher let through."""
    record = to_record(EXAMPLES["PatientRegistered"]())
    number = record["resident_id_number"]
    assert number is not None
    wrong = "0" if number[-1] != "0" else "1"
    record["resident_id_number"] = number[:-1] + wrong
    data = VALIDATED.encode("PatientRegistered", record)
    assert TRUSTED.decode_event(data).resident_id_number == number[:-1] + wrong  # type: ignore[attr-defined]
    with pytest.raises(InvalidEventError, match="check digit"):
        log_codec(VALIDATED.catalog, strict=True).decode_event(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(sorted(EXAMPLES)), st.integers(0, 400))
def test_hostile_bytes_give_an_event_or_a_decode_error(
    noise: bytes, event_type: str, at: int
) -> None:
    valid = VALIDATED.encode_event(EXAMPLES[event_type]())
    spliced = valid[:at] + noise + valid[at + len(noise) :]
    for data in (noise, spliced, valid[: at % len(valid)]):
        try:
            event = TRUSTED.decode_event(data)
        except DecodeError:
            continue
        assert isinstance(event, Event)
