"""cancel() at random moments of real batches (the supervisor, the local pool, real workers and
jobs): short jobs that run behind each other in a worker, long ones whose worker gives back what
waited behind them, failures, timeouts with retries. Whatever the timing, the batch ends (no
crash, no hang), and the state file keeps the rules:

- the supervisor finished the batch;
- a job that ran started only after every job it waits on completed with exit code 0;
- a job cancelled ends Cancelled, unless its attempt had ended by itself first (Completed with
  its exit code, or RetryOut), and starts no attempt later; no other job ends Cancelled or
  Interrupted;
- a job left Ready never ran, and waits on a job that did not complete with exit code 0; if it
  was cancelled, the cancel came as the batch ended (after it, a cancel changes nothing);
- no job ran more attempts than it may (1 + retry), and its history holds each one.
"""

from __future__ import annotations

import random
import time

import pytest

from simplejob import CalledJobError, JobManager, JobRunningStatus
from simplejob.statefile import load

SIZE = 24
LATE = 0.5  # seconds: a cancel sent this long before the batch's last end was heard, even on a slow machine
FINAL = {JobRunningStatus.Completed, JobRunningStatus.RetryOut, JobRunningStatus.Cancelled}


def random_batch(rng: random.Random) -> list[dict]:
    contexts = []
    for i in range(SIZE):
        earlier = list(range(max(0, i - 5), i))
        waits = rng.sample(earlier, k=min(len(earlier), rng.choice([0, 0, 1, 1, 2])))
        context: dict = {"id": f"j{i}", "waiting": [f"j{w}" for w in waits], "killGrace": 0.2}
        kind = rng.choices(["short", "long", "fails", "times out"], weights=[10, 3, 1, 2])[0]
        if kind == "short":
            context["commandLine"] = ["sleep", rng.choice(["0", "0.01", "0.03"])]
        elif kind == "long":
            context["commandLine"] = ["sleep", "0.2"]  # past the announce delay: gives back what waits behind
        elif kind == "fails":
            context["commandLine"] = ["false"]
        else:
            context.update(commandLine=["sleep", "5"], timeout=0.1, retry=rng.choice([0, 1, 2]), delay=0)
        contexts.append(context)
    return contexts


@pytest.mark.parametrize("seed", range(4))
def test_cancels_at_random_moments_leave_a_batch_that_ends_by_the_rules(tmp_path, seed):
    manager = JobManager(stateFile=str(tmp_path / "state.json"), maxWorkers=2, keepGoing=True)
    run_with_cancels(manager, random.Random(seed))


def run_with_cancels(manager: JobManager, rng: random.Random) -> None:
    """Run a random batch with cancels at random moments, and check its state file (also on Dask:
    tests/test_dask.py)."""
    contexts = random_batch(rng)
    assert manager.stateFile is not None
    path = manager.stateFile
    manager.entry(contexts)
    manager.runAllReadyJobs()
    cancelled: dict[str, float] = {}  # id -> when cancel() was first called for it
    for _ in range(6):
        time.sleep(rng.choice([0.0, 0.01, 0.05, 0.1]))
        job_id = f"j{rng.randrange(SIZE)}"
        cancelled.setdefault(job_id, time.time())
        manager.cancel(job_id)
    try:
        manager.join()
    except CalledJobError:
        pass
    state = load(str(path))
    assert state.supervisor["result"] == "finished", state.supervisor
    records = state.records
    last_end = max((attempt["finishTimestamp"] for r in records.values() for attempt in r.history), default=0.0)
    ended_ok = {
        job_id: record.history[-1]["finishTimestamp"]
        for job_id, record in records.items()
        if record.runningStatus is JobRunningStatus.Completed and record.exitCode == 0
    }
    for context in contexts:
        job_id = context["id"]
        record = records[job_id]
        assert len(record.history) == record.attempts <= 1 + context.get("retry", 0), (job_id, record)
        if record.history:
            for wait in context["waiting"]:
                assert wait in ended_ok and ended_ok[wait] <= record.history[0]["startTimestamp"], (job_id, wait)
        if record.runningStatus is JobRunningStatus.Ready:
            assert not record.history and not all(w in ended_ok for w in context["waiting"]), (job_id, record)
            # (the supervisor ends with the last job: a cancel that came later was not heard)
            assert job_id not in cancelled or cancelled[job_id] > last_end - LATE, (job_id, cancelled[job_id], last_end)
        elif job_id in cancelled:
            assert record.runningStatus in FINAL, (job_id, record)
            assert all(a["startTimestamp"] < cancelled[job_id] + LATE for a in record.history), (job_id, record)
            if record.runningStatus is not JobRunningStatus.Cancelled:  # it ended by itself first
                assert record.history and record.history[-1]["result"] in ("exited", "timedOut"), (job_id, record)
        else:
            assert record.runningStatus in FINAL - {JobRunningStatus.Cancelled}, (job_id, record)
