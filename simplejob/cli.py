"""The command line: `simplejob run JOBS.json`, `simplejob status STATEFILE`, and the reference's
own form `simplejob JOBS.json --logOutputDirectory DIR --loopInterval S`."""
from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from collections import Counter

import psutil

from . import statefile
from .errors import CalledJobError, SimplejobError, SupervisorDied
from .manager import JobManager
from .model import JobRunningStatus, format_elapsed

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _run_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobContexts", help='JSON file holding {"jobContexts": [...]}')
    parser.add_argument("--logOutputDirectory", "--log-dir", default="", help="write each job's output to DIR/<id>.log")
    parser.add_argument("--loopInterval", type=float, default=1.0,
                        help="seconds between checks of the batch (jobs start on time regardless)")
    parser.add_argument("--stateFile", "--state-file", default=None,
                        help="keep the batch's state here; running again with the same file resumes it")
    parser.add_argument("--maxWorkers", "-j", type=int, default=None, help="jobs at a time (default: CPUs)")
    parser.add_argument("--keepGoing", "-k", action="store_true",
                        help="after a failure, still run every job that does not depend on it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simplejob", description="Run a batch of commands in dependency order.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _run_parser(commands.add_parser("run", help="run a jobs file and print the report"))
    status = commands.add_parser("status", help="show the jobs of a state file (running or finished)")
    status.add_argument("stateFile", help="the batch's state file")
    return parser


def run(args: argparse.Namespace) -> int:
    manager = JobManager(logOutputDirectory=args.logOutputDirectory, stateFile=args.stateFile,
                         maxWorkers=args.maxWorkers, keepGoing=args.keepGoing)
    manager.entryFromJson(args.jobContexts)
    code = EXIT_OK
    try:
        manager.run(args.loopInterval)
    except CalledJobError as error:
        print(f"simplejob: {error}", file=sys.stderr)
        code = EXIT_FAILED
    except SupervisorDied as error:
        print(f"simplejob: {error}", file=sys.stderr)
        code = EXIT_FAILED
    print(manager.report())
    print(f"simplejob: state file {manager.stateFile}", file=sys.stderr)
    return code


def _supervisor_alive(supervisor: dict) -> bool:
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


def _supervisor_line(supervisor: dict, alive: bool) -> str:
    pid, host = supervisor.get("pid"), supervisor.get("host")
    if supervisor.get("running"):
        if alive:
            return f"batch running: supervisor pid {pid} on {host}"
        return f"batch stopped: its supervisor (pid {pid} on {host}) is gone; run it again with this state file to resume"
    result = supervisor.get("result") or "not started"
    reason = f" ({supervisor['reason']})" if supervisor.get("reason") else ""
    return f"batch {result}{reason} at {supervisor.get('finishDateTime')}"


def status(args: argparse.Namespace) -> int:
    """Print the jobs of a state file as a table. Reads the snapshot and journal only: no lock."""
    state = statefile.load(args.stateFile)
    if state is None:
        print(f"simplejob: no state file at {args.stateFile!r}", file=sys.stderr)
        return EXIT_USAGE
    running = bool(state.supervisor.get("running")) and _supervisor_alive(state.supervisor)
    now = time.time()
    header = ("ID", "STATUS", "EXIT", "ATTEMPTS", "START", "ELAPSED", "NOTE")
    rows = [header]
    for record in state.records.values():
        note = "resumed (done earlier)" if record.resumed else (record.reason or "")
        elapsed = record.elapsedSeconds
        if record.runningStatus == JobRunningStatus.Running and not running:
            note = "its supervisor is gone: runs again on resume"
        elif record.runningStatus == JobRunningStatus.Running and record.startTimestamp is not None:
            elapsed = max(0.0, now - record.startTimestamp)  # so far
        rows.append((
            record.id, record.runningStatus.name, "" if record.exitCode is None else str(record.exitCode),
            str(record.attempts), record.startDateTime or "", format_elapsed(elapsed) or "", note,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        print(("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]).rstrip())
    counts = Counter(r.runningStatus for r in state.records.values())
    print()
    print(f"{len(state.records)} jobs: " + ", ".join(f"{counts[s]} {s.name}" for s in JobRunningStatus if counts[s]))
    print(_supervisor_line(state.supervisor, running))
    return EXIT_OK


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the batch the same orderly way as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] not in ("run", "status", "-h", "--help"):
        argv = ["run", *argv]  # the reference's form: simplejob JOBS.json [--logOutputDirectory DIR] ...
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return EXIT_USAGE
    try:
        return run(args) if args.command == "run" else status(args)
    except (ValueError, SimplejobError) as error:
        print(f"simplejob: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("simplejob: interrupted; the running jobs were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
