"""A snapshot read as json.loads reads it, each job's entry made a record as soon as it is read.

json.loads would first build every entry as dicts and lists (about 2.5 kB a job: 250 MB for
100,000 jobs) and the records only after; here each entry goes as soon as its record is made, so
reading a state file costs the records' memory, not twice as much. It is the plain case only: a
top-level object whose "jobs" is an object, no key given twice, nothing after the end, and every
entry passing statecheck. Anything else (a damaged or hand-edited file, an error to report) is
left to json.loads and the checks in their usual order (statefile._parse_snapshot), so what is
read, or what is said to be wrong, is the same either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from .jsonline import DECODE_ERRORS, scan_once
from .statecheck import Invalid

Record = TypeVar("Record")
_BLANKS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, as json's decoder skips it


class _NotPlain(Exception):
    """json.loads reads it."""


def read(text: str, make_record: Callable[[str, Any], Record]) -> tuple[dict[str, Any], dict[str, Record]] | None:
    """The snapshot's top-level fields ("jobs" an empty object) and its jobs made records by
    make_record(id, entry), in file order; None when json.loads must read it."""
    try:
        return _read(text, make_record)
    except (_NotPlain, StopIteration, *DECODE_ERRORS, Invalid):  # (scan_once: StopIteration where no value starts)
        return None


def _read(text: str, make_record: Callable[[str, Any], Record]) -> tuple[dict[str, Any], dict[str, Record]]:
    top: dict[str, Any] = {}
    records: dict[str, Record] | None = None
    at = _skip(text, _expect(text, _skip(text, 0), "{"))
    if text.startswith("}", at):
        at += 1
    else:
        while True:
            key, at = _key(text, at)
            if key == "jobs" and text.startswith("{", at):
                if "jobs" in top:
                    raise _NotPlain
                records, at = _jobs(text, at + 1, make_record)
                top["jobs"] = {}
            elif key == "jobs":
                raise _NotPlain  # "jobs" is not an object: the checks say so
            else:
                top[key], at = scan_once(text, at)  # a repeated key keeps its first place, its last value: json's way
            at, more = _next(text, at)
            if not more:
                break
    if records is None or _skip(text, at) != len(text):
        raise _NotPlain
    return top, records


def _jobs(text: str, at: int, make_record: Callable[[str, Any], Record]) -> tuple[dict[str, Record], int]:
    records: dict[str, Record] = {}
    at = _skip(text, at)
    if text.startswith("}", at):
        return records, at + 1
    while True:
        job_id, at = _key(text, at)
        if job_id in records:
            raise _NotPlain  # json keeps the last entry; make_record must not judge the first
        entry, at = scan_once(text, at)
        records[job_id] = make_record(job_id, entry)  # the entry's dicts go now
        at, more = _next(text, at)
        if not more:
            return records, at


def _key(text: str, at: int) -> tuple[str, int]:
    """An object's key and its colon: the position of its value."""
    if not text.startswith('"', at):
        raise _NotPlain
    key, at = scan_once(text, at)
    return key, _skip(text, _expect(text, _skip(text, at), ":"))


def _next(text: str, at: int) -> tuple[int, bool]:
    """After a member: the next one's position and True, or the position after the "}" and False."""
    at = _skip(text, at)
    if text.startswith(",", at):
        return _skip(text, at + 1), True
    return _expect(text, at, "}"), False


def _expect(text: str, at: int, char: str) -> int:
    if not text.startswith(char, at):
        raise _NotPlain
    return at + 1


def _skip(text: str, at: int) -> int:
    found = _BLANKS.match(text, at)
    assert found is not None  # (it matches the empty string)
    return found.end()
