"""`simplejob status TARGET [--json] [--watch]`: a batch's jobs, read from its state file without
taking its lock (a running batch is never disturbed).

Exit codes: 0 finished, every job completed with exit code 0; 1 a job failed, is blocked, was
cancelled or interrupted (or the batch's supervisor is gone); 2 unreadable input; 3 not finished
(the batch runs, never ran, or jobs are left to run, e.g. after a run of some targets).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil
from rich.console import Console
from rich.live import Live
from rich.text import Text

from .. import statefile
from ..dates import format_elapsed
from ..model import JobDefinition, JobRecord, JobRunningStatus
from ..validation import parse_contexts
from . import location
from .describe import CATEGORIES, blocked_by, category, counts, counts_line, log_path, outcome
from .parser import EXIT_FAILED, EXIT_NOT_FINISHED, EXIT_OK


def supervisor_alive(supervisor: dict[str, Any]) -> bool:
    """Whether the supervisor a state file names still runs (assumed so if it is on another host).

    Read-only: the owner's lock is never taken (taking it, even briefly, could refuse a batch that
    is starting). A pid reused by another program is told apart by its command line."""
    pid, host = supervisor.get("pid"), supervisor.get("host")
    if host != socket.gethostname():
        return True
    try:
        return "simplejob.supervisor" in " ".join(psutil.Process(pid).cmdline())
    except psutil.AccessDenied:
        return True
    except (psutil.Error, TypeError, ValueError):
        return False


@dataclass
class View:
    """Everything `status` shows, computed once from a picture of the state."""

    path: str
    records: dict[str, JobRecord]
    supervisor: dict[str, Any]
    log_dir: str | None
    batch: str  # running, finished, interrupted, stopped (its supervisor is gone), not started
    blocked: dict[str, list[str]]
    options: dict[str, Any] = field(default_factory=dict)  # the state's "options"

    @property
    def finished(self) -> bool:
        return self.batch in ("finished", "interrupted", "stopped")

    def exit_code(self) -> int:
        if self.batch in ("running", "not started"):
            return EXIT_NOT_FINISHED
        if self.batch == "stopped" or any(r.failure() for r in self.records.values()) or self.blocked:
            return EXIT_FAILED
        if all(r.runningStatus == JobRunningStatus.Completed for r in self.records.values()):
            return EXIT_OK
        return EXIT_NOT_FINISHED  # e.g. a run of some targets left the others to run


def _never_run(path: str, definitions: list[JobDefinition]) -> View:
    records = {d.id: JobRecord(d) for d in definitions}
    return View(path, records, {}, None, "not started", {})


def read(target: str) -> View:
    """The view of a TARGET; ValueError/StateFileError when it cannot be read."""
    path = location.resolve_target(target)
    state = statefile.load(path)
    if state is None:
        if path != os.path.abspath(target) and os.path.isfile(target) and not os.path.isdir(target):
            return _never_run(path, parse_contexts(location.read_jobs_file(target)))
        raise ValueError(f"no batch at {target!r}: no state file {path!r} (has it run?)")
    supervisor = state.supervisor
    if supervisor.get("running"):
        batch = "running" if supervisor_alive(supervisor) else "stopped"
    else:
        batch = supervisor.get("result") or "not started"
    log_dir = state.options.get("logOutputDirectory") or None
    return View(path, state.records, supervisor, log_dir, batch, blocked_by(state.records), state.options)


def _note(view: View, record: JobRecord) -> str:
    """Failures said plainly (with the log to read), blocked jobs with what blocks them."""
    status = record.runningStatus
    log = log_path(view.log_dir, record.id)
    see = f"; log: {location.shown_path(log)}" if log and os.path.exists(log) else ""
    if record.id in view.blocked:
        causes = view.blocked[record.id]
        return f"blocked by {', '.join(causes[:3])}{' ...' if len(causes) > 3 else ''} (failed): never runs this time"
    if record.resumed:
        return "resumed (done earlier)"
    if status == JobRunningStatus.Running and view.batch != "running":
        return "its supervisor is gone: runs again on resume"
    if record.failure():
        reason = record.reason if record.reason and not record.reason.startswith("exit code") else ""
        said = outcome(record)  # "failed (exit code 3)", "timed out": the first words in capitals
        head = said.split(" (")[0]
        return head.upper() + said[len(head) :] + (f" ({reason})" if reason else "") + see
    if status == JobRunningStatus.Ready and view.finished:
        failed = any(r.failure() for r in view.records.values())
        return "not reached: the batch stopped after a failure" if failed else "not run (not a target)"
    return record.reason or ""


def shown_status(view: View, record: JobRecord) -> str:
    """The state file's status, except Blocked for a Ready job that waits on a failed one."""
    return "Blocked" if record.id in view.blocked else record.runningStatus.name


