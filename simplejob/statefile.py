"""The state file: a JSON snapshot beside an append-only journal of transitions.

    state.json          snapshot: {"schemaVersion", "generation", "journalOffset", "supervisor",
                        "options", "jobs"}; one line per job
    state.json.journal  first line {"schemaVersion", "generation"}; then one JSON object per line,
                        {"id": ..., <changed fields>} or {"supervisor": {<changed fields>}}
    state.json.lock     held (flock) by the supervisor that owns the batch

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

import glob
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from .clock import SYSTEM_CLOCK, Clock
from .errors import StateFileError, StateFileLocked
from .model import JobRecord, JobRunningStatus
from .pipes import write_all

if TYPE_CHECKING:
    import filelock

SCHEMA_VERSION = 1
COMPACT_MIN_INTERVAL = 0.5  # seconds: with the loop's wake-ups, the snapshot lags the journal by < 1 s
COMPACT_COST_SHARE = 20  # wait at least this many times the last compaction's cost between two
FSYNC_INTERVAL = 1.0  # seconds: what a power cut can lose of the journal during a run


def journal_path(path: str) -> str:
    return path + ".journal"


def lock_path(path: str) -> str:
    return path + ".lock"


# One encoder for every line: json.dumps() with non-default options builds a new one per call.
dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def _fsync_directory(path: str) -> None:
    if os.name == "nt":
        return  # Windows cannot open a directory; rename is durable enough there
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: str, content: bytes | Callable[[BinaryIO], None], *, durable: bool) -> None:
    """Write content (bytes, or a function writing to a binary file) to path so that readers see
    the old or the new content, never half."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb", buffering=1 << 20) as f:
        if callable(content):
            content(f)
        else:
            f.write(content)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync_directory(path)


def remove_leftovers(path: str) -> None:
    """Remove the temporary files of writers killed while replacing a file (call with the lock held:
    then every such file belongs to a dead writer)."""
    for pattern in (f"{glob.escape(path)}.tmp.*", f"{glob.escape(journal_path(path))}.tmp.*"):
        for leftover in glob.glob(pattern):
            try:
                os.remove(leftover)
            except OSError:
                pass


def acquire_lock(path: str, *, owner_wait: float = 0.0) -> filelock.BaseFileLock:
    """Take the state file's lock (state.json.lock) without waiting, and return it held.

    The one place the lock is probed: the supervisor holds it for the whole batch; the manager
    takes it for a moment to fail early; move_aside() holds it while renaming. A lock left by a
    dead process is free (flock is released by the kernel). Raises StateFileLocked naming the
    owner recorded in the state (waiting up to owner_wait seconds for a starting owner to record
    itself), or StateFileError if the lock file cannot be created.
    """
    import filelock  # here: readers of the state file (the CLI's status) do not need it

    lock = filelock.FileLock(lock_path(path), timeout=0)
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


def move_aside(path: str) -> str:
    """Rename an unreadable state file (and its journal) to a free name path.unreadable-N; return it.

    Only on the caller's explicit request (JobManager(moveAsideUnreadableState=True)); the lock is
    taken so that a batch that owns the file is never robbed of it.
    """
    lock = acquire_lock(path)
    try:
        number = 1
        while os.path.lexists(f"{path}.unreadable-{number}") or os.path.lexists(
            journal_path(f"{path}.unreadable-{number}")
        ):
            number += 1
        backup = f"{path}.unreadable-{number}"
        if os.path.lexists(journal_path(path)):
            os.rename(journal_path(path), journal_path(backup))
        if os.path.lexists(path):
            os.rename(path, backup)
        _fsync_directory(path)
        return backup
    finally:
        lock.release()


def basis(state: State | None) -> list[int] | None:
    """What a picture of the state was read from: equal bases mean equal pictures."""
    return None if state is None else [state.generation, state.journal_end]


def supervisor_identity() -> dict[str, Any]:
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


