"""The time sources of the supervisor, its scheduler and its state writer, passed in so that tests
can drive them (a fake clock) without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: deadlines, retry due times, write intervals."""
        ...

    def time(self) -> float:
        """Seconds since the epoch: what the state file records."""
        ...


class SystemClock:
    """The real clocks."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM_CLOCK: Clock = SystemClock()
