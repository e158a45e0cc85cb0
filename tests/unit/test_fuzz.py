"""The fuzz command's machinery: mutated inputs reach the decoders, and an untyped error fails."""

from __future__ import annotations

import multiprocessing
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortium import fuzz


def test_mutated_frames_meet_only_the_codecs_typed_error() -> None:
    tally = fuzz.fuzz("codec", 6_000, workers=2, say=lambda _m: None)
    assert tally.inputs == 6_000
    assert fuzz.failed(tally) == []
    assert set(tally.outcomes) == {"decoded", "DecodeError"}
    assert tally.outcomes["DecodeError"] > tally.outcomes["decoded"] > 0


def test_mutated_hl7_messages_meet_only_the_mappers_typed_errors() -> None:
    tally = fuzz.run_chunk(("hl7", 0, 400))
    assert fuzz.failed(tally) == []
    assert tally.outcomes["decoded"] > 0 and tally.outcomes["Hl7ValueError"] > 0
    assert tally.outcomes["ParseError"] > 0
    assert not any(o.startswith("UNTYPED") for o in tally.outcomes)


def test_an_untyped_error_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def brittle(data: bytes) -> str:
        if b"\xff" in data:
            raise ZeroDivisionError("a decoder bug")
        return fuzz.codec_case(data)

    monkeypatch.setitem(fuzz.CASES, "codec", brittle)
    tally = fuzz.run_chunk(("codec", 1, 2_000))
    assert tally.outcomes["UNTYPED:ZeroDivisionError"] > 0
    assert any("a decoder bug" in why for why in fuzz.failed(tally))


@given(st.binary(max_size=64), st.integers(0, 2**32))
def test_mutations_are_reproducible_from_their_seed(seed: bytes, n: int) -> None:
    pool = [seed or b"x", b"MSH|^~\\&|A"]
    first = fuzz.mutate(random.Random(n), pool[0], pool)
    assert fuzz.mutate(random.Random(n), pool[0], pool) == first


def _allocate_beyond_the_cap(extra_mib: int, outcome: Any) -> None:
    fuzz.cap_memory(extra_mib)
    try:
        bytearray(2 * extra_mib * 1024 * 1024)
    except MemoryError:
        outcome.value = 1
        return
    outcome.value = 2


def test_a_worker_cannot_grow_past_its_memory_cap() -> None:
    # Forked, so the cap binds a child and not the test process.
    context = multiprocessing.get_context("fork")
    outcome = context.Value("i", 0)
    child = context.Process(target=_allocate_beyond_the_cap, args=(64, outcome))
    child.start()
    child.join(60)
    assert outcome.value == 1  # MemoryError: the fuzz loop records it as a finding
