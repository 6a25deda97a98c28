"""The job model: statuses, a job's definition and record, transitions (validation.py checks
the job contexts that become definitions).

Only data lives here (no processes, no files), so that the manager, the supervisor and
the state file all share one definition of what a job is.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from typing import Any, Literal, TypedDict

from . import shellwords
from .dates import format_elapsed

DEFAULT_KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when a job's tree is killed


class JobRunningStatus(enum.IntEnum):
    Ready = 0  # not started (yet): waiting for its dependencies, a worker, or a rerun
    Running = 1  # an attempt is running, or the job waits for its next retry
    Completed = 2  # the command exited; exitCode says how
    RetryOut = 3  # every attempt timed out
    Cancelled = 4  # cancel() stopped it, or stopped it from starting
    Interrupted = 5  # the batch was stopped (Ctrl-C, owner died) while it ran; a resume runs it again


FINISHED = frozenset({JobRunningStatus.Completed, JobRunningStatus.RetryOut, JobRunningStatus.Cancelled})
# Nothing more happens to a job in this status until a resume sets it Ready again.
ENDED = FINISHED | {JobRunningStatus.Interrupted}

# Every status change goes through transition(); anything not listed here is a bug.
ALLOWED = {
    JobRunningStatus.Ready: {JobRunningStatus.Running, JobRunningStatus.Cancelled},
    JobRunningStatus.Running: {
        JobRunningStatus.Running,  # the next attempt of a retried job
        JobRunningStatus.Completed,
        JobRunningStatus.RetryOut,
        JobRunningStatus.Cancelled,
        JobRunningStatus.Interrupted,
    },
    JobRunningStatus.Completed: {JobRunningStatus.Ready},
    JobRunningStatus.RetryOut: {JobRunningStatus.Ready},
    JobRunningStatus.Cancelled: {JobRunningStatus.Ready},
    JobRunningStatus.Interrupted: {JobRunningStatus.Ready},
}

# The fields that define what a job does: a resumed job is skipped only if all are unchanged.
DEFINITION_FIELDS = (
    "commandLine",
    "waiting",
    "timeout",
    "retry",
    "delay",
    "backoff",
    "cwd",
    "env",
    "shell",
    "killGrace",
    "priority",
    "resources",
)
NEWER_DEFINITION_FIELDS = ("priority", "resources")  # added in 0.2: state files of 0.1 lack them
MAX_SECONDS = 1e9  # about 31 years: the longest timeout, delay, kill grace or retry wait


@dataclasses.dataclass(frozen=True, slots=True)
class JobDefinition:
    """What to run, validated. Field names are the job-context keys."""

    id: str
    commandLine: str | list[str]
    waiting: list[str]
    timeout: float | None = None
    retry: int = 0
    delay: float = 0
    backoff: float = 1
    cwd: str | None = None
    env: dict[str, str] | None = None
    shell: bool = False
    killGrace: float = DEFAULT_KILL_GRACE
    priority: int = 0  # among ready jobs, higher starts first
    resources: dict[str, float] | None = None  # name -> amount held while an attempt runs
    # True when env holds the state file's digests of the values (a definition read from a state
    # file), not the values themselves (a definition from entry(), or sent to the supervisor).
    env_digested: bool = dataclasses.field(default=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The state file's form, every field in DEFINITION_FIELDS's order: env values replaced
        by salted digests (see env_digest). Written out (not a loop over the fields): the
        supervisor writes one of these per job in every snapshot."""
        env = self.env
        if env is not None and not self.env_digested:
            env = {name: env_digest(value) for name, value in env.items()}
        return {
            "commandLine": self.commandLine,
            "waiting": self.waiting,
            "timeout": self.timeout,
            "retry": self.retry,
            "delay": self.delay,
            "backoff": self.backoff,
            "cwd": self.cwd,
            "env": env,
            "shell": self.shell,
            "killGrace": self.killGrace,
            "priority": self.priority,
            "resources": self.resources,
        }

    def to_spec(self) -> dict[str, Any]:
        """What the manager sends the supervisor: the fields that differ from their defaults (env
        values in clear); from_spec fills in the rest. Short: 100,000 jobs are one line."""
        spec: dict[str, Any] = {"commandLine": self.commandLine}
        for name, default in _SPEC_DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                spec[name] = value
        return spec

    @classmethod
    def from_spec(cls, job_id: str, data: dict[str, Any]) -> JobDefinition:
        fields = {name: data[name] for name in DEFINITION_FIELDS if name in data}
        return cls(id=job_id, **{"waiting": _NO_WAITING, **fields})

    @classmethod
    def from_json(cls, job_id: str, data: dict[str, Any]) -> JobDefinition:
        """From a state file: env holds digests (a value written by simplejob 0.1 in clear is
        digested now, so that it is not written again)."""
        fields = {name: data[name] for name in DEFINITION_FIELDS if name in data}
        env = fields.get("env")
        if env is not None:
            fields["env"] = {k: v if is_env_digest(v) else env_digest(v) for k, v in env.items()}
        return cls(id=job_id, env_digested=True, **fields)

    def same_as(self, other: JobDefinition) -> bool:
        """not changed_fields(other), in a tenth of the time when neither has an env."""
        if self.env is None and other.env is None:
            return self == other  # (every field but env_digested)
        return not self.changed_fields(other)

    def changed_fields(self, other: JobDefinition) -> list[str]:
        """The definition fields in which other differs (env compared through digests)."""
        changed = [name for name in DEFINITION_FIELDS if name != "env" and getattr(self, name) != getattr(other, name)]
        if not _same_env(self, other):
            changed.append("env")
        return changed

    def argv(self) -> str | list[str]:
        """What the worker passes to subprocess: a list on POSIX, the string itself on Windows."""
        command = self.commandLine
        if isinstance(command, list) or self.shell or os.name == "nt":
            return command
        return shellwords.split(command)

    def retry_wait(self, retry_number: int) -> float:
        """Seconds to wait before retry k (k = 1..retry): delay * backoff**(k-1), at most MAX_SECONDS."""
        if self.delay == 0:
            return 0.0
        try:
            return float(min(MAX_SECONDS, self.delay * self.backoff ** (retry_number - 1)))
        except OverflowError:
            return MAX_SECONDS


