"""The supervisor: the one process that owns a batch, schedules it and writes its state file.

    caller's process                     supervisor process                  worker processes
    +------------+  spec, commands     +--------------------+  run/cancel  +--------+
    | JobManager | ---- stdin pipe --> | Supervisor         | -----------> | worker | --> job process tree
    |            |                     |  scheduler loop    | <----------- | worker | --> job process tree
    +------------+                     |  StateWriter       |  started/    +--------+
          ^                            +--------------------+  finished
          |  reads (never locks)                | appends, compacts (holds state.json.lock)
          +------ state.json + state.json.journal <--+

The manager starts it as its own program (simplejob.programs), sends the batch as one JSON line
on its stdin and keeps that pipe open: its end means the manager is gone, and the supervisor
then stops the batch (kills the running trees, records them Interrupted) and exits. So do
SIGINT, SIGTERM and SIGHUP. Exit codes: 0 the batch ran to its end, 2 it could not start (the reason
was sent to the manager), 3 it was interrupted.
"""
from __future__ import annotations

import heapq
import json
import os
import selectors
import signal
import sys
import time
from collections import deque
from typing import Any

import filelock

from . import resume, statefile
from .errors import StateFileError
from .model import JobDefinition, JobRecord, JobRunningStatus, format_datetime, transition
from .workers import proctree
from .workers.executor import Event, Executor
from .workers.pool import LocalProcessPool

EXIT_FINISHED, EXIT_NOT_STARTED, EXIT_INTERRUPTED = 0, 2, 3
PARENT_CHECK_INTERVAL = 0.5  # seconds between checks that the owning process still lives
COALESCE = 0.001  # seconds to let events gather while every worker has work queued


