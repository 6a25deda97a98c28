"""Forgetting: make jobs of a finished or stopped batch run again on its next run.

The state file keeps a job as done (Completed, exit code 0) until its definition changes; to run
it again anyway (its inputs changed outside simplejob), `forget` sets it, and every job that
waits on it (transitively), back to Ready. Done through the state file's own lock, so it is
refused while a batch owns the file, and a batch cannot start while it is done.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

from . import statefile, statewriter
from .errors import StateFileError
from .model import JobRecord, JobRunningStatus
from .scheduler import downstream


@contextlib.contextmanager
def owner_lock(path: str) -> Iterator[None]:
    """Hold the state file's owner lock (as a supervisor does) for the block, or raise
    StateFileLocked naming the owner (statefile.acquire_lock, the one place that probes it)."""
    lock = statefile.acquire_lock(path, owner_wait=1.0)
    try:
        yield
    finally:
        lock.release()


def forget(path: str, ids: Iterable[str] | None) -> list[str]:
    """Set jobs (None: every job) and what waits on them back to Ready; return their ids.

    A job recorded Running by a supervisor that is gone is left so: it runs again anyway, and its
    record tells the next run which leftover processes to kill. Raises ValueError for unknown ids,
    StateFileLocked while a batch runs, StateFileError if there is no readable state file."""
    path = os.path.abspath(path)
    with owner_lock(path):
        state = statefile.load(path)
        if state is None:
            raise StateFileError(path, "does not exist: the batch has not run, there is nothing to forget")
        wanted = list(state.records) if ids is None else list(dict.fromkeys(ids))
        unknown = [job_id for job_id in wanted if job_id not in state.records]
        if unknown:
            raise ValueError(f"no job {', '.join(map(repr, unknown))} in the batch of {path!r}")
        forgotten = []
        waits = {job_id: record.definition.waiting for job_id, record in state.records.items()}
        for job_id in downstream(waits, wanted):
            record = state.records[job_id]
            if record.runningStatus not in (JobRunningStatus.Ready, JobRunningStatus.Running):
                state.records[job_id] = JobRecord(record.definition)
                forgotten.append(job_id)
        if forgotten:
            _rewrite(path, state)
        return forgotten


def _rewrite(path: str, state: statefile.State) -> None:
    """Write the state as a new generation (a snapshot of everything and an empty journal), the
    way a supervisor starts: readers switch to it atomically."""
    writer = statewriter.StateWriter(path, state)
    writer.start()
    writer.close()
