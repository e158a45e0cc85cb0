"""The soak's latency histogram: percentiles within its 2 % buckets of the exact ones."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.histogram import GROWTH, Histogram


@given(st.lists(st.floats(1.0, 1e6), min_size=1, max_size=400), st.sampled_from([50, 90, 99]))
def test_a_percentile_is_the_exact_one_rounded_up_to_its_bucket(
    values: list[float], q: int
) -> None:
    histogram = Histogram()
    for v in values:
        histogram.add(v)
    ranked = sorted(values)
    exact = ranked[math.ceil(len(values) * q / 100) - 1]  # nearest-rank percentile
    assert exact <= histogram.percentile(q) * (1 + 1e-9)
    assert histogram.percentile(q) <= exact * GROWTH * (1 + 1e-9)


@given(st.lists(st.floats(0.0, 5e4), max_size=100), st.lists(st.floats(0.0, 5e4), max_size=100))
def test_merging_is_adding_the_samples(left: list[float], right: list[float]) -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for v in left:
        a.add(v)
        both.add(v)
    for v in right:
        b.add(v)
        both.add(v)
    a.merge(b)
    assert a.count == both.count == len(left) + len(right)
    assert a.buckets == both.buckets


def test_empty_and_out_of_range() -> None:
    assert math.isnan(Histogram().percentile(99))
    h = Histogram()
    h.add(0.2)  # under a millisecond: the first bucket
    assert h.percentile(50) == 1.0
    with pytest.raises(ValueError, match="percentile"):
        h.percentile(0)
