"""The messages between simplejob's processes, defined once.

Every message is one JSON object on one line (pipes.LineReader reads them):

    caller (JobManager) --stdin--> supervisor   BatchSpec, then ControlMessage lines
    supervisor --stdout--> caller                one SupervisorReply line, then nothing
    supervisor --stdin--> worker                 RunMessage (an AttemptSpec plus "op", "after"),
                                                 CancelAttemptMessage, HoldMessage
    worker --stdout--> supervisor                WorkerEvent lines ("started", "finished", "returned")

The TypedDicts say which keys a line holds; the code that builds a message is the only code
that writes its keys by name (the builders below), and the readers index them by the same names.
This module imports nothing of simplejob's: a worker loads it at start-up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

# --- the supervisor's exit status ---------------------------------------------------------------


class SupervisorExit(enum.IntEnum):
    FINISHED = 0  # the batch ran to its end (whatever the jobs' outcomes)
    NOT_STARTED = 2  # it could not start; the reason was sent as a SupervisorReply
    INTERRUPTED = 3  # stopped before the end (Ctrl-C, SIGTERM, the owner gone); see the state's reason
    STATE_NOT_WRITTEN = 4  # the state file could not be written: the batch was stopped; see FatalReply


# --- caller -> supervisor ---------------------------------------------------------------------


class _RequiredOptions(TypedDict):
    maxWorkers: int
    keepGoing: bool
    logOutputDirectory: str | None


class BatchOptions(_RequiredOptions, total=False):
    """The JobManager's options; also the state file's "options" (for information)."""

    targets: list[str]  # run only these and what they wait on; absent: every job
    resources: dict[str, float]  # the local pool's capacities (name -> amount at once); absent: none
    dask: str  # run the attempts on the Dask cluster of this scheduler address; absent: the local pool


class BatchOwner(TypedDict):
    """The process that owns the batch (the JobManager's), as it describes itself, for a person
    reading the state: what ran this batch."""

    commandLine: list[str]
    cwd: str | None


class BatchSpec(TypedDict):
    """The first line on the supervisor's stdin: the batch to run."""

    stateFile: str
    options: BatchOptions
    cancel: list[str]  # ids cancelled before the batch started
    jobs: list[dict[str, Any]]  # {"id", <model.DEFINITION_FIELDS>}
    owner: BatchOwner


class CancelMessage(TypedDict):
    op: Literal["cancel"]
    ids: list[str] | None  # None: every job


class StopMessage(TypedDict):
    op: Literal["stop"]
    reason: str  # recorded as the batch's and the interrupted jobs' reason, e.g. "interrupted by SIGTERM"


ControlMessage = CancelMessage | StopMessage


# --- supervisor -> caller ---------------------------------------------------------------------


class StartedReply(TypedDict):
    ok: Literal[True]
    pid: int
    generation: int
    basis: list[int] | None  # what the supervisor planned from (statefile.basis)


class LockedReply(TypedDict):
    error: Literal["locked"]
    pid: int | None  # the owner's, if it recorded itself
    host: str | None


class ProblemReply(TypedDict):
    # the state file cannot be used / the log directory cannot be made / the Dask scheduler cannot be
    # used / a job needs more resources than any Dask worker has (raised as ValueError)
    error: Literal["state", "log", "dask", "resources"]
    problem: str


SupervisorReply = StartedReply | LockedReply | ProblemReply


class FatalReply(TypedDict):
    """The supervisor's last line, after StartedReply, when it stops the batch on its own."""

    fatal: str  # e.g. "cannot write the state file '/x/state.json': No space left on device"


# --- supervisor -> worker ---------------------------------------------------------------------


class AttemptSpec(TypedDict):
    """One attempt of a job, as the executor runs it."""

    id: str
    attempt: int  # 1-based
    attempts: int  # how many there may be (retry + 1)
    argv: str | list[str]  # a list on POSIX unless shell; the string itself with shell or on Windows
    command_text: str  # the command as the user wrote it, for the log
    shell: bool
    cwd: str | None
    env: dict[str, str] | None  # added to the inherited environment
    timeout: float | None  # seconds
    killGrace: float  # seconds between the polite and the forced kill
    log: str | None  # file the output is appended to; None: discarded
    priority: int  # higher first (the local pool ignores it: the Scheduler ordered the attempts)
    resources: dict[str, float] | None  # held while it runs (the local pool's are counted by the Scheduler)


class RunMessage(AttemptSpec):
    op: Literal["run"]
    # None, or the job this attempt waits on, sent to the worker that has it (the last it was
    # given): start only once that one has succeeded; if it did not, or is not here, give it back
    after: str | None


def run_message(spec: AttemptSpec, after: str | None = None) -> RunMessage:
    """The line that has a worker run an attempt (the local pool's and the Dask task's alike)."""
    return {"op": "run", "after": after, **spec}


class CancelAttemptMessage(TypedDict):
    op: Literal["cancel"]
    id: str


class HoldMessage(TypedDict):
    """Nothing new may start (a job failed, keepGoing is off): give back every waiting attempt
    that is a job's first (retries go on)."""

    op: Literal["hold"]


WorkerCommand = RunMessage | CancelAttemptMessage | HoldMessage


# --- worker -> supervisor ---------------------------------------------------------------------

EventKind = Literal["started", "finished", "returned"]


@dataclass
class Event:
    """Something that happened to a submitted attempt (on the wire: {"ev": kind, <fields>}).

    "started": pid and t (epoch seconds) are set; returned lists the attempts the worker had
        queued behind this one and gives back, unstarted (a worker-to-pool detail: the pool
        turns them into "returned" events).
    "finished": pid and start_t (None if it never started), exit_code (None if it did not exit by
        itself), timed_out, cancelled, reason (words for a failure, or None), leftovers (processes
        it left, killed) and t. An attempt that finishes quickly may have no "started".
    "returned": the attempt was not started; the supervisor schedules it again.
    slot: the executor's slot that runs the attempt (the local pool numbers its workers 0..n-1, a
        replacement of a dead worker taking its number); set by the executor, never sent by a worker.
    """

    kind: EventKind
    id: str
    t: float
    pid: int | None = None
    returned: list[str] | None = None
    start_t: float | None = None
    exit_code: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    reason: str | None = None
    leftovers: int = 0
    slot: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form: only the fields that differ from their defaults (written out: a worker
        sends one or two per job)."""
        data: dict[str, Any] = {"ev": self.kind, "id": self.id, "t": self.t}
        if self.pid is not None:
            data["pid"] = self.pid
        if self.returned is not None:
            data["returned"] = self.returned
        if self.start_t is not None:
            data["start_t"] = self.start_t
        if self.exit_code is not None:
            data["exit_code"] = self.exit_code
        if self.timed_out:
            data["timed_out"] = True
        if self.cancelled:
            data["cancelled"] = True
        if self.reason is not None:
            data["reason"] = self.reason
        if self.leftovers:
            data["leftovers"] = self.leftovers
        if self.slot is not None:
            data["slot"] = self.slot
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        kind = data.pop("ev")
        if kind not in ("started", "finished", "returned"):
            raise ValueError(f"unknown worker event {kind!r}")
        return cls(kind=kind, **data)
