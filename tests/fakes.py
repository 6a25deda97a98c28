"""Stand-ins for driving the Supervisor and the Scheduler in unit tests: a clock that moves only
when told, and an executor that runs nothing and reports what the test says happened.

They replace time and process control only; the end-to-end tests run the real thing.
"""

from __future__ import annotations

import selectors

from simplejob.protocol import AttemptSpec, Event
from simplejob.workers.executor import Executor

EPOCH = 1_800_000_000.0  # the fake wall clock's start (2027-01-15)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0  # monotonic

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return EPOCH + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InMemoryExecutor(Executor):
    """slots attempts at a time; submitted attempts wait in `submitted` until the test reports
    what became of them (start, finish, time_out, give_back)."""

    def __init__(self, clock: FakeClock, slots: int = 2) -> None:
        super().__init__(selectors.DefaultSelector())
        self.clock = clock
        self.slots = slots
        self.submitted: dict[str, AttemptSpec] = {}  # id -> the attempt handed to us, not yet over
        self.history: list[tuple[str, int]] = []  # (id, attempt number) in submission order
        self.cancelled: list[str] = []
        self.events: list[Event] = []
        self.shut_down = False
        self.pids = iter(range(10_000, 20_000))

    def free_slots(self) -> int:
        return self.slots - len(self.submitted)

    def submit(self, spec: AttemptSpec, after: str | None = None) -> None:
        assert after is None, "no tails() here"
        assert spec["id"] not in self.submitted, f"{spec['id']} submitted twice"
        self.submitted[spec["id"]] = spec
        self.history.append((spec["id"], spec["attempt"]))

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def shutdown(self) -> None:
        self.shut_down = True
        for job_id in list(self.submitted):
            self.finish(job_id, None, reason="its supervisor stopped")

    # --- what the test says happened -------------------------------------------------------------

    def start(self, job_id: str) -> int:
        pid = next(self.pids)
        self.events.append(Event("started", job_id, self.clock.time(), pid=pid))
        return pid

    def finish(self, job_id: str, exit_code: int | None, **fields: object) -> None:
        self.submitted.pop(job_id)
        self.events.append(Event("finished", job_id, self.clock.time(), exit_code=exit_code, **fields))  # type: ignore[arg-type]

    def time_out(self, job_id: str, timeout: float) -> None:
        self.finish(job_id, None, timed_out=True, reason=f"timed out after {timeout} s")

    def give_back(self, job_id: str) -> None:
        self.submitted.pop(job_id)
        self.events.append(Event("returned", job_id, self.clock.time()))
