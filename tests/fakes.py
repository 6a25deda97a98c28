"""Stand-ins for driving the Supervisor and the Scheduler in unit tests: a clock that moves only
when told, an executor that runs nothing and reports what the test says happened, and a Batch
that puts them together with a real Supervisor and state writer.

They replace time and process control only; the end-to-end tests run the real thing.
"""

from __future__ import annotations

import os
import selectors
from collections.abc import Collection
from pathlib import Path
from typing import Any

from simplejob import statefile, statewriter
from simplejob.model import JobRecord, JobRunningStatus
from simplejob.protocol import AttemptSpec, BatchOptions, Event
from simplejob.supervisor import Supervisor
from simplejob.validation import parse_contexts
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


class Batch:
    """A real Supervisor with a real StateWriter on directory/state.json, driven step by step with
    the InMemoryExecutor and the FakeClock. kept: jobs done by an earlier batch, kept by a resume."""

    def __init__(
        self,
        directory: str | Path,
        contexts: list[dict[str, Any]],
        *,
        slots: int = 2,
        keep_going: bool = False,
        targets: list[str] | None = None,
        resources: dict[str, float] | None = None,
        kept: Collection[str] = (),
    ) -> None:
        self.clock = FakeClock()
        self.path = os.path.join(directory, "state.json")
        options: BatchOptions = {"maxWorkers": slots, "keepGoing": keep_going, "logOutputDirectory": None}
        if targets is not None:
            options["targets"] = targets
        if resources is not None:
            options["resources"] = resources
        records = {d.id: JobRecord(d) for d in parse_contexts(contexts)}
        for job_id in kept:
            records[job_id] = JobRecord(
                records[job_id].definition, JobRunningStatus.Completed, exitCode=0, attempts=1, resumed=True
            )
        self.state = statefile.State(
            path=self.path, generation=0, supervisor={}, options=dict(options), records=records
        )
        self.writer = statewriter.StateWriter(self.path, self.state, clock=self.clock)
        self.writer.start()
        self.executor = InMemoryExecutor(self.clock, slots)
        self.supervisor = Supervisor(self.state, self.writer, options, self.executor, clock=self.clock)

    def step(self) -> bool:
        return self.supervisor.step()

    def status(self, job_id: str) -> JobRunningStatus:
        return self.state.records[job_id].runningStatus

    def on_disk(self) -> statefile.State:
        state = statefile.load(self.path)
        assert state is not None
        return state

    def run_ok(self, job_id: str) -> None:
        self.executor.start(job_id)
        self.clock.advance(0.5)
        self.executor.finish(job_id, 0)
