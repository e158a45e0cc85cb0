"""A latency histogram of 2 % wide buckets: percentiles of millions of samples, little memory."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

GROWTH = 1.02  # each bucket is 2 % wider than the one below: percentiles are within 2 %
_LOG = math.log(GROWTH)


@dataclass
class Histogram:
    """Counts of milliseconds in geometric buckets; a percentile is its bucket's upper bound."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0

    def add(self, ms: float) -> None:
        """Count one sample (values under 1 ms share the first bucket)."""
        self.buckets[math.ceil(math.log(ms) / _LOG) if ms > 1.0 else 0] += 1
        self.count += 1

    def merge(self, other: Histogram) -> None:
        """Add another histogram's samples to this one."""
        self.buckets.update(other.buckets)
        self.count += other.count

    def percentile(self, q: float) -> float:
        """The q-th percentile (0 < q <= 100) in ms, rounded up to its bucket; NaN when empty."""
        if not 0 < q <= 100:
            raise ValueError(f"a percentile lies in (0, 100], not {q}")
        if self.count == 0:
            return math.nan
        rank = math.ceil(self.count * q / 100)
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return GROWTH**bucket
        raise AssertionError("unreachable: the ranks add up to count")
