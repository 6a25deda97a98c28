"""The executor interface between the supervisor's scheduler and whatever runs job attempts."""
from __future__ import annotations

import abc
import selectors
from dataclasses import dataclass
from typing import Any


@dataclass
class Event:
    """Something that happened to a submitted attempt.

    kind "started": pid and t (epoch seconds) are set.
    kind "finished": pid and startT (None if it never started), exitCode (None if it did not
    exit by itself), timedOut, cancelled, reason (words for a failure, or None), leftovers
    (processes it left, killed) and t. An attempt that finishes quickly may have no "started".
    kind "returned": the attempt was not started; the supervisor schedules it again.
    """

    kind: str
    id: str
    t: float
    pid: int | None = None
    returned: list[str] | None = None  # (worker protocol only) attempts given back with "started"
    startT: float | None = None
    exitCode: int | None = None
    timedOut: bool = False
    cancelled: bool = False
    reason: str | None = None
    leftovers: int = 0


class Executor(abc.ABC):
    """Runs one attempt of a job at a time per slot.

    The supervisor owns the selector; an executor registers its file descriptors there with a
    callable as data, and the supervisor calls it when the descriptor is readable. Events are
    then collected with take_events().
    """

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector

    def prepare(self, slots: int) -> None:
        """Get ready to run this many attempts at once (e.g. start workers before they are needed)."""

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many attempts can be submitted now (an executor may queue a few ahead)."""

    @abc.abstractmethod
    def submit(self, spec: dict[str, Any]) -> None:
        """Start an attempt: spec holds id, attempt, attempts, argv, commandText, shell, cwd, env,
        timeout, killGrace and log (a file path or None)."""

    def flush(self) -> None:
        """Send what submit() queued (called once per turn of the supervisor's loop)."""

    @abc.abstractmethod
    def take_events(self) -> list[Event]:
        """Events that arrived since the last call."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Kill the running attempt of job_id (a "finished" event with cancelled=True follows)."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Kill whatever still runs, wait for it to be gone, and release every resource."""
