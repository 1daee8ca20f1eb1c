"""A settable test clock for pools' ``clock=`` (shared by the policy and client tests)."""

from __future__ import annotations


class Clock:
    """A settable clock that counts its reads."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now
