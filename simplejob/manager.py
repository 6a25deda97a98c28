"""JobManager: the documented API, in the caller's process.

It validates the batch, starts the supervisor (simplejob/supervisor.py) on the first
runAllReadyJobs(), and answers completed(), errorOccurred(), jobs and report() from the state
file: it reads the snapshot once, then only what the journal gained since the last call.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter
from typing import Any

import filelock

from . import resume, statefile
from .errors import CalledJobError, SimplejobError, StateFileError, StateFileLocked, SupervisorDied
from .model import FINISHED, JobDefinition, JobRecord, JobRunningStatus, parse_contexts, transition
from .programs import python_command
from .report import Report

# Supervisor exit codes (simplejob.supervisor)
_FINISHED, _NOT_STARTED, _INTERRUPTED = 0, 2, 3
STOP_MARGIN = 5.0  # seconds a stopping supervisor gets beyond the jobs' kill grace
FOLLOW_INTERVAL = 0.05  # seconds between the follower's reads of the journal


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


class BatchInterrupted(SupervisorDied):
    """The batch was stopped (Ctrl-C, SIGTERM, cancel of the owner) before it finished."""

    def __init__(self, pid: int, stateFile: str, reason: str | None) -> None:
        SimplejobError.__init__(
            self, f"the batch was {reason or 'interrupted'} (supervisor pid {pid}); its running jobs were "
            f"killed and recorded as Interrupted in {stateFile!r}: a new JobManager with "
            f"stateFile={stateFile!r} resumes it",
        )
        self.pid, self.returncode, self.stateFile, self.reason = pid, _INTERRUPTED, stateFile, reason


class JobManager:
    """Runs a batch of commands in dependency order, maxWorkers at a time (see README.md)."""

    def __init__(self, logOutputDirectory: str | None = "", stateFile: str | os.PathLike | None = None,
                 maxWorkers: int | None = None, keepGoing: bool = False,
                 moveAsideUnreadableState: bool = False) -> None:
        if maxWorkers is not None and (not isinstance(maxWorkers, int) or isinstance(maxWorkers, bool) or maxWorkers < 1):
            raise ValueError(f"maxWorkers must be an integer >= 1 (or None for the number of CPUs), not {maxWorkers!r}")
        self.logOutputDirectory = os.path.abspath(logOutputDirectory) if logOutputDirectory else ""
        self.maxWorkers = maxWorkers or os.cpu_count() or 1
        self.keepGoing = bool(keepGoing)
        self.moveAsideUnreadableState = bool(moveAsideUnreadableState)  # see docs/state-file.md
        self._explicitStateFile = os.path.abspath(os.fspath(stateFile)) if stateFile else None
        self.stateFile: str | None = self._explicitStateFile
        self._definitions: list[JobDefinition] = []
        self._state: statefile.State | None = None
        self._follower: _Follower | None = None
        self._proc: subprocess.Popen | None = None
        self._error: SupervisorDied | None = None
        self._basis: list[int] | None = None  # what the records were planned from (statefile.basis)
        self._cancelled: list[str] = []  # cancelled before the batch started

    # --- the batch ----------------------------------------------------------------------------

    def entry(self, jobContexts: list[dict[str, Any]]) -> None:
        """Validate and record a batch; it starts nothing (runAllReadyJobs() or run() does).

        With an explicit stateFile left by an earlier batch, jobs that completed with exit code 0
        and are unchanged are kept (not run again): see docs/state-file.md.
        """
        definitions = parse_contexts(jobContexts)
        if self._proc is not None:
            self.join()  # as documented: a new entry() waits for the previous batch
        self._close()
        path = self._explicitStateFile or os.path.join(tempfile.mkdtemp(prefix="simplejob-"), "state.json")
        _check_not_owned(path)
        try:
            old = statefile.load(path)
        except StateFileError as error:
            if not self.moveAsideUnreadableState:
                raise
            backup = statefile.move_aside(path)
            warnings.warn(f"{error}; moved it aside to {backup!r} and starting afresh", stacklevel=2)
            old = None
        self._plan(path, definitions, old)

    def entryFromJson(self, path: str | os.PathLike) -> None:
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
        if self._state is None:
            return
        if self._proc is None:
            self._start()
        self._refresh()
        self._raise_if_died()

    def run(self, interval: float = 1.0) -> None:
        """Run the batch to its end; raise CalledJobError if any job failed.

        interval (seconds) only bounds how long a Ctrl-C may wait to be noticed.
        """
        self.runAllReadyJobs()
        self._wait(interval)
        self._raise_if_failed()

    def rerun(self, interval: float = 1.0) -> None:
        """Run the failed, RetryOut, cancelled and interrupted jobs again, then what waits on them."""
        if self._state is None:
            return
        self.join()
        self._close()
        self._plan(self.stateFile, self._definitions, statefile.load(self.stateFile))
        self.run(interval)

    def cancel(self, id: str | None = None) -> None:
        """Kill the running tree of job id (or of every job) and keep it (them) from starting."""
        if self._state is None:
            return
        if id is not None and id not in self._state.records:
            raise ValueError(f"cancel: no job with id {id!r} in this batch")
        ids = list(self._state.records) if id is None else [id]
        if self._proc is None:  # not started: the supervisor will cancel them before anything starts
            for job_id in ids:
                record = self._state.records[job_id]
                if record.runningStatus == JobRunningStatus.Ready:
                    self._state.apply(transition(record.copy(), JobRunningStatus.Cancelled, reason="cancelled"))
                    self._cancelled.append(job_id)
            return
        message = {"op": "cancel", "ids": ids}
        try:
            self._proc.stdin.write((json.dumps(message) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the supervisor is done or gone

    def join(self) -> None:
        """Wait until no job is running and none can start (returns at once if never started)."""
        if self._proc is not None:
            self._wait(1.0)
            self._raise_if_died()

    # --- questions ------------------------------------------------------------------------------

    def completed(self) -> bool:
        """True when every job finished (Completed, RetryOut or Cancelled)."""
        state = self._refresh(full=False)
        if state is None or self._error is not None:
            return False
        return sum(state.counts[s] for s in FINISHED) == len(state.records)

    def errorOccurred(self) -> bool:
        """True if a job failed (non-zero exit, RetryOut, cancelled, interrupted) or the supervisor died."""
        state = self._refresh(full=False)
        return state is not None and (state.failures > 0 or self._error is not None)

    @property
    def jobs(self) -> list[JobRecord]:
        state = self._refresh()
        return [] if state is None else list(state.records.values())

    def getRunningStatus(self) -> Counter:
        state = self._refresh(full=False)
        return Counter() if state is None else Counter({s.name: n for s, n in state.counts.items() if n})

    def report(self) -> Report:
        """{"results": [{id: {...}}, ...]} in entry order; print() shows it as indented JSON."""
        jobs = self.jobs
        follower = self._follower
        with follower.lock if follower is not None else contextlib.nullcontext():  # one consistent moment
            return Report({"results": [{job.id: job.report()} for job in jobs]})

    # --- internals --------------------------------------------------------------------------------

    def _plan(self, path: str, definitions: list[JobDefinition], old: statefile.State | None) -> None:
        """The picture of a batch about to run: planned from the earlier state, if there is one."""
        self.stateFile = path
        self._definitions = definitions
        self._basis = statefile.basis(old)
        self._cancelled = []
        self._error = None
        self._state = statefile.State(
            path=path, generation=old.generation if old else 0, supervisor={}, options=self._options(),
            records=resume.plan(definitions, old).records,
        )

    def _options(self) -> dict[str, Any]:
        return {"maxWorkers": self.maxWorkers, "keepGoing": self.keepGoing,
                "logOutputDirectory": self.logOutputDirectory or None}

    def _start(self) -> None:
        spec = {
            "stateFile": self.stateFile, "options": self._options(), "cancel": self._cancelled,
            "jobs": [{"id": d.id, **d.to_json()} for d in self._definitions],
        }
        proc = subprocess.Popen(python_command("simplejob.supervisor"), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, close_fds=True)
        try:
            proc.stdin.write((json.dumps(spec) + "\n").encode())
            proc.stdin.flush()
            reply_line = proc.stdout.readline()
        except BrokenPipeError:
            reply_line = b""
        proc.stdout.close()
        reply = json.loads(reply_line) if reply_line.strip() else {"error": "died"}
        if not reply.get("ok"):
            proc.stdin.close()
            code = proc.wait()
            if reply["error"] == "locked":
                raise StateFileLocked(self.stateFile, reply.get("pid"), reply.get("host"))
            if reply["error"] in ("state", "log"):
                raise StateFileError(self.stateFile, reply["problem"])
            raise SupervisorDied(proc.pid, code, self.stateFile)
        self._proc = proc
        if reply.get("basis") == self._basis:  # it planned from the picture we planned from
            self._state.generation, self._state.journalOffset = reply["generation"], 0
            self._state.supervisor.update(pid=reply["pid"])
            tail = statefile.JournalTail(self.stateFile, self._state)
            tail.read_into(self._state)
        else:
            self._state, tail = statefile.follow(self.stateFile)
        self._follower = _Follower(self._state, tail)

    def _refresh(self, *, full: bool = True) -> statefile.State | None:
        """Bring the picture up to date: full reads the journal now; otherwise the follower's
        last read (at most FOLLOW_INTERVAL old) is enough, and the call stays cheap."""
        if self._follower is not None:
            if self._proc.poll() is not None:
                self._ended()
            elif full:
                self._follower.read()
        return self._state

    def _ended(self) -> None:
        """The supervisor exited: read the last of the journal and note how it ended."""
        self._follower.close()
        self._follower = None
        code = self._proc.returncode
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        if code == _INTERRUPTED:
            self._error = BatchInterrupted(self._proc.pid, self.stateFile, self._state.supervisor.get("reason"))
        elif code != _FINISHED:
            self._error = SupervisorDied(self._proc.pid, code, self.stateFile)

    def _wait(self, interval: float) -> None:
        try:
            while self._follower is not None:
                try:
                    self._proc.wait(timeout=max(0.01, interval))
                except subprocess.TimeoutExpired:
                    pass
                self._refresh()
        except KeyboardInterrupt:
            self._stop()
            raise

    def _stop(self) -> None:
        """Stop the batch (Ctrl-C): the supervisor kills the running trees and records them
        Interrupted; wait for that, so the state file says so when the exception propagates."""
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        grace = max((d.killGrace for d in self._definitions), default=0.0)
        try:
            self._proc.wait(timeout=grace + STOP_MARGIN)
        except subprocess.TimeoutExpired:
            return  # it goes on stopping by itself (it saw its stdin close)
        self._refresh()

    def _raise_if_died(self) -> None:
        if self._error is not None:
            raise self._error

    def _raise_if_failed(self) -> None:
        self._raise_if_died()
        failed = {job.id: job.failure() for job in self.jobs if job.failure()}
        if failed:
            raise CalledJobError(failed)

    def _close(self) -> None:
        if self._follower is not None:
            self._follower.close()
            self._follower = None
        self._proc = None

    def __del__(self) -> None:
        follower = getattr(self, "_follower", None)
        if follower is not None:
            follower.abandoned = True
            follower.stopping.set()


def _check_not_owned(path: str) -> None:
    """Fail at once if a live supervisor owns the state file (a dead one's lock is free: flock)."""
    probe = filelock.FileLock(statefile.lock_path(path), timeout=0)
    try:
        probe.acquire()
    except filelock.Timeout:
        owner = {}
        deadline = time.monotonic() + 1.0
        while not owner.get("running") and time.monotonic() < deadline:  # it may be writing its first snapshot
            try:
                state = statefile.load(path)
            except StateFileError:
                state = None
            owner = state.supervisor if state else {}
            if not owner.get("running"):
                time.sleep(0.05)
        raise StateFileLocked(path, owner.get("pid"), owner.get("host")) from None
    except OSError as error:
        raise StateFileError(path, f"cannot create its lock file: {error}") from None
    probe.release()


SimpleJobManager = JobManager
