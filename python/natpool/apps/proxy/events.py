"""Log lines about events that can come in floods: at most one line a second per kind, with counts.

A proxy out of descriptors, or refusing clients on an exhausted pool, sees the same event thousands of times a
second; a line (or a traceback) for each would bury the log and cost more than the event. :class:`EventLog` logs
the first event of a kind at once; the events of that kind in the second that follows are counted, and one line
when the second is up reports how many there were, with the last one's message. A flood of any size costs one
line a second per kind. An exception's traceback is logged once per kind, with its first line; after that only
its message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["EventLog"]


@dataclass
class _Kind:
    last: float = -float("inf")
    """When its last line was logged."""
    pending: int = 0
    """Events since then, not yet reported."""
    message: tuple[int, str, tuple[Any, ...]] = (logging.WARNING, "", ())
    """The last pending event's level, format and arguments."""
    timer: asyncio.TimerHandle | None = None
    traced: bool = False
    """Whether a traceback of this kind was logged."""


class EventLog:
    """Rate-limited logging per kind of event (``kind`` is any short name: ``"accept EMFILE"``)."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self._log = logger
        self.interval = interval
        self._kinds: dict[str, _Kind] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        self.event(kind, logging.WARNING, message, *args)

    def error(self, kind: str, exc: BaseException, message: str, *args: Any) -> None:
        """An unexpected exception: logged like any event, with its traceback the first time of its kind."""
        state = self._kinds.setdefault(kind, _Kind())
        if not state.traced and time.monotonic() - state.last >= self.interval:
            state.traced = True
            state.last = time.monotonic()
            self._log.error(message, *args, exc_info=exc)
            return
        self.event(kind, logging.ERROR, message, *args)

    def event(self, kind: str, level: int, message: str, *args: Any) -> None:
        """One event of ``kind``: logged now if the last line of its kind is a second old, else counted."""
        state = self._kinds.setdefault(kind, _Kind())
        now = time.monotonic()
        state.message = (level, message, args)
        if now - state.last >= self.interval and state.timer is None:
            state.last = now
            self._log.log(level, message, *args)
            return
        state.pending += 1
        if state.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop: reported by the next event or flush()
                return
            state.timer = loop.call_at(loop.time() + state.last + self.interval - now, self._report, kind)

    def _report(self, kind: str) -> None:
        state = self._kinds[kind]
        state.timer = None
        if state.pending:
            now = time.monotonic()
            level, message, args = state.message
            self._log.log(level, message + " (%d of these in the last %.1fs)", *args, state.pending, now - state.last)
            state.pending, state.last = 0, now

    def asyncio_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An event loop's exception handler: what asyncio reports (a failed ``accept`` of the metrics
        endpoint's server, say) goes through this log too, rate-limited per message."""
        message = str(context.get("message", "asyncio error"))
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self.error(f"asyncio {message}", exc, "asyncio: %s: %r", message, exc)
        else:
            self.warning(f"asyncio {message}", "asyncio: %s", message)

    def flush(self) -> None:
        """Report every count still pending now (at shutdown)."""
        for kind, state in self._kinds.items():
            if state.timer is not None:
                state.timer.cancel()
            self._report(kind)
