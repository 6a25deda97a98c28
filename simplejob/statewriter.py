"""Writing the state file (statefile.py describes the format and reads it): the supervisor's
StateWriter, which journals every transition and compacts the journal into snapshots, and the
atomic, durable file replacement it and move_aside() rely on."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring
from typing import Any, BinaryIO

from . import jsonline
from .clock import SYSTEM_CLOCK, Clock
from .model import ENDED, JobDefinition, JobRecord
from .pipes import write_all
from .statefile import SCHEMA_VERSION, State, acquire_lock, journal_path

COMPACT_MIN_INTERVAL = 0.5  # seconds: with the loop's wake-ups, the snapshot lags the journal by < 1 s
COMPACT_COST_SHARE = 20  # wait at least this many times the last compaction's cost between two
FSYNC_INTERVAL = 1.0  # seconds: what a power cut can lose of the journal during a run


dumps = jsonline.encoder(ensure_ascii=False, separators=(", ", ": "))  # every line and snapshot piece


_NOT_RUN = dumps(JobRecord(JobDefinition(id="", commandLine="", waiting=[])).state_json())[1:].encode()


def _fsync_directory(path: str) -> None:
    if os.name == "nt":
        return  # Windows cannot open a directory; rename is durable enough there
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TEMPORARY_INFIX = ".tmp-"  # FILE.tmp-XXXXXXXX: a temporary file of FILE's atomic replacement


def replace_atomically(path: str, content: bytes | Callable[[BinaryIO], None], *, durable: bool) -> None:
    """Write content (bytes, or a function writing to a binary file) to path so that readers see
    the old or the new content, never half.

    The temporary file has a name nobody can predict and is created with O_EXCL (mkstemp: never
    through a symlink planted beside the state file) and mode 0600. If writing fails (a full disk,
    a file-size limit), it is removed and the old file stays as it was."""
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=name + TEMPORARY_INFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if durable:
        _fsync_directory(path)


def remove_leftovers(path: str) -> None:
    """Remove the temporary files of writers killed while replacing a file (call with the lock held:
    then every such file belongs to a dead writer). FILE.tmp.PID: the names of simplejob <= 0.1."""
    for name in (path, journal_path(path)):
        for pattern in (f"{glob.escape(name)}{TEMPORARY_INFIX}*", f"{glob.escape(name)}.tmp.*"):
            for leftover in glob.glob(pattern):
                with contextlib.suppress(OSError):
                    os.remove(leftover)


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


class WriteFailed(Exception):
    """A file of the state could not be written (a full disk, a file-size limit, a read-only file
    system): the supervisor stops the batch and reports it; what was written before stays good."""

    def __init__(self, path: str, error: OSError) -> None:
        super().__init__(f"cannot write the state file {path!r}: {error.strerror or error}")
        self.path = path
        self.error = error


@contextlib.contextmanager
def _writing(path: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise WriteFailed(path, error) from error


class StateWriter:
    """The supervisor's side: journal every transition, compact into snapshots, fsync on a schedule.

    start() begins a new generation: a snapshot of everything, then an empty journal.
    """

    def __init__(self, path: str, state: State, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self.state = state
        self.clock = clock
        # A job's snapshot entry in three pieces, in entry order: its id, command and waits, then
        # the rest of its definition (both encoded once: they do not change during a run), then its
        # state (re-encoded when dirty). The rest of a definition is mostly the same for every job:
        # jobs with the same share one piece (100,000 jobs, 15 MB less).
        self.heads: dict[str, bytes] = {}
        self.settings: dict[str, bytes] = {}
        self.shared_settings: dict[bytes, bytes] = {}
        self.tails: dict[str, bytes] = dict.fromkeys(state.records, b"")
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
        with _writing(journal_path(self.path)):
            replace_atomically(journal_path(self.path), header, durable=True)
            self.fd = os.open(journal_path(self.path), os.O_WRONLY | os.O_APPEND)
        self.offset = len(header)
        self.state.journalOffset = self.compacted_offset = self.offset

    def record(self, line: dict[str, Any]) -> None:
        """Queue a transition (already applied to the in-memory record) for the journal. A job
        that ended gets its whole state instead (_record_ended)."""
        record = self.state.records.get(line["id"]) if "id" in line else None
        if record is not None and record.runningStatus in ENDED:
            self._record_ended(record)
            return
        self.pending.append(dumps(line))
        if record is not None:
            self.dirty.add(record.id)

    def _record_ended(self, record: JobRecord) -> None:
        """The journal line of a job that just ended (its record is final for this run): its
        whole state, whose text is also its snapshot piece, encoded once. The piece is made now,
        not at the next compaction, which then only joins pieces: encoding the states of every job
        that ended since the last compaction in one go stopped the loop long enough for the
        workers' queues to run dry (three stalls of 30 ms per worker in a 10,000-job fan)."""
        state = dumps(record.state_json())[1:]  # without its "{"
        self.pending.append(f'{{"id": {dumps(record.id)}, {state}')
        self.tails[record.id] = state.encode()
        self.dirty.discard(record.id)
        self._let_go(record)

    @staticmethod
    def _let_go(record: JobRecord) -> None:
        """An ended job's piece holds its entry: the supervisor lets go of what only the snapshot
        reads, its history and dates (100,000 jobs: 55 MB less)."""
        record.history = []
        record.startDateTime = record.finishDateTime = None

    def flush(self, *, now: float | None = None) -> None:
        """Append queued lines to the journal in one write: after this they survive our death."""
        if self.pending:
            data = ("\n".join(self.pending) + "\n").encode()
            self.pending.clear()
            self.offset += len(data)
            assert self.fd is not None, "flush() before start()"
            with _writing(journal_path(self.path)):
                write_all(self.fd, data)
            self.unsynced = True
        now = self.clock.monotonic() if now is None else now
        if self.unsynced and now - self.last_fsync >= FSYNC_INTERVAL:
            self.sync(now)

    def sync(self, now: float | None = None) -> None:
        if self.unsynced and self.fd is not None:
            with _writing(journal_path(self.path)):
                os.fsync(self.fd)
        self.unsynced = False
        self.last_fsync = self.clock.monotonic() if now is None else now

    def persist(self) -> None:
        """What the supervisor calls once per turn: journal what was recorded, and write a
        snapshot in the background when one is due."""
        if self.write_error is not None:  # the last snapshot, written in the background, failed
            self._join_writing()
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
        if len(self.heads) < len(self.tails):  # the first snapshot: every definition, in entry order
            for record in self.state.records.values():
                self._encode_definition(record)
        for job_id in self.dirty:
            record = self.state.records[job_id]
            # every job that has not run has the same state: one shared piece (100,000 jobs, 20 MB less)
            self.tails[job_id] = _NOT_RUN if record.not_run() else dumps(record.state_json())[1:].encode()
            if record.runningStatus in ENDED:  # (nothing changes an ended job during the run)
                self._let_go(record)
        self.dirty.clear()
        head = {
            "schemaVersion": SCHEMA_VERSION,
            "generation": self.state.generation,
            "journalOffset": self.state.journalOffset,
            "supervisor": self.state.supervisor,
            "options": self.state.options,
        }
        # Jobs one per line, in entry order: readable with cat, greppable, cheap to rebuild.
        heads, settings, tails = self.heads, self.settings, self.tails
        body: list[bytes] = [b",\n"] * (4 * len(tails) - 1) if tails else []
        body[0::4] = heads.values()  # all three in the records' order
        body[1::4] = settings.values()
        body[2::4] = tails.values()
        head_text = json.dumps(head, ensure_ascii=False, indent=1)[:-2]  # without the closing "\n}"
        return [head_text.encode(), b',\n "jobs": {\n', *body, b"\n }\n}\n"]

    def _encode_definition(self, record: JobRecord) -> None:
        text = dumps(record.definition.to_json())
        # to_json() puts commandLine and waiting first; inside a string a quote is escaped
        cut = text.index(', "timeout": ')
        self.heads[record.id] = f"  {encode_basestring(record.id)}: {text[:cut]}".encode()  # dumps(id), cheaper
        rest = f"{text[cut:-1]}, ".encode()
        self.settings[record.id] = self.shared_settings.setdefault(rest, rest)

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
            with _writing(self.path):
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

    def abandon(self) -> None:
        """Stop writing after a WriteFailed: what is on disk (the last good snapshot and the
        journal up to the failed write) is left as it is, for a resume."""
        if self.writing is not None:
            self.writing.join()
            self.writing = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        """Final snapshot and journal, both on disk (fsync) before returning."""
        self.flush()
        self.sync()
        self.compact()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
