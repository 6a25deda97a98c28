"""JobManager: the documented API, in the caller's process.

It validates the batch, starts the supervisor (simplejob/supervisor.py) on the first
runAllReadyJobs(), and answers completed(), errorOccurred(), jobs and report() from the state
file: it reads the snapshot once, then only what the journal gained since the last call.

A JobManager holds at most one batch: a BatchPlan (from entry() on: the picture of the jobs)
and, once started, a SupervisorRun (the supervisor process and the follower of its journal),
both in supervisorclient.py.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import warnings
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from . import collector, jsonline, resume, statefile
from .errors import CalledJobError, MissingExtra, StateFileError
from .model import FINISHED, JobDefinition, JobRecord, JobRunningStatus, transition
from .protocol import (
    BatchOptions,
)
from .report import Report
from .scheduler import RESOURCE_SLACK, closure
from .supervisorclient import BatchPlan, SupervisorRun
from .validation import parse_contexts, shown_id

OWNER_WAIT = 1.0  # seconds to wait for a starting owner of a locked state file to name itself


class JobManager:
    """Runs a batch of commands in dependency order, maxWorkers at a time (see README.md)."""

    def __init__(
        self,
        logOutputDirectory: str | None = "",
        stateFile: str | os.PathLike[str] | None = None,
        maxWorkers: int | None = None,
        keepGoing: bool = False,
        moveAsideUnreadableState: bool = False,
        resources: Mapping[str, float] | None = None,
        daskScheduler: str | None = None,
    ) -> None:
        """resources: what the local pool's jobs may use at once (name -> amount), e.g.
        {"gpu": 1, "db": 2}. daskScheduler: run the attempts on the Dask cluster of this scheduler
        address (docs/dask.md); its workers' own resources apply there, and maxWorkers defaults to
        the cluster's threads."""
        if maxWorkers is not None and (
            not isinstance(maxWorkers, int) or isinstance(maxWorkers, bool) or maxWorkers < 1
        ):
            raise ValueError(f"maxWorkers must be an integer >= 1 (or None for the number of CPUs), not {maxWorkers!r}")
        self.logOutputDirectory = os.path.abspath(logOutputDirectory) if logOutputDirectory else ""
        self.daskScheduler = _check_dask(daskScheduler)
        # 0 on Dask: the cluster's threads when the batch starts (the supervisor asks the scheduler)
        self.maxWorkers = maxWorkers or (0 if self.daskScheduler else os.cpu_count() or 1)
        self.resources = _check_capacities(resources)
        self.keepGoing = bool(keepGoing)
        self.moveAsideUnreadableState = bool(moveAsideUnreadableState)  # see docs/state-file.md
        self._given_state_file = os.path.abspath(os.fspath(stateFile)) if stateFile else None
        self.stateFile: str | None = self._given_state_file
        self._plan: BatchPlan | None = None
        self._run: SupervisorRun | None = None

    # --- the batch ----------------------------------------------------------------------------

    def entry(self, jobContexts: list[dict[str, Any]], targets: Collection[str] | None = None) -> None:
        """Validate and record a batch; it starts nothing (runAllReadyJobs() or run() does).

        With an explicit stateFile left by an earlier batch, jobs that completed with exit code 0
        and are unchanged are kept (not run again): see docs/state-file.md. targets: run only
        these jobs and what they wait on, transitively (the others are left as they are).
        """
        with collector.paused():
            definitions = parse_contexts(jobContexts)
        if self.daskScheduler is None:
            _check_needs(definitions, self.resources)
        target_list = _check_targets(definitions, targets)
        if self._run is not None:
            self.join()  # as documented: a new entry() waits for the previous batch
        self._close()
        path = self._given_state_file or _temporary_state_file()
        _check_name_length(path)
        if os.path.lexists(statefile.lock_path(path)):  # (without a lock file nobody holds the lock)
            statefile.acquire_lock(path, owner_wait=OWNER_WAIT).release()  # fail now if a live batch owns it
        with collector.paused():
            try:
                old = statefile.load(path, history=False)
            except StateFileError as error:
                if not self.moveAsideUnreadableState:
                    raise
                from .statewriter import move_aside

                backup = move_aside(path)
                warnings.warn(f"{error}; moved it aside to {backup!r} and starting afresh", stacklevel=2)
                old = None
            self._new_plan(path, definitions, old, target_list)

    def entryFromJson(self, path: str | os.PathLike[str]) -> None:
        """entry() with the jobContexts of a JSON file: {"jobContexts": [...]}."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, *jsonline.DECODE_ERRORS) as error:
            raise ValueError(f"cannot read jobs file {os.fspath(path)!r}: {error}") from None
        if not isinstance(data, dict) or "jobContexts" not in data:
            raise ValueError(f'jobs file {os.fspath(path)!r} must hold an object {{"jobContexts": [...]}}')
        self.entry(data["jobContexts"])

    def runAllReadyJobs(self) -> None:
        """Start the batch (first call); from then on the supervisor starts each job as soon as it
        can, so later calls only check that the supervisor is alive."""
        if self._plan is None:
            return
        if self._run is None:
            self._run = SupervisorRun(self._plan)
        self._run.refresh(full=True)
        self._raise_if_died()

    def run(self, interval: float = 1.0) -> None:
        """Run the batch to its end; raise CalledJobError if any job failed.

        interval (seconds) only bounds how long a Ctrl-C may wait to be noticed.
        """
        self.runAllReadyJobs()
        if self._run is not None:
            self._run.wait(interval)
        self._raise_if_failed()

    def rerun(self, interval: float = 1.0) -> None:
        """Run the failed, RetryOut, cancelled and interrupted jobs again, then what waits on them."""
        plan = self._plan
        if plan is None:
            return
        self.join()
        self._close()
        self._new_plan(plan.path, plan.definitions, statefile.load(plan.path, history=False), plan.targets)
        self.run(interval)

    def cancel(self, id: str | None = None) -> None:
        """Kill the running tree of job id (or of every job) and keep it (them) from starting."""
        plan = self._plan
        if plan is None:
            return
        records = plan.state.records
        if id is not None and id not in records:
            raise ValueError(f"cancel: no job with id {id!r} in this batch")
        ids = list(records) if id is None else [id]
        if self._run is None:  # not started: the supervisor will cancel them before anything starts
            for job_id in ids:
                record = records[job_id]
                if record.runningStatus == JobRunningStatus.Ready:
                    plan.state.apply(transition(record.copy(), JobRunningStatus.Cancelled, reason="cancelled"))
                    plan.cancelled.append(job_id)
            return
        self._run.send({"op": "cancel", "ids": ids})

    def join(self) -> None:
        """Wait until no job is running and none can start (returns at once if never started)."""
        if self._run is not None:
            self._run.wait(1.0)
            self._raise_if_died()

    # --- questions ------------------------------------------------------------------------------

    def completed(self) -> bool:
        """True when every job finished (Completed, RetryOut or Cancelled)."""
        state = self._refresh(full=False)
        if state is None or self._plan is None or (self._run is not None and self._run.error is not None):
            return False
        finished = sum(state.counts[s] for s in FINISHED)
        if self._plan.targets is None:
            return finished == len(state.records)
        return finished - self._plan.finished_elsewhere == self._plan.wanted

    def errorOccurred(self) -> bool:
        """True if a job failed (non-zero exit, RetryOut, cancelled, interrupted) or the supervisor died."""
        state = self._refresh(full=False)
        died = self._run is not None and self._run.error is not None
        return state is not None and (state.failures > 0 or died)

    @property
    def jobs(self) -> list[JobRecord]:
        state = self._refresh()
        return [] if state is None else list(state.records.values())

    def getRunningStatus(self) -> Counter[str]:
        state = self._refresh(full=False)
        return Counter() if state is None else Counter({s.name: n for s, n in state.counts.items() if n})

    def report(self) -> Report:
        """{"results": [{id: {...}}, ...]} in entry order; print() shows it as indented JSON."""
        jobs = self.jobs
        run = self._run
        with run.follower.lock if run is not None else contextlib.nullcontext():  # one consistent moment
            return Report({"results": [{job.id: job.report()} for job in jobs]})

    # --- internals --------------------------------------------------------------------------------

    def _new_plan(
        self, path: str, definitions: list[JobDefinition], old: statefile.State | None, targets: list[str] | None
    ) -> None:
        """The picture of a batch about to run: planned from the earlier state, if there is one."""
        self.stateFile = path
        options: BatchOptions = {
            "maxWorkers": self.maxWorkers,
            "keepGoing": self.keepGoing,
            "logOutputDirectory": self.logOutputDirectory or None,
        }
        if targets is not None:
            options["targets"] = targets
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.daskScheduler is not None:
            options["dask"] = self.daskScheduler
        state = statefile.State(
            path=path,
            generation=old.generation if old else 0,
            supervisor={},
            options=dict(options),
            records=resume.plan(definitions, old).records,
        )
        plan = BatchPlan(path, definitions, options, state, statefile.basis(old), targets)
        if targets is not None:
            wanted = closure({d.id: d.waiting for d in definitions}, targets)
            plan.wanted = len(wanted)
            plan.finished_elsewhere = sum(
                1 for job_id, r in state.records.items() if job_id not in wanted and r.runningStatus in FINISHED
            )
        self._plan = plan

    def _refresh(self, *, full: bool = True) -> statefile.State | None:
        if self._run is not None:
            self._run.refresh(full=full)
        return None if self._plan is None else self._plan.state

    def _raise_if_died(self) -> None:
        if self._run is not None and self._run.error is not None:
            raise self._run.error

    def _raise_if_failed(self) -> None:
        self._raise_if_died()
        failed = {job.id: why for job in self.jobs if (why := job.failure())}
        if failed:
            raise CalledJobError(failed)

    def _close(self) -> None:
        if self._run is not None:
            self._run.close()
            self._run = None

    def __del__(self) -> None:
        run = getattr(self, "_run", None)
        if run is not None:
            run.abandon()


STATE_NAME_ROOM = 32  # bytes simplejob adds to the state file's name: FILE.unreadable-N.journal, FILE.tmp-XXXXXXXX


def _check_name_length(path: str) -> None:
    """Refuse a state file name too long for the names simplejob derives from it (a ValueError
    now, not an OSError in the middle of the batch)."""
    directory, name = os.path.split(path)
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    except OSError:
        limit = 255
    size = len(os.fsencode(name))
    if size + STATE_NAME_ROOM > limit:
        raise ValueError(
            f"stateFile {path!r}: its name is {size} bytes long, and simplejob adds up to {STATE_NAME_ROOM} "
            f"bytes to it (FILE.journal, FILE.lock, ...), beyond this file system's limit of {limit}: "
            f"use a name of at most {limit - STATE_NAME_ROOM} bytes"
        )


_temporary_dirs: list[str] = []  # made for JobManagers without a stateFile; see _clean_up_temporary_dirs


def _temporary_state_file() -> str:
    """A state file in a new temporary directory, looked at again when the process exits."""
    import tempfile  # here, as shutil and importlib.util below: importing them took 5 ms of every caller's start

    if not _temporary_dirs:
        atexit.register(_clean_up_temporary_dirs)
    directory = tempfile.mkdtemp(prefix="simplejob-")
    _temporary_dirs.append(directory)
    return os.path.join(directory, "state.json")


def _clean_up_temporary_dirs() -> None:
    """At exit: remove the temporary directory of a batch that finished with every job completed
    with exit code 0 (or never started); keep the others, naming them, so they can be resumed."""
    import shutil

    for directory in _temporary_dirs:
        path = os.path.join(directory, "state.json")
        try:
            state = statefile.load(path)
        except StateFileError:
            state = None
        else:
            if state is None or (
                state.supervisor.get("result") == "finished" and all(r.succeeded() for r in state.records.values())
            ):
                shutil.rmtree(directory, ignore_errors=True)
                continue
        print(
            f"simplejob: kept the state of a batch that did not finish with every job completed in {path!r}; "
            f"JobManager(stateFile={path!r}) resumes it",
            file=sys.stderr,
        )


def _check_targets(definitions: list[JobDefinition], targets: Collection[str] | None) -> list[str] | None:
    if targets is None:
        return None
    if isinstance(targets, str):
        raise ValueError(f"targets must be a list of job ids, not the string {targets!r}")
    known = {d.id for d in definitions}
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise ValueError(f"targets: no job with id(s) {unknown} in this batch")
    return list(dict.fromkeys(targets))


def _check_dask(address: str | None) -> str | None:
    """The scheduler address, once we know the dask extra is installed (nothing is imported yet)."""
    if address is None:
        return None
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f'daskScheduler must be a Dask scheduler address such as "tcp://host:8786", not {address!r}')
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise MissingExtra("dask", "distributed", "running a batch on a Dask cluster")
    return address.strip()


def _check_capacities(resources: Mapping[str, float] | None) -> dict[str, float]:
    if resources is None:
        return {}
    if not isinstance(resources, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
        for k, v in resources.items()
    ):
        raise ValueError(f'resources must map names to amounts >= 0, e.g. {{"gpu": 1, "db": 2}}, not {resources!r}')
    return {name: float(amount) for name, amount in resources.items()}


def _check_needs(definitions: list[JobDefinition], capacities: Mapping[str, float]) -> None:
    """Refuse, naming them, the jobs that need more of a resource than the pool has at all:
    they could never start, and the batch would wait for them forever."""
    problems = []
    for definition in definitions:
        for name, amount in (definition.resources or {}).items():
            if amount > capacities.get(name, 0.0) + RESOURCE_SLACK:
                have = capacities.get(name)
                had = f"only {have:g}" if have is not None else "none (JobManager(resources=...) does not name it)"
                problems.append(f"job {shown_id(definition.id)}: needs {name}={amount:g}, the pool has {had}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ValueError("jobs need more resources than exist:\n  " + "\n  ".join(shown))


SimpleJobManager = JobManager
