"""A job starts only after every job it waits on completed with exit code 0, and never if one of
them failed for good: checked on random graphs of short jobs, some failing, some failing once and
retried. Short jobs are where a job waits on its worker behind the job it waits on (Scheduler.follow)
and starts there the moment that one succeeds, so this is where an ordering bug would show."""

from __future__ import annotations

import random

import pytest

from simplejob import JobManager, JobRunningStatus
from simplejob.statefile import load

SIZE = 60


def random_batch(seed: int, directory) -> list[dict]:
    rng = random.Random(seed)
    contexts = []
    for i in range(SIZE):
        earlier = list(range(max(0, i - 6), i))
        waits = rng.sample(earlier, k=min(len(earlier), rng.choice([0, 1, 1, 1, 2])))
        kind = rng.choices(["ok", "fails", "fails once"], weights=[8, 1, 1])[0]
        context: dict = {"id": f"j{i}", "waiting": [f"j{w}" for w in waits]}
        if kind == "ok":
            context["commandLine"] = ["true"]
        elif kind == "fails":
            context["commandLine"] = ["false"]
        else:
            marker = directory / f"j{i}.failed-once"
            context["commandLine"] = ["sh", "-c", f"test -e {marker} || {{ touch {marker}; exit 1; }}"]
            context["retry"] = 1
        contexts.append(context)
    return contexts


@pytest.mark.parametrize("seed", range(6))
def test_jobs_start_only_after_what_they_wait_on_succeeded(tmp_path, seed):
    contexts = random_batch(seed, tmp_path)
    path = tmp_path / "state.json"
    manager = JobManager(stateFile=str(path), maxWorkers=2, keepGoing=True)
    manager.entry(contexts)
    manager.runAllReadyJobs()
    manager.join()
    records = load(str(path)).records
    ended_ok = {
        job_id: record.history[-1]["finishTimestamp"]
        for job_id, record in records.items()
        if record.runningStatus is JobRunningStatus.Completed and record.exitCode == 0
    }
    for context in contexts:
        record = records[context["id"]]
        waits = context["waiting"]
        if all(w in ended_ok for w in waits):
            assert record.runningStatus is JobRunningStatus.Completed, (context, record)
            first_start = record.history[0]["startTimestamp"]
            for wait in waits:
                assert ended_ok[wait] <= first_start, f"{context['id']} started before {wait} ended"
        else:
            assert record.runningStatus is JobRunningStatus.Ready and not record.history, (context, record)
    assert any(c.get("retry") for c in contexts) and any(c["commandLine"] == ["false"] for c in contexts)
