"""Reuse distance (``natpool.apps.reuse``): the allocations between an address's free and its next allocation."""

from __future__ import annotations

from natpool.apps.reuse import ReuseDistances


def test_the_distance_counts_the_allocations_from_a_free_to_the_next_allocation_of_that_key() -> None:
    reuse = ReuseDistances()
    reuse.allocated("a")
    reuse.allocated("b")
    reuse.freed("a")
    reuse.allocated("c")  # one allocation while a is free
    reuse.allocated("a")
    reuse.freed("b")
    reuse.allocated("b")  # the very next one: 0
    summary = reuse.summary()
    assert (summary.allocations, summary.distinct, summary.reuses) == (5, 3, 2)
    assert (summary.shortest, summary.median) == (0, 0)
    assert reuse.percentile(1.0) == 1


def test_percentiles_are_nearest_rank_and_none_without_a_reuse() -> None:
    assert ReuseDistances().summary().shortest is None
    reuse = ReuseDistances()
    for distance in range(100):  # key k freed, then k other allocations, then k again: distance k
        reuse.allocated(distance)
        reuse.freed(distance)
        for other in range(distance):
            reuse.allocated(("other", distance, other))
        reuse.allocated(distance)
    summary = reuse.summary()
    assert (summary.shortest, summary.p1, summary.p10, summary.median) == (0, 0, 9, 49)