class Supervisor:
    def __init__(self, state: statefile.State, writer: statefile.StateWriter, options: dict[str, Any],
                 control_fd: int, inbox: bytes, executor: Executor, owner: int) -> None:
        self.state = state
        self.records: dict[str, JobRecord] = state.records
        self.writer = writer
        self.keep_going = bool(options.get("keepGoing"))
        self.log_dir = options.get("logOutputDirectory") or None
        self.executor = executor
        self.selector = executor.selector
        self.control_fd = control_fd
        self.inbox = inbox
        self.parent = owner  # the manager's pid: if getppid() changes, it died
        self.interrupted: str | None = None  # why the batch is being stopped
        self.in_flight: set[str] = set()  # handed to the executor, not finished
        self.begun: set[str] = set()  # in flight and known to have started
        self.cancelling: set[str] = set()  # in flight when cancel() asked for them
        self.retries: list[tuple[float, str]] = []  # heap of (monotonic due time, id)
        self.dependents: dict[str, list[str]] = {job_id: [] for job_id in self.records}
        self.unmet: dict[str, int] = {}
        for record in self.records.values():
            for wait in record.definition.waiting:
                self.dependents[wait].append(record.id)
            self.unmet[record.id] = sum(1 for w in record.definition.waiting if not self._succeeded(w))
        self.ready = deque(
            r.id for r in self.records.values()
            if r.runningStatus == JobRunningStatus.Ready and self.unmet[r.id] == 0
        )
        self.failed = any(r.failure() for r in self.records.values())
        self._install_signals()
        self.selector.register(control_fd, selectors.EVENT_READ, self._on_control)

    def _succeeded(self, job_id: str) -> bool:
        record = self.records[job_id]
        return record.runningStatus == JobRunningStatus.Completed and record.exitCode == 0

    # --- inputs -----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
            signal.signal(signum, self._on_signal)
        self.selector.register(wake_r, selectors.EVENT_READ, lambda: self._drain(wake_r))

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.interrupted = self.interrupted or f"interrupted by {signal.Signals(signum).name}"

    def _on_control(self) -> None:
        chunk = os.read(self.control_fd, 1 << 16)
        if not chunk:
            self.selector.unregister(self.control_fd)
            self.interrupted = self.interrupted or "interrupted: the process that owns the batch went away"
            return
        self.inbox += chunk
        *lines, self.inbox = self.inbox.split(b"\n")
        for line in lines:
            self.command(json.loads(line))

    def command(self, message: dict[str, Any]) -> None:
        if message.get("op") == "cancel":
            ids = message.get("ids")
            self.cancel(list(self.records) if ids is None else ids)

    def cancel(self, ids: list[str]) -> None:
        now = time.time()
        for job_id in ids:
            record = self.records[job_id]
            if job_id in self.in_flight:
                self.cancelling.add(job_id)  # if it comes back unstarted, it is cancelled then
                self.executor.cancel(job_id)
            elif record.runningStatus in (JobRunningStatus.Ready, JobRunningStatus.Running):
                self.retries = [(due, i) for due, i in self.retries if i != job_id]
                heapq.heapify(self.retries)
                self.writer.record(self._finish(record, JobRunningStatus.Cancelled, now, reason="cancelled"))

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        next_parent_check = 0.0
        while True:
            now = time.monotonic()
            if now >= next_parent_check:
                next_parent_check = now + PARENT_CHECK_INTERVAL
                if os.getppid() != self.parent:
                    self.interrupted = self.interrupted or "interrupted: the process that owns the batch died"
            if self.interrupted:
                return self.stop()
            self.collect_events()
            self.release_retries(now)
            self.start_ready()
            self.executor.flush()
            self.persist(now)
            if self.done():
                return self.finish()
            self.wait(next_parent_check)

    def wait(self, until: float) -> None:
        deadline = until
        if self.retries:
            deadline = min(deadline, self.retries[0][0])
        timeout = max(0.0, deadline - time.monotonic())
        if self.writer.dirty or self.writer.pending:
            timeout = min(timeout, statefile.COMPACT_MIN_INTERVAL)
        if self.in_flight and self.executor.free_slots() == 0 and timeout > 0:
            # Every worker has attempts queued: nothing waits on us, so let events gather and
            # handle them together (fewer wake-ups, fewer writes) instead of one at a time.
            time.sleep(COALESCE)
        for key, _ in self.selector.select(timeout):
            key.data()

    def collect_events(self) -> None:
        for event in self.executor.take_events():
            record = self.records[event.id]
            if event.kind == "started":
                self.writer.record(self._begin(record, event.t, event.pid))
            elif event.kind == "returned":
                self._returned(record)
            else:
                self._attempt_finished(record, event)

    def release_retries(self, now: float) -> None:
        # A retry waiting out its delay holds no worker; when due, it goes before new jobs.
        while self.retries and self.retries[0][0] <= now and self.executor.free_slots() > 0:
            _, job_id = heapq.heappop(self.retries)
            self._dispatch(self.records[job_id])

    def start_ready(self) -> None:
        free = self.executor.free_slots()
        while free > 0 and self.ready and not (self.failed and not self.keep_going):
            record = self.records[self.ready.popleft()]
            if record.runningStatus == JobRunningStatus.Ready:  # not cancelled meanwhile
                self._dispatch(record)
                free -= 1

    def persist(self, now: float) -> None:
        self.writer.flush(now=now)
        if self.writer.compaction_due(now):
            self.writer.compact(background=True)

    def done(self) -> bool:
        if self.in_flight or self.retries:
            return False
        blocked = self.failed and not self.keep_going
        return blocked or not self.ready

    # --- transitions --------------------------------------------------------------------------

    def _dispatch(self, record: JobRecord) -> None:
        """Hand an attempt to the executor; the record changes when the attempt starts."""
        definition: JobDefinition = record.definition
        self.in_flight.add(record.id)
        command = definition.commandLine
        self.executor.submit({
            "id": record.id, "attempt": record.attempts + 1, "attempts": definition.retry + 1,
            "argv": definition.argv(), "shell": definition.shell, "cwd": definition.cwd, "env": definition.env,
            "commandText": command if isinstance(command, str) else json.dumps(command),
            "timeout": definition.timeout, "killGrace": definition.killGrace,
            "log": os.path.join(self.log_dir, f"{record.id}.log") if self.log_dir else None,
        })

    def _begin(self, record: JobRecord, t: float, pid: int | None) -> dict[str, Any]:
        self.begun.add(record.id)
        fields: dict[str, Any] = {"attempts": record.attempts + 1, "pid": pid, "reason": None}
        if record.startTimestamp is None:
            fields.update(startDateTime=format_datetime(t), startTimestamp=t)
        else:  # a retry: its process started now; a resume tells it by this from a reused pid
            fields["attemptStartTimestamp"] = t
        return transition(record, JobRunningStatus.Running, **fields)

    def _returned(self, record: JobRecord) -> None:
        """An attempt came back unstarted: it goes first in line again (unless it was cancelled)."""
        self.in_flight.discard(record.id)
        if record.id in self.cancelling:
            self.cancelling.discard(record.id)
            self.writer.record(self._finish(record, JobRunningStatus.Cancelled, time.time(), reason="cancelled"))
        elif record.runningStatus == JobRunningStatus.Running:  # a retry
            heapq.heappush(self.retries, (0.0, record.id))
        elif record.runningStatus == JobRunningStatus.Ready:
            self.ready.appendleft(record.id)

    def _attempt_finished(self, record: JobRecord, event: Event) -> None:
        self.in_flight.discard(record.id)
        self.cancelling.discard(record.id)
        begin: dict[str, Any] = {}
        if record.id not in self.begun and not (event.cancelled and event.startT is None):
            begin = self._begin(record, event.startT or event.t, event.pid)  # a short job: one journal line
        self.begun.discard(record.id)
        definition = record.definition
        if event.cancelled:
            line = self._finish(record, JobRunningStatus.Cancelled, event.t, reason="cancelled")
        elif event.timedOut and record.attempts <= definition.retry:
            wait = definition.retry_wait(record.attempts)
            heapq.heappush(self.retries, (time.monotonic() + wait, record.id))
            line = transition(
                record, JobRunningStatus.Running, pid=None,
                reason=f"attempt {record.attempts} {event.reason}; retry {record.attempts} in {wait:g} s",
            )
        elif event.timedOut:
            line = self._finish(record, JobRunningStatus.RetryOut, event.t, reason=event.reason)
        elif event.exitCode is None:
            # Cut short by something outside the job (its worker died, the batch is stopping).
            line = self._finish(record, JobRunningStatus.Interrupted, event.t, reason=self.interrupted or event.reason)
        else:
            reason = event.reason
            if event.leftovers:
                left = f"left {event.leftovers} process(es) running; they were killed"
                reason = f"{reason}; {left}" if reason else left
            line = self._finish(record, JobRunningStatus.Completed, event.t, exitCode=event.exitCode, reason=reason)
        self.writer.record({**begin, **line})

    def _finish(self, record: JobRecord, status: JobRunningStatus, t: float, *,
                exitCode: int | None = None, reason: str | None = None) -> dict[str, Any]:
        """A job's last transition; returns its journal line."""
        elapsed = None if record.startTimestamp is None else round(max(0.0, t - record.startTimestamp), 6)
        line = transition(
            record, status, exitCode=exitCode, finishDateTime=format_datetime(t), elapsedSeconds=elapsed,
            pid=None, reason=reason,
        )
        if status == JobRunningStatus.Completed and exitCode == 0:
            for dependent in self.dependents[record.id]:
                self.unmet[dependent] -= 1
                if self.unmet[dependent] == 0 and self.records[dependent].runningStatus == JobRunningStatus.Ready:
                    self.ready.append(dependent)
        elif status != JobRunningStatus.Cancelled:
            self.failed = True  # without keepGoing, nothing new starts
        return line

    # --- the end --------------------------------------------------------------------------------

    def stop(self) -> int:
        """Stop the batch: kill running trees, record them (and jobs waiting to retry) Interrupted."""
        self.executor.shutdown()
        self.collect_events()
        now = time.time()
        for _, job_id in self.retries:
            record = self.records[job_id]
            self.writer.record(self._finish(record, JobRunningStatus.Interrupted, now, reason=self.interrupted))
        self.retries = []
        self._close("interrupted")
        return EXIT_INTERRUPTED

    def finish(self) -> int:
        self.executor.shutdown()
        self._close("finished")
        return EXIT_FINISHED

    def _close(self, result: str) -> None:
        update = {"running": False, "result": result, "finishDateTime": format_datetime(time.time())}
        if self.interrupted:
            update["reason"] = self.interrupted
        self.state.supervisor.update(update)
        self.writer.record({"supervisor": update})
        self.writer.close()


