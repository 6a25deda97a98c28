"""What runs in the fresh Python processes of the benchmark.

The timed runs are whole processes, as a user sees them: `python -c TIMED_SIMPLEJOB ...` starts
Python, imports this checkout's simplejob, builds the job contexts (graphs.job_contexts), calls
JobManager(maxWorkers=2, stateFile=...), entry() and run(), prints its in-process times and
exits; its time is the wall clock from spawning it to its exit (systems.py). TIMED_REFERENCE
does the same with simplejob 0.0.6, in the Python of its throw-away environment. Nothing else
happens in a timed process: the check of the state file and report() run afterwards in a second,
untimed process (child_check). FLOOR is the floor measured once after the rounds (rounds.py):
what starting the jobs costs two Python processes that do nothing else.

The other measurements run as `bench.py --child KIND JSON` (KIND: check, entry, poll), each timed
inside its process. A child prints one JSON line, its figures, last on stdout; systems.py reads
it back. Nothing here may import this checkout's simplejob at module level (the timed processes
import only graphs.py of this package).
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

# argv: SCRIPTS GRAPH JOBS STATE_FILE WORKERS, in the Python of the environment simplejob is
# installed in (systems.Bench.install_simplejob). In-process times (perf_counter, cheap): import
# simplejob; build the contexts; JobManager() + entry(); run(); and "inProcessSeconds", JobManager()
# to the return of run() (what the benchmark timed before issue 13). A job that failed is "error".
TIMED_SIMPLEJOB = """\
import sys, time
began = time.perf_counter()
scripts, graph, size, path, workers = sys.argv[1:]
sys.path.append(scripts)
from simplejob import JobManager
imported = time.perf_counter()
from benchmark.graphs import job_contexts
contexts = job_contexts(graph, int(size))
built = time.perf_counter()
manager = JobManager(maxWorkers=int(workers), stateFile=path)
manager.entry(contexts)
entered = time.perf_counter()
error = None
try:
    manager.run()
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"[:2000]
ended = time.perf_counter()
import json
print("\\n" + json.dumps({
    "importSeconds": imported - began,
    "contextsSeconds": built - imported,
    "entrySeconds": entered - built,
    "runSeconds": ended - entered,
    "inProcessSeconds": ended - built,
    "codeSeconds": ended - began,
    "error": error,
}), flush=True)
"""

# argv: SCRIPTS GRAPH JOBS; run in a fresh directory (with -c, the current directory comes first
# on sys.path, and the checkout's own simplejob must not be found there).
TIMED_REFERENCE = """\
import sys, time
began = time.perf_counter()
scripts, graph, size = sys.argv[1:]
sys.path.insert(1, scripts)
from simplejob.simplejob import SimpleJobManager
imported = time.perf_counter()
from benchmark.graphs import job_contexts
contexts = job_contexts(graph, int(size), waits_key="waits")
built = time.perf_counter()
error = None
try:
    manager = SimpleJobManager()
    manager.entry(contexts)
    manager.run()
except RecursionError:
    error = "RecursionError"
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"[:200]
ended = time.perf_counter()
import json
print("\\n" + json.dumps({
    "importSeconds": imported - began,
    "inProcessSeconds": ended - built,
    "codeSeconds": ended - began,
    "error": error,
}), flush=True)
"""


# argv: TRUE JOBS. The floor: 2 forked processes, each starting its half of JOBS `true` one at a
# time (posix_spawn in a session of its own, stdin/stdout/stderr on /dev/null, as simplejob's
# workers do, then waitpid); the parent waits for both. Exit status 1 if a job or a child failed.
FLOOR = """\
import json, os, sys
true, jobs = sys.argv[1], int(sys.argv[2])
env = dict(os.environ)
null = os.open(os.devnull, os.O_RDWR)
actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
children = []
for half in (jobs // 2, jobs - jobs // 2):
    pid = os.fork()
    if pid == 0:
        failed = 0
        for _ in range(half):
            _, status = os.waitpid(os.posix_spawn(true, [true], env, file_actions=actions, setsid=True), 0)
            failed += status != 0
        os._exit(1 if failed else 0)
    children.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print(json.dumps({"jobs": jobs, "processes": len(children), "exitCodes": codes}), flush=True)
sys.exit(1 if any(codes) else 0)
"""


def import_this_simplejob() -> Any:
    sys.path.insert(0, REPO)  # this checkout, whether or not it is installed
    import simplejob

    return simplejob


def child_check(args: dict[str, Any]) -> dict[str, Any]:
    """After a timed run, untimed: the state file's sizes and check, the chain's delays, then
    report() of the finished batch (JobManager() and entry() of the same batch on its state
    file, which keeps the completed jobs; only report() is timed)."""
    graph, size, path = args["graph"], args["size"], args["path"]
    journal = path + ".journal"
    result: dict[str, Any] = {
        "snapshotBytes": os.path.getsize(path) if os.path.exists(path) else 0,
        "journalBytes": os.path.getsize(journal) if os.path.exists(journal) else 0,
        "reportSeconds": None,
    }
    try:
        jobs = read_state_jobs(path)
        result["problems"] = check_run(jobs, dependencies(graph, size), WORKERS)
        if graph == "chain" and not result["problems"]:
            result["delays"] = [round(d, 7) for d in chain_delays(jobs, size)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result["problems"] = [f"cannot read the state file {path}: {type(exc).__name__}: {exc}"]
    if result["problems"]:
        return result
    del jobs
    simplejob = import_this_simplejob()
    manager = simplejob.JobManager(maxWorkers=WORKERS, stateFile=path)
    manager.entry(job_contexts(graph, size))
    started = time.perf_counter()
    reported = manager.report()
    result["reportSeconds"] = time.perf_counter() - started
    results = reported["results"]
    if len(results) != size:
        result["problems"] = [f"report() of the finished batch has {len(results)} jobs, the batch had {size}"]
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


CHILDREN = {"check": child_check, "entry": child_entry, "poll": child_poll}


def child_main(kind: str, arguments: str) -> None:
    result = CHILDREN[kind](json.loads(arguments))
    sys.stdout.flush()
    print("\n" + json.dumps(result), flush=True)
