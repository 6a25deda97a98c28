"""A batch's start, in the supervisor process: take the state file's lock, read the earlier state,
plan the resume (kill what an earlier, dead supervisor left running), write the first snapshot.

serve() is the supervisor program (supervisor.main() calls it): it reads the batch from the
manager, chooses the executor, calls open_batch() and sends the manager its reply (a Refused
start is reported and nothing is written), then runs the Supervisor.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

from . import collector, resume, statefile, statewriter
from .dates import format_datetime
from .errors import StateFileError, StateFileLocked
from .model import JobDefinition
from .pipes import LineReader, write_all
from .protocol import BatchSpec, FatalReply, SupervisorExit, SupervisorReply
from .supervisor import Supervisor
from .workers import proctree
from .workers.executor import Executor
from .workers.pool import LocalProcessPool

if TYPE_CHECKING:
    import filelock


class Refused(Exception):
    """The batch cannot start; reply says why (sent to the manager)."""

    def __init__(self, reply: SupervisorReply) -> None:
        self.reply = reply


def stop_orphan(pid: int, started: float | None, grace: float) -> str | None:
    """Kill what an earlier, dead supervisor left running of a job, if pid is still that job's
    process (same pid and start time); never a process that is not the job's. Returns what was
    done, for the job's reason, or None if the process is simply gone."""
    import psutil  # here: a batch with nothing left over from a dead supervisor does not need it

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


def _definitions(jobs: list[dict[str, Any]]) -> list[JobDefinition]:
    """The jobs' definitions, each wait naming its job by the same string as that job's id: the
    decoder makes a new string for every occurrence (100,000 layered jobs: 10 MB less)."""
    ids = {job["id"]: job["id"] for job in jobs}
    for job in jobs:
        waits = job.get("waiting")
        if waits:
            job["waiting"] = [ids.get(wait, wait) for wait in waits]
    return [JobDefinition.from_spec(job["id"], job) for job in jobs]


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
    definitions = _definitions(spec["jobs"])
    plan = resume.plan(definitions, old)
    for job_id, pid, started, grace in plan.orphans:
        reason = stop_orphan(pid, started, grace)
        if reason is not None and job_id in plan.records:
            plan.records[job_id].reason = reason
    supervisor = {
        **statefile.supervisor_identity(),
        "ownerCommandLine": spec["owner"]["commandLine"],
        "ownerCwd": spec["owner"]["cwd"],
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


# --- the supervisor program -----------------------------------------------------------------------


def _reply(message: SupervisorReply) -> None:
    write_all(1, (json.dumps(message) + "\n").encode())


def _executor(spec: BatchSpec, pool: LocalProcessPool) -> Executor:
    """The local pool (its first workers already started), or the Dask cluster the batch asks
    for (checked now: a refusal is a reply)."""
    options = spec["options"]
    max_workers = int(options["maxWorkers"])
    if "dask" not in options:
        pool.max_workers = max_workers
        pool.prepare(min(max_workers, len(spec["jobs"])))
        return pool
    pool.shutdown()
    from .workers import dask_executor  # imports distributed: only for a batch on Dask

    try:
        dask = dask_executor.DaskExecutor(selectors.DefaultSelector(), options["dask"], max_workers)
        options["maxWorkers"] = dask.max_workers
        dask.check_resources({job["id"]: job["resources"] for job in spec["jobs"] if job.get("resources")})
    except dask_executor.DaskProblem as problem:
        if "dask" in locals():
            dask.shutdown()
        _reply({"error": problem.kind, "problem": str(problem)})  # type: ignore[typeddict-item]
        sys.exit(SupervisorExit.NOT_STARTED)
    return dask


def serve() -> NoReturn:
    """Read the batch, answer the manager, run the Supervisor, exit with its code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the handlers are installed
    owner = os.getppid()  # read first: if the owner dies while we start, getppid() changes
    # The workers the manager says the batch needs start first: they run while the batch is read,
    # planned and written down.
    pool = LocalProcessPool(selectors.DefaultSelector(), int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    pool.prepare(pool.max_workers)
    control = LineReader(0)
    line = control.read_line()
    if line is None:
        sys.exit(SupervisorExit.NOT_STARTED)  # the manager went away before sending the batch
    with collector.paused():
        spec: BatchSpec = json.loads(line)
        del line  # a 100,000-job batch is a line of megabytes
        executor = _executor(spec, pool)
        try:
            state, writer, lock, old_basis = open_batch(spec)
        except Refused as refused:
            _reply(refused.reply)
            sys.exit(SupervisorExit.NOT_STARTED)
        except statewriter.WriteFailed as failed:
            _reply({"error": "state", "problem": str(failed)})
            sys.exit(SupervisorExit.NOT_STARTED)
        del spec["jobs"]  # type: ignore[misc]  # the records hold them now; 100,000 jobs are ~100 MB of dicts
        supervisor = Supervisor(state, writer, spec["options"], executor)
    supervisor.listen(control, owner)
    supervisor.cancel(spec["cancel"])  # cancelled before the batch started
    _reply({"ok": True, "pid": os.getpid(), "generation": state.generation, "basis": old_basis})
    report = os.dup(1)  # for a FatalReply; our children do not inherit it
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # a stray write must not reach the manager
    try:
        code = supervisor.run()
    finally:
        lock.release()
    if supervisor.fatal is not None:
        fatal: FatalReply = {"fatal": supervisor.fatal}
        write_all(report, (json.dumps(fatal) + "\n").encode())
    # Everything is on disk, the lock released, the workers gone: exit without the interpreter's
    # teardown, which would free every record one by one while the manager waits for our end.
    sys.stderr.flush()
    os._exit(code)