def _parse_snapshot(path: str, text: str) -> State:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateFileError(path, f"is not valid JSON ({error}); fix or move it, or use another stateFile") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
        raise StateFileError(path, 'is not a simplejob state file (no "jobs" object); use another stateFile')
    version = data.get("schemaVersion")
    if "schemaVersion" not in data:
        raise StateFileError(path, 'has no "schemaVersion"; it is not a simplejob state file: use another stateFile')
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
        raise StateFileError(
            path,
            f"has schemaVersion {version!r}; this simplejob reads versions up to {SCHEMA_VERSION}: "
            "upgrade simplejob or use another stateFile",
        )
    for key in ("generation", "journalOffset"):
        if not isinstance(data.get(key, 0), int) or isinstance(data.get(key), bool) or data.get(key, 0) < 0:
            raise StateFileError(
                path, f'has "{key}": {data[key]!r}, not an integer >= 0; fix it by hand or use another stateFile'
            )
    for key in ("supervisor", "options"):
        if not isinstance(data.get(key) or {}, dict):
            raise StateFileError(
                path, f'has "{key}": {data[key]!r}, not an object; fix it by hand or use another stateFile'
            )
    job_id = None
    try:
        records = {}
        for job_id, entry in data["jobs"].items():
            records[job_id] = JobRecord.from_json(job_id, entry)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StateFileError(
            path,
            f"has a malformed entry for job {job_id!r} ({error!r}); fix it by hand or use another stateFile",
        ) from None
    return State(
        path=path,
        generation=data.get("generation", 0),
        supervisor=dict(data.get("supervisor") or {}),
        options=dict(data.get("options") or {}),
        records=records,
        schemaVersion=version,
        journalOffset=data.get("journalOffset", 0),
    )


def load(path: str) -> State | None:
    """Read the current state (snapshot plus journal), or None if there is no state file."""
    opened = follow(path)
    if opened is None:
        return None
    state, tail = opened
    tail.close()
    return state


def follow(path: str) -> tuple[State, JournalTail] | None:
    """Read the current state and keep following its journal (JournalTail.read_into)."""
    for _ in range(20):  # a new run starting between reading the two files is retried
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise StateFileError(path, f"cannot be read ({error})") from None
        state = _parse_snapshot(path, text)
        tail = JournalTail(path, state)
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
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        with os.fdopen(os.dup(fd), "rb") as f:
            header = f.readline()
        try:
            head = json.loads(header)
            self.generation = int(head["generation"])
            version = head.get("schemaVersion")
        except (ValueError, KeyError, TypeError, AttributeError):
            os.close(fd)
            raise StateFileError(
                self.path,
                "has no valid header line; it is not a simplejob journal (or was damaged): "
                "fix or remove it (its transitions since the last snapshot are then lost), or use another stateFile",
            ) from None
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            os.close(fd)
            raise StateFileError(
                self.path,
                f"has schemaVersion {version!r}; this simplejob reads versions up to {SCHEMA_VERSION}: "
                "upgrade simplejob or use another stateFile",
            )
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
                    update = json.loads(line)
                    if not isinstance(update, dict):
                        raise TypeError(f"a line must be a JSON object, not {type(update).__name__}")
                    state.apply(update)
                at += len(line) + 1
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StateFileError(
                self.path,
                f"has a malformed line at byte {at} ({error!r}): {line[:200]!r}; "
                "a person edited or damaged it: fix or delete that line, or use another stateFile",
            ) from None
        self.position += end
        state.journal_end = self.position


