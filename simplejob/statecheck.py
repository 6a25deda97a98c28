"""What a state file may hold: every value read from state.json and its journal is checked here
before anything trusts it. A value of the wrong type or out of range, an unknown key or status, a
journal line for an unknown job or a second header is an Invalid, which the reader
(statefile.py) turns into a StateFileError naming the file, the job and the key (or the journal
line's offset); nothing is overwritten.

The rules are tables (key -> test, words for what is expected), one per kind of object, so that
a new key is added in one place together with its type. A job's definition (commandLine,
waiting, timeout, ...) is checked by the same validation as the job contexts given to entry().
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .model import DEFINITION_FIELDS, NEWER_DEFINITION_FIELDS, JobRecord, JobRunningStatus
from .validation import find_cycle, validate_definition

Rule = tuple[Callable[[Any], bool], str]
MAX_SHOWN = 80  # characters of an offending value shown in a message


class Invalid(Exception):
    """A value a state file must not hold; where names the job or object, problem says why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def _integer(value: Any) -> bool:
    return type(value) is int  # not bool: false must not pass as exit code 0


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and math.isfinite(value)


def _text(value: Any) -> bool:
    return type(value) is str


_INF = math.inf

# The tests below are what the tables use, each a single call: the manager checks every journal
# line it follows (a job's end is about 20 values), and a call per value is its cost (a helper
# called from a lambda would be two).


def _text_or_null(value: Any) -> bool:
    return value is None or type(value) is str


def _integer_or_null(value: Any) -> bool:
    return value is None or type(value) is int


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _count_or_null(value: Any) -> bool:
    return value is None or (type(value) is int and value >= 0)


def _pid_or_null(value: Any) -> bool:
    return value is None or (type(value) is int and value > 0)


def _seconds(value: Any) -> bool:
    """A finite number >= 0 (NaN and infinity fail the comparison)."""
    return (type(value) is float or type(value) is int) and 0 <= value < _INF


def _seconds_or_null(value: Any) -> bool:
    return value is None or ((type(value) is float or type(value) is int) and 0 <= value < _INF)


def _flag(value: Any) -> bool:
    return type(value) is bool


_STATUSES = frozenset(status.name for status in JobRunningStatus)

# One entry of a job's "history" (model.AttemptRecord): every key, each of its type.
ATTEMPT_RULES: dict[str, Callable[[Any], bool]] = {
    "attempt": lambda v: type(v) is int and v >= 1,
    "startTimestamp": _seconds_or_null,
    "finishTimestamp": _seconds,
    "slot": _count_or_null,
    "pid": _pid_or_null,
    "exitCode": _integer_or_null,
    "result": lambda v: v in ("exited", "timedOut", "cancelled", "interrupted"),
    "reason": _text_or_null,
}


def _attempts(value: Any) -> bool:
    if type(value) is not list:
        return False
    for entry in value:
        if type(entry) is not dict or entry.keys() != ATTEMPT_RULES.keys():
            return False
        for key, test in ATTEMPT_RULES.items():
            if not test(entry[key]):
                return False
    return True


RECORD_RULES: dict[str, Rule] = {
    "runningStatus": (
        lambda v: type(v) is str and v in _STATUSES,
        f"a status ({', '.join(s.name for s in JobRunningStatus)})",
    ),
    "exitCode": (_integer_or_null, "an integer or null"),
    "retried": (_count_or_null, "an integer >= 0 or null"),
    "attempts": (_count, "an integer >= 0"),
    "startDateTime": (_text_or_null, "a string or null"),
    "finishDateTime": (_text_or_null, "a string or null"),
    "elapsedSeconds": (_seconds_or_null, "a number >= 0 or null"),
    "startTimestamp": (_seconds_or_null, "a number >= 0 (seconds since the epoch) or null"),
    "attemptStartTimestamp": (_seconds_or_null, "a number >= 0 or null"),
    "pid": (_pid_or_null, "a positive integer or null"),
    "reason": (_text_or_null, "a string or null"),
    "resumed": (_flag, "true or false"),
    "slot": (_count_or_null, "an integer >= 0 or null"),
    "history": (_attempts, "a list of ended attempts (see history in docs/state-file.md)"),
}

SUPERVISOR_RULES: dict[str, Rule] = {
    "pid": (_pid_or_null, "a positive integer or null"),
    "host": (_text_or_null, "a string or null"),
    "running": (_flag, "true or false"),
    "result": (lambda v: v in (None, "finished", "interrupted"), '"finished", "interrupted" or null'),
    "startDateTime": (_text_or_null, "a string or null"),
    "finishDateTime": (_text_or_null, "a string or null"),
    "reason": (_text_or_null, "a string or null"),
    "ownerCommandLine": (
        lambda v: v is None or (type(v) is list and all(map(_text, v))),
        "a list of strings or null",
    ),
    "ownerCwd": (_text_or_null, "a string or null"),
}

OPTIONS_RULES: dict[str, Rule] = {
    "maxWorkers": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "keepGoing": (_flag, "true or false"),
    "logOutputDirectory": (_text_or_null, "a string or null"),
    "targets": (lambda v: type(v) is list and all(map(_text, v)), "a list of job ids"),
    "resources": (
        lambda v: type(v) is dict and all(_text(k) and _number(a) and a >= 0 for k, a in v.items()),
        "an object of resource name -> amount >= 0",
    ),
    "dask": (_text, "a Dask scheduler's address"),
}