# --- env values are secrets: the state file holds salted digests of them -------------------------

_ENV_DIGEST = re.compile(r"blake2b:([0-9a-f]{16}):([0-9a-f]{32})")
_process_salt: bytes | None = None


def env_digest(value: str, salt: bytes | None = None) -> str:
    """ "blake2b:SALT:DIGEST" of an env value. The salt is random per process (each batch run gets
    its own), so equal values in two batches give different digests; a resume compares a new
    value with the digest through the digest's own salt (env_matches)."""
    import hashlib  # here, as hmac below: most batches need neither, and they are slow to import

    global _process_salt
    if salt is None:
        if _process_salt is None:
            _process_salt = os.urandom(8)
        salt = _process_salt
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16, salt=salt).hexdigest()
    return f"blake2b:{salt.hex()}:{digest}"


def is_env_digest(value: str) -> bool:
    return _ENV_DIGEST.fullmatch(value) is not None


def env_matches(digest: str, value: str) -> bool:
    import hmac

    match = _ENV_DIGEST.fullmatch(digest)
    return match is not None and hmac.compare_digest(env_digest(value, bytes.fromhex(match[1])), digest)


def _same_env(a: JobDefinition, b: JobDefinition) -> bool:
    if a.env is None or b.env is None:
        return a.env == b.env
    if set(a.env) != set(b.env):
        return False
    if a.env_digested == b.env_digested:  # both values, or both digests
        return a.env == b.env
    digests, values = (a.env, b.env) if a.env_digested else (b.env, a.env)
    return all(env_matches(digests[name], value) for name, value in values.items())


AttemptResult = Literal["exited", "timedOut", "cancelled", "interrupted"]


class AttemptRecord(TypedDict):
    """One ended attempt of a job: an entry of the state file's "history" (what a timeline draws)."""

    attempt: int  # 1-based, within this run of the job
    startTimestamp: float | None  # epoch seconds when its process started
    finishTimestamp: float  # epoch seconds when it ended
    slot: int | None  # the executor's slot (a worker of the local pool: 0..maxWorkers-1) that ran it
    pid: int | None
    exitCode: int | None  # None unless it exited by itself
    result: AttemptResult
    reason: str | None


