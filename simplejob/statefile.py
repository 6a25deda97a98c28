"""The state file: a JSON snapshot beside an append-only journal of transitions.

    state.json          snapshot: {"schemaVersion", "generation", "journalOffset", "supervisor",
                        "options", "jobs"}; one line per job
    state.json.journal  first line {"schemaVersion", "generation"}; then one JSON object per line,
                        {"id": ..., <changed fields>} (a job that ended: its whole state) or
                        {"supervisor": {<changed fields>}}
    state.json.lock     held (flock) by the supervisor that owns the batch

This module reads it (State, load, follow, JournalTail) and guards it (acquire_lock);
statewriter.py writes it.

A transition costs one appended line, not a rewrite of every job (which would make a batch
quadratic). Each supervisor run (generation) starts a new journal; about once a second (less
often when the snapshot is large, so that compaction stays a small share of the time) it
writes a new snapshot that holds the journal up to journalOffset. The current state is the
snapshot with the rest of the journal of the same generation applied; a journal of an older
generation is already inside the snapshot and is ignored. Files are replaced by writing a
temporary file and renaming it, so a reader never sees half a file, and a partial last journal
line (a writer killed mid-write) is ignored. See docs/state-file.md.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import jsonline, pipes, snapshotreader, statecheck
from .errors import StateFileError, StateFileLocked
from .model import JobRecord, JobRunningStatus

if TYPE_CHECKING:
    import filelock

SCHEMA_VERSION = 1  # what statecheck accepts


def journal_path(path: str) -> str:
    return path + ".journal"


def lock_path(path: str) -> str:
    return path + ".lock"


def acquire_lock(path: str, *, owner_wait: float = 0.0) -> filelock.BaseFileLock:
    """Take the state file's lock (state.json.lock) without waiting, and return it held.

    The one place the lock is probed: the supervisor holds it for the whole batch; the manager
    takes it for a moment to fail early; move_aside() holds it while renaming. A lock left by a
    dead process is free (flock is released by the kernel). Raises StateFileLocked naming the
    owner recorded in the state (waiting up to owner_wait seconds for a starting owner to record
    itself), or StateFileError if the lock file cannot be created.
    """
    import filelock  # here: readers of the state file (the CLI's status) do not need it

    lock = filelock.FileLock(lock_path(path), timeout=0, mode=0o600)  # >= 3.20.1: never through a symlink
    try:
        lock.acquire()
    except filelock.Timeout:
        owner = _recorded_owner(path, owner_wait)
        raise StateFileLocked(path, owner.get("pid"), owner.get("host")) from None
    except OSError as error:
        raise StateFileError(path, f"cannot create its lock file {lock_path(path)!r}: {error}") from None
    return lock


def _recorded_owner(path: str, wait: float) -> dict[str, Any]:
    """The running supervisor a state file names, waiting up to wait seconds for one to appear
    (a starting supervisor holds the lock before its first snapshot names it)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            state = load(path)
        except StateFileError:
            state = None
        owner = state.supervisor if state else {}
        if owner.get("running") or time.monotonic() >= deadline:
            return owner
        time.sleep(0.05)


def basis(state: State | None) -> list[int] | None:
    """What a picture of the state was read from: equal bases mean equal pictures."""
    return None if state is None else [state.generation, state.journal_end]


def supervisor_identity() -> dict[str, Any]:
    import socket  # here: only the supervisor needs it

    return {"pid": os.getpid(), "host": socket.gethostname()}


@dataclass
class State:
    """A whole picture of a batch as read from disk, with running counts for cheap polling."""

    path: str
    generation: int
    supervisor: dict[str, Any]
    options: dict[str, Any]
    records: dict[str, JobRecord]  # in entry order
    journalOffset: int = 0
    schemaVersion: int = SCHEMA_VERSION
    journal_end: int = 0  # how far the journal was read: with generation, what this picture is based on
    counts: Counter[JobRunningStatus] = field(default_factory=Counter)  # runningStatus -> number of jobs
    failures: int = 0  # jobs whose record.failure() is not None

    def __post_init__(self) -> None:
        self.counts = Counter(r.runningStatus for r in self.records.values())
        self.failures = sum(1 for r in self.records.values() if r.failure())

    def apply(self, line: dict[str, Any]) -> None:
        if "id" in line:
            record = self.records.get(line["id"])
            if record is None:
                return
            status, failed = record.runningStatus, record.failure() is not None
            record.apply(line)
            self.counts[status] -= 1
            self.counts[record.runningStatus] += 1
            self.failures += (record.failure() is not None) - failed
        elif "supervisor" in line:
            self.supervisor.update(line["supervisor"])


def open_regular(path: str) -> int | None:
    """Open a file of the state for reading, or None if there is none. Anything but a regular file
    (a FIFO, whose open would block; a directory; a device; a dangling or looping symlink) is a
    StateFileError naming the path: it is never read, and never replaced."""
    try:
        return pipes.open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        if os.path.islink(path):
            raise StateFileError(
                path, f"is a symbolic link to {os.readlink(path)!r}, which does not exist: remove the link"
            ) from None
        return None
    except pipes.NotRegularFile as error:
        raise StateFileError(path, f"is {error.kind}, not a regular file: remove it or use another stateFile") from None
    except OSError as error:
        raise StateFileError(path, f"cannot be opened ({error.strerror}): use a regular file") from None


