"""The job model: statuses, a job's definition and record, validation of job contexts, transitions.

Only data lives here (no processes, no files), so that the manager, the supervisor and
the state file all share one definition of what a job is.
"""

from __future__ import annotations

import dataclasses
import enum
import graphlib
import hashlib
import hmac
import math
import os
import re
import shlex
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, TypedDict

DATE_FORMAT = "%Y/%m/%d %H:%M:%S.%f"
DEFAULT_KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when a job's tree is killed


class JobRunningStatus(enum.IntEnum):
    Ready = 0  # not started (yet): waiting for its dependencies, a worker, or a rerun
    Running = 1  # an attempt is running, or the job waits for its next retry
    Completed = 2  # the command exited; exitCode says how
    RetryOut = 3  # every attempt timed out
    Cancelled = 4  # cancel() stopped it, or stopped it from starting
    Interrupted = 5  # the batch was stopped (Ctrl-C, owner died) while it ran; a resume runs it again


FINISHED = frozenset({JobRunningStatus.Completed, JobRunningStatus.RetryOut, JobRunningStatus.Cancelled})

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

CONTEXT_KEYS = (
    "id",
    "commandLine",
    "waiting",
    "waits",
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
MAX_ID_LENGTH = 200  # leaves room for ".log" within the usual 255-byte file-name limit
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f]")


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
        """The state file's form: env values replaced by salted digests (see env_digest)."""
        data = self.to_spec()
        if self.env is not None and not self.env_digested:
            data["env"] = {name: env_digest(value) for name, value in self.env.items()}
        return data

    def to_spec(self) -> dict[str, Any]:
        """The fields as given (env values included): what the manager sends the supervisor."""
        return {name: getattr(self, name) for name in DEFINITION_FIELDS}

    @classmethod
    def from_spec(cls, job_id: str, data: dict[str, Any]) -> JobDefinition:
        return cls(id=job_id, **{name: data[name] for name in DEFINITION_FIELDS if name in data})

    @classmethod
    def from_json(cls, job_id: str, data: dict[str, Any]) -> JobDefinition:
        """From a state file: env holds digests (a value written by simplejob 0.1 in clear is
        digested now, so that it is not written again)."""
        fields = {name: data[name] for name in DEFINITION_FIELDS if name in data}
        env = fields.get("env")
        if env is not None:
            fields["env"] = {k: v if is_env_digest(v) else env_digest(v) for k, v in env.items()}
        return cls(id=job_id, env_digested=True, **fields)

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
        return split_command(command)

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
        data = self.definition.to_json()
        for name in self.STATE_FIELDS:
            value = getattr(self, name)
            data[name] = value.name if name == "runningStatus" else value
        if data["attemptStartTimestamp"] is None:
            del data["attemptStartTimestamp"]  # only retried jobs have one: keep the common entry short
        return data

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
            elif name not in self.STATE_FIELDS or name == "retried":
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


def transition(record: JobRecord, status: JobRunningStatus, **fields: Any) -> dict[str, Any]:
    """Change a record's status (and other fields); returns the change as a journal line."""
    if status not in ALLOWED[record.runningStatus]:
        raise AssertionError(f"job {record.id!r}: transition {record.runningStatus.name} -> {status.name}")
    update = {"runningStatus": status.name, **fields}
    record.apply(update)
    return {"id": record.id, **update}


_second_text: tuple[int, str] = (-1, "")


def split_command(command: str) -> list[str]:
    """shlex.split, without shlex's cost when nothing is quoted or escaped (the usual case)."""
    if not command.isascii() or "'" in command or '"' in command or "\\" in command:
        return shlex.split(command)
    return command.split()


