"""Validation of job contexts (the dicts given to entry()): every problem of a batch at once, in
one ValueError naming each offending job and the fix. The state file's reader uses the same
rules for the definitions it reads (validate_definition)."""

from __future__ import annotations

import dataclasses
import graphlib
import math
import os
import re
from collections.abc import Iterable
from typing import Any

from . import shellwords
from .model import DEFAULT_KILL_GRACE, DEFINITION_FIELDS, MAX_SECONDS, JobDefinition

# The keys of a job context: its id, the definition's fields, and "waits" (the same as "waiting").
CONTEXT_KEYS = ("id", *DEFINITION_FIELDS[:2], "waits", *DEFINITION_FIELDS[2:])
_KNOWN_KEYS = frozenset(CONTEXT_KEYS)
MAX_ID_LENGTH = 200  # leaves room for ".log" within the usual 255-byte file-name limit
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f]")


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
            first = shellwords.split(commandLine)[0]
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
    """The string values of a context (the id is checked with it) that are not valid Unicode.
    (isascii() first: it is the common case, and far cheaper than an encoding.)"""
    command, cwd, env = context.get("commandLine"), context.get("cwd"), context.get("env")
    if isinstance(command, str) and command.isascii() and cwd is None and env is None:
        return  # the usual job
    texts: list[tuple[str, Any]] = [("commandLine", command), ("cwd", cwd)]
    if isinstance(command, list):
        texts += [("commandLine", arg) for arg in command]
    if isinstance(env, dict):
        texts += [("env", item) for pair in env.items() for item in pair]
    bad = [key for key, text in texts if isinstance(text, str) and not text.isascii() and not is_unicode(text)]
    for key in dict.fromkeys(bad):
        problems.add(name, f"{key} {NOT_UNICODE}")


def id_problem(job_id: Any) -> str | None:
    """Why an id cannot be used (it names the log file <dir>/<id>.log), or None."""
    if not isinstance(job_id, str) or not job_id:
        return f"id must be a non-empty string, not {job_id!r}"
    if not job_id.isascii() and not is_unicode(job_id):
        return f"id {NOT_UNICODE}"
    if job_id in (".", "..") or "/" in job_id or "\\" in job_id or (os.altsep and os.altsep in job_id):
        return "id must not contain a path separator or be '.' or '..' (it names the file <id>.log)"
    if _CONTROL_CHARACTERS.search(job_id):
        return "id must not contain NUL or control characters (it names the file <id>.log)"
    if len(job_id) > MAX_ID_LENGTH // 4 and len(job_id.encode()) > MAX_ID_LENGTH:
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
        unreadable = shellwords.problem(command)  # checked, not split: 100,000 commands, 0.5 s less
        if unreadable is not None:
            problems.add(name, f"commandLine cannot be split ({unreadable}); fix the quoting or use a list")
            return None
        if not command.strip(shellwords.SPACES):
            problems.add(name, "commandLine is empty")
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
    if key not in context:
        return default  # (a valid value: checking it for every job cost entry() 10% of its time)
    value = context[key]
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
    unknown = sorted(context.keys() - _KNOWN_KEYS, key=str)
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
    if "waiting" in definition and definition["waiting"] is None:  # entry() takes it for []; a state file holds []
        problems.add("#0", "waiting must be a list of job ids (strings), not None")
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


def _has_cycle(jobs: list[JobDefinition]) -> bool:
    """Whether the waits have a cycle: take away, again and again, the jobs nothing holds back
    (Kahn's algorithm); what never comes free is on a cycle or waits on one."""
    unmet: dict[str, int] = {}
    dependents: dict[str, list[str]] = {}
    for job in jobs:
        unmet[job.id] = len(job.waiting)
        for wait in job.waiting:
            dependents.setdefault(wait, []).append(job.id)
    free = [job_id for job_id, count in unmet.items() if not count]
    freed = 0
    while free:
        freed += 1
        for dependent in dependents.get(free.pop(), ()):
            unmet[dependent] -= 1
            if not unmet[dependent]:
                free.append(dependent)
    return freed < len(unmet)


def find_cycle(jobs: list[JobDefinition]) -> None:
    """Raise ValueError naming the ids on a cycle, if the waits have one (iterative: any depth).
    Every wait must name one of the jobs."""
    if not _has_cycle(jobs):
        return
    # graphlib names one cycle; it takes three times as long as _has_cycle, so only now
    sorter = graphlib.TopologicalSorter({job.id: job.waiting for job in jobs})
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        cycle = error.args[1]
        raise ValueError(
            "circular waits: " + " -> ".join(shown_id(job_id) for job_id in cycle) + "; remove one of these waits"
        ) from None
