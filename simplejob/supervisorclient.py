"""The manager's side of a running batch: the plan it sends, the supervisor process it starts and
stops, and the follower thread that applies the supervisor's journal to the manager's picture.

JobManager (manager.py) holds at most one BatchPlan (from entry() on) and one SupervisorRun
(once started); the supervisor's own side is supervisor.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

from . import statefile
from .errors import BatchInterrupted, ClusterError, StateFileError, StateFileLocked, StateNotWritten, SupervisorDied
from .model import JobDefinition
from .programs import python_command
from .protocol import (
    BatchOptions,
    BatchOwner,
    BatchSpec,
    ControlMessage,
    FatalReply,
    LockedReply,
    ProblemReply,
    StartedReply,
    SupervisorExit,
    SupervisorReply,
)

STOP_MARGIN = 5.0  # seconds a stopping supervisor gets beyond the jobs' kill grace
FOLLOW_INTERVAL = 0.05  # seconds between the follower's reads of the journal
# The supervisor runs in a session of its own: a signal to the caller's process group (Ctrl-\,
# `timeout -s KILL`, `kill -- -PGID`) reaches the caller alone, and the supervisor, which watches
# the caller (the end of its stdin, its parent pid), stops the batch in order when the caller dies.
# Ctrl-C reaches the caller, whose KeyboardInterrupt stops the batch (SupervisorRun.wait).
if sys.platform == "win32":
    NEW_GROUP = subprocess.CREATE_NEW_PROCESS_GROUP
else:
    NEW_GROUP = 0  # start_new_session instead


class Follower:
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
class BatchPlan:
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
            "jobs": [{"id": d.id, **d.to_spec()} for d in self.definitions],
            "owner": _this_process(),
        }


def _this_process() -> BatchOwner:
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # removed since
        cwd = None
    return {"commandLine": list(sys.orig_argv), "cwd": cwd}


class SupervisorRun:
    """A started batch: the supervisor process, and the follower that applies its journal to the
    plan's picture until the supervisor ends (then error says how it ended, if not as it should)."""

    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan
        self.grace = max((d.killGrace for d in plan.definitions), default=0.0)
        # The local workers it will need: it starts them before it even reads the batch.
        workers = 0 if "dask" in plan.options else min(int(plan.options["maxWorkers"]), len(plan.definitions))
        proc = subprocess.Popen(
            python_command("simplejob.supervisor", str(workers)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=sys.platform != "win32",
            creationflags=NEW_GROUP,
        )
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.stdin = proc, proc.stdin
        try:
            self.stdin.write((json.dumps(plan.spec()) + "\n").encode())
            self.stdin.flush()
            reply_line = proc.stdout.readline()
        except BrokenPipeError:
            reply_line = b""
        self.stdout = proc.stdout  # kept open: a FatalReply may follow at the end
        reply = cast(SupervisorReply, json.loads(reply_line) if reply_line.strip() else {})
        if "ok" not in reply:
            self.stdin.close()
            self.stdout.close()
            refused(reply, proc.wait(), proc.pid, plan.path)
        self._follow(plan, cast(StartedReply, reply))
        self.ended = False
        self.error: SupervisorDied | None = None

    def _follow(self, plan: BatchPlan, reply: StartedReply) -> None:
        """Start following the journal: from the plan's picture if the supervisor planned from the same."""
        state = plan.state
        if reply["basis"] == plan.basis:  # it planned from the picture we planned from
            state.generation, state.journalOffset = reply["generation"], 0
            state.supervisor.update(pid=reply["pid"])
            tail = statefile.JournalTail(plan.path, state)
            tail.drop_history = True
            tail.read_into(state)
        else:
            followed = statefile.follow(plan.path, history=False)
            assert followed is not None, "the supervisor wrote the state file before its reply"
            plan.state, tail = followed
        self.follower = Follower(plan.state, tail)

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
        last = self.stdout.read().strip()  # the supervisor is gone: this ends at once
        self.stdout.close()
        if code == SupervisorExit.INTERRUPTED:
            self.error = BatchInterrupted(self.proc.pid, self.plan.path, self.plan.state.supervisor.get("reason"))
        elif code == SupervisorExit.STATE_NOT_WRITTEN and last:
            fatal: FatalReply = json.loads(last)
            self.error = StateNotWritten(self.proc.pid, code, self.plan.path, fatal["fatal"])
        elif code != SupervisorExit.FINISHED:
            self.error = SupervisorDied(self.proc.pid, code, self.plan.path)

    def wait(self, interval: float) -> None:
        """Wait for the supervisor's end; a KeyboardInterrupt meanwhile stops the batch first.
        Its message, if any, is the recorded reason ("interrupted by SIGTERM"); else SIGINT's."""
        try:
            while not self.ended:
                self._wait_for_end(max(0.01, interval))
                self.refresh(full=True)
        except KeyboardInterrupt as interrupt:
            self.stop(str(interrupt) or "interrupted by SIGINT")
            raise

    def _wait_for_end(self, timeout: float) -> None:
        """Until the supervisor has probably ended, or timeout. On POSIX its stdout ends when it
        exits (after its reply it keeps that pipe only for a last word): select() wakes at once,
        where Popen.wait(timeout) sleeps in steps of up to 50 ms, each batch's end that much late."""
        if sys.platform == "win32":  # select() takes sockets only
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
            return
        readable, _, _ = select.select([self.stdout], [], [], timeout)
        if readable:  # its end (or a last word just before it): the exit follows at once
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1.0)

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


def refused(reply: SupervisorReply, code: int, pid: int, path: str) -> NoReturn:
    """Raise what a supervisor that did not start the batch said (or its death, if it said nothing)."""
    error = cast(dict[str, Any], reply).get("error")
    if error == "locked":
        locked = cast(LockedReply, reply)
        raise StateFileLocked(path, locked["pid"], locked["host"])
    if error == "resources":
        raise ValueError(cast(ProblemReply, reply)["problem"])
    if error == "dask":
        raise ClusterError(cast(ProblemReply, reply)["problem"])
    if error is not None:
        raise StateFileError(path, cast(ProblemReply, reply)["problem"])
    raise SupervisorDied(pid, code, path)
