"""Drained IPs (``docs/shapes.md``, "Drain"): the IPs no new lease may come from.

``drain(ip)`` adds an IP, ``undrain(ip)`` removes it; nothing else changes the
set. An IP's addresses are one run of consecutive indices of the address space
(``space.AddressSpace.ip_indices``), so the drained addresses are a few runs,
and the pool asks here whether a range of indices touches one, where the first
index outside them lies, and how many drained addresses a range holds. Runs
are ``(first, end)``, end exclusive, and never overlap (they are distinct IPs').
"""

from __future__ import annotations

__all__ = ["DrainedIps"]


class DrainedIps:
    """The drained IPs of a pool and their runs of indices."""

    def __init__(self) -> None:
        self._runs: dict[int, tuple[int, int]] = {}

    def __contains__(self, ip: object) -> bool:
        return ip in self._runs

    def __bool__(self) -> bool:
        return bool(self._runs)

    def add(self, ip: int, run: tuple[int, int]) -> None:
        self._runs[ip] = run

    def remove(self, ip: int) -> None:
        del self._runs[ip]

    def ips(self) -> list[int]:
        return sorted(self._runs)

    def addresses(self) -> int:
        """How many addresses of the space are on drained IPs."""
        return sum(end - first for first, end in self._runs.values())

    def _sorted(self) -> list[tuple[int, int]]:
        return sorted(self._runs.values())

    def touches(self, first: int, end: int) -> bool:
        """Whether any index of ``first .. end - 1`` is on a drained IP."""
        return any(a < end and first < b for a, b in self._runs.values())

    def count_in(self, first: int, end: int) -> int:
        """How many indices of ``first .. end - 1`` are on drained IPs."""
        return sum(max(0, min(b, end) - max(a, first)) for a, b in self._runs.values())

    def lowest_free(self, first: int, end: int) -> int | None:
        """The lowest index of ``first .. end - 1`` on no drained IP, or None."""
        cursor = first
        for a, b in self._sorted():
            if a > cursor:
                break
            cursor = max(cursor, b)
        return cursor if cursor < end else None

    def around(self, index: int, first: int, end: int) -> tuple[int, int]:
        """The part of ``first .. end - 1`` around ``index`` (on no drained IP) that no drained run cuts."""
        for a, b in self._sorted():
            if b <= index:
                first = max(first, b)
            elif a > index:
                end = min(end, a)
        return first, end
