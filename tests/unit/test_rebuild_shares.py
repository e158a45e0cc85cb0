"""How a parallel rebuild deals partitions to its replay processes (pure)."""

from __future__ import annotations

from processors.rebuild import _shares


def test_partitions_are_dealt_largest_first_to_the_smallest_share() -> None:
    ends = {("t", 0): 100, ("t", 1): 60, ("t", 2): 50, ("t", 3): 10, ("u", 0): 0}
    shares = _shares(ends, 2)
    assert shares == [{("t", 0): 100, ("t", 3): 10}, {("t", 1): 60, ("t", 2): 50}]


def test_empty_partitions_take_no_process_and_one_worker_takes_all() -> None:
    assert _shares({("t", 0): 0, ("t", 1): 5}, 4) == [{("t", 1): 5}]
    assert _shares({("t", 0): 3, ("t", 1): 5}, 1) == [{("t", 1): 5, ("t", 0): 3}]
    assert _shares({("t", 0): 0}, 2) == []