@dataclasses.dataclass(slots=True)
class JobRecord:
    """A job's definition plus what happened to it: one entry of the state file's "jobs"."""

    definition: JobDefinition
    runningStatus: JobRunningStatus = JobRunningStatus.Ready
    exitCode: int | None = None
    attempts: int = 0
    startDateTime: str | None = None
    finishDateTime: str | None = None
    elapsedSeconds: float | None = None
    startTimestamp: float | None = None  # time.time() at the first attempt's start; not shown in reports
    pid: int | None = None
    # time.time() at the start of a retry attempt's process (pid): how a resume tells it from another
    # process that reused the pid; the first attempt's is startTimestamp. Left out of the JSON when None.
    attemptStartTimestamp: float | None = None
    reason: str | None = None
    resumed: bool = False
    slot: int | None = None  # the executor's slot of the running (or last) attempt; None if it has none
    # Every ended attempt, in order; a new list on each change (records are copied shallowly).
    history: list[AttemptRecord] = dataclasses.field(default_factory=list)

    STATE_FIELDS = (
        "runningStatus",
        "exitCode",
        "retried",
        "attempts",
        "startDateTime",
        "finishDateTime",
        "elapsedSeconds",
        "startTimestamp",
        "pid",
        "attemptStartTimestamp",
        "reason",
        "resumed",
        "slot",
        "history",
    )

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def retried(self) -> int | None:
        """Retries made; None when the job has no timeout (as documented) or has not run."""
        if self.definition.timeout is None or self.attempts == 0:
            return None
        return self.attempts - 1

    def to_json(self) -> dict[str, Any]:
        """The definition's fields, then STATE_FIELDS in order."""
        return {**self.definition.to_json(), **self.state_json()}

    def state_json(self) -> dict[str, Any]:
        """STATE_FIELDS in order, written out as JobDefinition.to_json is."""
        data: dict[str, Any] = {
            "runningStatus": self.runningStatus.name,
            "exitCode": self.exitCode,
            "retried": self.retried,
            "attempts": self.attempts,
            "startDateTime": self.startDateTime,
            "finishDateTime": self.finishDateTime,
            "elapsedSeconds": self.elapsedSeconds,
            "startTimestamp": self.startTimestamp,
            "pid": self.pid,
        }
        if self.attemptStartTimestamp is not None:  # only retried jobs have one: keep the common entry short
            data["attemptStartTimestamp"] = self.attemptStartTimestamp
        data.update(reason=self.reason, resumed=self.resumed, slot=self.slot, history=self.history)
        return data

    def not_run(self) -> bool:
        """Whether its state is a new record's (the same state_json()), at a fraction of the cost:
        the state writer asks it of every job of a new batch before its first snapshot."""
        return (
            self.runningStatus is JobRunningStatus.Ready
            and self.attempts == 0
            and self.exitCode is None
            and self.startDateTime is None
            and self.finishDateTime is None
            and self.elapsedSeconds is None
            and self.startTimestamp is None
            and self.pid is None
            and self.attemptStartTimestamp is None
            and self.reason is None
            and not self.resumed
            and self.slot is None
            and not self.history
        )

    @classmethod
    def from_json(cls, job_id: str, data: dict[str, Any]) -> JobRecord:
        record = cls(JobDefinition.from_json(job_id, data))
        record.apply({name: data[name] for name in cls.STATE_FIELDS if name in data})
        return record

    def copy(self) -> JobRecord:
        return dataclasses.replace(self)

    def apply(self, update: dict[str, Any]) -> None:
        """Apply a journal line or a state-file entry (field name -> JSON value)."""
        for name, value in update.items():
            if name == "runningStatus":
                value = JobRunningStatus[value]
            elif name not in _APPLIED_FIELDS:
                continue  # derived, or the job's id
            setattr(self, name, value)

    def report(self) -> dict[str, Any]:
        """The documented per-job report (the key "runnigStatus" is spelled as documented), and
        "resumed": true for a job kept, done, from an earlier batch (only then: the documented
        shape is unchanged otherwise)."""
        report = {
            "runnigStatus": self.runningStatus.name,
            "retried": self.retried,
            "exitCode": self.exitCode,
            "startDateTime": self.startDateTime,
            "finishDateTime": self.finishDateTime,
            "elapsedTime": format_elapsed(self.elapsedSeconds),
        }
        if self.resumed:
            report["resumed"] = True
        return report

    def succeeded(self) -> bool:
        """Completed with exit code 0: what a job waiting on this one needs."""
        return self.runningStatus == JobRunningStatus.Completed and self.exitCode == 0

    def failure(self) -> str | None:
        """Why this job counts as an error, or None if it does not."""
        status = self.runningStatus
        if status == JobRunningStatus.Completed:
            return None if self.exitCode == 0 else f"exit code {self.exitCode}"
        if status in (JobRunningStatus.RetryOut, JobRunningStatus.Cancelled, JobRunningStatus.Interrupted):
            return status.name
        return None


# The waiting list of every job sent without one (definitions are frozen and nothing changes a
# waiting list): 100,000 jobs of a fan, 6 MB less in the supervisor.
_NO_WAITING: list[str] = []

# The definition fields to_spec leaves out when they hold their default (commandLine is always sent).
_SPEC_DEFAULTS: dict[str, Any] = {
    "waiting": [],
    **{
        f.name: f.default
        for f in dataclasses.fields(JobDefinition)
        if f.name in DEFINITION_FIELDS and f.default is not dataclasses.MISSING
    },
}


_APPLIED_FIELDS = frozenset(JobRecord.STATE_FIELDS) - {"retried"}  # (retried is derived from attempts)


def transition(record: JobRecord, status: JobRunningStatus, **fields: Any) -> dict[str, Any]:
    """Change a record's status (and other fields); returns the change as a journal line."""
    if status not in ALLOWED[record.runningStatus]:
        raise AssertionError(f"job {record.id!r}: transition {record.runningStatus.name} -> {status.name}")
    record.runningStatus = status
    for name, value in fields.items():  # (state fields only: a record has no other attributes)
        setattr(record, name, value)
    return {"id": record.id, "runningStatus": status.name, **fields}