def format_datetime(timestamp: float) -> str:
    """Local time as DATE_FORMAT; the text of the second is reused (jobs end many to a second)."""
    global _second_text
    second = int(timestamp)
    if _second_text[0] != second:
        _second_text = (second, datetime.fromtimestamp(second).strftime("%Y/%m/%d %H:%M:%S"))
    micros = min(999_999, round((timestamp - second) * 1_000_000))
    return f"{_second_text[1]}.{micros:06d}"


def format_elapsed(seconds: float | None) -> str | None:
    """HH:MM:SS.ffffff with six fraction digits (the reference forgot to pad them)."""
    if seconds is None:
        return None
    micros = max(0, round(seconds * 1_000_000))
    whole, fraction = divmod(micros, 1_000_000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{fraction:06d}"


# --- validation -------------------------------------------------------------------------------


class _Problems:
    """Collects validation problems so that one ValueError names every offending id."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, job: str, text: str) -> None:
        self.lines.append(f"job {job}: {text}")

    def raise_if_any(self, what: str) -> None:
        if self.lines:
            shown = self.lines[:20]
            if len(self.lines) > 20:
                shown.append(f"... and {len(self.lines) - 20} more")
            raise ValueError(f"{what}:\n  " + "\n  ".join(shown))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _default_id(commandLine: Any) -> str | None:
    """The base name of the first command-line argument, as documented."""
    try:
        if isinstance(commandLine, list):
            first = commandLine[0]
        elif isinstance(commandLine, str):
            first = split_command(commandLine)[0]
        else:
            return None
    except (ValueError, IndexError):
        return None
    return os.path.basename(first) if isinstance(first, str) else None


SHOWN_ID_LENGTH = 60  # characters of an id quoted in a message; the rest is elided


def shown_id(job_id: str) -> str:
    """An id as messages quote it: repr(), shortened when very long (a 10 kB id buries the message)."""
    if len(job_id) <= SHOWN_ID_LENGTH:
        return repr(job_id)
    return repr(job_id[:SHOWN_ID_LENGTH]) + f"... ({len(job_id)} characters)"


NOT_UNICODE = (
    "holds text that is not valid Unicode (a lone surrogate, as Python gives for a file name in "
    "another encoding); use names in UTF-8"
)


def is_unicode(text: str) -> bool:
    """Whether text can be written as UTF-8 (the state file, the terminal): no lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unicode_problems(name: str, context: dict[str, Any], problems: _Problems) -> None:
    """The string values of a context (the id is checked with it) that are not valid Unicode."""
    command, cwd, env = context.get("commandLine"), context.get("cwd"), context.get("env")
    texts: list[tuple[str, Any]] = [("commandLine", command), ("cwd", cwd)]
    if isinstance(command, list):
        texts += [("commandLine", arg) for arg in command]
    if isinstance(env, dict):
        texts += [("env", item) for pair in env.items() for item in pair]
    for key in dict.fromkeys(key for key, text in texts if isinstance(text, str) and not is_unicode(text)):
        problems.add(name, f"{key} {NOT_UNICODE}")


def id_problem(job_id: Any) -> str | None:
    """Why an id cannot be used (it names the log file <dir>/<id>.log), or None."""
    if not isinstance(job_id, str) or not job_id:
        return f"id must be a non-empty string, not {job_id!r}"
    if not is_unicode(job_id):
        return f"id {NOT_UNICODE}"
    if job_id in (".", "..") or "/" in job_id or "\\" in job_id or (os.altsep and os.altsep in job_id):
        return "id must not contain a path separator or be '.' or '..' (it names the file <id>.log)"
    if _CONTROL_CHARACTERS.search(job_id):
        return "id must not contain NUL or control characters (it names the file <id>.log)"
    if len(job_id.encode()) > MAX_ID_LENGTH:
        return f"id is longer than {MAX_ID_LENGTH} bytes (it names the file <id>.log)"
    return None


def _check_command(name: str, context: dict[str, Any], problems: _Problems) -> str | list[str] | None:
    command = context.get("commandLine")
    shell = context.get("shell", False)
    if command is None or command == "" or command == []:
        problems.add(name, "commandLine is missing or empty; give the command to run")
        return None
    if isinstance(command, list):
        if not all(isinstance(arg, str) for arg in command):
            problems.add(name, "commandLine as a list must hold only strings")
            return None
        if shell:
            problems.add(name, 'with "shell": true, commandLine must be one string')
            return None
        return list(command)
    if not isinstance(command, str):
        problems.add(name, f"commandLine must be a string or a list of strings, not {type(command).__name__}")
        return None
    if not shell and os.name != "nt":
        try:
            if not split_command(command):
                problems.add(name, "commandLine is empty")
                return None
        except ValueError as error:
            problems.add(name, f"commandLine cannot be split ({error}); fix the quoting or use a list")
            return None
    elif not command.strip():
        problems.add(name, "commandLine is empty")
        return None
    return command


def _check_number(
    name: str,
    context: dict[str, Any],
    key: str,
    default: Any,
    problems: _Problems,
    *,
    integer: bool = False,
    positive: bool = False,
    optional: bool = False,
    seconds: bool = False,
) -> Any:
    value = context.get(key, default)
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else _is_number(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        null = " or null" if optional else ""
        problems.add(name, f"{key} must be {kind} {bound}{null}, not {value!r}")
        return default
    if seconds and value > MAX_SECONDS:
        problems.add(name, f"{key} must be at most {MAX_SECONDS:g} seconds (about 31 years), not {value!r}")
        return default
    return value


def _check_resources(name: str, resources: Any, problems: _Problems) -> dict[str, float] | None:
    """{resource name: amount > 0}; an empty mapping is the same as none (None)."""
    if resources is None:
        return None
    if not (
        isinstance(resources, dict)
        and all(isinstance(k, str) and k and _is_number(v) and v > 0 for k, v in resources.items())
    ):
        problems.add(name, f'resources must map names to amounts > 0, e.g. {{"gpu": 1}}, not {resources!r}')
        return None
    return dict(resources) or None


@dataclasses.dataclass
class _Checked:
    """One job context after its own checks: what the checks across jobs (ids, waits) need."""

    id: str | None  # None when the id is unusable
    id_from_command: bool  # no "id" given: it was taken from the command
    name: str  # how messages name the job
    waiting: list[str]
    definition: JobDefinition | None  # None when the context has a problem


def _check_context(index: int, context: Any, problems: _Problems) -> _Checked:
    if not isinstance(context, dict):
        problems.add(f"#{index}", f"a job context must be a dict, not {type(context).__name__}")
        return _Checked(None, False, f"#{index}", [], None)
    unknown = sorted(set(context) - set(CONTEXT_KEYS), key=str)
    job_id = context.get("id")
    id_from_command = job_id is None  # an explicit "" is refused below, like any other bad id
    if id_from_command:
        job_id = _default_id(context.get("commandLine"))
    name = shown_id(job_id) if isinstance(job_id, str) and job_id else f"#{index}"
    if unknown:
        problems.add(name, f"unknown key(s) {unknown}; the known keys are {list(CONTEXT_KEYS)}")
    bad_id = id_problem(job_id)
    if bad_id:
        problems.add(name, bad_id)
    command = _check_command(name, context, problems)

    if "waiting" in context and "waits" in context and context["waiting"] != context["waits"]:
        problems.add(name, 'give "waiting" or "waits" (the same thing), not both')
    waiting = context.get("waiting", context.get("waits")) or []
    if not isinstance(waiting, list) or not all(isinstance(w, str) for w in waiting):
        problems.add(name, f"waiting must be a list of job ids (strings), not {waiting!r}")
        waiting = []
    _unicode_problems(name, context, problems)
    timeout = _check_number(name, context, "timeout", None, problems, positive=True, optional=True, seconds=True)
    retry = _check_number(name, context, "retry", 0, problems, integer=True)
    delay = _check_number(name, context, "delay", 0, problems, seconds=True)
    backoff = _check_number(name, context, "backoff", 1, problems)
    kill_grace = _check_number(name, context, "killGrace", DEFAULT_KILL_GRACE, problems, seconds=True)
    cwd = context.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        problems.add(name, f"cwd must be a directory path (string), not {cwd!r}")
    env = context.get("env")
    if env is not None and not (
        isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        problems.add(name, f"env must map variable names to string values, not {env!r}")
    shell = context.get("shell", False)
    if not isinstance(shell, bool):
        problems.add(name, f"shell must be true or false, not {shell!r}")
    priority = context.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.add(name, f"priority must be an integer (higher starts first), not {priority!r}")
        priority = 0
    resources = _check_resources(name, context.get("resources"), problems)
    usable_id = None if bad_id else job_id
    waiting = list(dict.fromkeys(waiting))
    if usable_id is None or command is None:
        return _Checked(usable_id, id_from_command, name, waiting, None)
    definition = JobDefinition(
        id=usable_id,
        commandLine=command,
        waiting=waiting,
        timeout=timeout,
        retry=retry,
        delay=delay,
        backoff=backoff,
        cwd=cwd,
        env=env,
        shell=shell,
        killGrace=kill_grace,
        priority=priority,
        resources=resources,
    )
    return _Checked(usable_id, id_from_command, name, waiting, definition)


def validate_definition(job_id: Any, definition: dict[str, Any]) -> str | None:
    """Why a job's definition as a state file holds it (DEFINITION_FIELDS, by name) could not have
    come from entry(), or None: the state file's reader trusts nothing it has not checked."""
    problems = _Problems()
    _check_context(0, {"id": job_id, **definition}, problems)
    return "; ".join(line.split(": ", 1)[1] for line in problems.lines) or None


def parse_contexts(contexts: Iterable[dict[str, Any]]) -> list[JobDefinition]:
    """Validate job contexts (the documented dicts) and return their definitions, in entry order.

    Raises ValueError naming every offending id. Runs in linear time without recursion.
    """
    if isinstance(contexts, (str, bytes, dict)) or not isinstance(contexts, Iterable):
        raise ValueError(f"jobContexts must be a list of dicts, not {type(contexts).__name__}")
    problems = _Problems()
    checked = [_check_context(i, context, problems) for i, context in enumerate(contexts)]
    # Checks across jobs run on every usable id even when some context has a problem, so that one
    # error lists everything (a bad commandLine must not hide an unknown wait elsewhere).
    by_id: dict[str, list[_Checked]] = {}
    for job in checked:
        if job.id is not None:
            by_id.setdefault(job.id, []).append(job)
    for same in by_id.values():
        if len(same) > 1:
            taken = sum(job.id_from_command for job in same)
            why = (
                (f' ({taken} of them have no "id": it was taken from the command, the base name of its first argument)')
                if taken
                else ""
            )
            problems.add(same[0].name, f'the id is used by {len(same)} jobs{why}; give each job its own "id"')
    for job in checked:
        unknown_waits = [w for w in job.waiting if w not in by_id]
        if unknown_waits:
            problems.add(job.name, "waits on unknown id(s) " + ", ".join(shown_id(w) for w in unknown_waits))
    problems.raise_if_any("invalid job contexts")
    jobs = [job.definition for job in checked if job.definition is not None]

    find_cycle(jobs)
    return jobs


def find_cycle(jobs: list[JobDefinition]) -> None:
    """Raise ValueError naming the ids on a cycle, if the waits have one (graphlib is iterative)."""
    sorter = graphlib.TopologicalSorter({job.id: job.waiting for job in jobs})
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        cycle = error.args[1]
        raise ValueError(
            "circular waits: " + " -> ".join(shown_id(job_id) for job_id in cycle) + "; remove one of these waits"
        ) from None