class StateWriter:
    """The supervisor's side: journal every transition, compact into snapshots, fsync on a schedule.

    start() begins a new generation: a snapshot of everything, then an empty journal.
    """

    def __init__(self, path: str, state: State, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self.state = state
        self.clock = clock
        # id -> the job's encoded snapshot entry (in entry order), re-encoded when dirty
        self.fragments: dict[str, bytes] = dict.fromkeys(state.records, b"")
        self.dirty: set[str] = set(state.records)
        self.pending: list[str] = []
        self.fd: int | None = None
        self.offset = 0  # bytes in the journal
        self.unsynced = False
        self.last_fsync = clock.monotonic()
        self.last_compaction = 0.0
        self.compaction_cost = 0.0
        self.compacted_offset = -1
        self.writing: threading.Thread | None = None  # a snapshot being written in the background
        self.write_error: BaseException | None = None

    def start(self) -> None:
        remove_leftovers(self.path)
        self.state.generation += 1
        self.offset = 0
        self.compact()  # the snapshot comes first: the old journal (older generation) is then ignored
        header = (dumps({"schemaVersion": SCHEMA_VERSION, "generation": self.state.generation}) + "\n").encode()
        replace_atomically(journal_path(self.path), header, durable=True)
        self.fd = os.open(journal_path(self.path), os.O_WRONLY | os.O_APPEND)
        self.offset = len(header)
        self.state.journalOffset = self.compacted_offset = self.offset

    def record(self, line: dict[str, Any]) -> None:
        """Queue a transition (already applied to the in-memory record) for the journal."""
        self.pending.append(dumps(line))
        if "id" in line:
            self.dirty.add(line["id"])

    def flush(self, *, now: float | None = None) -> None:
        """Append queued lines to the journal in one write: after this they survive our death."""
        if self.pending:
            data = ("\n".join(self.pending) + "\n").encode()
            self.pending.clear()
            self.offset += len(data)
            assert self.fd is not None, "flush() before start()"
            write_all(self.fd, data)
            self.unsynced = True
        now = self.clock.monotonic() if now is None else now
        if self.unsynced and now - self.last_fsync >= FSYNC_INTERVAL:
            self.sync(now)

    def sync(self, now: float | None = None) -> None:
        if self.unsynced and self.fd is not None:
            os.fsync(self.fd)
        self.unsynced = False
        self.last_fsync = self.clock.monotonic() if now is None else now

    def persist(self) -> None:
        """What the supervisor calls once per turn: journal what was recorded, and write a
        snapshot in the background when one is due."""
        now = self.clock.monotonic()
        self.flush(now=now)
        if self.compaction_due(now):
            self.compact(background=True)

    def compaction_due(self, now: float) -> bool:
        if self.offset == self.compacted_offset or (self.writing is not None and self.writing.is_alive()):
            return False
        wait = max(COMPACT_MIN_INTERVAL, COMPACT_COST_SHARE * self.compaction_cost)
        return now - self.last_compaction >= wait

    def snapshot_parts(self) -> list[bytes]:
        """The snapshot as pieces to write in order: never one 40 MB string for 100,000 jobs."""
        for job_id in self.dirty:
            record = self.state.records[job_id]
            self.fragments[job_id] = f"  {dumps(job_id)}: {dumps(record.to_json())}".encode()
        self.dirty.clear()
        head = {
            "schemaVersion": SCHEMA_VERSION,
            "generation": self.state.generation,
            "journalOffset": self.state.journalOffset,
            "supervisor": self.state.supervisor,
            "options": self.state.options,
        }
        # Jobs one per line, in entry order: readable with cat, greppable, cheap to rebuild.
        pieces = list(self.fragments.values())
        body: list[bytes] = [b",\n"] * (2 * len(pieces) - 1) if pieces else []
        body[0::2] = pieces
        head_text = json.dumps(head, ensure_ascii=False, indent=1)[:-2]  # without the closing "\n}"
        return [head_text.encode(), b',\n "jobs": {\n', *body, b"\n }\n}\n"]

    def compact(self, *, background: bool = False) -> None:
        """Write a snapshot holding everything journaled so far, durably (it is the base of a resume).

        background: the writing (for big batches tens of megabytes and an fsync) happens in a
        thread while the supervisor goes on scheduling; the pieces were taken before, so the
        snapshot is exactly the journal up to its journalOffset.
        """
        self._join_writing()
        started = self.clock.monotonic()
        if self.fd is not None:
            self.flush(now=started)
        self.state.journalOffset = self.offset
        parts, offset = self.snapshot_parts(), self.offset
        if background:
            self.writing = threading.Thread(target=self._write, args=(parts, offset, started), daemon=True)
            self.writing.start()
        else:
            self._write(parts, offset, started)
            self._join_writing()

    def _write(self, parts: list[bytes], offset: int, started: float) -> None:
        try:
            replace_atomically(self.path, lambda f: f.writelines(parts), durable=True)
        except BaseException as error:  # raised again in the supervisor's thread (_join_writing)
            self.write_error = error
            return
        finished = self.clock.monotonic()
        self.compacted_offset = offset
        self.last_compaction = finished
        self.compaction_cost = finished - started

    def _join_writing(self) -> None:
        if self.writing is not None:
            self.writing.join()
            self.writing = None
        if self.write_error is not None:
            error, self.write_error = self.write_error, None
            raise error

    def close(self) -> None:
        """Final snapshot and journal, both on disk (fsync) before returning."""
        self.flush()
        self.sync()
        self.compact()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
