"""JobManager: the documented API, in the caller's process.

It validates the batch, starts the supervisor (simplejob/supervisor.py) on the first
runAllReadyJobs(), and answers completed(), errorOccurred(), jobs and report() from the state
file: it reads the snapshot once, then only what the journal gained since the last call.

A JobManager holds at most one batch: _Plan (from entry() on: the picture of the jobs) and,
once started, _SupervisorRun (the supervisor process and the follower of its journal).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

from . import resume, statefile
from .errors import BatchInterrupted, CalledJobError, StateFileError, StateFileLocked, SupervisorDied
from .model import FINISHED, JobDefinition, JobRecord, JobRunningStatus, parse_contexts, transition
from .programs import python_command
from .protocol import (
    BatchOptions,
    BatchSpec,
    ControlMessage,
    LockedReply,
    ProblemReply,
    StartedReply,
    SupervisorExit,
    SupervisorReply,
)
from .report import Report
from .scheduler import closure

STOP_MARGIN = 5.0  # seconds a stopping supervisor gets beyond the jobs' kill grace
FOLLOW_INTERVAL = 0.05  # seconds between the follower's reads of the journal
OWNER_WAIT = 1.0  # seconds to wait for a starting owner of a locked state file to name itself


class _Follower:
    """Applies the journal to the manager's picture in a background thread, so that a poll
    (completed(), errorOccurred()) costs the same however many jobs ended since the last one."""

    def __init__(self, state: statefile.State, tail: statefile.JournalTail) -> None:
        self.state, self.tail = state, tail
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.abandoned = False
        self.thread = threading.Thread(target=self._run, name="simplejob-follower", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(FOLLOW_INTERVAL):
            self.read()
        if self.abandoned:  # its manager was dropped: nobody will close() us
            with self.lock:
                self.tail.close()

    def read(self) -> None:
        with self.lock:
            if self.tail.fd is not None:
                self.tail.read_into(self.state)

    def close(self) -> None:
        """Stop following, after applying everything written so far."""
        self.stopping.set()
        if threading.current_thread() is not self.thread:
            self.thread.join()
        self.read()
        with self.lock:
            self.tail.close()


@dataclass
class _Plan:
    """A batch from entry() on: what runs, and the picture of its jobs (planned from the earlier state)."""

    path: str
    definitions: list[JobDefinition]
    options: BatchOptions
    state: statefile.State
    basis: list[int] | None  # what the records were planned from (statefile.basis)
    targets: list[str] | None  # run only these and what they wait on
    # With targets, the jobs that must finish for the batch to be complete, and how many other
    # jobs count as finished (they do not change while the batch runs).
    wanted: int = 0
    finished_elsewhere: int = 0
    cancelled: list[str] = field(default_factory=list)  # cancelled before the batch started

    def spec(self) -> BatchSpec:
        return {
            "stateFile": self.path,
            "options": self.options,
            "cancel": self.cancelled,
            "jobs": [{"id": d.id, **d.to_json()} for d in self.definitions],
        }


class _SupervisorRun:
    """A started batch: the supervisor process, and the follower that applies its journal to the
    plan's picture until the supervisor ends (then error says how it ended, if not as it should)."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.grace = max((d.killGrace for d in plan.definitions), default=0.0)
        proc = subprocess.Popen(
            python_command("simplejob.supervisor"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.stdin = proc, proc.stdin
        try:
            self.stdin.write((json.dumps(plan.spec()) + "\n").encode())
            self.stdin.flush()
            reply_line = proc.stdout.readline()
        except BrokenPipeError:
            reply_line = b""
        proc.stdout.close()
        reply = cast(SupervisorReply, json.loads(reply_line) if reply_line.strip() else {})
        if "ok" not in reply:
            self.stdin.close()
            _refused(reply, proc.wait(), proc.pid, plan.path)
        self._follow(plan, cast(StartedReply, reply))
        self.ended = False
        self.error: SupervisorDied | None = None

    def _follow(self, plan: _Plan, reply: StartedReply) -> None:
        """Start following the journal: from the plan's picture if the supervisor planned from the same."""
        state = plan.state
        if reply["basis"] == plan.basis:  # it planned from the picture we planned from
            state.generation, state.journalOffset = reply["generation"], 0
            state.supervisor.update(pid=reply["pid"])
            tail = statefile.JournalTail(plan.path, state)
            tail.read_into(state)
        else:
            followed = statefile.follow(plan.path)
            assert followed is not None, "the supervisor wrote the state file before its reply"
            plan.state, tail = followed
        self.follower = _Follower(plan.state, tail)

    def send(self, message: ControlMessage) -> None:
        try:
            self.stdin.write((json.dumps(message) + "\n").encode())
            self.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the supervisor is done or gone

    def refresh(self, *, full: bool) -> None:
        """Bring the picture up to date: full reads the journal now; otherwise the follower's
        last read (at most FOLLOW_INTERVAL old) is enough, and the call stays cheap."""
        if self.ended:
            return
        if self.proc.poll() is not None:
            self._ended()
        elif full:
            self.follower.read()

    def _ended(self) -> None:
        """The supervisor exited: read the last of the journal and note how it ended."""
        self.follower.close()
        self.ended = True
        self._close_stdin()
        code = self.proc.returncode
        if code == SupervisorExit.INTERRUPTED:
            self.error = BatchInterrupted(self.proc.pid, self.plan.path, self.plan.state.supervisor.get("reason"))
        elif code != SupervisorExit.FINISHED:
            self.error = SupervisorDied(self.proc.pid, code, self.plan.path)

    def wait(self, interval: float) -> None:
        """Wait for the supervisor's end; a KeyboardInterrupt meanwhile stops the batch first.
        Its message, if any, is the recorded reason ("interrupted by SIGTERM"); else SIGINT's."""
        try:
            while not self.ended:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=max(0.01, interval))
                self.refresh(full=True)
        except KeyboardInterrupt as interrupt:
            self.stop(str(interrupt) or "interrupted by SIGINT")
            raise

    def stop(self, reason: str) -> None:
        """Stop the batch: the supervisor kills the running trees and records them Interrupted;
        wait for that, so the state file says so when the caller goes on."""
        self.send({"op": "stop", "reason": reason})
        self._close_stdin()
        try:
            self.proc.wait(timeout=self.grace + STOP_MARGIN)
        except subprocess.TimeoutExpired:
            return  # it goes on stopping by itself (it saw its stdin close)
        self.refresh(full=True)

    def close(self) -> None:
        if not self.ended:
            self.follower.close()

    def abandon(self) -> None:
        """The manager is being dropped: the follower thread closes its journal descriptor itself."""
        if not self.ended:
            self.follower.abandoned = True
            self.follower.stopping.set()

    def _close_stdin(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.stdin.close()


def _refused(reply: SupervisorReply, code: int, pid: int, path: str) -> NoReturn:
    """Raise what a supervisor that did not start the batch said (or its death, if it said nothing)."""
    error = cast(dict[str, Any], reply).get("error")
    if error == "locked":
        locked = cast(LockedReply, reply)
        raise StateFileLocked(path, locked["pid"], locked["host"])
    if error is not None:
        raise StateFileError(path, cast(ProblemReply, reply)["problem"])
    raise SupervisorDied(pid, code, path)


class JobManager:
    """Runs a batch of commands in dependency order, maxWorkers at a time (see README.md)."""

    def __init__(
        self,
        logOutputDirectory: str | None = "",
        stateFile: str | os.PathLike[str] | None = None,
        maxWorkers: int | None = None,
        keepGoing: bool = False,
        moveAsideUnreadableState: bool = False,
    ) -> None:
        if maxWorkers is not None and (
            not isinstance(maxWorkers, int) or isinstance(maxWorkers, bool) or maxWorkers < 1
        ):
            raise ValueError(f"maxWorkers must be an integer >= 1 (or None for the number of CPUs), not {maxWorkers!r}")
        self.logOutputDirectory = os.path.abspath(logOutputDirectory) if logOutputDirectory else ""
        self.maxWorkers = maxWorkers or os.cpu_count() or 1
        self.keepGoing = bool(keepGoing)
        self.moveAsideUnreadableState = bool(moveAsideUnreadableState)  # see docs/state-file.md
        self._given_state_file = os.path.abspath(os.fspath(stateFile)) if stateFile else None
        self.stateFile: str | None = self._given_state_file
        self._plan: _Plan | None = None
        self._run: _SupervisorRun | None = None

    # --- the batch ----------------------------------------------------------------------------

    def entry(self, jobContexts: list[dict[str, Any]], targets: Collection[str] | None = None) -> None:
        """Validate and record a batch; it starts nothing (runAllReadyJobs() or run() does).

        With an explicit stateFile left by an earlier batch, jobs that completed with exit code 0
        and are unchanged are kept (not run again): see docs/state-file.md. targets: run only
        these jobs and what they wait on, transitively (the others are left as they are).
        """
        definitions = parse_contexts(jobContexts)
        target_list = _check_targets(definitions, targets)
        if self._run is not None:
            self.join()  # as documented: a new entry() waits for the previous batch
        self._close()
        path = self._given_state_file or os.path.join(tempfile.mkdtemp(prefix="simplejob-"), "state.json")
        statefile.acquire_lock(path, owner_wait=OWNER_WAIT).release()  # fail now if a live batch owns it
        try:
            old = statefile.load(path)
        except StateFileError as error:
            if not self.moveAsideUnreadableState:
                raise
            backup = statefile.move_aside(path)
            warnings.warn(f"{error}; moved it aside to {backup!r} and starting afresh", stacklevel=2)
            old = None
        self._new_plan(path, definitions, old, target_list)

    def entryFromJson(self, path: str | os.PathLike[str]) -> None:
        """entry() with the jobContexts of a JSON file: {"jobContexts": [...]}."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read jobs file {os.fspath(path)!r}: {error}") from None
        if not isinstance(data, dict) or "jobContexts" not in data:
            raise ValueError(f'jobs file {os.fspath(path)!r} must hold an object {{"jobContexts": [...]}}')
        self.entry(data["jobContexts"])

    def runAllReadyJobs(self) -> None:
        """Start the batch (first call); from then on the supervisor starts each job as soon as it
        can, so later calls only check that the supervisor is alive."""
        if self._plan is None:
            return
        if self._run is None:
            self._run = _SupervisorRun(self._plan)
        self._run.refresh(full=True)
        self._raise_if_died()

    def run(self, interval: float = 1.0) -> None:
        """Run the batch to its end; raise CalledJobError if any job failed.

        interval (seconds) only bounds how long a Ctrl-C may wait to be noticed.
        """
        self.runAllReadyJobs()
        if self._run is not None:
            self._run.wait(interval)
        self._raise_if_failed()

    def rerun(self, interval: float = 1.0) -> None:
        """Run the failed, RetryOut, cancelled and interrupted jobs again, then what waits on them."""
        plan = self._plan
        if plan is None:
            return
        self.join()
        self._close()
        self._new_plan(plan.path, plan.definitions, statefile.load(plan.path), plan.targets)
        self.run(interval)

    def cancel(self, id: str | None = None) -> None:
        """Kill the running tree of job id (or of every job) and keep it (them) from starting."""
        plan = self._plan
        if plan is None:
            return
        records = plan.state.records
        if id is not None and id not in records:
            raise ValueError(f"cancel: no job with id {id!r} in this batch")
        ids = list(records) if id is None else [id]
        if self._run is None:  # not started: the supervisor will cancel them before anything starts
            for job_id in ids:
                record = records[job_id]
                if record.runningStatus == JobRunningStatus.Ready:
                    plan.state.apply(transition(record.copy(), JobRunningStatus.Cancelled, reason="cancelled"))
                    plan.cancelled.append(job_id)
            return
        self._run.send({"op": "cancel", "ids": ids})

    def join(self) -> None:
        """Wait until no job is running and none can start (returns at once if never started)."""
        if self._run is not None:
            self._run.wait(1.0)
            self._raise_if_died()

    # --- questions ------------------------------------------------------------------------------

    def completed(self) -> bool:
        """True when every job finished (Completed, RetryOut or Cancelled)."""
        state = self._refresh(full=False)
        if state is None or self._plan is None or (self._run is not None and self._run.error is not None):
            return False
        finished = sum(state.counts[s] for s in FINISHED)
        if self._plan.targets is None:
            return finished == len(state.records)
        return finished - self._plan.finished_elsewhere == self._plan.wanted

    def errorOccurred(self) -> bool:
        """True if a job failed (non-zero exit, RetryOut, cancelled, interrupted) or the supervisor died."""
        state = self._refresh(full=False)
        died = self._run is not None and self._run.error is not None
        return state is not None and (state.failures > 0 or died)

    @property
    def jobs(self) -> list[JobRecord]:
        state = self._refresh()
        return [] if state is None else list(state.records.values())

    def getRunningStatus(self) -> Counter[str]:
        state = self._refresh(full=False)
        return Counter() if state is None else Counter({s.name: n for s, n in state.counts.items() if n})

    def report(self) -> Report:
        """{"results": [{id: {...}}, ...]} in entry order; print() shows it as indented JSON."""
        jobs = self.jobs
        run = self._run
        with run.follower.lock if run is not None else contextlib.nullcontext():  # one consistent moment
            return Report({"results": [{job.id: job.report()} for job in jobs]})

    # --- internals --------------------------------------------------------------------------------

    def _new_plan(
        self, path: str, definitions: list[JobDefinition], old: statefile.State | None, targets: list[str] | None
    ) -> None:
        """The picture of a batch about to run: planned from the earlier state, if there is one."""
        self.stateFile = path
        options: BatchOptions = {
            "maxWorkers": self.maxWorkers,
            "keepGoing": self.keepGoing,
            "logOutputDirectory": self.logOutputDirectory or None,
        }
        if targets is not None:
            options["targets"] = targets
        state = statefile.State(
            path=path,
            generation=old.generation if old else 0,
            supervisor={},
            options=dict(options),
            records=resume.plan(definitions, old).records,
        )
        plan = _Plan(path, definitions, options, state, statefile.basis(old), targets)
        if targets is not None:
            wanted = closure({d.id: d.waiting for d in definitions}, targets)
            plan.wanted = len(wanted)
            plan.finished_elsewhere = sum(
                1 for job_id, r in state.records.items() if job_id not in wanted and r.runningStatus in FINISHED
            )
        self._plan = plan

    def _refresh(self, *, full: bool = True) -> statefile.State | None:
        if self._run is not None:
            self._run.refresh(full=full)
        return None if self._plan is None else self._plan.state

    def _raise_if_died(self) -> None:
        if self._run is not None and self._run.error is not None:
            raise self._run.error

    def _raise_if_failed(self) -> None:
        self._raise_if_died()
        failed = {job.id: why for job in self.jobs if (why := job.failure())}
        if failed:
            raise CalledJobError(failed)

    def _close(self) -> None:
        if self._run is not None:
            self._run.close()
            self._run = None

    def __del__(self) -> None:
        run = getattr(self, "_run", None)
        if run is not None:
            run.abandon()


def _check_targets(definitions: list[JobDefinition], targets: Collection[str] | None) -> list[str] | None:
    if targets is None:
        return None
    if isinstance(targets, str):
        raise ValueError(f"targets must be a list of job ids, not the string {targets!r}")
    known = {d.id for d in definitions}
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise ValueError(f"targets: no job with id(s) {unknown} in this batch")
    return list(dict.fromkeys(targets))


SimpleJobManager = JobManager
