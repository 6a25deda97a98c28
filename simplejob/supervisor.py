"""The supervisor: the one process that owns a batch, runs it and writes its state file.

    caller's process                     supervisor process                  worker processes
    +------------+  spec, commands     +--------------------+  run/cancel  +--------+
    | JobManager | ---- stdin pipe --> | Supervisor         | -----------> | worker | --> job process tree
    |            |                     |  Scheduler         | <----------- | worker | --> job process tree
    +------------+                     |  StateWriter       |  started/    +--------+
          ^                            +--------------------+  finished
          |  reads (never locks)                | appends, compacts (holds state.json.lock)
          +------ state.json + state.json.journal <--+

The Supervisor wires three things together: the Scheduler (scheduler.py) decides what may
start; the Executor (workers/executor.py) runs attempts and reports events; the StateWriter
(statefile.py) records every transition. The policy in between lives here: what a finished
attempt means for its job (completed, retried, timed out, cancelled, interrupted).

The manager starts it as its own program (simplejob.programs), sends the batch as one JSON line
on its stdin and keeps that pipe open: its end means the manager is gone, and the supervisor
then stops the batch (kills the running trees, records them Interrupted) and exits. So do
SIGINT, SIGTERM, SIGHUP and a "stop" message. Exit codes: protocol.SupervisorExit. The start
(lock, resume plan, first snapshot) is in batchstart.py.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import time
from typing import Any, NoReturn

from . import statefile, statewriter
from .clock import SYSTEM_CLOCK, Clock
from .dates import format_datetime
from .model import AttemptRecord, AttemptResult, JobRecord, JobRunningStatus, transition
from .pipes import LineReader, drain, signal_wakeup
from .protocol import (
    AttemptSpec,
    BatchOptions,
    ControlMessage,
    Event,
    SupervisorExit,
)
from .scheduler import Outcome, Scheduler
from .workers.executor import Executor

PARENT_CHECK_INTERVAL = 0.5  # seconds between checks that the owning process still lives
COALESCE = 0.003  # seconds to let events gather while every worker has work queued


def _succeeded(event: Event) -> bool:
    """An attempt that exited 0 by itself: its job is Completed, whatever else its record says."""
    return event.kind == "finished" and event.exit_code == 0 and not event.timed_out and not event.cancelled


def scheduler_for(records: dict[str, JobRecord], options: BatchOptions, clock: Clock) -> Scheduler:
    """A Scheduler for the records of a batch about to run (some may be done, from a resume).
    (One pass over the records: it is on the way to the first job.)"""
    waits: dict[str, list[str]] = {}
    succeeded: list[str] = []
    runnable: list[str] = []
    priorities: dict[str, int] = {}
    needs: dict[str, dict[str, float]] = {}
    failed = False
    for job_id, record in records.items():
        definition = record.definition
        waits[job_id] = definition.waiting
        if record.runningStatus is JobRunningStatus.Ready:
            runnable.append(job_id)
        elif record.succeeded():
            succeeded.append(job_id)
        elif record.failure():
            failed = True
        if definition.priority:
            priorities[job_id] = definition.priority
        if definition.resources:
            needs[job_id] = definition.resources
    return Scheduler(
        waits,
        succeeded=succeeded,
        runnable=runnable,
        failed=failed,
        keep_going=bool(options.get("keepGoing")),
        targets=options.get("targets"),
        priorities=priorities,
        needs=needs,
        # on Dask the workers' own resources cap what runs (Dask holds a task until one fits)
        capacities=None if options.get("dask") else options.get("resources", {}),
        clock=clock,
    )


class Supervisor:
    def __init__(
        self,
        state: statefile.State,
        writer: statewriter.StateWriter,
        options: BatchOptions,
        executor: Executor,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.state = state
        self.records: dict[str, JobRecord] = state.records
        self.writer = writer
        self.log_dir = options.get("logOutputDirectory") or None
        self.executor = executor
        self.clock = clock
        self.scheduler = scheduler_for(self.records, options, clock)
        self.interrupted: str | None = None  # why the batch is being stopped
        self.fatal: str | None = None  # why the batch stopped on its own (the state could not be written)
        self.begun: set[str] = set()  # in flight and known to have started
        self.released: set[str] = set()  # succeeded, told to the scheduler, its record not yet updated
        self.control: LineReader | None = None
        self.owner: int | None = None

    # --- inputs: signals, the manager's pipe, the owner's life ------------------------------------

    def listen(self, control: LineReader, owner: int) -> None:
        """Take commands from the manager's pipe, stop on its end, on a signal or when owner dies."""
        self.control, self.owner = control, owner
        # SIGHUP: the terminal closed
        wake = signal_wakeup((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), self._on_signal)
        self.executor.selector.register(wake, selectors.EVENT_READ, lambda: drain(wake))
        self.executor.selector.register(control.fd, selectors.EVENT_READ, self._on_control)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.interrupt(f"interrupted by {signal.Signals(signum).name}")

    def interrupt(self, reason: str) -> None:
        self.interrupted = self.interrupted or reason

    def _on_control(self) -> None:
        assert self.control is not None
        lines = self.control.read()
        if lines is None:
            self.executor.selector.unregister(self.control.fd)
            self.interrupt("interrupted: the process that owns the batch went away")
            return
        for line in lines:
            self.command(json.loads(line))

    def command(self, message: ControlMessage) -> None:
        if message["op"] == "cancel":
            ids = message["ids"]
            self.cancel(list(self.records) if ids is None else ids)
        elif message["op"] == "stop":
            self.interrupt(message["reason"])

    def cancel(self, ids: list[str]) -> None:
        for job_id in ids:
            action = self.scheduler.cancel(job_id)
            if action == "kill":
                self.executor.cancel(job_id)
            elif action == "now":
                record = self.records[job_id]
                self.writer.record(
                    self._finish(record, JobRunningStatus.Cancelled, self.clock.time(), reason="cancelled")
                )

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Run the batch to its end (or until it is interrupted); returns the exit code."""
        try:
            return self._loop()
        except statewriter.WriteFailed as failed:
            # Nothing more can be recorded: stop every job (a resume runs them again) and say why.
            self.fatal = str(failed)
            self.executor.shutdown()
            self.writer.abandon()
            return SupervisorExit.STATE_NOT_WRITTEN

    def _loop(self) -> int:
        next_parent_check = 0.0
        while True:
            now = self.clock.monotonic()
            if now >= next_parent_check:
                next_parent_check = now + PARENT_CHECK_INTERVAL
                if self.owner is not None and os.getppid() != self.owner:
                    self.interrupt("interrupted: the process that owns the batch died")
            if self.interrupted:
                return self.stop()
            if self.step():
                return self.finish()
            self.wait(next_parent_check)

    def step(self) -> bool:
        """One turn: take the executor's events, start what may start, persist. True when done."""
        events = self.executor.take_events()
        broken = self.executor.broken()
        if broken:
            self.collect_events(events)
            self.interrupt(broken)
            self.writer.persist()
            return False
        if events and all(_succeeded(event) for event in events):
            # The usual turn, only successes: what waited on them is handed out first, and their
            # records and journal lines are made after (a chain would wait for that at every link).
            for event in events:
                self.scheduler.finished(event.id, "ok")
                self.released.add(event.id)
            self.start_ready()
            self.executor.flush()
            self.collect_events(events)
        else:
            self.collect_events(events)
            if self.scheduler.gate_closed:
                self.executor.hold()
            self.start_ready()
            self.executor.flush()
        self.writer.persist()
        return self.scheduler.done()

    def wait(self, until: float) -> None:
        """Sleep until an input is readable, a retry is due, the state needs writing, or until."""
        due = self.scheduler.next_due()
        deadline = until if due is None else min(until, due)
        timeout = max(0.0, deadline - self.clock.monotonic())
        if self.writer.dirty or self.writer.pending:
            timeout = min(timeout, statewriter.COMPACT_MIN_INTERVAL)
        if self.scheduler.in_flight() and self.executor.free_slots() == 0 and timeout > 0:
            # Every worker has attempts queued: nothing waits on us, so let events gather and
            # handle them together (fewer wake-ups, fewer writes) instead of one at a time.
            time.sleep(COALESCE)
        for key, _ in self.executor.selector.select(timeout):
            key.data()

    def collect_events(self, events: list[Event]) -> None:
        for event in events:
            record = self.records[event.id]
            if event.kind == "started":
                self.writer.record(self._begin(record, event.t, event.pid, event.slot))
            elif event.kind == "returned":
                self._returned(record)
            else:
                self._attempt_finished(record, event)

    def start_ready(self) -> None:
        for job_id in self.scheduler.take(self.executor.free_slots()):
            self.executor.submit(self._attempt(self.records[job_id]))
        for tail, room in self.executor.tails():
            for job_id in self.scheduler.follow(tail, room):
                self.executor.submit(self._attempt(self.records[job_id]), after=tail)
                tail = job_id

    # --- transitions ------------------------------------------------------------------------------

    def _attempt(self, record: JobRecord) -> AttemptSpec:
        """The next attempt of a job; its record changes when the attempt starts."""
        definition = record.definition
        command = definition.commandLine
        return {
            "id": record.id,
            "attempt": record.attempts + 1,
            "attempts": definition.retry + 1,
            "argv": definition.argv(),
            "command_text": command if isinstance(command, str) else json.dumps(command),
            "shell": definition.shell,
            "cwd": definition.cwd,
            "env": definition.env,
            "timeout": definition.timeout,
            "killGrace": definition.killGrace,
            "log": os.path.join(self.log_dir, f"{record.id}.log") if self.log_dir else None,
            "priority": definition.priority,
            "resources": definition.resources,
        }

    def _begin(self, record: JobRecord, t: float, pid: int | None, slot: int | None) -> dict[str, Any]:
        self.begun.add(record.id)
        fields: dict[str, Any] = {"attempts": record.attempts + 1, "pid": pid, "reason": None, "slot": slot}
        if record.startTimestamp is None:
            fields.update(startDateTime=format_datetime(t), startTimestamp=t)
        else:  # a retry: its process started now; a resume tells it by this from a reused pid
            fields["attemptStartTimestamp"] = t
        return transition(record, JobRunningStatus.Running, **fields)

    def _returned(self, record: JobRecord) -> None:
        """An attempt came back unstarted: it goes back to its place in line (unless it was cancelled)."""
        if self.scheduler.returned(record.id):
            self.writer.record(self._finish(record, JobRunningStatus.Cancelled, self.clock.time(), reason="cancelled"))

    def _attempt_finished(self, record: JobRecord, event: Event) -> None:
        begin: dict[str, Any] = {}
        if record.id not in self.begun and not (event.cancelled and event.start_t is None):
            # a short job: one journal line
            begin = self._begin(record, event.start_t or event.t, event.pid, event.slot)
        ran = record.id in self.begun  # False: cancelled before it started (no attempt to record)
        self.begun.discard(record.id)
        definition = record.definition
        reason: str | None
        retried = event.timed_out and record.attempts <= definition.retry
        cut_short = event.exit_code is None and not (event.timed_out or event.cancelled or self.interrupted)
        if event.cancelled or (self.scheduler.cancelling(record.id) and (retried or cut_short)):
            # Cancelled, also when the cancel was on its way as the attempt ended other than by a
            # result of its own (a timeout it would be retried after, its worker's death); the
            # attempt keeps what happened to it in the history. The fail-fast gate stays open.
            result: AttemptResult = "cancelled" if event.cancelled else "timedOut" if event.timed_out else "interrupted"
            history = self._ended(record, event, ran, result, "cancelled" if event.cancelled else event.reason)
            line = self._finish(record, JobRunningStatus.Cancelled, event.t, reason="cancelled", history=history)
        elif retried:
            wait = definition.retry_wait(record.attempts)
            self.scheduler.retry_after(record.id, wait)
            history = self._ended(record, event, ran, "timedOut", event.reason)
            line = transition(
                record,
                JobRunningStatus.Running,
                pid=None,
                reason=f"attempt {record.attempts} {event.reason}; retry {record.attempts} in {wait:g} s",
                **({} if history is None else {"history": history}),
            )
        elif event.timed_out:
            history = self._ended(record, event, ran, "timedOut", event.reason)
            line = self._finish(record, JobRunningStatus.RetryOut, event.t, reason=event.reason, history=history)
        elif event.exit_code is None:
            # Cut short by something outside the job (its worker died, the batch is stopping).
            reason = self.interrupted or event.reason
            history = self._ended(record, event, ran, "interrupted", reason)
            line = self._finish(record, JobRunningStatus.Interrupted, event.t, reason=reason, history=history)
        else:
            reason = event.reason
            if reason is None and event.exit_code != 0:
                reason = f"exit code {event.exit_code}"
            if event.leftovers:
                left = f"left {event.leftovers} process(es) running; they were killed"
                reason = f"{reason}; {left}" if reason else left
            history = self._ended(record, event, ran, "exited", reason)
            line = self._finish(
                record, JobRunningStatus.Completed, event.t, exitCode=event.exit_code, reason=reason, history=history
            )
        self.writer.record({**begin, **line})

    @staticmethod
    def _ended(
        record: JobRecord, event: Event, ran: bool, result: AttemptResult, reason: str | None
    ) -> list[AttemptRecord] | None:
        """The job's history with the attempt that just ended appended (a new list: the journal
        line carries it whole), or None if no attempt ran (cancelled before it started)."""
        if not ran:
            return None
        entry: AttemptRecord = {
            "attempt": record.attempts,
            "startTimestamp": record.startTimestamp if record.attempts <= 1 else record.attemptStartTimestamp,
            "finishTimestamp": event.t,
            "slot": record.slot,
            "pid": event.pid if event.pid is not None else record.pid,
            "exitCode": event.exit_code,
            "result": result,
            "reason": reason,
        }
        return [*record.history, entry]

    def _finish(
        self,
        record: JobRecord,
        status: JobRunningStatus,
        t: float,
        *,
        exitCode: int | None = None,
        reason: str | None = None,
        history: list[AttemptRecord] | None = None,
    ) -> dict[str, Any]:
        """A job's last transition (with the history of its attempts when one just ended);
        returns its journal line."""
        elapsed = None if record.startTimestamp is None else round(max(0.0, t - record.startTimestamp), 6)
        line = transition(
            record,
            status,
            exitCode=exitCode,
            finishDateTime=format_datetime(t),
            elapsedSeconds=elapsed,
            pid=None,
            reason=reason,
            **({} if history is None else {"history": history}),
        )
        outcome: Outcome = "cancelled" if status == JobRunningStatus.Cancelled else "failed"
        if record.succeeded():
            outcome = "ok"
        if record.id in self.released:  # the scheduler heard of this success first (step)
            self.released.discard(record.id)
        else:
            self.scheduler.finished(record.id, outcome)
        return line

    # --- the end ----------------------------------------------------------------------------------

    def stop(self) -> int:
        """Stop the batch: kill running trees, record them (and jobs waiting to retry) Interrupted."""
        self.executor.shutdown()
        self.collect_events(self.executor.take_events())
        now = self.clock.time()
        for job_id in self.scheduler.waiting_retries():
            record = self.records[job_id]
            self.scheduler.cancel(job_id)
            self.writer.record(self._finish(record, JobRunningStatus.Interrupted, now, reason=self.interrupted))
        self._close("interrupted")
        return SupervisorExit.INTERRUPTED

    def finish(self) -> int:
        self.executor.shutdown()
        self._close("finished")
        return SupervisorExit.FINISHED

    def _close(self, result: str) -> None:
        update = {"running": False, "result": result, "finishDateTime": format_datetime(self.clock.time())}
        if self.interrupted:
            update["reason"] = self.interrupted
        self.state.supervisor.update(update)
        self.writer.record({"supervisor": update})
        self.writer.close()


# --- the program ------------------------------------------------------------------------------------


def main() -> NoReturn:
    """The supervisor program (its command line names this module: `status` and the tests look for
    it); its start, up to Supervisor.run(), is in batchstart.py."""
    from .batchstart import serve

    serve()


if __name__ == "__main__":
    main()
