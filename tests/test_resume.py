"""Resume (issue 4, point 1): a new JobManager on the state file of an earlier batch keeps the jobs
that Completed with exit code 0 and are unchanged, and runs every other job again, with all that
waits on it; jobs left Running by a supervisor that is gone are killed (what is still alive of
them) and run again.

Every job here appends a line to its own file each time it runs, so "not run again" is a count.
"""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from conftest import pid_gone, wait_until
from simplejob import BatchInterrupted, CalledJobError, JobManager, JobRunningStatus, SupervisorDied
from simplejob.model import DEFINITION_FIELDS
from simplejob.statefile import load

Completed, Ready, Running = JobRunningStatus.Completed, JobRunningStatus.Ready, JobRunningStatus.Running


class Runs:
    """Per-job run counters: each job appends a line to runs/<id> every time it runs."""

    def __init__(self, directory) -> None:
        self.dir = directory
        self.dir.mkdir()

    def command(self, job_id: str, then: str = "") -> str:
        """sh -c '<count this run>; <then>' as one string (split with shlex, no shell)."""
        return f"sh -c 'echo run >> {self.dir / job_id}{'; ' + then if then else ''}'"

    def first_time(self, job_id: str, then: str) -> str:
        """Counts the run, and does `then` on the first run only (later runs exit 0 at once)."""
        return self.command(job_id, f"[ $(wc -l < {self.dir / job_id}) -ge 2 ] || {{ {then}; }}")

    def count(self, job_id: str) -> int:
        path = self.dir / job_id
        return len(path.read_text().splitlines()) if path.exists() else 0

    def counts(self, ids) -> dict[str, int]:
        return {job_id: self.count(job_id) for job_id in ids}


@pytest.fixture
def runs(tmp_path):
    return Runs(tmp_path / "runs")


@pytest.fixture
def leftovers():
    """Processes a test deliberately leaves alive (to see that a resume kills them); killed at teardown
    if the test failed before that."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


def summary(manager):
    return {job.id: (job.runningStatus, job.exitCode, job.resumed) for job in manager.jobs}


def state_summary(path):
    return {r.id: (r.runningStatus, r.exitCode, r.resumed) for r in load(str(path)).records.values()}


def kill_supervisor_and_workers(path) -> None:
    """SIGKILL the batch's supervisor and its workers at one instant, as `kill -9` of the caller's
    process group would: the jobs (each in its own session) live on, orphaned."""
    supervisor = psutil.Process(load(str(path)).supervisor["pid"])
    supervisor.suspend()  # nobody reacts while the rest is found: the workers would kill their jobs
    workers = supervisor.children()
    for worker in workers:
        worker.suspend()
    for proc in (supervisor, *workers):
        proc.kill()


def job_tree(path, job_id: str, size: int) -> list[psutil.Process]:
    """The job's process and its descendants, once the state names its pid and the tree has `size` processes."""

    def tree():
        record = load(str(path)).records[job_id]
        if record.runningStatus != Running or record.pid is None:
            return None
        root = psutil.Process(record.pid)
        procs = [root, *root.children(recursive=True)]
        return procs if len(procs) >= size else None

    return wait_until(tree, message=f"job {job_id} running as a tree of {size} processes")


def chain(runs) -> list[dict]:
    return [
        {"id": "a", "commandLine": runs.command("a")},
        {"id": "b", "commandLine": runs.command("b"), "waiting": ["a"]},
        {"id": "c", "commandLine": runs.command("c"), "waiting": ["b"]},
        {"id": "d", "commandLine": runs.command("d")},
    ]


def test_completed_jobs_are_kept_and_not_run_again(tmp_path, runs):
    path = tmp_path / "state.json"
    first = JobManager(stateFile=str(path), maxWorkers=2)
    first.entry(chain(runs))
    first.run(interval=0.05)
    first_report = first.report()
    assert runs.counts("abcd") == dict.fromkeys("abcd", 1)
    assert {job.id: job.resumed for job in first.jobs} == dict.fromkeys("abcd", False)

    second = JobManager(stateFile=str(path), maxWorkers=2)
    second.entry(chain(runs))
    # entry() already shows what will be kept, before anything starts
    assert summary(second) == dict.fromkeys("abcd", (Completed, 0, True))
    second.run(interval=0.05)
    assert runs.counts("abcd") == dict.fromkeys("abcd", 1)  # nothing ran again
    assert summary(second) == dict.fromkeys("abcd", (Completed, 0, True))
    # the report says which jobs were kept, done, from the earlier batch; their dates and times stay
    assert second.report() == {
        "results": [
            {job_id: {**job_report, "resumed": True}}
            for result in first_report["results"]
            for job_id, job_report in result.items()
        ]
    }
    assert "resumed" not in first_report["results"][0]["a"]  # the documented shape, when nothing was kept
    assert state_summary(path) == dict.fromkeys("abcd", (Completed, 0, True))
    assert second.completed() and not second.errorOccurred()


