"""Where readiness is decided: which job may start next, and when the batch has nothing left to do.

The Scheduler is pure bookkeeping, synchronous, with no processes and no files: the supervisor
tells it what happened (an attempt finished, will be retried, came back unstarted, was
cancelled) and asks it what to start. It holds

- the dependency counts: a job is ready when every job it waits on completed with exit code 0;
- the ready queue: higher priority first, then the order jobs became ready (an attempt given
  back unstarted goes back to the place in line it was taken from); a plain FIFO when no job has
  a priority;
- the resources: with capacities (the local pool's), a ready job whose resources do not fit now
  is parked and jobs behind it that fit start (no head-of-line blocking); what a job holds is
  released when its attempt ends (finished, retry_after, returned);
- the retry heap: attempts waiting out their delay hold no slot, and go before new jobs when due;
- the fail-fast gate: without keepGoing, once a job failed no new job starts (retries and running
  attempts go on, as in make);
- the follow-ons: a job whose one unmet wait is a job in flight may be handed out to run right
  after it, on its slot, where it starts only if that job succeeds (follow());
- the targets: with them, only those jobs and what they wait on are ever released.
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
# What a job holds while it runs: (resource name, amount) pairs, sorted (hashable, comparable).
Need = tuple[tuple[str, float], ...]
# A ready job with its place in line: ((-priority, sequence), id).
Entry = tuple[tuple[int, int], str]
RESOURCE_SLACK = 1e-9  # amounts are floats: 0.1 + 0.2 must fit in 0.3
FOLLOW_SCAN = 8  # dependents of a job looked at for a follow-on: bounded, however many wait on it


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


def downstream(waits: Mapping[str, Sequence[str]], ids: Iterable[str]) -> list[str]:
    """ids and every job that waits on one of them, transitively, in the order of waits."""
    dependents: dict[str, list[str]] = {job_id: [] for job_id in waits}
    for job_id, job_waits in waits.items():
        for wait in job_waits:
            if wait in dependents:
                dependents[wait].append(job_id)
    seen = set(ids)
    stack = list(seen)
    while stack:
        for dependent in dependents[stack.pop()]:
            if dependent not in seen:
                seen.add(dependent)
                stack.append(dependent)
    return [job_id for job_id in waits if job_id in seen]


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
        priorities: Mapping[str, int] | None = None,
        needs: Mapping[str, Mapping[str, float]] | None = None,
        capacities: Mapping[str, float] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """waits: every job's waits, in entry order. succeeded: jobs already completed with exit
        code 0. runnable: jobs that still have to run (default: all but succeeded). failed: a
        failure is already recorded (the gate starts closed without keepGoing). targets: run
        only these and what they wait on (None: every job). priorities: job id -> priority
        (higher first; absent: 0). needs: job id -> {resource: amount} it holds while it runs;
        counted against capacities (resource -> amount at once), or not at all if capacities is
        None (an executor that enforces them itself, as Dask does)."""
        self.clock = clock
        self.keep_going = keep_going
        self.failed = failed
        done = set(succeeded)
        wanted = None if targets is None else closure(waits, targets)
        self._dependents: dict[str, list[str]] = {}  # only jobs something waits on: 100,000 empty lists cost 6 MB
        self._unmet: dict[str, int] = {}
        for job_id, job_waits in waits.items():
            for wait in job_waits:
                self._dependents.setdefault(wait, []).append(job_id)
            self._unmet[job_id] = sum(1 for wait in job_waits if wait not in done) if done else len(job_waits)
        pending = (job_id for job_id in waits if job_id not in done) if runnable is None else runnable
        self._pending = {job_id for job_id in pending if wanted is None or job_id in wanted}
        self._priorities = {k: v for k, v in (priorities or {}).items() if v} or None
        self._capacity = dict(capacities) if capacities is not None else None
        self._needs: dict[str, Need] = {}
        if self._capacity is not None:
            for job_id, need in (needs or {}).items():
                if need:
                    self._needs[job_id] = tuple(sorted((name, float(amount)) for name, amount in need.items()))
        self._in_use: dict[str, float] = dict.fromkeys(self._capacity or (), 0.0)
        self._holding: dict[str, Need] = {}  # in flight, holding these resources
        # Ready jobs whose resources did not fit, by what they need (few distinct needs): only the
        # first of each can start next, so a release looks at one job per need, not at all of them.
        self._parked: dict[Need, list[Entry]] = {}
        # The ready queue. Without priorities or resources (the common case), a deque of ids in the
        # order they became ready, behind a heap of the jobs given back unstarted, in the order they
        # were taken. Otherwise only the heap, of ((-priority, sequence), id), sequence rising in
        # the order jobs became ready. Either way a job given back returns to the place in line it
        # was taken from (several given back at once keep their order).
        self._fifo: deque[str] | None = None
        self._heap: list[Entry] = []
        self._sequence_ready = 0
        initial = (job_id for job_id in waits if job_id in self._pending and not self._unmet[job_id])
        if self._priorities is None and not self._needs:
            self._fifo = deque(initial)
        else:
            for job_id in initial:
                self._push(job_id)
        self._retries: list[tuple[float, int, str]] = []  # heap of (monotonic due time, sequence, id)
        self._sequence = 0  # keeps equal due times in the order they were scheduled
        self._in_flight: dict[str, Entry] = {}  # handed out, not finished or returned: its place in line
        self._taken = 0  # counts what the FIFO handed out: the places in line of its jobs
        self._retrying: set[str] = set()  # in flight as a retry (not subject to the gate)
        self._cancelling: set[str] = set()  # in flight when cancel() asked for it

    # --- questions -------------------------------------------------------------------------------

    @property
    def gate_closed(self) -> bool:
        """Nothing new may start: a job failed and keepGoing is off."""
        return self.failed and not self.keep_going

    def next_due(self) -> float | None:
        """The monotonic time the earliest retry is due, or None. A due retry whose resources do
        not fit now does not count: a release (an attempt ending) wakes the supervisor anyway."""
        if not self._retries:
            return None
        if not self._needs:
            return self._retries[0][0]
        now = self.clock.monotonic()
        for due, _, job_id in sorted(self._retries):
            if due > now or self._fits(self._needs.get(job_id)):
                return due
        return None

    def in_flight(self) -> bool:
        return bool(self._in_flight)

    def cancelling(self, job_id: str) -> bool:
        """cancel() asked for this job while it was in flight: it must not run again."""
        return job_id in self._cancelling

    def waiting_retries(self) -> list[str]:
        """The jobs waiting out a retry delay (they hold no slot)."""
        return [job_id for _, _, job_id in sorted(self._retries)]

    def done(self) -> bool:
        """Nothing runs, nothing waits for a retry, and nothing more may or can start."""
        if self._in_flight or self._retries:
            return False
        return self.gate_closed or not (self._fifo or self._heap or any(self._parked.values()))

    # --- what to start -------------------------------------------------------------------------

    def take(self, limit: int) -> list[str]:
        """Up to limit jobs to start now: due retries first, then ready jobs (unless the gate is
        closed), highest priority first; a job whose resources do not fit now is passed over."""
        taken: list[str] = []
        now = self.clock.monotonic()
        if self._retries and self._retries[0][0] <= now:
            passed: list[tuple[float, int, str]] = []
            while len(taken) < limit and self._retries and self._retries[0][0] <= now:
                entry = heapq.heappop(self._retries)
                job_id = entry[2]
                if not self._hold(job_id):
                    passed.append(entry)
                    continue
                self._retrying.add(job_id)
                self._in_flight[job_id] = ((0, 0), job_id)  # given back, a retry goes to the retry heap
                taken.append(job_id)
            for entry in passed:
                heapq.heappush(self._retries, entry)
        fifo = self._fifo
        if fifo is not None:  # the common case, kept lean
            in_flight, pending, given_back = self._in_flight, self._pending, self._heap
            while len(taken) < limit and (given_back or fifo) and not self.gate_closed:
                if given_back:
                    place = heapq.heappop(given_back)
                    job_id = place[1]
                else:
                    job_id = fifo.popleft()
                    self._taken += 1
                    place = ((0, self._taken), job_id)
                if job_id in pending:  # not cancelled meanwhile
                    pending.discard(job_id)
                    in_flight[job_id] = place
                    taken.append(job_id)
            return taken
        while len(taken) < limit and not self.gate_closed:
            ready_entry = self._pop_ready()
            if ready_entry is None:
                break
            job_id = ready_entry[1]
            if job_id not in self._pending:  # cancelled meanwhile
                continue
            if not self._hold(job_id):  # parked, it keeps its place in line
                heapq.heappush(self._parked.setdefault(self._needs[job_id], []), ready_entry)
                continue
            self._pending.discard(job_id)
            self._in_flight[job_id] = ready_entry
            taken.append(job_id)
        return taken

    def follow(self, job_id: str, limit: int) -> list[str]:
        """Up to limit jobs to run one after the other right after job_id (in flight), on its
        slot: each waits on the one before it and on nothing else that is not done. The slot
        starts each only when the one before it succeeded, and gives it back otherwise (returned()
        then keeps it waiting). That saves a chain of short jobs a round trip through the
        supervisor per link. Only in the plain case: no priorities, no resources, the gate open,
        nothing ready in line (a follow-on must not pass a ready job)."""
        taken: list[str] = []
        if self._fifo is None or self._fifo or self._heap or self.gate_closed:
            return taken
        while len(taken) < limit:
            dependents = self._dependents.get(job_id, ())
            job_id = next(
                (d for d in dependents[:FOLLOW_SCAN] if self._unmet[d] == 1 and d in self._pending),
                "",
            )
            if not job_id:
                break
            self._pending.discard(job_id)
            self._taken += 1
            self._in_flight[job_id] = ((0, self._taken), job_id)
            taken.append(job_id)
        return taken

    def _push(self, job_id: str) -> None:
        """Into the heap, behind the jobs of its priority already there (not in the plain case)."""
        self._sequence_ready += 1
        priority = self._priorities.get(job_id, 0) if self._priorities else 0
        heapq.heappush(self._heap, ((-priority, self._sequence_ready), job_id))

    def _pop_ready(self) -> Entry | None:
        """The next ready job (with its key): the first of the queue, or of a parked need that fits now."""
        best = self._heap[0] if self._heap else None
        source = self._heap
        for need, parked in self._parked.items():
            if parked and (best is None or parked[0] < best) and self._fits(need):
                best, source = parked[0], parked
        if best is None:
            return None
        heapq.heappop(source)
        return best

    def _fits(self, need: Need | None) -> bool:
        if need is None or self._capacity is None:
            return True
        return all(self._in_use[name] + amount <= self._capacity[name] + RESOURCE_SLACK for name, amount in need)

    def _hold(self, job_id: str) -> bool:
        """Take the job's resources if they fit now; False if they do not."""
        need = self._needs.get(job_id)
        if need is None:
            return True
        if not self._fits(need):
            return False
        for name, amount in need:
            self._in_use[name] += amount
        self._holding[job_id] = need
        return True

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
        for dependent in self._dependents.get(job_id, ()):
            self._unmet[dependent] -= 1
            if self._unmet[dependent] == 0 and dependent in self._pending:
                released.append(dependent)
        if self._fifo is not None:
            self._fifo.extend(released)
        else:
            for dependent in released:
                self._push(dependent)
        return released

    def retry_after(self, job_id: str, wait: float) -> float:
        """The attempt ended and the job is tried again wait seconds from now; returns the due time."""
        self._leave_flight(job_id)
        due = self.clock.monotonic() + wait
        self._sequence += 1
        heapq.heappush(self._retries, (due, self._sequence, job_id))
        return due

    def returned(self, job_id: str) -> bool:
        """The attempt came back unstarted. It goes back to its place in line, unless it was being
        cancelled: then True is returned and the job is done (record it Cancelled)."""
        retry, cancelled, place = job_id in self._retrying, job_id in self._cancelling, self._in_flight[job_id]
        self._leave_flight(job_id)
        if cancelled:
            return True
        if retry:
            self._sequence += 1
            heapq.heappush(self._retries, (float("-inf"), self._sequence, job_id))
        else:
            self._pending.add(job_id)
            if not self._unmet[job_id]:  # (a follow-on whose job failed waits on)
                heapq.heappush(self._heap, place)  # the FIFO's given back are in the heap too
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
            need = self._needs.get(job_id)
            parked = self._parked.get(need) if need is not None else None
            if parked and any(i == job_id for _, i in parked):  # parked entries are not skipped by done()
                parked[:] = [entry for entry in parked if entry[1] != job_id]
                heapq.heapify(parked)
            return "now"
        return "none"

    def _leave_flight(self, job_id: str) -> None:
        need = self._holding.pop(job_id, None)
        if need is not None:
            for name, amount in need:
                self._in_use[name] -= amount
        self._in_flight.pop(job_id, None)
        self._retrying.discard(job_id)
        self._cancelling.discard(job_id)
