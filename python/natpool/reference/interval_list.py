"""The interval list (Figure 7): a doubly linked list partitioning the address space.

Each element covers ``count`` consecutive addresses starting at address index
``first`` and is either free (``subpool is None``) or owned by one subpool.
Two free elements are never adjacent: a released element merges with its free
neighbours.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natpool.reference.memory_pool import SubpoolHeader


class IntervalElement:
    """One element: next/previous pointers, owning subpool, first address, count."""

    __slots__ = ("next", "prev", "subpool", "first", "count")

    def __init__(self, first: int, count: int) -> None:
        self.next: IntervalElement | None = None
        self.prev: IntervalElement | None = None
        self.subpool: SubpoolHeader | None = None
        self.first = first
        self.count = count


class IntervalList:
    def __init__(self, address_count: int) -> None:
        self.head = IntervalElement(0, address_count)
        self.length = 1

    def __iter__(self) -> Iterator[IntervalElement]:
        element: IntervalElement | None = self.head
        while element is not None:
            yield element
            element = element.next

    def first_free(self) -> IntervalElement | None:
        """The lowest-addressed free element (first fit)."""
        return next((e for e in self if e.subpool is None), None)

    def assign(self, element: IntervalElement, count: int, subpool: SubpoolHeader) -> IntervalElement:
        """Give the first ``count`` addresses of a free element to ``subpool``."""
        assert element.subpool is None and 1 <= count <= element.count
        if count < element.count:
            self._split(element, count)
        element.subpool = subpool
        return element

    def assign_at(self, first: int, count: int, subpool: SubpoolHeader) -> IntervalElement:
        """Give the addresses ``first .. first + count - 1``, all free, to ``subpool``.

        For a range picked elsewhere than by this list's first fit: a port block
        (``clients.py``), or with a store a claim (the cluster picks the range). The
        free element holding it is split in up to three.
        """
        element = self.owner_of(first)
        assert self.is_free(first, count)
        if first > element.first:
            element = self._split(element, first - element.first)
        return self.assign(element, count, subpool)

    def is_free(self, first: int, count: int) -> bool:
        """Whether the addresses ``first .. first + count - 1`` lie in one free element."""
        element = self.owner_of(first)
        return element.subpool is None and first + count <= element.first + element.count

    def _split(self, element: IntervalElement, count: int) -> IntervalElement:
        """Split a free element after its first ``count`` addresses; return the second part."""
        rest = IntervalElement(element.first + count, element.count - count)
        rest.prev, rest.next = element, element.next
        if element.next is not None:
            element.next.prev = rest
        element.next = rest
        element.count = count
        self.length += 1
        return rest

    def release(self, element: IntervalElement) -> None:
        """Return an owned element to the free space, merging free neighbours."""
        element.subpool = None
        following = element.next
        if following is not None and following.subpool is None:
            self._absorb(element, following)
        preceding = element.prev
        if preceding is not None and preceding.subpool is None:
            self._absorb(preceding, element)

    def _absorb(self, low: IntervalElement, high: IntervalElement) -> None:
        """Merge ``high`` into the element just before it."""
        low.count += high.count
        low.next = high.next
        if high.next is not None:
            high.next.prev = low
        self.length -= 1

    def owner_of(self, index: int) -> IntervalElement:
        """The element covering address ``index`` (a walk: the model favours clarity)."""
        for element in self:
            if element.first <= index < element.first + element.count:
                return element
        raise AssertionError(f"address index {index} is outside the list")