CHANGES = {  # definition field -> the changed value of job b (whose commandLine is a string)
    "commandLine": lambda runs, tmp_path: runs.command("b", "true"),
    "waiting": lambda runs, tmp_path: ["a", "d"],
    "timeout": lambda runs, tmp_path: 30,
    "retry": lambda runs, tmp_path: 1,
    "delay": lambda runs, tmp_path: 0.5,
    "backoff": lambda runs, tmp_path: 2,
    "cwd": lambda runs, tmp_path: str(tmp_path),
    "env": lambda runs, tmp_path: {"SIMPLEJOB_TEST_CHANGED": "1"},
    "shell": lambda runs, tmp_path: True,
    "killGrace": lambda runs, tmp_path: 1.0,
    "priority": lambda runs, tmp_path: 3,
    "resources": lambda runs, tmp_path: {"x": 1},
}


def test_every_definition_field_is_covered_by_the_change_test():
    assert set(CHANGES) == set(DEFINITION_FIELDS)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_a_changed_definition_runs_the_job_again_and_everything_downstream(tmp_path, runs, field):
    path = tmp_path / "state.json"
    first = JobManager(stateFile=str(path), maxWorkers=2, resources={"x": 1})
    first.entry(chain(runs))
    first.run(interval=0.05)

    changed = chain(runs)
    changed[1][field] = CHANGES[field](runs, tmp_path)
    second = JobManager(stateFile=str(path), maxWorkers=2, resources={"x": 1})
    second.entry(changed)
    assert summary(second) == {
        "a": (Completed, 0, True),
        "b": (Ready, None, False),
        "c": (Ready, None, False),
        "d": (Completed, 0, True),
    }
    second.run(interval=0.05)
    assert runs.counts("abcd") == {"a": 1, "b": 2, "c": 2, "d": 1}
    assert state_summary(path) == {
        "a": (Completed, 0, True),
        "b": (Completed, 0, False),
        "c": (Completed, 0, False),
        "d": (Completed, 0, True),
    }

    # and the changed definition is now the recorded one: a third run keeps everything
    third = JobManager(stateFile=str(path), maxWorkers=2, resources={"x": 1})
    third.entry(changed)
    third.run(interval=0.05)
    assert runs.counts("abcd") == {"a": 1, "b": 2, "c": 2, "d": 1}
    assert summary(third) == dict.fromkeys("abcd", (Completed, 0, True))


def test_every_job_that_did_not_complete_with_exit_code_0_runs_again(tmp_path, runs):
    """Completed with a non-zero exit code, RetryOut, Cancelled, Interrupted and never started (Ready)."""
    path = tmp_path / "state.json"
    jobs = [
        {"id": "ok", "commandLine": runs.command("ok")},
        {"id": "fails", "commandLine": runs.first_time("fails", "exit 3")},
        {"id": "blocked", "commandLine": runs.command("blocked"), "waiting": ["fails"]},
        {"id": "slow", "commandLine": runs.first_time("slow", "sleep 30"), "timeout": 0.2, "killGrace": 0.5},
        {"id": "cancelled", "commandLine": runs.first_time("cancelled", "sleep 30"), "killGrace": 0.5},
        {"id": "interrupted", "commandLine": runs.first_time("interrupted", "sleep 30"), "killGrace": 0.5},
    ]
    ids = [job["id"] for job in jobs]
    first = JobManager(stateFile=str(path), maxWorkers=len(jobs), keepGoing=True)
    first.entry(jobs)
    first.runAllReadyJobs()
    wait_until(lambda: runs.count("cancelled") and runs.count("interrupted"), message="the long jobs to start")
    first.cancel("cancelled")
    wait_until(
        lambda: (
            {j.id: j.runningStatus.name for j in first.jobs if j.id != "interrupted"}
            == {
                "ok": "Completed",
                "fails": "Completed",
                "blocked": "Ready",
                "slow": "RetryOut",
                "cancelled": "Cancelled",
            }
        ),
        message="every job but one to end",
    )
    os.kill(load(str(path)).supervisor["pid"], signal.SIGTERM)  # what Ctrl-C of the owner does
    with pytest.raises(BatchInterrupted):
        first.join()
    assert {r.id: (r.runningStatus.name, r.exitCode) for r in load(str(path)).records.values()} == {
        "ok": ("Completed", 0),
        "fails": ("Completed", 3),
        "blocked": ("Ready", None),
        "slow": ("RetryOut", None),
        "cancelled": ("Cancelled", None),
        "interrupted": ("Interrupted", None),
    }

    second = JobManager(stateFile=str(path), maxWorkers=len(jobs), keepGoing=True)
    second.entry(jobs)
    assert summary(second) == {job_id: (Ready, None, False) for job_id in ids} | {"ok": (Completed, 0, True)}
    second.run(interval=0.05)
    assert runs.counts(ids) == {"ok": 1, "fails": 2, "blocked": 1, "slow": 2, "cancelled": 2, "interrupted": 2}
    assert summary(second) == {job_id: (Completed, 0, False) for job_id in ids} | {"ok": (Completed, 0, True)}


