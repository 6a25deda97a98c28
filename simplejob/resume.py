"""Resume: which jobs of an earlier batch (read from its state file) are kept instead of run again.

A job is kept (Completed, not run again, "resumed": true) when it Completed with exit code 0,
its definition (every field of model.DEFINITION_FIELDS) is unchanged, and every job it waits on
is kept too. Every other job starts again from Ready, and so does everything downstream of it.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field

from .model import JobDefinition, JobRecord, JobRunningStatus
from .statefile import State


@dataclass
class Plan:
    records: dict[str, JobRecord]  # in entry order
    kept: set[str] = field(default_factory=set)
    # (job id, pid, start time of that process, killGrace) of jobs that the earlier batch recorded as
    # Running: their supervisor is gone, so anything of theirs still alive is killed before the batch
    # restarts, if it is the same process (pid and start time; see batchstart.stop_orphan).
    orphans: list[tuple[str, int, float | None, float]] = field(default_factory=list)


def plan(definitions: list[JobDefinition], old: State | None) -> Plan:
    records = {d.id: JobRecord(d) for d in definitions}
    result = Plan(records)
    if old is None:
        return result
    for record in old.records.values():
        if record.runningStatus == JobRunningStatus.Running and record.pid is not None:
            started = record.startTimestamp if record.attemptStartTimestamp is None else record.attemptStartTimestamp
            result.orphans.append((record.id, record.pid, started, record.definition.killGrace))
    order = graphlib.TopologicalSorter({d.id: d.waiting for d in definitions}).static_order()
    for job_id in order:
        new = records[job_id]
        previous = old.records.get(job_id)
        if (
            previous is not None
            and previous.runningStatus == JobRunningStatus.Completed
            and previous.exitCode == 0
            and not previous.definition.changed_fields(new.definition)
            and all(w in result.kept for w in new.definition.waiting)
        ):
            kept = JobRecord.from_json(job_id, previous.to_json())
            kept.resumed = True
            records[job_id] = kept
            result.kept.add(job_id)
    return result
