"""What a simplejob run's state file shows: its jobs, what went wrong, and the chain's delays.

Read in a second, untimed child process right after the timed run (measure.child_check), so that
the check counts in no system's time and only figures travel back to the parent.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .graphs import job_id


def read_state_jobs(path: str) -> dict[str, dict[str, Any]]:
    """The jobs of a state file: the snapshot, plus the journal lines of its generation beyond
    journalOffset (the final snapshot normally holds everything already)."""
    with open(path, encoding="utf-8") as f:
        snapshot = json.load(f)
    jobs: dict[str, dict[str, Any]] = snapshot["jobs"]
    journal = path + ".journal"
    if os.path.exists(journal):
        with open(journal, "rb") as f:
            header = f.readline()
            if json.loads(header).get("generation") == snapshot.get("generation"):
                f.seek(max(len(header), int(snapshot.get("journalOffset", 0))))
                for line in f:
                    if line.endswith(b"\n") and line.strip():
                        change = json.loads(line)
                        if "id" in change and change["id"] in jobs:
                            jobs[change["id"]].update(change)
    return jobs


def check_run(jobs: dict[str, dict[str, Any]], deps: list[list[int]], workers: int) -> list[str]:
    """What the state file shows went wrong: a job not Completed with exit code 0, one started
    before a job it waits on finished, more than `workers` jobs running at once."""
    problems = []
    if len(jobs) != len(deps):
        problems.append(f"the state file has {len(jobs)} jobs, the batch had {len(deps)}")
    start, finish = {}, {}
    for i in range(len(deps)):
        job = jobs.get(job_id(i))
        if job is None:
            problems.append(f"{job_id(i)} is missing from the state file")
            continue
        if job.get("runningStatus") != "Completed" or job.get("exitCode") != 0:
            problems.append(
                f"{job_id(i)} ended {job.get('runningStatus')} with exit code {job.get('exitCode')!r}"
                f" (reason {job.get('reason')!r})"
            )
        if job.get("startTimestamp") is None or job.get("elapsedSeconds") is None:
            continue
        start[i] = job["startTimestamp"]
        finish[i] = job["startTimestamp"] + job["elapsedSeconds"]
    for i, waits in enumerate(deps):
        for d in waits:
            if i in start and d in finish and start[i] < finish[d] - 2e-6:  # elapsedSeconds has 6 decimals
                problems.append(
                    f"{job_id(i)} started {finish[d] - start[i]:.6f} s before {job_id(d)}, which it waits on, finished"
                )
    peak = peak_running(list(start.values()), list(finish.values()))
    if peak > workers:
        problems.append(f"{peak} jobs ran at once with maxWorkers={workers}")
    if len(problems) > 10:
        problems[10:] = [f"... and {len(problems) - 10} more"]
    return problems


def peak_running(starts: list[float], finishes: list[float]) -> int:
    """The most jobs running at once (a job that finishes when another starts is not counted twice)."""
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in finishes], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def chain_delays(jobs: dict[str, dict[str, Any]], size: int) -> list[float]:
    """Seconds from job i-1 finishing (startTimestamp + elapsedSeconds) to job i starting."""
    delays = []
    for i in range(1, size):
        before, job = jobs[job_id(i - 1)], jobs[job_id(i)]
        delays.append(job["startTimestamp"] - (before["startTimestamp"] + before["elapsedSeconds"]))
    return delays
