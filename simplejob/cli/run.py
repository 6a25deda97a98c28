"""`simplejob run JOBS.json [ID...]`: run (or resume) a batch, show it, and end with a summary.

Exit codes: 0 every selected job completed with exit code 0; 1 a job failed, timed out, was
cancelled or could not run (or the supervisor died); 2 bad input, nothing written (raised as
ValueError/SimplejobError and turned into 2 by cli.main); 130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from .. import statefile
from ..errors import CalledJobError, SimplejobError, StateNotWritten, SupervisorDied
from ..manager import JobManager
from ..model import JobDefinition, JobRecord, JobRunningStatus
from ..scheduler import closure
from ..validation import parse_contexts
from . import dryrun, location, progress
from .describe import blocked_by, counts, counts_line, seconds
from .parser import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

MAX_TAILS = 10  # failed jobs whose last lines are shown at the end of a live view


def upstream(definitions: list[JobDefinition], targets: list[str]) -> list[str]:
    """The targets and every job they wait on, transitively, in entry order (like make TARGET)."""
    by_id = {d.id: d for d in definitions}
    unknown = [t for t in targets if t not in by_id]
    if unknown:
        raise ValueError(
            f"no job {', '.join(map(repr, unknown))} in the jobs file; the ids are listed by "
            "`simplejob run JOBS.json -n`"
        )
    seen = closure({d.id: d.waiting for d in definitions}, targets)
    return [d.id for d in definitions if d.id in seen]


def _say(text: str) -> None:
    print(f"simplejob: {text}", file=sys.stderr, flush=True)


def _resume_hint(args: argparse.Namespace, batch: location.Batch, state_file: str) -> str:
    if batch.folder is not None:
        return "run the same command again to resume"
    return f"resume with: simplejob run {args.jobContexts} --stateFile {location.shown_path(state_file)}"


def command(args: argparse.Namespace) -> int:
    if args.html:
        html_directory = os.path.dirname(os.path.abspath(args.html))
        if not os.path.isdir(html_directory):
            raise ValueError(f"--html {args.html}: no directory {html_directory!r} to write the report in")
    contexts = location.read_jobs_file(args.jobContexts)
    definitions = parse_contexts(contexts)  # ValueError: bad input, nothing written
    selected = upstream(definitions, args.targets) if args.targets else [d.id for d in definitions]
    batch = location.for_run(args.jobContexts, args.stateFile, args.logOutputDirectory, reference=args.referenceForm)
    if args.dryRun:
        return _dry_run(args, batch, definitions, selected)
    if args.fresh:
        aside = location.move_aside(batch)
        if aside:
            _say(f"--fresh: the earlier batch was moved to {location.shown_path(aside)}")
    if batch.folder is not None:
        os.makedirs(batch.folder, mode=0o700, exist_ok=True)
    earlier = statefile.load(batch.stateFile) if batch.stateFile else None
    manager = JobManager(
        logOutputDirectory=batch.logOutputDirectory,
        stateFile=batch.stateFile,
        maxWorkers=args.maxWorkers,
        keepGoing=args.keepGoing,
        resources=dict(args.resources) or None,
        daskScheduler=args.dask,
    )
    manager.entry(contexts, targets=args.targets or None)
    assert manager.stateFile is not None
    kept = sum(1 for job in manager.jobs if job.resumed and job.id in set(selected))
    where = location.shown_path(batch.folder) + "/" if batch.folder else location.shown_path(manager.stateFile)
    logs = f", logs in {location.shown_path(batch.logOutputDirectory)}/" if batch.logOutputDirectory else ""
    scope = (
        f"{len(selected)} of {len(definitions)} jobs (targets {', '.join(args.targets)})"
        if args.targets
        else f"{len(definitions)} jobs"
    )
    _say(f"batch in {where}{logs}: {scope}" + (f", {kept} done earlier (kept)" if kept else ""))
    return _run(args, batch, manager, selected, earlier.generation if earlier else 0)


def _dry_run(
    args: argparse.Namespace, batch: location.Batch, definitions: list[JobDefinition], selected: list[str]
) -> int:
    old = statefile.load(batch.stateFile) if batch.stateFile else None  # read only
    rows = dryrun.explain(definitions, old, set(selected))
    runs = sum(1 for action, _, _ in rows if action == "run")
    state = location.shown_path(batch.stateFile) if batch.stateFile else "a new temporary state file"
    print(f"dry run ({state}): {runs} to run, {len(rows) - runs} kept; nothing was written or started")
    sys.stdout.write(dryrun.render(rows))
    return EXIT_OK


def _run(
    args: argparse.Namespace, batch: location.Batch, manager: JobManager, selected: list[str], base_generation: int
) -> int:
    assert manager.stateFile is not None
    quiet_stdout = args.report or args.referenceForm  # stdout is for the report JSON only
    out = sys.stderr if quiet_stdout else sys.stdout
    display: progress.Display
    if out.isatty():
        from .liveview import LiveView  # (rich: only for a terminal)

        display = LiveView(out, selected)
    else:
        display = progress.PlainLines(out, selected, batch.logOutputDirectory or None)
    started = time.monotonic()
    stop = threading.Event()
    watcher = threading.Thread(
        target=progress.follow,
        args=(manager.stateFile, base_generation, display, stop),
        name="simplejob-view",
        daemon=True,
    )
    interrupted: str | None = None
    died: SupervisorDied | None = None
    try:
        manager.runAllReadyJobs()
        watcher.start()
        manager.run(args.loopInterval)
    except CalledJobError:
        pass  # told below, job by job
    except KeyboardInterrupt as error:
        interrupted = str(error) or "interrupted by SIGINT"
    except SupervisorDied as error:  # BatchInterrupted too: the supervisor itself was signalled
        if error.returncode == 3:
            interrupted = getattr(error, "reason", None) or "interrupted"
        else:
            died = error
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
    records = {job.id: job for job in manager.jobs}
    display.update(records)
    display.stop()
    wall = time.monotonic() - started
    return _finish(args, batch, manager, records, selected, display, wall, interrupted, died)


def _finish(
    args: argparse.Namespace,
    batch: location.Batch,
    manager: JobManager,
    records: dict[str, JobRecord],
    selected: list[str],
    display: progress.Display,
    wall: float,
    interrupted: str | None,
    died: SupervisorDied | None,
) -> int:
    assert manager.stateFile is not None
    chosen = {job_id: records[job_id] for job_id in selected if job_id in records}
    blocked = blocked_by(chosen)
    failed = [r for r in chosen.values() if r.failure() and r.runningStatus != JobRunningStatus.Interrupted]
    if not isinstance(display, progress.PlainLines):  # plain lines showed each failure as it happened
        for record in failed[:MAX_TAILS]:
            sys.stderr.write(progress.failure_tail(record, batch.logOutputDirectory or None))
    if args.report or args.referenceForm:
        print(manager.report(), flush=True)
    if args.html:
        _write_html(args.html, manager.stateFile)
    summary = f"{len(chosen)} jobs in {seconds(wall)}: {counts_line(counts(chosen, blocked))}"
    print(summary, file=sys.stderr if (args.report or args.referenceForm) else sys.stdout, flush=True)
    hint = _resume_hint(args, batch, manager.stateFile)
    if interrupted:
        _say(f"interrupted; the running jobs were stopped and recorded as Interrupted ({interrupted}); {hint}")
        return EXIT_INTERRUPTED
    if isinstance(died, StateNotWritten):
        _say(f"{died.problem}; the batch was stopped and its running jobs killed; when the file can be written, {hint}")
        return EXIT_FAILED
    if died is not None:
        _say(f"the simplejob supervisor (pid {died.pid}) died before the batch finished; {hint}")
        return EXIT_FAILED
    if failed or blocked:
        shown = ", ".join(f"{r.id} ({r.failure()})" for r in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        _say(
            f"{len(failed)} job(s) failed: {shown}{more}; see `simplejob status "
            f"{_target(args, batch, manager.stateFile)}`; fix and {hint}"
        )
        return EXIT_FAILED
    if any(r.runningStatus != JobRunningStatus.Completed or r.exitCode != 0 for r in chosen.values()):
        _say(f"the batch stopped before every job ran; {hint}")
        return EXIT_FAILED
    if batch.folder is None and batch.stateFile is None:
        _say(f"state file {manager.stateFile}")  # the reference's form: a temporary state file
    return EXIT_OK


def _write_html(output: str, state_file: str) -> None:
    """`run --html FILE`: the report of the batch as it ended (finished, failed or interrupted)."""
    from . import htmlreport, status  # (rich and psutil: not for every run)

    try:
        htmlreport.write(status.read(state_file), output)
    except (OSError, ValueError, SimplejobError) as error:
        _say(f"could not write the HTML report {output}: {error}")
        return
    _say(f"HTML report: {location.shown_path(os.path.abspath(output))}")


def _target(args: argparse.Namespace, batch: location.Batch, state_file: str) -> str:
    return args.jobContexts if batch.folder is not None else location.shown_path(state_file)
