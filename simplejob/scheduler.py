"""Where readiness is decided: which job may start next, and when the batch has nothing left to do.

The Scheduler is pure bookkeeping, synchronous, with no processes and no files: the supervisor
tells it what happened (an attempt finished, will be retried, came back unstarted, was
cancelled) and asks it what to start. It holds

- the dependency counts: a job is ready when every job it waits on completed with exit code 0;
- the ready queue (entry order; an attempt given back unstarted goes first again);
- the retry heap: attempts waiting out their delay hold no slot, and go before new jobs when due;
- the fail-fast gate: without keepGoing, once a job failed no new job starts (retries and running
  attempts go on, as in make);
- the targets: with them, only those jobs and what they wait on are ever released.

Priorities and resource limits belong here too when they come.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal

from .clock import SYSTEM_CLOCK, Clock

# "ok": completed with exit code 0, releases what waits on it; "failed": anything else that counts
# as a failure (closes the fail-fast gate); "cancelled": neither (what waits on it never runs).
Outcome = Literal["ok", "failed", "cancelled"]
# What cancel() found: "kill" the attempt is with the executor (ask it to kill); "now" it was
# waiting here and is dropped (record it Cancelled); "none" nothing to cancel.
CancelAction = Literal["kill", "now", "none"]


def closure(waits: Mapping[str, Sequence[str]], targets: Iterable[str]) -> set[str]:
    """The targets and every job they wait on, transitively (iterative: any depth)."""
    found: set[str] = set()
    stack = list(targets)
    while stack:
        job_id = stack.pop()
        if job_id not in found:
            found.add(job_id)
            stack.extend(waits[job_id])
    return found


class Scheduler:
    def __init__(
        self,
        waits: Mapping[str, Sequence[str]],
        *,
        succeeded: Collection[str] = (),
        runnable: Iterable[str] | None = None,
        failed: bool = False,
        keep_going: bool = False,
        targets: Collection[str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """waits: every job's waits, in entry order. succeeded: jobs already completed with exit
        code 0. runnable: jobs that still have to run (default: all but succeeded). failed: a
        failure is already recorded (the gate starts closed without keepGoing). targets: run
        only these and what they wait on (None: every job)."""
        self.clock = clock
        self.keep_going = keep_going
        self.failed = failed
        done = set(succeeded)
        wanted = None if targets is None else closure(waits, targets)
        self._dependents: dict[str, list[str]] = {job_id: [] for job_id in waits}
        self._unmet: dict[str, int] = {}
        for job_id, job_waits in waits.items():
            for wait in job_waits:
                self._dependents[wait].append(job_id)
            self._unmet[job_id] = sum(1 for wait in job_waits if wait not in done)
        pending = (job_id for job_id in waits if job_id not in done) if runnable is None else runnable
        self._pending = {job_id for job_id in pending if wanted is None or job_id in wanted}
        self._ready: deque[str] = deque(
            job_id for job_id in waits if job_id in self._pending and not self._unmet[job_id]
        )
        self._retries: list[tuple[float, int, str]] = []  # heap of (monotonic due time, sequence, id)
        self._sequence = 0  # keeps equal due times in the order they were scheduled
        self._in_flight: set[str] = set()  # handed out by take(), not finished or returned
        self._retrying: set[str] = set()  # in flight as a retry (not subject to the gate)
        self._cancelling: set[str] = set()  # in flight when cancel() asked for it

    # --- questions -------------------------------------------------------------------------------

    @property
    def gate_closed(self) -> bool:
        """Nothing new may start: a job failed and keepGoing is off."""
        return self.failed and not self.keep_going

    def next_due(self) -> float | None:
        """The monotonic time the earliest retry is due, or None."""
        return self._retries[0][0] if self._retries else None

    def in_flight(self) -> bool:
        return bool(self._in_flight)

    def waiting_retries(self) -> list[str]:
        """The jobs waiting out a retry delay (they hold no slot)."""
        return [job_id for _, _, job_id in sorted(self._retries)]

    def done(self) -> bool:
        """Nothing runs, nothing waits for a retry, and nothing more may or can start."""
        if self._in_flight or self._retries:
            return False
        return self.gate_closed or not self._ready

    # --- what to start -------------------------------------------------------------------------

    def take(self, limit: int) -> list[str]:
        """Up to limit jobs to start now: due retries first, then ready jobs (unless the gate is closed)."""
        taken: list[str] = []
        now = self.clock.monotonic()
        while len(taken) < limit and self._retries and self._retries[0][0] <= now:
            _, _, job_id = heapq.heappop(self._retries)
            self._retrying.add(job_id)
            taken.append(job_id)
        while len(taken) < limit and self._ready and not self.gate_closed:
            job_id = self._ready.popleft()
            if job_id in self._pending:  # not cancelled meanwhile
                self._pending.discard(job_id)
                taken.append(job_id)
        self._in_flight.update(taken)
        return taken

    # --- what happened -------------------------------------------------------------------------

    def finished(self, job_id: str, outcome: Outcome) -> list[str]:
        """A job ended for good. Returns the jobs that became ready because of it."""
        self._leave_flight(job_id)
        if outcome == "failed":
            self.failed = True
            return []
        if outcome == "cancelled":
            return []
        released = []
        for dependent in self._dependents[job_id]:
            self._unmet[dependent] -= 1
            if self._unmet[dependent] == 0 and dependent in self._pending:
                released.append(dependent)
        self._ready.extend(released)
        return released

    def retry_after(self, job_id: str, wait: float) -> float:
        """The attempt ended and the job is tried again wait seconds from now; returns the due time."""
        self._leave_flight(job_id)
        due = self.clock.monotonic() + wait
        self._sequence += 1
        heapq.heappush(self._retries, (due, self._sequence, job_id))
        return due

    def returned(self, job_id: str) -> bool:
        """The attempt came back unstarted. It goes first in line again, unless it was being
        cancelled: then True is returned and the job is done (record it Cancelled)."""
        retry, cancelled = job_id in self._retrying, job_id in self._cancelling
        self._leave_flight(job_id)
        if cancelled:
            return True
        if retry:
            self._sequence += 1
            heapq.heappush(self._retries, (float("-inf"), self._sequence, job_id))
        else:
            self._pending.add(job_id)
            self._ready.appendleft(job_id)
        return False

    def cancel(self, job_id: str) -> CancelAction:
        """Keep a job from starting (again)."""
        if job_id in self._in_flight:
            self._cancelling.add(job_id)  # if it comes back unstarted, it is cancelled then
            return "kill"
        waiting_retry = any(i == job_id for _, _, i in self._retries)
        if waiting_retry:
            self._retries = [entry for entry in self._retries if entry[2] != job_id]
            heapq.heapify(self._retries)
            return "now"
        if job_id in self._pending:
            self._pending.discard(job_id)  # its stale entry in the ready queue is skipped by take()
            return "now"
        return "none"

    def _leave_flight(self, job_id: str) -> None:
        self._in_flight.discard(job_id)
        self._retrying.discard(job_id)
        self._cancelling.discard(job_id)
