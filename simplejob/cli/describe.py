"""The words the command line uses for a job, shared by `run`, `status` and the dry run.

The state file keeps the documented statuses (a job that waits on a failed job stays `Ready`);
here such a job is *blocked*, naming the failed job(s) it waits on.
"""

from __future__ import annotations

import heapq
import os
import re
import signal
from collections import Counter

from ..model import JobRecord, JobRunningStatus

# Categories, in the order summaries list them; `status --json` uses these as the keys of "counts".
CATEGORIES = ("ok", "kept", "failed", "timedOut", "cancelled", "interrupted", "running", "blocked", "waiting")
SHOWN = {
    "ok": "ok",
    "kept": "done earlier",
    "failed": "failed",
    "timedOut": "timed out",
    "cancelled": "cancelled",
    "interrupted": "interrupted",
    "running": "running",
    "blocked": "blocked",
    "waiting": "not run",
}
FINAL_FAILURES = (JobRunningStatus.RetryOut, JobRunningStatus.Cancelled)


def exit_words(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def outcome(record: JobRecord) -> str:
    """ok, failed (exit code N), timed out, cancelled, interrupted, running, not run."""
    status = record.runningStatus
    if status == JobRunningStatus.Completed:
        return "ok" if record.exitCode == 0 else f"failed ({exit_words(record.exitCode)})"
    return {
        JobRunningStatus.RetryOut: "timed out",
        JobRunningStatus.Cancelled: "cancelled",
        JobRunningStatus.Interrupted: "interrupted",
        JobRunningStatus.Running: "running",
        JobRunningStatus.Ready: "not run",
    }[status]


def is_final_failure(record: JobRecord) -> bool:
    """Failed for good in this batch: what waits on it never runs (an interrupted job runs again)."""
    if record.runningStatus == JobRunningStatus.Completed:
        return record.exitCode != 0
    return record.runningStatus in FINAL_FAILURES


def topological_order(waits: dict[str, list[str]]) -> list[str]:
    """Ids in an order where each comes after what it waits on, otherwise in entry order
    (Kahn's algorithm with a heap on the entry position; iterative, for long chains)."""
    position = {job_id: n for n, job_id in enumerate(waits)}
    unmet = {job_id: sum(1 for w in ws if w in position) for job_id, ws in waits.items()}
    dependents: dict[str, list[str]] = {job_id: [] for job_id in waits}
    for job_id, ws in waits.items():
        for w in ws:
            if w in dependents:
                dependents[w].append(job_id)
    ready = [position[job_id] for job_id, n in unmet.items() if n == 0]
    heapq.heapify(ready)
    ids = list(waits)
    order = []
    while ready:
        job_id = ids[heapq.heappop(ready)]
        order.append(job_id)
        for dependent in dependents[job_id]:
            unmet[dependent] -= 1
            if unmet[dependent] == 0:
                heapq.heappush(ready, position[dependent])
    return order


def blocked_by(records: dict[str, JobRecord]) -> dict[str, list[str]]:
    """For each Ready job that waits, directly or not, on a job that failed for good: those failed
    jobs (the root causes, not the blocked jobs in between), in entry order."""
    position = {job_id: n for n, job_id in enumerate(records)}
    causes: dict[str, set[str]] = {}
    for job_id in topological_order({i: r.definition.waiting for i, r in records.items()}):
        found: set[str] = set()
        for w in records[job_id].definition.waiting:
            if w in records:
                found |= {w} if is_final_failure(records[w]) else causes[w]
        causes[job_id] = found
    return {
        job_id: sorted(found, key=position.__getitem__)
        for job_id, found in causes.items()
        if found and records[job_id].runningStatus == JobRunningStatus.Ready
    }


def category(record: JobRecord, blocked: dict[str, list[str]]) -> str:
    status = record.runningStatus
    if status == JobRunningStatus.Completed:
        if record.exitCode != 0:
            return "failed"
        return "kept" if record.resumed else "ok"
    if status == JobRunningStatus.Ready:
        return "blocked" if record.id in blocked else "waiting"
    return {
        JobRunningStatus.RetryOut: "timedOut",
        JobRunningStatus.Cancelled: "cancelled",
        JobRunningStatus.Interrupted: "interrupted",
        JobRunningStatus.Running: "running",
    }[status]


def counts(records: dict[str, JobRecord], blocked: dict[str, list[str]]) -> Counter[str]:
    return Counter(category(record, blocked) for record in records.values())


def counts_line(counted: Counter[str]) -> str:
    """ "3 ok, 1 failed, 2 blocked": the categories that occur, in a fixed order."""
    return ", ".join(f"{counted[c]} {SHOWN[c]}" for c in CATEGORIES if counted[c]) or "no jobs"


def seconds(value: float | None) -> str:
    """An elapsed time for people: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if value is None:
        return ""
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def log_path(log_dir: str | None, job_id: str) -> str | None:
    return os.path.join(log_dir, f"{job_id}.log") if log_dir else None


ATTEMPT_LINE = re.compile(r"--- simplejob .*: job .* attempt \d+/\d+: ")


def last_lines(path: str | None, count: int = 20) -> list[str]:
    """The last lines a job wrote (simplejob's own '--- simplejob' lines left out), for a failure."""
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    starts = [n for n, line in enumerate(lines) if ATTEMPT_LINE.match(line)]
    if starts:  # the log is appended to by every run: only the last attempt's lines
        lines = lines[starts[-1] + 1 :]
    return [line for line in lines if not line.startswith("--- simplejob ")][-count:]
