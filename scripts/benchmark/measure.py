"""What runs in a fresh Python process, started as `bench.py --child KIND JSON`.

The timed simplejob runs, the entry() and polling measurements and simplejob 0.0.6 each run in
a child process: the caller's RSS is then the caller's own, and 0.0.6 runs from its virtual
environment (whose Python runs this same script, so nothing here may import this checkout's
simplejob at module level). A child prints one JSON line, its figures, last on stdout;
systems.py reads it back.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from . import REPO, WORKERS
from .checks import chain_delays, check_run, read_state_jobs
from .graphs import dependencies, job_contexts


def import_this_simplejob() -> Any:
    sys.path.insert(0, REPO)  # this checkout, whether or not it is installed
    import simplejob

    return simplejob


def child_simplejob(args: dict[str, Any]) -> dict[str, Any]:
    """The timed run (JobManager() to the return of run()), report(), then the state file's check."""
    simplejob = import_this_simplejob()
    graph, size, directory = args["graph"], args["size"], args["dir"]
    contexts = job_contexts(graph, size)
    path = os.path.join(directory, "state.json")
    started = time.perf_counter()
    manager = simplejob.JobManager(maxWorkers=WORKERS, stateFile=path)
    manager.entry(contexts)
    entered = time.perf_counter()
    error = None
    try:
        manager.run()
    except Exception as exc:  # reported, and an error of the benchmark
        error = f"{type(exc).__name__}: {exc}"[:2000]
    ended = time.perf_counter()
    t = time.perf_counter()
    manager.report()
    report_seconds = time.perf_counter() - t
    result: dict[str, Any] = {
        "seconds": ended - started,
        "entrySeconds": entered - started,
        "reportSeconds": report_seconds,
        "error": error,
        "snapshotBytes": os.path.getsize(path),
        "journalBytes": os.path.getsize(path + ".journal") if os.path.exists(path + ".journal") else 0,
    }
    try:
        jobs = read_state_jobs(path)
        result["problems"] = check_run(jobs, dependencies(graph, size), WORKERS)
        if graph == "chain" and not result["problems"]:
            result["delays"] = [round(d, 7) for d in chain_delays(jobs, size)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result["problems"] = [f"cannot read the state file {path}: {type(exc).__name__}: {exc}"]
    return result


def child_entry(args: dict[str, Any]) -> dict[str, Any]:
    """entry() of a large batch, validation included: JobManager() to the return of entry()."""
    simplejob = import_this_simplejob()
    contexts = job_contexts(args["graph"], args["size"])
    started = time.perf_counter()
    manager = simplejob.JobManager(maxWorkers=WORKERS, stateFile=os.path.join(args["dir"], "state.json"))
    manager.entry(contexts)
    return {"seconds": time.perf_counter() - started}


def child_poll(args: dict[str, Any]) -> dict[str, Any]:
    """completed() and errorOccurred() while a fan runs: every 10 ms for pollSeconds, then every
    second for a few calls; then cancel() the rest and join()."""
    simplejob = import_this_simplejob()
    manager = simplejob.JobManager(maxWorkers=WORKERS, stateFile=os.path.join(args["dir"], "state.json"))
    manager.entry(job_contexts("fan", args["size"]))
    t = time.perf_counter()
    manager.runAllReadyJobs()
    start_seconds = time.perf_counter() - t
    phases: dict[str, dict[str, list[float]]] = {}
    finished_early = False
    for interval, duration in ((0.01, args["pollSeconds"]), (1.0, 4.5)):
        calls: dict[str, list[float]] = {"completed": [], "errorOccurred": []}
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline and not finished_early:
            time.sleep(interval)
            t = time.perf_counter()
            finished_early = manager.completed()
            calls["completed"].append(time.perf_counter() - t)
            t = time.perf_counter()
            manager.errorOccurred()
            calls["errorOccurred"].append(time.perf_counter() - t)
        phases[f"{interval:g}"] = calls
    done = sum(1 for job in manager.jobs if job.runningStatus.name == "Completed")
    manager.cancel()
    manager.join()
    return {
        "phases": phases,
        "finishedEarly": finished_early,
        "completedJobs": done,
        "runAllReadyJobsSeconds": start_seconds,
    }


def child_reference(args: dict[str, Any]) -> dict[str, Any]:
    """simplejob 0.0.6's entry() and run(), in the Python of its throw-away environment."""
    from simplejob.simplejob import SimpleJobManager  # 0.0.6, from the throw-away environment

    contexts = job_contexts(args["graph"], args["size"], waits_key="waits")
    started = time.perf_counter()
    try:
        manager = SimpleJobManager()
        manager.entry(contexts)
        manager.run()
    except RecursionError:
        return {"error": "RecursionError"}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"seconds": time.perf_counter() - started}


CHILDREN = {"simplejob": child_simplejob, "entry": child_entry, "poll": child_poll, "reference": child_reference}


def child_main(kind: str, arguments: str) -> None:
    result = CHILDREN[kind](json.loads(arguments))
    sys.stdout.flush()
    print("\n" + json.dumps(result), flush=True)