def test_jobs_added_or_removed_between_runs(tmp_path, runs):
    path = tmp_path / "state.json"
    first = JobManager(stateFile=str(path), maxWorkers=2)
    first.entry(chain(runs))
    first.run(interval=0.05)

    jobs = [job for job in chain(runs) if job["id"] != "d"] + [
        {"id": "e", "commandLine": runs.command("e"), "waiting": ["c"]},
    ]
    second = JobManager(stateFile=str(path), maxWorkers=2)
    second.entry(jobs)
    second.run(interval=0.05)
    assert runs.counts("abcde") == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}
    assert state_summary(path) == {
        "a": (Completed, 0, True),
        "b": (Completed, 0, True),
        "c": (Completed, 0, True),
        "e": (Completed, 0, False),
    }  # the state file holds this batch: d, no longer entered, is gone from it


def test_jobs_left_running_by_a_dead_supervisor_are_killed_and_run_again(tmp_path, runs, leftovers):
    path = tmp_path / "state.json"
    release = tmp_path / "release"
    jobs = [
        {"id": "done", "commandLine": runs.command("done")},
        # first run: a tree of three processes (sh and two sleeps) that would outlive everything
        {
            "id": "hang",
            "commandLine": runs.command("hang", f"[ -e {release} ] || {{ sleep 60 & sleep 60; }}"),
            "killGrace": 0.5,
        },
        {"id": "after", "commandLine": runs.command("after"), "waiting": ["hang"]},
    ]
    first = JobManager(stateFile=str(path), maxWorkers=2)
    first.entry(jobs)
    first.runAllReadyJobs()
    tree = job_tree(path, "hang", 3)
    leftovers += tree
    wait_until(lambda: load(str(path)).records["done"].runningStatus == Completed, message="done to complete")
    kill_supervisor_and_workers(path)
    with pytest.raises(SupervisorDied):
        first.join()
    assert all(proc.is_running() for proc in tree)  # orphaned, alive: what the resume must kill
    assert load(str(path)).records["hang"].runningStatus == Running

    release.touch()
    second = JobManager(stateFile=str(path), maxWorkers=2)
    second.entry(jobs)
    assert summary(second) == {
        "done": (Completed, 0, True),
        "hang": (Ready, None, False),
        "after": (Ready, None, False),
    }
    second.run(interval=0.05)
    assert [proc.pid for proc in tree if not pid_gone(proc.pid)] == []
    assert runs.counts(["done", "hang", "after"]) == {"done": 1, "hang": 2, "after": 1}
    assert summary(second) == {
        "done": (Completed, 0, True),
        "hang": (Completed, 0, False),
        "after": (Completed, 0, False),
    }