TOP_RULES: dict[str, Rule] = {
    "schemaVersion": (lambda v: _integer(v) and v == 1, "1 (this simplejob reads version 1)"),
    "generation": (_count, "an integer >= 0"),
    "journalOffset": (_count, "an integer >= 0"),
    "supervisor": (lambda v: type(v) is dict, "an object"),
    "options": (lambda v: type(v) is dict, "an object"),
    "jobs": (lambda v: type(v) is dict, "an object"),
}


HEADER_RULES: dict[str, Rule] = {  # the journal's first line
    "schemaVersion": (lambda v: _integer(v) and v == 1, "1"),
    "generation": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
}


def other_version(data: Any) -> int | None:
    """The schemaVersion of a snapshot or journal header written for another version, or None
    (said apart from other damage: the fix is another simplejob, not an edit)."""
    version = data.get("schemaVersion") if type(data) is dict else None
    return version if _integer(version) and version != 1 else None


def check_journal_header(head: Any) -> None:
    if type(head) is not dict:
        raise Invalid("the header line", f"is a JSON {type(head).__name__}, not an object")
    check_fields(head, HEADER_RULES, "the header line")
    if set(head) != set(HEADER_RULES):
        raise Invalid("the header line", f"has keys {sorted(head)}, not {sorted(HEADER_RULES)}")


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def check_fields(values: dict[str, Any], rules: dict[str, Rule], where: str) -> None:
    for key, value in values.items():
        rule = rules.get(key)
        if rule is None:
            raise Invalid(where, f"unknown key {shown(key)} (the known keys are {', '.join(rules)})")
        test, expected = rule
        if not test(value):
            raise Invalid(where, f"key {key!r} is {shown(value)}, not {expected}")


def check_snapshot(data: Any) -> None:
    """The top of a snapshot: its keys, the supervisor and the options (the jobs: check_entry)."""
    if type(data) is not dict or type(data.get("jobs")) is not dict:
        raise Invalid("the file", 'is not a simplejob state file (no "jobs" object)')
    if "schemaVersion" not in data:
        raise Invalid("the file", 'has no "schemaVersion": it is not a simplejob state file')
    check_fields(data, TOP_RULES, "the file")
    check_fields(data.get("supervisor", {}), SUPERVISOR_RULES, '"supervisor"')
    check_fields(data.get("options", {}), OPTIONS_RULES, '"options"')


def check_entry(job_id: Any, entry: Any) -> JobRecord:
    """One job of the snapshot's "jobs", checked, as a record."""
    where = f"has a malformed entry for job {shown(job_id)}"
    if type(entry) is not dict:
        raise Invalid(where, f"is a JSON {type(entry).__name__}, not an object")
    missing = [key for key in DEFINITION_FIELDS if key not in entry and key not in NEWER_DEFINITION_FIELDS]
    if missing:
        raise Invalid(where, f"has no {', '.join(map(repr, missing))} (a state file holds every definition key)")
    definition = {key: entry[key] for key in DEFINITION_FIELDS if key in entry}
    problem = validate_definition(job_id, definition)
    if problem is not None:
        raise Invalid(where, problem)
    check_fields({k: v for k, v in entry.items() if k not in definition}, RECORD_RULES, where)
    return JobRecord.from_json(job_id, entry)


def check_graph(records: dict[str, JobRecord]) -> None:
    """Every wait names a job of the file, and the waits have no cycle."""
    for record in records.values():
        unknown = [w for w in record.definition.waiting if w not in records]
        if unknown:
            raise Invalid(f"job {shown(record.id)}", f"waits on {shown(unknown)}, which the file does not hold")
    try:
        find_cycle([record.definition for record in records.values()])
    except ValueError as error:
        raise Invalid("the jobs", str(error)) from None


def check_journal_line(line: Any, records: dict[str, JobRecord]) -> None:
    """One line of the journal after its header: a job's changed fields (or whole state), or the supervisor's."""
    if type(line) is not dict:
        raise Invalid("the line", f"is a JSON {type(line).__name__}, not an object")
    if "id" in line:
        job_id = line["id"]
        if type(job_id) is not str or job_id not in records:
            raise Invalid("the line", f"names job {shown(job_id)}, which the state file does not hold")
        for key, value in line.items():
            if key != "id" and not ((rule := RECORD_RULES.get(key)) is not None and rule[0](value)):
                # (the usual line passes that loop, which copies nothing; this one says what is wrong)
                check_fields({k: v for k, v in line.items() if k != "id"}, RECORD_RULES, f"job {shown(job_id)}")
    elif "supervisor" in line and len(line) == 1:
        if type(line["supervisor"]) is not dict:
            raise Invalid("the line", f'has "supervisor": {shown(line["supervisor"])}, not an object')
        check_fields(line["supervisor"], SUPERVISOR_RULES, '"supervisor"')
    elif "schemaVersion" in line or "generation" in line:
        raise Invalid("the line", "is a second header (only the first line is one)")
    else:
        raise Invalid("the line", f'has neither "id" nor "supervisor": {shown(line)}')
