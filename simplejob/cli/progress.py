"""What `simplejob run` shows while the batch runs.

    JobManager.run() (main thread)          supervisor  --writes-->  state.json + journal
    follow() (a thread)  --reads, never locks-------------------------------^
         |  each tick: the records
         v
    LiveView (a terminal: rich bar, running jobs, failures, ETA; liveview.py)  or  PlainLines (one line per job)

The view reads the state file like `simplejob status` does, instead of asking the JobManager,
so that the main thread stays in JobManager.run(), where Ctrl-C and SIGTERM stop the batch.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Protocol, TextIO

from .. import statefile
from ..errors import StateFileError
from ..model import ENDED, JobRecord, JobRunningStatus
from .describe import last_lines, log_path, outcome, seconds

TICK = 0.1  # seconds between two reads of the state file
TAIL_LINES = 20  # last lines of a failed job's output shown on stderr


class StateWatch:
    """Follows a state file read-only, reading only what its journal gained; switches to a new
    generation (a new run of the batch, or `forget`) when the journal file is replaced."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.state: statefile.State | None = None
        self.tail: statefile.JournalTail | None = None
        self.seen: tuple[int, int] | None = None  # the snapshot's (inode, mtime) when opened

    def _stat(self, path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _stale(self) -> bool:
        if self.tail is None or self.tail.fd is None:  # no journal of this generation yet
            return self._stat(self.path) != self.seen
        journal = self._stat(statefile.journal_path(self.path))
        return journal is None or journal[0] != os.fstat(self.tail.fd).st_ino

    def poll(self) -> statefile.State | None:
        try:
            if self._stale():
                self.close()
                self.seen = self._stat(self.path)
                opened = statefile.follow(self.path)
                if opened is not None:
                    self.state, self.tail = opened
            elif self.tail is not None and self.state is not None:
                self.tail.read_into(self.state)
        except StateFileError:
            pass  # caught between two writes of a new run: the next tick reads it again
        return self.state

    def close(self) -> None:
        if self.tail is not None:
            self.tail.close()
            self.tail = None


class Display(Protocol):
    def update(self, records: dict[str, JobRecord]) -> None: ...

    def stop(self) -> None: ...


def failure_tail(record: JobRecord, log_dir: str | None) -> str:
    """A failed job's last lines, under its id, for stderr."""
    path = log_path(log_dir, record.id)
    lines = last_lines(path, TAIL_LINES)
    where = f"its log: {path}" if path else "no log kept (run without --logOutputDirectory in this form)"
    head = f"--- {record.id}: {outcome(record)}" + (
        f" ({record.reason})" if record.reason and not record.reason.startswith("exit code") else ""
    )
    body = "".join(f"  | {line}\n" for line in lines) if lines else "  (no output)\n"
    return f"{head}; last lines, {where}\n{body}" if lines else f"{head}; {where}\n{body}"


class Tracker:
    """Which of the selected jobs ended since the last tick (each is reported once)."""

    def __init__(self, selected: list[str]) -> None:
        self.selected = selected
        self.reported: set[str] | None = None  # None until the run's first picture
        self.done = 0

    def ended(self, records: dict[str, JobRecord]) -> list[JobRecord]:
        if self.reported is None:  # kept from an earlier run: done from the start, not reported
            self.reported = {i for i in self.selected if i in records and records[i].resumed}
            self.done = len(self.reported)
        new = [
            records[i]
            for i in self.selected
            if i not in self.reported and i in records and records[i].runningStatus in ENDED
        ]
        self.reported.update(r.id for r in new)
        self.done += len(new)
        return new


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (BrokenPipeError, ValueError):
        pass  # `simplejob run ... | head`: the reader left; the batch goes on


class PlainLines:
    """Not a terminal (a pipe, CI): one line per finished job, `[k/n] id: outcome (elapsed)`;
    a failed job's last lines on stderr right after."""

    def __init__(self, out: TextIO, selected: list[str], log_dir: str | None) -> None:
        self.out, self.log_dir = out, log_dir
        self.tracker = Tracker(selected)
        self.total = len(selected)
        self.lock = threading.Lock()

    def update(self, records: dict[str, JobRecord]) -> None:
        with self.lock:
            new = self.tracker.ended(records)
            for number, record in enumerate(new, start=self.tracker.done - len(new) + 1):
                elapsed = seconds(record.elapsedSeconds)
                _write(
                    self.out,
                    f"[{number}/{self.total}] {record.id}: {outcome(record)}"
                    + (f" ({elapsed})" if elapsed else "")
                    + "\n",
                )
                if record.failure() and record.runningStatus != JobRunningStatus.Interrupted:
                    _write(sys.stderr, failure_tail(record, self.log_dir))

    def stop(self) -> None:
        pass


def follow(path: str, base_generation: int, display: Display, stop: threading.Event) -> None:
    """Feed the display from the state file until stop is set (the thread's body)."""
    watch = StateWatch(path)
    try:
        while not stop.wait(TICK):
            state = watch.poll()
            if state is not None and state.generation > base_generation:  # this run's, not the last one's
                display.update(state.records)
    finally:
        watch.close()