def test_a_retry_attempt_left_running_by_a_dead_supervisor_is_killed_too(tmp_path, runs, leftovers):
    """The running attempt of a retried job started long after the job's first start: it is still
    recognised as the job's (and not as another process that reused the pid) and killed."""
    path = tmp_path / "state.json"
    release = tmp_path / "release"
    jobs = [
        {
            "id": "retried",
            "timeout": 0.3,
            "retry": 1,
            "delay": 1.2,
            "killGrace": 0.5,
            "commandLine": runs.command("retried", f"[ -e {release} ] || {{ sleep 60 & sleep 60; }}"),
        }
    ]
    first = JobManager(stateFile=str(path), maxWorkers=1)
    first.entry(jobs)
    first.runAllReadyJobs()
    wait_until(lambda: runs.count("retried") == 2, message="the second attempt")
    tree = job_tree(path, "retried", 3)
    leftovers += tree
    record = load(str(path)).records["retried"]
    # (from the recorded times: psutil's create_time() is off by up to a second, the fraction of
    # the boot time that /proc/stat's btime leaves out)
    assert record.attempts == 2 and record.attemptStartTimestamp - record.startTimestamp > 1.2
    kill_supervisor_and_workers(path)
    with pytest.raises(SupervisorDied):
        first.join()
    assert all(proc.is_running() for proc in tree)

    release.touch()
    second = JobManager(stateFile=str(path), maxWorkers=1)
    second.entry(jobs)
    second.run(interval=0.05)
    assert [proc.pid for proc in tree if not pid_gone(proc.pid)] == []
    assert runs.count("retried") == 3
    assert summary(second) == {"retried": (Completed, 0, False)}


def test_a_failed_resume_keeps_the_completed_jobs_for_the_next_one(tmp_path, runs):
    """Kept jobs stay kept through any number of resumes, also when the batch in between failed."""
    path = tmp_path / "state.json"
    jobs = chain(runs) + [{"id": "flaky", "commandLine": runs.first_time("flaky", "exit 1"), "waiting": ["a"]}]
    first = JobManager(stateFile=str(path), maxWorkers=2, keepGoing=True)
    first.entry(jobs)
    with pytest.raises(CalledJobError, match="flaky"):
        first.run(interval=0.05)
    second = JobManager(stateFile=str(path), maxWorkers=2, keepGoing=True)
    second.entry(jobs)
    second.run(interval=0.05)
    assert runs.counts(["a", "b", "c", "d", "flaky"]) == {"a": 1, "b": 1, "c": 1, "d": 1, "flaky": 2}
    assert {job.id: job.resumed for job in second.jobs} == {"a": True, "b": True, "c": True, "d": True, "flaky": False}


def test_the_plan_keeps_exactly_the_jobs_done_as_defined_with_all_they_wait_on_kept_too():
    """resume.plan against the rule written out the slow way (graphlib's order, a job kept when
    it completed with exit code 0, unchanged, and everything it waits on is kept), on 300 random
    graphs whose earlier states mix completed, failed, changed, missing and running jobs."""
    import graphlib
    import random

    from simplejob import resume, statefile
    from simplejob.model import JobDefinition, JobRecord

    rng = random.Random(13)
    for _ in range(300):
        size = rng.randint(1, 30)
        definitions = [
            JobDefinition(
                id=f"j{i}",
                commandLine="true",
                waiting=sorted({f"j{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else [],
            )
            for i in range(size)
        ]
        order = list(range(size))
        rng.shuffle(order)  # entry order is not the graph's order
        definitions = [definitions[i] for i in order]
        records = {}
        for d in definitions:
            fate = rng.choice(["done", "done", "done", "failed", "changed", "missing", "running"])
            if fate == "missing":
                continue
            earlier = JobDefinition(id=d.id, commandLine="false" if fate == "changed" else "true", waiting=d.waiting)
            record = JobRecord(earlier)
            record.runningStatus = Running if fate == "running" else Completed
            record.exitCode = 1 if fate == "failed" else 0
            records[d.id] = record
        old = statefile.State(path="x", generation=1, supervisor={}, options={}, records=records)
        expected = set()
        for job_id in graphlib.TopologicalSorter({d.id: d.waiting for d in definitions}).static_order():
            previous = records.get(job_id)
            new = next(d for d in definitions if d.id == job_id)
            if (
                previous is not None
                and previous.runningStatus == Completed
                and previous.exitCode == 0
                and not previous.definition.changed_fields(new)
                and all(w in expected for w in new.waiting)
            ):
                expected.add(job_id)
        planned = resume.plan(definitions, old)
        assert planned.kept == expected
        assert list(planned.records) == [d.id for d in definitions]
        assert all(planned.records[j].resumed == (j in expected) for j in planned.records)