# --- start-up ------------------------------------------------------------------------------------


def _read_spec(fd: int) -> tuple[dict[str, Any], bytes]:
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise SystemExit(EXIT_NOT_STARTED)  # the manager went away before sending the batch
        data += chunk
    line, rest = data.split(b"\n", 1)
    return json.loads(line), rest


def _reply(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _owner(path: str) -> dict[str, Any]:
    try:
        state = statefile.load(path)
    except StateFileError:
        return {}
    return state.supervisor if state else {}


def open_batch(spec: dict[str, Any]) -> tuple[statefile.State, statefile.StateWriter, filelock.BaseFileLock, Any]:
    """Take the lock, read the earlier state (if any), plan the resume, write the first snapshot.

    Also returns the basis of the earlier state, so that a manager that planned from the same
    picture need not read the new snapshot back."""
    path = spec["stateFile"]
    lock = filelock.FileLock(statefile.lock_path(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        owner = _owner(path)
        raise _Refused({"error": "locked", "pid": owner.get("pid"), "host": owner.get("host")}) from None
    try:
        old = statefile.load(path)
        options = spec["options"]
        if options.get("logOutputDirectory"):
            os.makedirs(options["logOutputDirectory"], exist_ok=True)
    except StateFileError as error:
        raise _Refused({"error": "state", "problem": error.problem}) from None
    except OSError as error:
        raise _Refused({"error": "log", "problem": f"cannot create logOutputDirectory: {error}"}) from None
    definitions = [JobDefinition.from_json(job["id"], job) for job in spec["jobs"]]
    plan = resume.plan(definitions, old)
    for pid, started, grace in plan.orphans:
        proctree.kill_job_tree(pid, started, grace)
    supervisor = {
        **statefile.supervisor_identity(), "running": True, "result": None,
        "startDateTime": format_datetime(time.time()), "finishDateTime": None,
    }
    state = statefile.State(
        path=path, generation=old.generation if old else 0, supervisor=supervisor, options=options,
        records=plan.records,
    )
    writer = statefile.StateWriter(path, state)
    writer.start()
    return state, writer, lock, statefile.basis(old)


class _Refused(Exception):
    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the handlers are installed
    owner = os.getppid()  # read first: if the owner dies while we start, getppid() changes
    spec, inbox = _read_spec(0)
    # Workers start now: their interpreters start up while the batch is planned and written down.
    max_workers = int(spec["options"]["maxWorkers"])
    executor = LocalProcessPool(selectors.DefaultSelector(), max_workers)
    executor.prepare(min(max_workers, len(spec["jobs"])))
    try:
        state, writer, lock, old_basis = open_batch(spec)
    except _Refused as refused:
        _reply(refused.reply)
        raise SystemExit(EXIT_NOT_STARTED) from None
    del spec["jobs"]  # the records hold them now; a 100,000-job spec is about 100 MB of dicts
    supervisor = Supervisor(state, writer, spec["options"], 0, inbox, executor, owner)
    supervisor.cancel(spec.get("cancel") or [])  # cancelled before the batch started
    _reply({"ok": True, "pid": os.getpid(), "generation": state.generation, "basis": old_basis})
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nobody reads our stdout any more; a stray write must not block
    try:
        code = supervisor.run()
    finally:
        lock.release()
    sys.exit(code)


if __name__ == "__main__":
    main()
