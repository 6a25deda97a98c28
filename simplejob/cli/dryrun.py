"""`simplejob run JOBS.json -n`: what would run, in a valid order, and why; nothing is written or
started. The reasons follow the resume rules of docs/state-file.md: a job is kept when it
completed with exit code 0 earlier, its definition is unchanged and every job it waits on is kept.
"""

from __future__ import annotations

from ..model import JobDefinition, JobRunningStatus
from ..statefile import State
from .describe import exit_words, outcome, topological_order


def explain(definitions: list[JobDefinition], old: State | None, selected: set[str]) -> list[tuple[str, str, str]]:
    """(action, id, why) for the selected jobs, in an order that respects their waits."""
    by_id = {d.id: d for d in definitions}
    kept: set[str] = set()
    rows = []
    for job_id in topological_order({d.id: d.waiting for d in definitions}):
        if job_id not in selected:
            continue
        definition = by_id[job_id]
        previous = old.records.get(job_id) if old is not None else None
        if previous is None:
            rows.append(("run", job_id, "new" if old is not None and old.records else "not run yet"))
            continue
        changed = previous.definition.changed_fields(definition)
        not_kept = [w for w in definition.waiting if w not in kept]
        status = previous.runningStatus
        reasons = []
        if changed:
            reasons.append(f"changed definition ({', '.join(changed)})")
        if status == JobRunningStatus.Completed and previous.exitCode != 0:
            reasons.append(f"failed earlier ({exit_words(previous.exitCode)})")
        elif status == JobRunningStatus.Running:
            reasons.append("was running when its batch stopped")
        elif status == JobRunningStatus.Ready:
            reasons.append("not run yet")
        elif status != JobRunningStatus.Completed:
            reasons.append(f"{outcome(previous)} earlier")
        if not_kept:
            reasons.append(f"downstream of {', '.join(not_kept)}, which run(s) again")
        if not reasons:
            kept.add(job_id)
            rows.append(("keep", job_id, "done earlier (exit code 0), unchanged"))
            continue
        why = "; ".join(reasons)
        rows.append(("run", job_id, why))
    return rows


def render(rows: list[tuple[str, str, str]]) -> str:
    width = max((len(job_id) for _, job_id, _ in rows), default=0)
    return "".join(f"{action:<4}  {job_id:<{width}}  {why}\n" for action, job_id, why in rows)
