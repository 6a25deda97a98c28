"""Resume: which jobs of an earlier batch (read from its state file) are kept instead of run again.

A job is kept (Completed, not run again, "resumed": true) when it Completed with exit code 0,
its definition (every field of model.DEFINITION_FIELDS) is unchanged, and every job it waits on
is kept too. Every other job starts again from Ready, and so does everything downstream of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import JobDefinition, JobRecord, JobRunningStatus
from .scheduler import downstream
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
    """The records of a batch about to run, in entry order. A kept job's record is the earlier
    state's own, marked resumed: that state is read for this plan only."""
    records = {d.id: JobRecord(d) for d in definitions}
    result = Plan(records)
    if old is None:
        return result
    for record in old.records.values():
        if record.runningStatus == JobRunningStatus.Running and record.pid is not None:
            started = record.startTimestamp if record.attemptStartTimestamp is None else record.attemptStartTimestamp
            result.orphans.append((record.id, record.pid, started, record.definition.killGrace))
    # Not kept: what has to run again itself, and everything downstream of it.
    again = [d.id for d in definitions if not _done_as_defined(old.records.get(d.id), d)]
    not_kept = set(downstream({d.id: d.waiting for d in definitions}, again)) if again else set()
    for d in definitions:
        if d.id not in not_kept:
            kept = old.records[d.id]
            kept.resumed = True
            records[d.id] = kept
            result.kept.add(d.id)
    return result


def _done_as_defined(previous: JobRecord | None, definition: JobDefinition) -> bool:
    return (
        previous is not None
        and previous.runningStatus == JobRunningStatus.Completed
        and previous.exitCode == 0
        and previous.definition.same_as(definition)
    )