def batch_line(view: View) -> str:
    sup = view.supervisor
    pid, host = sup.get("pid"), sup.get("host")
    if view.batch == "running":
        return f"batch running: supervisor pid {pid} on {host}"
    if view.batch == "stopped":
        return f"batch stopped: its supervisor (pid {pid} on {host}) is gone; `simplejob run` resumes it"
    if view.batch == "not started":
        return "batch not run yet"
    reason = f" ({sup['reason']})" if sup.get("reason") else ""
    return f"batch {view.batch}{reason} at {sup.get('finishDateTime')}"


def table(view: View) -> str:
    now = time.time()
    header = ("ID", "STATUS", "EXIT", "ATTEMPTS", "START", "ELAPSED", "NOTE")
    rows = [header]
    for record in view.records.values():
        elapsed = record.elapsedSeconds
        if record.runningStatus == JobRunningStatus.Running and record.startTimestamp is not None:
            elapsed = max(0.0, now - record.startTimestamp)  # so far
        exit_code = "" if record.exitCode is None else str(record.exitCode)
        rows.append(
            (
                record.id,
                shown_status(view, record),
                exit_code,
                str(record.attempts),
                record.startDateTime or "",
                format_elapsed(elapsed) or "",
                _note(view, record),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        ("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]).rstrip()
        for row in rows
    ]
    statuses = Counter(shown_status(view, r) for r in view.records.values())
    order = [s.name for s in JobRunningStatus] + ["Blocked"]
    lines.append("")
    lines.append(f"{len(view.records)} jobs: " + ", ".join(f"{statuses[s]} {s}" for s in order if statuses[s]))
    lines.append(f"outcome: {counts_line(counts(view.records, view.blocked))}")
    lines.append(batch_line(view))
    if view.log_dir:
        lines.append(f"logs: {location.shown_path(view.log_dir)}/<id>.log (simplejob logs TARGET ID)")
    return "\n".join(lines) + "\n"


def as_json(view: View) -> dict[str, Any]:
    """The same data as the table, with stable keys (docs/command-line.md)."""
    jobs = {}
    for record in view.records.values():
        log = log_path(view.log_dir, record.id)
        jobs[record.id] = {
            "runningStatus": record.runningStatus.name,
            "exitCode": record.exitCode,
            "reason": record.reason,
            "outcome": category(record, view.blocked),
            "blockedBy": view.blocked.get(record.id, []),
            "log": log if log and os.path.exists(log) else None,
            "attempts": record.attempts,
            "startDateTime": record.startDateTime,
            "finishDateTime": record.finishDateTime,
            "elapsedSeconds": record.elapsedSeconds,
            "resumed": record.resumed,
        }
    counted = counts(view.records, view.blocked)
    return {
        "stateFile": view.path,
        "batch": view.batch,
        "finished": view.finished,
        "counts": {"total": len(view.records), **{c: counted[c] for c in CATEGORIES}},
        "jobs": jobs,
    }


def command(args: argparse.Namespace) -> int:
    view = read(args.target)
    if args.watch:
        view = _watch(args, view)
    if args.json:
        sys.stdout.write(json.dumps(as_json(view), indent=1, ensure_ascii=False) + "\n")
    elif not (args.watch and sys.stdout.isatty()):  # a terminal's watch already shows the last picture
        sys.stdout.write(table(view))
    sys.stdout.flush()
    return view.exit_code()


def _watch(args: argparse.Namespace, view: View) -> View:
    """Redraw (on a terminal) until the batch ends; return its last picture."""

    def ended(v: View) -> bool:
        return v.batch not in ("running", "not started")

    if not sys.stdout.isatty() or args.json:
        while not ended(view):
            time.sleep(args.interval)
            view = read(args.target)
        return view
    with Live(Text(table(view)), console=Console(), auto_refresh=False) as live:
        while not ended(view):
            time.sleep(args.interval)
            view = read(args.target)
            live.update(Text(table(view)), refresh=True)
    return view