def _checked_without_history(job_id: Any, entry: Any) -> JobRecord:
    record = statecheck.check_entry(job_id, entry)
    record.history.clear()
    return record


def _parse_snapshot(path: str, text: str, history: bool) -> State:
    make_record = statecheck.check_entry if history else _checked_without_history
    read = snapshotreader.read(text, make_record)  # the plain case, in half the memory
    if read is None:
        try:
            data = json.loads(text)
        except jsonline.DECODE_ERRORS as error:
            raise StateFileError(
                path, f"is not valid JSON ({error}); fix or move it, or use another stateFile"
            ) from None
    else:
        data, records = read
    version = statecheck.other_version(data)
    if version is not None:
        raise _other_version(path, version)
    try:
        statecheck.check_snapshot(data)
        if read is None:
            records = {job_id: make_record(job_id, entry) for job_id, entry in data["jobs"].items()}
        statecheck.check_graph(records)
    except statecheck.Invalid as invalid:
        raise StateFileError(path, f"{invalid}; fix it by hand or use another stateFile") from None
    return State(
        path=path,
        generation=data.get("generation", 0),
        supervisor=dict(data.get("supervisor") or {}),
        options=dict(data.get("options") or {}),
        records=records,
        schemaVersion=data["schemaVersion"],
        journalOffset=data.get("journalOffset", 0),
    )


def _other_version(path: str, version: int) -> StateFileError:
    return StateFileError(
        path,
        f"has schemaVersion {version}; this simplejob reads version {SCHEMA_VERSION}: "
        "use the simplejob that wrote it, or another stateFile",
    )


def load(path: str, *, history: bool = True) -> State | None:
    """Read the current state (snapshot plus journal), or None if there is no state file.
    history=False: each job's history is checked but not kept (the JobManager's picture: it never
    uses it, and at 100,000 jobs it is half the memory of the records)."""
    opened = follow(path, history=history)
    if opened is None:
        return None
    state, tail = opened
    tail.close()
    return state


def follow(path: str, *, history: bool = True) -> tuple[State, JournalTail] | None:
    """Read the current state and keep following its journal (JournalTail.read_into); history as load's."""
    for _ in range(20):  # a new run starting between reading the two files is retried
        fd = open_regular(path)
        if fd is None:
            return None
        try:
            with os.fdopen(fd, "rb") as f:
                text = f.read().decode()
        except (OSError, UnicodeDecodeError) as error:
            raise StateFileError(path, f"cannot be read ({error})") from None
        state = _parse_snapshot(path, text, history)
        tail = JournalTail(path, state)
        tail.drop_history = not history
        if tail.generation is None or tail.generation <= state.generation:
            tail.read_into(state)
            return state, tail
        tail.close()
    # A new run writes its snapshot before its journal, so a newer journal is only ever seen briefly.
    raise StateFileError(
        path,
        f"its journal is of generation {tail.generation} but the snapshot of generation {state.generation} "
        '(was the snapshot edited or restored from a copy?): fix its "generation" or remove the journal '
        "(its transitions since the last snapshot are then lost)",
    )


class JournalTail:
    """Follows one generation's journal, reading only what was appended since the last call."""

    def __init__(self, path: str, state: State) -> None:
        self.path = journal_path(path)
        self.fd: int | None = None
        self.generation: int | None = None
        self.buffer = b""
        self.position = 0
        # True: each job's "history" is checked but not kept (the JobManager's picture: it never uses
        # it, and at 2 kB a job it was a third of the caller's memory; the state file has it).
        self.drop_history = False
        fd = open_regular(self.path)
        if fd is None:
            return
        with os.fdopen(os.dup(fd), "rb") as f:
            header = f.readline()
        try:
            head = json.loads(header)
            version = statecheck.other_version(head)
            if version is not None:
                os.close(fd)
                raise _other_version(self.path, version)
            statecheck.check_journal_header(head)
        except (*jsonline.DECODE_ERRORS, statecheck.Invalid) as error:
            os.close(fd)
            raise StateFileError(
                self.path,
                f"has no valid header line ({error}); it is not a simplejob journal of schemaVersion "
                f"{SCHEMA_VERSION} (or was damaged): fix or remove it (its transitions since the last snapshot "
                "are then lost), or use another stateFile",
            ) from None
        self.generation = head["generation"]
        if self.generation != state.generation:
            os.close(fd)  # older: already inside the snapshot; newer: the caller reads again
            return
        self.position = max(len(header), state.journalOffset)  # file offset of self.buffer's first byte
        os.lseek(fd, self.position, os.SEEK_SET)
        self.fd = fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def read_into(self, state: State) -> None:
        """Apply what was appended since the last call (complete lines only)."""
        if self.fd is None:
            return
        chunks = [self.buffer]
        while True:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1
        self.buffer = data[end:]
        at = self.position  # file offset of the line being applied
        try:
            for line in data[:end].split(b"\n"):
                if line.strip():
                    update = jsonline.decode(line)
                    statecheck.check_journal_line(update, state.records)
                    if self.drop_history:
                        update.pop("history", None)
                    state.apply(update)
                at += len(line) + 1
        except (*jsonline.DECODE_ERRORS, statecheck.Invalid) as error:
            raise StateFileError(
                self.path,
                f"has a malformed line at byte {at} ({error}): {line[:200]!r}; "
                "a person edited or damaged it: fix or delete that line, or use another stateFile",
            ) from None
        self.position += end
        state.journal_end = self.position
