"""Fault injection (issue 4, point 2): SIGKILL the supervisor at many random moments of a batch of
short jobs, resume each time with a new JobManager on the same state file, and check that

- the state file always parses: json.loads of the snapshot and simplejob.statefile.load, after
  every kill, and a reader thread that parses the snapshot over and over during the whole test;
- a job recorded as Completed at a kill never runs again (each job appends a line to its own
  file whenever it runs: its line count is its number of runs);
- every resume keeps exactly the jobs that had Completed (entry() shows them "resumed");
- every job ran, the batch ends with every job Completed, and no process is left.

Each round injects one fault (FAULTS): SIGKILL of the supervisor; of the supervisor and its workers
at the same instant (leaving the running jobs orphaned for the resume to kill); of one worker (its
job is recorded Interrupted, the batch goes on); SIGSTOP of the supervisor for up to 0.3 s, SIGCONT,
then SIGKILL; a file-size limit (ulimit -f) put on the running supervisor at the size of its
snapshot or journal, so that its next write fails (it stops the batch: StateNotWritten); and
SIGKILL of a separate owner program's whole process group (the supervisor, in its own session,
sees its owner die and stops the batch). Faults land at random times from just before the
supervisor starts (so also while it takes the lock, kills the orphans of the last run, writes its
first snapshot) and after a random number of completions (so while jobs start and end and the
journal and snapshot are written). Sometimes the resume starts at once, while the stopped batch's
workers still stop their jobs.

Default size: SIMPLEJOB_FAULT_JOBS=300 jobs, SIMPLEJOB_FAULT_ROUNDS=15 rounds of one fault each (a
few seconds). Large: e.g. SIMPLEJOB_FAULT_JOBS=3000 SIMPLEJOB_FAULT_ROUNDS=300. SIMPLEJOB_FAULT_SEED
repeats the random choices of a run (the seed is printed, and named in every failure);
SIMPLEJOB_FAULT_SLEEP=S makes each job sleep S seconds too (for a batch that outlasts many rounds). The last
line printed counts runs, faults by kind, jobs lost, jobs run again after a recorded completion,
processes left and unparsable files (docs/process-control.md shows a long run).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import psutil
import pytest

from conftest import session_processes
from simplejob import JobManager, JobRunningStatus, StateFileError, SupervisorDied
from simplejob.statefile import load
from simplejob.workers.pool import QUEUE_AHEAD

JOBS = int(os.environ.get("SIMPLEJOB_FAULT_JOBS", "300"))
ROUNDS = int(os.environ.get("SIMPLEJOB_FAULT_ROUNDS", "15"))
SEED = int(os.environ.get("SIMPLEJOB_FAULT_SEED", str(random.SystemRandom().randrange(1 << 32))))
WORKERS = 2
# SIMPLEJOB_FAULT_SLEEP=0.05: each job also sleeps that long, so that a long run's batch lasts
# through its rounds (with instant jobs a few faults already see it done)
SLEEP = f"; sleep {float(os.environ['SIMPLEJOB_FAULT_SLEEP'])}" if os.environ.get("SIMPLEJOB_FAULT_SLEEP") else ""
LAYER = 20  # jobs per layer; each job waits on two jobs of the layer before
# Attempts of one worker that a kill can find run (or running) but not journaled as finished: those
# it held (one running, QUEUE_AHEAD behind it) whose ends the supervisor collected but had not yet
# written, and as many handed to it again before that write (pool.py, supervisor.py). They run
# again; a kill that costs more lost something that was recorded.
UNJOURNALED_PER_WORKER = 2 * (1 + QUEUE_AHEAD)
MARKER = "SIMPLEJOB_FAULT_TEST"  # in the environment of every process this test starts


def batch(runs_dir) -> list[dict]:
    jobs = []
    for i in range(JOBS):
        layer, k = divmod(i, LAYER)
        waits = (
            [] if layer == 0 else sorted({f"j{(layer - 1) * LAYER + k}", f"j{(layer - 1) * LAYER + (k + 7) % LAYER}"})
        )
        jobs.append(
            {
                "id": f"j{i}",
                "commandLine": ["sh", "-c", 'echo "$1" >> "$0"' + SLEEP, str(runs_dir / f"j{i}"), f"j{i}"],
                "waiting": waits,
            }
        )
    return jobs


def our_processes(marker: str) -> list[psutil.Process]:
    return session_processes(marker, MARKER)


def supervisor_child() -> psutil.Process | None:
    for child in psutil.Process().children():
        try:
            if "simplejob.supervisor" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            pass
    return None


def kill(supervisor: psutil.Process, with_workers: bool) -> None:
    try:
        if with_workers:
            supervisor.suspend()  # so that nothing reacts while the workers are found
            procs = [supervisor, *supervisor.children()]
            for proc in procs[1:]:
                proc.suspend()
        else:
            procs = [supervisor]
        for proc in procs:
            proc.kill()
    except psutil.NoSuchProcess:
        pass  # it had finished


FAULTS = {  # kind -> weight
    "supervisor": 3,
    "supervisor and workers": 2,
    "a worker": 2,
    "stop, continue, kill": 1,
    "file-size limit": 2,
    "owner's process group": 2,
}

OWNER = """\
import sys
from simplejob import JobManager
manager = JobManager(stateFile=sys.argv[1], maxWorkers=int(sys.argv[3]))
manager.entryFromJson(sys.argv[2])
manager.run(interval=0.05)
"""


def inject(fault: str, supervisor: psutil.Process, rng: random.Random, path) -> None:
    """One fault to a running supervisor (the owner's process group is done apart: run_owner)."""
    try:
        if fault == "supervisor":
            kill(supervisor, False)
        elif fault == "supervisor and workers":
            kill(supervisor, True)
        elif fault == "a worker":
            deadline = time.monotonic() + 2.0  # its workers may still be starting
            while not supervisor.children() and supervisor.is_running() and time.monotonic() < deadline:
                time.sleep(0.001)
            workers = supervisor.children()
            if workers:
                rng.choice(workers).kill()
        elif fault == "stop, continue, kill":
            supervisor.suspend()
            time.sleep(rng.uniform(0.0, 0.3))
            supervisor.resume()
            kill(supervisor, False)
        elif fault == "file-size limit":
            # at the current size of the snapshot (the next, longer one fails) or of the journal
            # (the next append fails part-way: a torn last line)
            target = path if rng.random() < 0.5 else path.with_name(path.name + ".journal")
            size = target.stat().st_size if target.exists() else 0
            supervisor.rlimit(psutil.RLIMIT_FSIZE, (size, size))
    except psutil.NoSuchProcess:
        pass  # it had finished


class SnapshotReader(threading.Thread):
    """Parses the snapshot (json.loads, as a person's tool would) as often as it can while the test runs."""

    def __init__(self, path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.parsed = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with open(self.path, encoding="utf-8") as f:
                    text = f.read()
            except FileNotFoundError:
                text = None
            if text is not None:
                try:
                    data = json.loads(text)
                    assert len(data["jobs"]) == JOBS, f"{len(data['jobs'])} jobs"
                    self.parsed += 1
                except (ValueError, KeyError, AssertionError) as error:
                    self.failures.append(f"{error!r} in {text[:200]!r}...")
            self.stop.wait(0.002)


@pytest.mark.timeout(60 + JOBS * ROUNDS // 100)
def test_sigkill_at_random_moments_loses_nothing_and_runs_nothing_twice(tmp_path, monkeypatch):
    rng = random.Random(SEED)
    print(f"fault injection: {JOBS} jobs, {ROUNDS} rounds of one fault, SIMPLEJOB_FAULT_SEED={SEED}")
    about = f"(SIMPLEJOB_FAULT_SEED={SEED})"
    marker = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, marker)
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    path = tmp_path / "state.json"
    jobs = batch(runs_dir)
    ids = [job["id"] for job in jobs]

    def runs() -> Counter:
        counts = Counter()
        for job_id in ids:
            try:
                lines = (runs_dir / job_id).read_text().splitlines()
            except FileNotFoundError:
                continue
            # (empty when a run was killed between its shell opening the file and writing to it)
            assert set(lines) <= {job_id}, f"{job_id}: a torn or foreign line {lines} {about}"
            counts[job_id] = len(lines)
        return counts

    def quiet() -> None:
        """Wait until every process of the killed batches is gone: then the run counts are final."""
        deadline = time.monotonic() + 15
        while our_processes(marker):
            assert time.monotonic() < deadline, f"processes left: {our_processes(marker)} {about}"
            time.sleep(0.01)

    reader = SnapshotReader(path)
    reader.start()
    completed: set[str] = set()  # recorded Completed in the state file after the last round
    frozen: dict[str, int] = {}  # job -> its runs, counted once all processes were gone after it was Completed
    faults: Counter = Counter()  # kind -> rounds in which it reached a running batch
    busy = 0  # rounds that began with jobs still to run
    (tmp_path / "jobs.json").write_text(json.dumps({"jobContexts": jobs}))

    def run_owner(rng: random.Random) -> bool:
        """A separate owner program runs the batch; SIGKILL its process group after some progress."""
        owner = subprocess.Popen(
            [sys.executable, "-c", OWNER, str(path), str(tmp_path / "jobs.json"), str(WORKERS)],
            start_new_session=True,
        )
        target = rng.randint(1, 10)
        start = len(completed)
        deadline = time.monotonic() + 10
        while owner.poll() is None and time.monotonic() < deadline:
            try:
                state = load(str(path))
            except Exception:  # noqa: BLE001 - mid-write: look again
                state = None
            if state is not None and state.supervisor.get("running"):
                done_now = sum(1 for r in state.records.values() if r.runningStatus == JobRunningStatus.Completed)
                if done_now >= start + target or done_now == JOBS:
                    break
            time.sleep(0.005)
        hit = owner.poll() is None
        if hit:
            os.killpg(owner.pid, signal.SIGKILL)
        owner.wait()
        quiet()  # the supervisor stops the batch and exits by itself
        return hit

    def freeze() -> None:
        quiet()
        counts = runs()
        for job_id in completed:
            frozen.setdefault(job_id, counts[job_id])

    try:
        for round_number in range(ROUNDS):
            manager = JobManager(stateFile=str(path), maxWorkers=WORKERS)
            manager.entry(jobs)
            kept = {job.id for job in manager.jobs if job.resumed}
            assert kept == completed, (
                f"round {round_number}: the resume keeps {len(kept)} jobs, "
                f"not the {len(completed)} recorded Completed {about}"
            )

            fault = rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
            hit = False  # the fault reached a running batch
            if fault == "owner's process group":
                hit = run_owner(rng)
            elif rng.random() < 0.4:
                # by time, from before the supervisor exists: its start-up (lock, orphans, first
                # snapshot, journal header) and the first jobs are in range
                done = threading.Event()
                delay = rng.uniform(0.0, 0.15)
                reached: list[bool] = []

                def injector(delay=delay, fault=fault, done=done, reached=reached):
                    if done.wait(delay):
                        return
                    while not done.is_set():
                        supervisor = supervisor_child()
                        if supervisor is not None:
                            inject(fault, supervisor, rng, path)
                            reached.append(True)
                            return
                        time.sleep(0.001)

                thread = threading.Thread(target=injector, daemon=True)
                thread.start()
                try:
                    manager.runAllReadyJobs()
                    manager.join()
                except (SupervisorDied, StateFileError):  # StateFileError: a limit before its first snapshot
                    pass
                finally:
                    done.set()
                    thread.join()
                hit = bool(reached)
            else:
                # by progress: once a random number of jobs more completed (a few more end meanwhile)
                try:
                    manager.runAllReadyJobs()
                    target = manager.getRunningStatus()["Completed"] + rng.randint(1, 10)
                    while manager.getRunningStatus()["Completed"] < target and not manager.completed():
                        time.sleep(0.0005)
                    supervisor = supervisor_child()
                    if supervisor is not None:
                        inject(fault, supervisor, rng, path)
                        hit = True
                    manager.join()
                except SupervisorDied:
                    pass
            faults[fault] += hit

            # the state file parses, as JSON and as a state, and is whole
            if not path.exists():  # killed before its first snapshot
                assert load(str(path)) is None and completed == set(), about
                continue
            with open(path, encoding="utf-8") as f:
                assert len(json.load(f)["jobs"]) == JOBS, about
            state = load(str(path))
            assert len(state.records) == JOBS, about
            busy += len(completed) < JOBS
            now_completed = {r.id for r in state.records.values() if r.runningStatus == JobRunningStatus.Completed}
            assert {state.records[job_id].exitCode for job_id in now_completed} <= {0}, about
            assert completed <= now_completed, (
                f"recorded Completed, then lost: {sorted(completed - now_completed)[:10]} {about}"
            )
            completed = now_completed
            if rng.random() < 0.5:
                freeze()  # else the next round starts while the killed batch's workers still stop their jobs

        freeze()
        last = JobManager(stateFile=str(path), maxWorkers=WORKERS)
        last.entry(jobs)
        assert {job.id for job in last.jobs if job.resumed} == completed, about
        last.run(interval=0.05)
    finally:
        reader.stop.set()
        reader.join()
        for proc in our_processes(marker):  # only if a check failed: leave nothing behind
            try:
                proc.kill()
            except psutil.Error:
                pass

    quiet()
    counts = runs()
    final = load(str(path))
    assert {(r.runningStatus, r.exitCode) for r in final.records.values()} == {(JobRunningStatus.Completed, 0)}, about
    assert final.supervisor["running"] is False and final.supervisor["result"] == "finished", about
    never_ran = [job_id for job_id in ids if counts[job_id] == 0]
    assert never_ran == [], f"Completed but never ran: {never_ran[:10]} {about}"
    ran_again = {job_id: (frozen[job_id], counts[job_id]) for job_id in frozen if counts[job_id] != frozen[job_id]}
    assert ran_again == {}, f"recorded Completed, then ran again (runs then, at the end): {ran_again} {about}"
    repeated = sum(counts.values()) - JOBS
    total = sum(faults.values())
    print(
        f"fault injection result: {ROUNDS} rounds, {total} faults ({dict(faults)}; {busy} rounds had jobs to run), "
        f"{sum(counts.values())} job runs, {len(frozen)} jobs recorded Completed before the last run, "
        f"{repeated} runs repeated (interrupted, or ended but not yet journaled), 0 jobs lost, "
        f"{len(ran_again)} run again after a recorded completion, 0 processes left, "
        f"{len(reader.failures)} unparsable of {reader.parsed} snapshots read meanwhile"
    )
    assert repeated <= total * WORKERS * UNJOURNALED_PER_WORKER, f"{repeated} repeated runs for {total} faults {about}"
    assert reader.failures == [], f"{len(reader.failures)} unparsable snapshots: {reader.failures[:3]} {about}"
    assert reader.parsed > 0
    assert total >= ROUNDS // 3, f"only {total} of {ROUNDS} faults reached a running batch {about}"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name)
    assert leftovers == [], f"temporary files of killed writers left: {leftovers} {about}"
