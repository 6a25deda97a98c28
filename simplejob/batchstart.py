"""A batch's start, in the supervisor process: take the state file's lock, read the earlier state,
plan the resume (kill what an earlier, dead supervisor left running), write the first snapshot.

supervisor.main() calls open_batch() and sends the manager its reply; a Refused start is
reported to the manager and nothing is written.
"""

from __future__ import annotations

import os
import time
from typing import Any

import filelock
import psutil

from . import resume, statefile, statewriter
from .errors import StateFileError, StateFileLocked
from .model import JobDefinition, format_datetime
from .protocol import BatchSpec, SupervisorReply
from .workers import proctree


class Refused(Exception):
    """The batch cannot start; reply says why (sent to the manager)."""

    def __init__(self, reply: SupervisorReply) -> None:
        self.reply = reply


def _owner() -> dict[str, Any]:
    """The command line and working directory of the process that owns the batch (our parent, the
    JobManager's process), for a person reading the state or its report: what ran this batch."""
    try:
        owner = psutil.Process(os.getppid())
        return {"ownerCommandLine": owner.cmdline(), "ownerCwd": owner.cwd()}
    except psutil.Error:
        return {"ownerCommandLine": None, "ownerCwd": None}


def stop_orphan(pid: int, started: float | None, grace: float) -> str | None:
    """Kill what an earlier, dead supervisor left running of a job, if pid is still that job's
    process (same pid and start time); never a process that is not the job's. Returns what was
    done, for the job's reason, or None if the process is simply gone."""
    if started is None:
        if not psutil.pid_exists(pid):
            return None
        return (
            f"an earlier run recorded it running as pid {pid} but not when that process started; "
            f"pid {pid} was left alone (it cannot be told from another process that reused the pid)"
        )
    if proctree.find_process(pid, started) is None:
        if not psutil.pid_exists(pid):
            return None
        return f"an earlier run recorded it running as pid {pid}, which is now another process; it was left alone"
    proctree.kill_job_tree(pid, started, grace)
    return f"an earlier run left it running (pid {pid}); that process tree was killed before this run"


def open_batch(
    spec: BatchSpec,
) -> tuple[statefile.State, statewriter.StateWriter, filelock.BaseFileLock, list[int] | None]:
    """Take the lock, read the earlier state (if any), plan the resume, write the first snapshot.

    Also returns the basis of the earlier state, so that a manager that planned from the same
    picture need not read the new snapshot back."""
    path = spec["stateFile"]
    options = spec["options"]
    try:
        lock = statefile.acquire_lock(path)
    except StateFileLocked as locked:
        raise Refused({"error": "locked", "pid": locked.pid, "host": locked.host}) from None
    except StateFileError as error:
        raise Refused({"error": "state", "problem": error.problem}) from None
    try:
        old = statefile.load(path)
        if options["logOutputDirectory"]:
            os.makedirs(options["logOutputDirectory"], mode=0o700, exist_ok=True)
    except StateFileError as error:
        lock.release()
        raise Refused({"error": "state", "problem": error.problem}) from None
    except OSError as error:
        lock.release()
        raise Refused({"error": "log", "problem": f"cannot create logOutputDirectory: {error}"}) from None
    definitions = [JobDefinition.from_spec(job["id"], job) for job in spec["jobs"]]
    plan = resume.plan(definitions, old)
    for job_id, pid, started, grace in plan.orphans:
        reason = stop_orphan(pid, started, grace)
        if reason is not None and job_id in plan.records:
            plan.records[job_id].reason = reason
    supervisor = {
        **statefile.supervisor_identity(),
        **_owner(),
        "running": True,
        "result": None,
        "startDateTime": format_datetime(time.time()),
        "finishDateTime": None,
    }
    state = statefile.State(
        path=path,
        generation=old.generation if old else 0,
        supervisor=supervisor,
        options=dict(options),
        records=plan.records,
    )
    writer = statewriter.StateWriter(path, state)
    writer.start()
    return state, writer, lock, statefile.basis(old)
