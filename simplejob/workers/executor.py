"""The executor interface between the supervisor and whatever runs job attempts."""

from __future__ import annotations

import abc
import selectors

from ..protocol import AttemptSpec, Event


class Executor(abc.ABC):
    """Runs one attempt of a job at a time per slot.

    The supervisor owns the selector; an executor registers its file descriptors there with a
    callable as data, and the supervisor calls it when the descriptor is readable. Events
    (protocol.Event) are then collected with take_events().
    """

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector

    def prepare(self, slots: int) -> None:  # noqa: B027  (optional: a no-op by default)
        """Get ready to run this many attempts at once (e.g. start workers before they are needed)."""

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many attempts can be submitted now (an executor may queue a few ahead)."""

    @abc.abstractmethod
    def submit(self, spec: AttemptSpec, after: str | None = None) -> None:
        """Run an attempt (protocol.AttemptSpec) when a slot has room; with after (a job id from
        tails()), on that job's slot, after it, and only if it succeeds."""

    def tails(self) -> list[tuple[str, int]]:
        """For each slot that runs what it holds in order, starting each attempt only if the one
        before it succeeded (and giving it back otherwise): the id of its last attempt and how
        many more it can take. Empty where slots do not (the default)."""
        return []

    def flush(self) -> None:  # noqa: B027  (optional: a no-op by default)
        """Send what submit() queued (called once per turn of the supervisor's loop)."""

    def hold(self) -> None:  # noqa: B027  (optional: a no-op by default)
        """Nothing new may start (a job failed, keepGoing is off): give back ("returned") what was
        submitted ahead and has not started."""

    def broken(self) -> str | None:
        """Why nothing more can run here (e.g. the cluster's scheduler is gone), or None."""
        return None

    @abc.abstractmethod
    def take_events(self) -> list[Event]:
        """Events that arrived since the last call."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Kill the running attempt of job_id (a "finished" event with cancelled=True follows),
        or give it back unstarted (a "returned" event)."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Kill whatever still runs, wait for it to be gone, and release every resource."""
