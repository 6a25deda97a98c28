#!/usr/bin/env python3
"""Benchmark simplejob against `make -j2` on generated job graphs, and print a Markdown report.

    python scripts/bench.py                                    # fan, layers and chain of 10,000; 3 rounds
    python scripts/bench.py fan:100000 layers:100000 --rounds 1
    python scripts/bench.py --quick                            # a few hundred jobs, 1 round: seconds
    python scripts/bench.py --reference --doit fan:10000 layers:1000 layers:2000 chain:1000

Graphs (GRAPH:JOBS arguments), every job running `true`:
    fan     JOBS independent jobs
    layers  layers of 50 jobs; each job waits on 2 jobs of the previous layer
    chain   JOBS jobs in sequence

Each round runs every system once on every graph, in an order that rotates between rounds, one
thing at a time: make (`make -r -s -j2` on a generated Makefile of .PHONY targets), this
checkout's simplejob (a fresh Python process doing JobManager(maxWorkers=2, stateFile=<a real
file in a new temporary directory>), entry() and run(), timed from JobManager() to the return
of run()), and with --reference / --doit, simplejob 0.0.6 from PyPI (its run() with the default
1-second poll interval; it has no parallelism limit) and `doit -n 2`, both installed with pip
into a throw-away virtual environment. The table shows the median over rounds.

Besides wall-clock time it measures: peak RSS of simplejob's processes per kind (the caller, the
supervisor, and the sum over the worker processes of each one's peak; job processes excluded),
sampled with psutil from a thread; CPU time of everything each system ran; entry() of
--entry-size jobs (validation included); the delay between a job's dependency finishing and the
job starting over a chain (from the state file: startTimestamp, and the previous job's
startTimestamp + elapsedSeconds); one completed() / errorOccurred() call during a running
--poll-size-job fan; report(); and the state file's size. After each simplejob run the state file
is checked: every job Completed with exit code 0, none started before its dependencies finished,
never more than 2 running at once. A violation, a crash or a failure of make is an error (exit
status 1); a time never is. The Markdown goes to stdout, progress to stderr; --json FILE also
writes every raw figure.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER_WIDTH = 50
WORKERS = 2
REFERENCE_PACKAGE = "simplejob==0.0.6"
GRAPHS = ("fan", "layers", "chain")
SYSTEMS = ("make", "simplejob", "reference", "doit")
TITLES = {"make": "make -j2", "simplejob": "simplejob", "reference": "simplejob 0.0.6", "doit": "doit -n 2"}


# --- graphs -------------------------------------------------------------------------------------


def dependencies(graph: str, size: int) -> list[list[int]]:
    """For each job (by index), the indexes of the jobs it waits on."""
    if graph == "fan":
        return [[] for _ in range(size)]
    if graph == "chain":
        return [[i - 1] if i else [] for i in range(size)]
    if graph == "layers":
        deps = []
        for i in range(size):
            layer, k = divmod(i, LAYER_WIDTH)
            base = (layer - 1) * LAYER_WIDTH
            deps.append([] if layer == 0 else [base + k, base + (k + 1) % LAYER_WIDTH])
        return deps
    raise ValueError(f"unknown graph {graph!r}; use one of {', '.join(GRAPHS)}")


def job_id(index: int) -> str:
    return f"j{index}"


def job_contexts(graph: str, size: int, waits_key: str = "waiting") -> list[dict[str, Any]]:
    """simplejob's job contexts for a graph (0.0.6 calls the dependency key "waits")."""
    contexts = []
    for i, deps in enumerate(dependencies(graph, size)):
        context: dict[str, Any] = {"id": job_id(i), "commandLine": "true"}
        if deps:
            context[waits_key] = [job_id(d) for d in deps]
        contexts.append(context)
    return contexts


def write_makefile(path: str, graph: str, size: int) -> None:
    deps = dependencies(graph, size)
    ids = [job_id(i) for i in range(size)]
    lines = []
    for start in range(0, size, 1000):
        lines.append(".PHONY: " + " ".join(ids[start:start + 1000]))
    lines.append(".PHONY: all")
    lines.append("all: " + " ".join(ids))
    for i, waits in enumerate(deps):
        lines.append(f"{ids[i]}: " + " ".join(ids[d] for d in waits))
        lines.append("\t@true")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


DODO = '''\
import json
import os

DOIT_CONFIG = {"verbosity": 0}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph.json")) as f:
    DEPS = json.load(f)


def task_jobs():
    for i, deps in enumerate(DEPS):
        yield {"basename": f"j{i}", "actions": [["true"]], "task_dep": [f"j{d}" for d in deps], "verbosity": 0}
'''


def write_dodo(directory: str, graph: str, size: int) -> None:
    with open(os.path.join(directory, "graph.json"), "w") as f:
        json.dump(dependencies(graph, size), f)
    with open(os.path.join(directory, "dodo.py"), "w") as f:
        f.write(DODO)


@dataclasses.dataclass(frozen=True)
class Spec:
    graph: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.graph}:{self.size}"


def parse_spec(text: str) -> Spec:
    graph, _, size = text.partition(":")
    if graph not in GRAPHS or not size.replace("_", "").replace(",", "").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give GRAPH:JOBS with GRAPH one of {', '.join(GRAPHS)}")
    jobs = int(size.replace("_", "").replace(",", ""))
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: JOBS must be at least 1")
    return Spec(graph, jobs)


# --- the state file -------------------------------------------------------------------------------


def read_state_jobs(path: str) -> dict[str, dict[str, Any]]:
    """The jobs of a state file: the snapshot, plus the journal lines of its generation beyond
    journalOffset (the final snapshot normally holds everything already)."""
    with open(path, encoding="utf-8") as f:
        snapshot = json.load(f)
    jobs = snapshot["jobs"]
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
            problems.append(f"{job_id(i)} ended {job.get('runningStatus')} with exit code {job.get('exitCode')!r}"
                            f" (reason {job.get('reason')!r})")
        if job.get("startTimestamp") is None or job.get("elapsedSeconds") is None:
            continue
        start[i] = job["startTimestamp"]
        finish[i] = job["startTimestamp"] + job["elapsedSeconds"]
    for i, waits in enumerate(deps):
        for d in waits:
            if i in start and d in finish and start[i] < finish[d] - 2e-6:  # elapsedSeconds has 6 decimals
                problems.append(f"{job_id(i)} started {finish[d] - start[i]:.6f} s before {job_id(d)}, "
                                "which it waits on, finished")
    events = sorted([(t, 1) for t in start.values()] + [(t, -1) for t in finish.values()], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    if peak > workers:
        problems.append(f"{peak} jobs ran at once with maxWorkers={workers}")
    if len(problems) > 10:
        problems[10:] = [f"... and {len(problems) - 10} more"]
    return problems


def chain_delays(jobs: dict[str, dict[str, Any]], size: int) -> list[float]:
    """Seconds from job i-1 finishing (startTimestamp + elapsedSeconds) to job i starting."""
    delays = []
    for i in range(1, size):
        before, job = jobs[job_id(i - 1)], jobs[job_id(i)]
        delays.append(job["startTimestamp"] - (before["startTimestamp"] + before["elapsedSeconds"]))
    return delays


# --- what runs in the child processes --------------------------------------------------------------
# The timed simplejob runs, the entry() and polling measurements and simplejob 0.0.6 each run in a
# fresh Python process (`bench.py --child KIND JSON`): the caller's RSS is then the caller's own,
# and 0.0.6 runs from its virtual environment. A child prints one JSON line on stdout.


def import_this_simplejob() -> Any:
    sys.path.insert(0, REPO)  # this checkout, whether or not it is installed
    import simplejob
    return simplejob


def child_simplejob(args: dict[str, Any]) -> dict[str, Any]:
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
        "seconds": ended - started, "entrySeconds": entered - started, "reportSeconds": report_seconds,
        "error": error, "snapshotBytes": os.path.getsize(path),
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
    return {"phases": phases, "finishedEarly": finished_early, "completedJobs": done,
            "runAllReadyJobsSeconds": start_seconds}


def child_reference(args: dict[str, Any]) -> dict[str, Any]:
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


# --- running things ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    seconds: float | None = None  # wall clock; None when it timed out or failed
    cell: str | None = None  # what the table shows instead of a time ("> 120 s", "RecursionError")
    cpu: float | None = None  # user + system seconds of every process it ran (that was waited for)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None  # a failure of the benchmark itself (exit status 1)
    noise: float | None = None  # share of the machine other processes used during the run (0..1)


def busy_cpu() -> float | None:
    """CPU seconds the whole machine spent busy since boot (/proc/stat), or None where unknown."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and every descendant it has waited for."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + children_cpu()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass
class Ran:
    seconds: float  # wall clock
    code: int | None  # None: it was killed after the timeout
    out: str
    err: str
    cpu: float  # user + system seconds of the process and every descendant it waited for
    noise: float | None  # share of the machine's CPUs that other processes used meanwhile (0..1)
    sampler: RssSampler | None = None


def run_process(argv: list[str], timeout: float, cwd: str | None = None, sample: bool = False) -> Ran:
    """Run argv in its own session; kill the session after timeout seconds."""
    busy_before, own_before, cpu_before = busy_cpu(), own_cpu(), children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    sampler = RssSampler(proc.pid) if sample else None
    if sampler:
        sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        code = None
    seconds = time.perf_counter() - started
    if sampler:
        sampler.stop()
    busy_after, noise = busy_cpu(), None
    if busy_before is not None and busy_after is not None:
        others = (busy_after - busy_before) - (own_cpu() - own_before)
        noise = min(1.0, max(0.0, others / (seconds * (os.cpu_count() or 1))))
    return Ran(seconds, code, out, err, children_cpu() - cpu_before, noise, sampler)


def last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class RssSampler(threading.Thread):
    """Peak RSS of a simplejob caller process and its Python descendants, by kind.

    The caller is the root; its Python children are supervisors; their Python children are
    workers; anything else (the jobs) is left out. Each process's peak is its VmHWM (the
    kernel's high-water mark, so nothing between two samples is missed) where /proc has it,
    else the largest RSS sampled. Memory is read every 50 ms; the process tree as often during
    the first 2 s (while the processes start), then every 0.5 s.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil
        self.psutil = psutil
        self.root = pid
        self.kinds: dict[int, str] = {pid: "caller"}
        self.procs: dict[int, Any] = {}
        self.peaks: dict[int, int] = {}
        self.stopping = threading.Event()

    def _discover(self) -> None:
        psutil = self.psutil
        try:
            root = psutil.Process(self.root)
            self.procs.setdefault(self.root, root)
            for child in root.children(recursive=True):
                if child.pid in self.kinds:
                    continue
                try:
                    if "python" not in child.name().lower():
                        continue
                    depth, parent = 1, child.ppid()
                    while parent != self.root and depth < 4:
                        parent = psutil.Process(parent).ppid()
                        depth += 1
                except psutil.Error:
                    continue
                self.kinds[child.pid] = {1: "supervisor", 2: "worker"}.get(depth, "other")
                self.procs[child.pid] = child
        except psutil.Error:
            pass

    def _sample(self) -> None:
        for pid, proc in list(self.procs.items()):
            peak = None
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak = int(line.split()[1]) * 1024
                            break
            except OSError:
                pass
            if peak is None:
                try:
                    peak = proc.memory_info().rss
                except self.psutil.Error:
                    continue
            self.peaks[pid] = max(self.peaks.get(pid, 0), peak)

    def run(self) -> None:
        started = next_discovery = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= next_discovery:
                self._discover()
                next_discovery = now + (0.05 if now - started < 2 else 0.5)  # quickly while they start
            self._sample()
            self.stopping.wait(0.05)

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def result(self) -> dict[str, Any]:
        by_kind: dict[str, list[int]] = {}
        for pid, peak in self.peaks.items():
            by_kind.setdefault(self.kinds[pid], []).append(peak)
        return {kind: {"count": len(peaks), "maxBytes": max(peaks), "sumBytes": sum(peaks)}
                for kind, peaks in by_kind.items()}


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.base = tempfile.mkdtemp(prefix="simplejob-bench-", dir=options.tmpdir)
        self.venv_python: str | None = None
        self.venv_bin: str | None = None
        self.files: dict[Spec, str] = {}  # spec -> directory with its Makefile, dodo.py
        self.errors: list[str] = []

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def fresh_dir(self, label: str) -> str:
        return tempfile.mkdtemp(prefix=label + "-", dir=self.base)

    def child(self, kind: str, args: dict[str, Any], timeout: float, python: str | None = None,
              sample: bool = False) -> Outcome:
        argv = [python or sys.executable, os.path.abspath(__file__), "--child", kind, json.dumps(args)]
        ran = run_process(argv, timeout, sample=sample)
        if ran.code is None:
            return Outcome(cell=f"> {timeout:g} s", data={"timedOut": True}, noise=ran.noise)
        data = last_json(ran.out)
        if ran.code != 0 or data is None:
            return Outcome(cell="error", error=f"`{kind}` child exited with {ran.code}:\n{tail(ran.err or ran.out)}")
        if ran.sampler:
            data["rss"] = ran.sampler.result()
        return Outcome(seconds=data.get("seconds"), cpu=ran.cpu, data=data, noise=ran.noise)

    # --- systems ------------------------------------------------------------------------------

    def spec_dir(self, spec: Spec) -> str:
        if spec not in self.files:
            directory = self.fresh_dir(f"{spec.graph}-{spec.size}")
            write_makefile(os.path.join(directory, "Makefile"), spec.graph, spec.size)
            if self.options.doit:
                write_dodo(directory, spec.graph, spec.size)
            self.files[spec] = directory
        return self.files[spec]

    def run_make(self, spec: Spec) -> Outcome:
        directory = self.spec_dir(spec)
        ran = run_process(["make", "-r", "-s", f"-j{WORKERS}", "-f", "Makefile", "all"], self.options.max_seconds,
                          cwd=directory)
        if ran.code is None:
            return Outcome(cell=f"> {self.options.max_seconds:g} s", noise=ran.noise,
                           error=f"make did not finish {spec.name} within {self.options.max_seconds:g} s")
        if ran.code != 0:
            return Outcome(cell="error", error=f"make failed on {spec.name} ({ran.code}):\n{tail(ran.err)}")
        return Outcome(seconds=ran.seconds, cpu=ran.cpu, noise=ran.noise)

    def run_simplejob(self, spec: Spec) -> Outcome:
        directory = self.fresh_dir("state")
        outcome = self.child("simplejob", {"graph": spec.graph, "size": spec.size, "dir": directory},
                             self.options.max_seconds, sample=True)
        if outcome.data.get("timedOut"):
            outcome.error = (f"simplejob did not finish {spec.name} within {self.options.max_seconds:g} s "
                             f"(state file kept: {self.keep(directory)})")
            return outcome
        if outcome.data.get("error") or outcome.data.get("problems"):
            found = [outcome.data["error"]] if outcome.data.get("error") else []
            outcome.error = (f"simplejob on {spec.name}: " + "; ".join(found + outcome.data.get("problems", []))
                             + f" (state file kept: {self.keep(directory)})")
            outcome.cell = "error"
            outcome.seconds = None
        else:
            shutil.rmtree(directory, ignore_errors=True)
        return outcome

    def settle(self) -> None:
        """With --settle S: wait (up to S seconds) until other processes use under 10% of the CPUs."""
        if not self.options.settle:
            return
        deadline, said = time.monotonic() + self.options.settle, False
        while True:
            before, own_before = busy_cpu(), own_cpu()
            time.sleep(0.5)
            after = busy_cpu()
            if before is None or after is None:
                return
            share = ((after - before) - (own_cpu() - own_before)) / (0.5 * (os.cpu_count() or 1))
            if share < 0.10 or time.monotonic() >= deadline:
                return
            if not said:
                progress(f"waiting for other processes to quiet down ({share:.0%} of the CPUs busy)")
                said = True

    def keep(self, directory: str) -> str:
        kept = tempfile.mkdtemp(prefix="simplejob-bench-failed-", dir=self.options.tmpdir)
        shutil.copytree(directory, kept, dirs_exist_ok=True)
        return os.path.join(kept, "state.json")

    def run_reference(self, spec: Spec) -> Outcome:
        outcome = self.child("reference", {"graph": spec.graph, "size": spec.size}, self.options.timeout,
                             python=self.venv_python)
        if outcome.data.get("error"):
            outcome.cell = outcome.data["error"]
        if outcome.error:  # a crash of 0.0.6 is a figure of the table, not an error of ours
            outcome.cell, outcome.error = "crashed", None
        return outcome

    def run_doit(self, spec: Spec) -> Outcome:
        directory = self.spec_dir(spec)
        for leftover in os.listdir(directory):
            if leftover.startswith("doit.db"):
                os.remove(os.path.join(directory, leftover))
        ran = run_process(
            [os.path.join(self.venv_bin, "doit"), "-n", str(WORKERS), "--db-file", "doit.db", "-f", "dodo.py"],
            self.options.timeout, cwd=directory)
        if ran.code is None:
            return Outcome(cell=f"> {self.options.timeout:g} s", noise=ran.noise)
        if ran.code != 0:
            return Outcome(cell=f"exit {ran.code}", data={"stderr": tail(ran.err, 5)})
        return Outcome(seconds=ran.seconds, cpu=ran.cpu, noise=ran.noise)

    def setup_venv(self) -> None:
        packages = ([REFERENCE_PACKAGE] if self.options.reference else []) + (["doit"] if self.options.doit else [])
        if not packages:
            return
        venv = self.options.venv or os.path.join(self.base, "venv")
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            progress(f"creating a virtual environment in {venv} for {', '.join(packages)}")
            subprocess.run([sys.executable, "-m", "venv", venv], check=True, stdout=subprocess.DEVNULL)
        probe = "import simplejob.simplejob" if self.options.reference else "pass"
        have_doit = not self.options.doit or os.path.exists(os.path.join(venv, "bin", "doit"))
        if subprocess.run([python, "-c", probe], capture_output=True).returncode != 0 or not have_doit:
            subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
                           check=True)
        self.venv_python, self.venv_bin = python, os.path.join(venv, "bin")


# --- reporting ----------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds:.3f}"
    return f"{seconds:.2f}" if seconds < 100 else f"{seconds:.0f}"


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def mb(n: float) -> str:
    return f"{n / 2**20:.1f}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(outcomes: list[Outcome]) -> tuple[float | None, str]:
    """The median time and its cell, or the cell of the first round that has no time."""
    for outcome in outcomes:
        if outcome.seconds is None:
            return None, outcome.cell or "error"
    if not outcomes:
        return None, "–"
    median = statistics.median(o.seconds for o in outcomes)
    return median, fmt_s(median)


def ratio_to_make(outcomes: list[Outcome], makes: list[Outcome]) -> float | None:
    """The median over rounds of (this round's time / the same round's make time): pairing runs
    that ran close together in time cancels slow changes in the machine's load."""
    ratios = [o.seconds / m.seconds for o, m in zip(outcomes, makes) if o.seconds and m.seconds]
    if not ratios or len(ratios) < len(outcomes):
        return None
    return statistics.median(ratios)


def fmt_ratio(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> list[str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        make = subprocess.run(["make", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        make = "make: not found"
    digest = hashlib.sha256()
    package = os.path.join(REPO, "simplejob")
    for root, dirs, names in os.walk(package):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as f:
                    digest.update(name.encode() + b"\0" + f.read())
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "--no-optional-locks", "-C", REPO, "status", "--porcelain", "--", "simplejob"],
                           capture_output=True, text=True)
    source = commit.stdout.strip() or "not a git checkout"
    if dirty.stdout.strip():
        source += " + uncommitted changes"
    return [
        f"- CPUs (nproc): {os.cpu_count()}; CPU: {cpu}",
        f"- Python {platform.python_version()} ({sys.executable}); kernel {platform.release()}; {make}",
        f"- simplejob under test: {package}, commit {source}, sources sha256 {digest.hexdigest()[:12]}",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark simplejob against make -j2 (see the module docstring).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("graphs", nargs="*", type=parse_spec, metavar="GRAPH:JOBS",
                        help="graphs to run: fan:N, layers:N, chain:N (default fan:10000 layers:10000 chain:10000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every system on every graph (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run: fan:300 layers:300 chain:300, 1 round, small extra measurements")
    parser.add_argument("--reference", action="store_true", help=f"add {REFERENCE_PACKAGE} from PyPI")
    parser.add_argument("--doit", action="store_true", help="add doit -n 2 (doit from PyPI)")
    parser.add_argument("--venv", help="virtual environment for --reference/--doit, reused if it exists "
                                       "(default: a throw-away one)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one run of simplejob 0.0.6 or doit may take before it is stopped and "
                             "shown as '> N s' (default 120)")
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help="seconds one run of make or simplejob may take before it is stopped (an error; "
                             "default 1800)")
    parser.add_argument("--entry-size", type=int, default=None,
                        help="jobs in the entry() measurement (default 100000)")
    parser.add_argument("--poll-size", type=int, default=None,
                        help="jobs in the fan during which completed()/errorOccurred() are timed "
                             "(default: the largest graph size)")
    parser.add_argument("--poll-seconds", type=float, default=None,
                        help="seconds of polling every 10 ms (default 3), followed by 4 polls 1 s apart")
    parser.add_argument("--delay-size", type=int, default=1000,
                        help="chain length for the dependency-to-start delay when no chain graph is run")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="before each run, wait up to this many seconds for other processes to use under "
                             "10%% of the CPUs (default 0: do not wait)")
    parser.add_argument("--max-noise", type=float, default=None, metavar="SHARE",
                        help="run again a run during which other processes used more than this share of the "
                             "CPUs (0..1; default: keep every run)")
    parser.add_argument("--noisy-retries", type=int, default=3,
                        help="with --max-noise, how many times a run is repeated at most; the quietest "
                             "attempt is kept (default 3)")
    parser.add_argument("--tmpdir", help="where the state files and Makefiles go (default: the system's)")
    parser.add_argument("--json", dest="json_path", help="also write every raw figure to this file")
    options = parser.parse_args(argv)
    if options.quick:
        options.graphs = options.graphs or [Spec("fan", 300), Spec("layers", 300), Spec("chain", 300)]
        options.rounds = options.rounds or 1
        options.entry_size = options.entry_size or 2000
        options.poll_seconds = options.poll_seconds if options.poll_seconds is not None else 0.5
    options.graphs = options.graphs or [Spec("fan", 10_000), Spec("layers", 10_000), Spec("chain", 10_000)]
    options.graphs = list(dict.fromkeys(options.graphs))
    options.rounds = options.rounds or 3
    options.entry_size = options.entry_size or 100_000
    options.poll_size = options.poll_size or max(spec.size for spec in options.graphs)
    options.poll_seconds = 3.0 if options.poll_seconds is None else options.poll_seconds
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    return options


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child_main(argv[1], argv[2])
        return 0
    options = parse_args(argv)
    if shutil.which("make") is None:
        print("bench: make is not installed; it is the baseline", file=sys.stderr)
        return 2
    header = machine()
    bench = Bench(options)
    try:
        bench.setup_venv()
        return report(bench, options, header)
    finally:
        bench.close()


def report(bench: Bench, options: argparse.Namespace, header: list[str]) -> int:
    systems = ["make", "simplejob"] + [s for s in ("reference", "doit") if getattr(options, s)]
    runners = {"make": bench.run_make, "simplejob": bench.run_simplejob,
               "reference": bench.run_reference, "doit": bench.run_doit}
    results: dict[Spec, dict[str, list[Outcome]]] = {spec: {s: [] for s in systems} for spec in options.graphs}
    given_up: set[tuple[Spec, str]] = set()
    discarded: dict[tuple[Spec, str], list[Outcome]] = {(spec, s): [] for spec in options.graphs for s in systems}  # 0.0.6 or doit timed out or failed: not run again on that graph
    wall_started = time.perf_counter()
    busy_started, own_started = busy_cpu(), own_cpu()

    for round_number in range(options.rounds):
        order = systems[round_number % len(systems):] + systems[:round_number % len(systems)]
        for spec in options.graphs:
            for system in order:
                if (spec, system) in given_up:
                    continue
                attempts: list[Outcome] = []
                for _ in range(options.noisy_retries + 1):
                    bench.settle()
                    outcome = runners[system](spec)
                    attempts.append(outcome)
                    shown = fmt_s(outcome.seconds) + " s" if outcome.seconds is not None else outcome.cell
                    progress(f"round {round_number + 1}/{options.rounds} {spec.name:<14} {TITLES[system]:<16} {shown}"
                             + (f"  (others used {outcome.noise:.0%} of the CPUs)" if outcome.noise else ""))
                    noisy = (options.max_noise is not None and outcome.noise is not None
                             and outcome.noise > options.max_noise and outcome.seconds is not None and not outcome.error)
                    if not noisy:
                        break
                    progress(f"  noisy: other processes used more than {options.max_noise:.0%} of the CPUs")
                # Keep the quietest attempt (the last one that failed or timed out, if any did).
                if outcome.seconds is not None and not outcome.error:
                    outcome = min(attempts, key=lambda o: o.noise or 0.0)
                discarded[(spec, system)].extend(o for o in attempts if o is not outcome)
                results[spec][system].append(outcome)
                if outcome.error:
                    bench.errors.append(outcome.error)
                if outcome.seconds is None and system in ("reference", "doit"):
                    given_up.add((spec, system))

    # --- extra measurements, one at a time after the rounds ---
    extras: dict[str, Any] = {}
    chains = [spec for spec in options.graphs if spec.graph == "chain"]
    if not chains:
        progress(f"chain:{options.delay_size} for the dependency-to-start delay")
        outcome = bench.run_simplejob(Spec("chain", options.delay_size))
        if outcome.error:
            bench.errors.append(outcome.error)
        extras["delayRun"] = outcome
    for graph in ("fan", "layers"):
        progress(f"entry() of {options.entry_size} jobs ({graph})")
        bench.settle()
        outcome = bench.child("entry", {"graph": graph, "size": options.entry_size, "dir": bench.fresh_dir("entry")},
                              options.max_seconds)
        if outcome.error:
            bench.errors.append(outcome.error)
        extras[f"entry-{graph}"] = outcome
    progress(f"completed()/errorOccurred() during a {options.poll_size}-job fan")
    bench.settle()
    poll = bench.child("poll", {"size": options.poll_size, "dir": bench.fresh_dir("poll"),
                                "pollSeconds": options.poll_seconds}, options.max_seconds)
    if poll.error:
        bench.errors.append(poll.error)
    extras["poll"] = poll
    total = time.perf_counter() - wall_started
    busy_ended = busy_cpu()
    others = (None if busy_started is None or busy_ended is None
              else max(0.0, (busy_ended - busy_started) - (own_cpu() - own_started)))

    out: list[str] = []
    command = "python scripts/bench.py " + " ".join(sys.argv[1:])
    out += ["## Benchmark run", "", f"Command: `{command.strip()}`", ""]
    out += header
    out.append(f"- {options.rounds} round(s); {WORKERS} workers; times are medians over the rounds, in seconds; "
               f"the whole run took {total:.0f} s; load average at the end: "
               + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if others is not None:
        out.append(f"- CPU time used by other processes during the run (noise): {others:.1f} s, "
                   f"{others / (total * (os.cpu_count() or 1)):.1%} of the machine")
    out.append("")

    head = ["graph", "jobs", "make -j2 (s)", "simplejob (s)", "× make", "simplejob jobs/s", "make jobs/s",
            "peak RSS MB: caller / supervisor / workers"]
    for system in systems[2:]:
        head += [f"{TITLES[system]} (s)", "× make"]
    rows = []
    for spec in options.graphs:
        make_s, make_cell = summary(results[spec]["make"])
        own_s, own_cell = summary(results[spec]["simplejob"])
        ratio = fmt_ratio(ratio_to_make(results[spec]["simplejob"], results[spec]["make"]))
        rss = [o.data.get("rss", {}) for o in results[spec]["simplejob"] if o.data.get("rss")]

        def peak(kind: str, key: str) -> str:
            values = [r[kind][key] for r in rss if kind in r]
            return mb(max(values)) if values else "–"
        workers = peak("worker", "sumBytes")
        row = [spec.graph, f"{spec.size:,}", make_cell, own_cell, ratio,
               f"{spec.size / own_s:,.0f}" if own_s else "–", f"{spec.size / make_s:,.0f}" if make_s else "–",
               f"{peak('caller', 'maxBytes')} / {peak('supervisor', 'maxBytes')} / {workers}"]
        for system in systems[2:]:
            _, cell = summary(results[spec][system])
            row += [cell, fmt_ratio(ratio_to_make(results[spec][system], results[spec]["make"]))]
        rows.append(row)
    out += [table(head, rows), ""]
    out.append("× make: the median over rounds of the ratio to the same round's make time. "
               "Peak RSS: the caller is the Python process that calls the API (it also holds the job "
               "contexts); the supervisor is its one child process; workers is the sum over the worker "
               "processes of each one's peak (job processes are not counted). Largest over the rounds.")
    if options.reference:
        out.append(f"{REFERENCE_PACKAGE} runs with its default run() poll interval (1 s) and no parallelism "
                   f"limit; '> N s' means it was stopped after --timeout N seconds and not run again on that graph.")
    out.append("")

    out += ["### simplejob details", ""]
    head = ["graph", "jobs", "µs per job", "entry() (s)", "report() (s)", "state file MB: snapshot + journal",
            "CPU s: make / simplejob", "dependency → start delay ms: median / p99 / max"]
    rows = []
    delays_by_spec: dict[Spec, list[float]] = {}
    for spec in list(options.graphs) + ([Spec("chain", options.delay_size)] if "delayRun" in extras else []):
        runs = results[spec]["simplejob"] if spec in results else [extras["delayRun"]]
        own = [o for o in runs if o.seconds is not None]
        if not own:
            rows.append([spec.graph, f"{spec.size:,}"] + ["–"] * 6)
            continue
        makes = [o for o in results.get(spec, {}).get("make", []) if o.cpu is not None]
        delays = [d for o in own for d in o.data.get("delays", [])]
        delays_by_spec[spec] = delays
        delay = (f"{fmt_ms(statistics.median(delays))} / {fmt_ms(percentile(delays, 99))} / {fmt_ms(max(delays))}"
                 if delays else "–")
        median_s = statistics.median(o.seconds for o in own)
        rows.append([
            spec.graph, f"{spec.size:,}", f"{median_s / spec.size * 1e6:,.0f}",
            fmt_s(statistics.median(o.data["entrySeconds"] for o in own)),
            fmt_s(statistics.median(o.data["reportSeconds"] for o in own)),
            f"{mb(own[-1].data['snapshotBytes'])} + {mb(own[-1].data['journalBytes'])}",
            (f"{statistics.median(o.cpu for o in makes):.2f}" if makes else "–")
            + f" / {statistics.median(o.cpu for o in own):.2f}",
            delay,
        ])
    out += [table(head, rows), ""]
    out.append("entry() and report() are the caller's calls within / after the timed run; CPU is user + system "
               "time of every process the system ran (its jobs included); the delay runs from a job's "
               "dependency finishing (startTimestamp + elapsedSeconds in the state file) to the job's "
               "startTimestamp, over every link of the chain in every round.")
    out.append("")

    out += ["### Other measurements", ""]
    for graph in ("fan", "layers"):
        outcome = extras[f"entry-{graph}"]
        out.append(f"- entry() of {options.entry_size:,} jobs ({graph}, validation included, "
                   f"JobManager() to return): {fmt_s(outcome.seconds) + ' s' if outcome.seconds else outcome.cell}"
                   + (f" (others used {outcome.noise:.0%} of the CPUs)" if outcome.noise is not None else ""))
    if poll.data.get("phases"):
        phases = poll.data["phases"]
        for interval, label in (("0.01", "every 10 ms"), ("1", "every 1 s")):
            calls = phases.get(interval, {})
            for name in ("completed", "errorOccurred"):
                values = calls.get(name) or []
                if values:
                    out.append(f"- {name}() polled {label} during a running {options.poll_size:,}-job fan: "
                               f"median {fmt_ms(statistics.median(values))} ms, p99 {fmt_ms(percentile(values, 99))} "
                               f"ms, max {fmt_ms(max(values))} ms over {len(values)} calls")
        out.append(f"- runAllReadyJobs() (starts the supervisor, first read of the state) for that fan: "
                   f"{fmt_s(poll.data['runAllReadyJobsSeconds'])} s; {poll.data['completedJobs']:,} jobs had "
                   "completed when polling stopped" + (" (the batch finished during polling)"
                                                        if poll.data["finishedEarly"] else ""))
    else:
        out.append(f"- completed()/errorOccurred(): {poll.cell or 'error'}")
    out.append("")

    out += ["### Every run", "", "Seconds, in run order; in brackets, the share of the CPUs that other processes "
            "used during that run (noise).", ""]
    for spec in options.graphs:
        for system in systems:
            cells = [(fmt_s(o.seconds) if o.seconds is not None else o.cell or "error")
                     + (f" ({o.noise:.0%})" if o.noise is not None else "") for o in results[spec][system]]
            dropped = [f"{fmt_s(o.seconds)} ({o.noise:.0%})" for o in discarded[(spec, system)]]
            out.append(f"- {spec.name} {TITLES[system]}: " + ", ".join(cells)
                       + (f"; not kept (noisier): {', '.join(dropped)}" if dropped else ""))
    out.append("")
    out += targets(options, results, extras, delays_by_spec)

    if bench.errors:
        out += ["### Errors", ""]
        out += ["```"] + [e for error in bench.errors for e in (error, "")] + ["```", ""]
    print("\n".join(out))
    if options.json_path:
        dump = {
            "command": command.strip(), "machine": header,
            "results": {spec.name: {s: [dataclasses.asdict(o) for o in outs] for s, outs in per.items()}
                        for spec, per in results.items()},
            "extras": {k: dataclasses.asdict(v) for k, v in extras.items()}, "errors": bench.errors,
        }
        with open(options.json_path, "w") as f:
            json.dump(dump, f, indent=1)
    return 1 if bench.errors else 0


def targets(options: argparse.Namespace, results: dict[Spec, dict[str, list[Outcome]]], extras: dict[str, Any],
            delays: dict[Spec, list[float]]) -> list[str]:
    """Issue 5's targets that this run's figures bear on (informational: never the exit status)."""
    lines = ["### Issue 5 targets in this run", ""]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"
    for spec in options.graphs:
        ratio = ratio_to_make(results[spec]["simplejob"], results[spec]["make"])
        limit = 1.5 if spec.graph == "chain" else 1.3
        if ratio is not None:
            lines.append(f"- {spec.name}: at most {limit}x make: {ratio:.2f}x, {verdict(ratio <= limit)}")
        if spec.size >= 100_000:
            sup = [o.data["rss"]["supervisor"]["maxBytes"] for o in results[spec]["simplejob"]
                   if "supervisor" in o.data.get("rss", {})]
            if sup:
                lines.append(f"- {spec.name}: supervisor peak RSS under 300 MB: {mb(max(sup))} MB, "
                             f"{verdict(max(sup) < 300 * 2**20)}")
    by_graph: dict[str, list[tuple[int, float]]] = {}
    for spec in options.graphs:
        own_s, _ = summary(results[spec]["simplejob"])
        if own_s:
            by_graph.setdefault(spec.graph, []).append((spec.size, own_s / spec.size))
    for graph, points in by_graph.items():
        if len(points) > 1:
            (small, small_per), (large, large_per) = min(points), max(points)
            if large > small:
                ratio = large_per / small_per
                lines.append(f"- {graph}: time per job at {large:,} within 1.2x of {small:,}: {ratio:.2f}x, "
                             f"{verdict(ratio <= 1.2)}")
    for spec, values in delays.items():
        if values:
            median = statistics.median(values)
            lines.append(f"- {spec.name}: dependency-to-start delay under 2 ms median: {fmt_ms(median)} ms, "
                         f"{verdict(median < 0.002)}")
    for graph in ("fan", "layers"):
        seconds = extras[f"entry-{graph}"].seconds
        if seconds is not None:
            lines.append(f"- entry() of {options.entry_size:,} jobs ({graph}) under 2 s: {fmt_s(seconds)} s, "
                         f"{verdict(seconds < 2)}")
    phases = extras["poll"].data.get("phases") or {}
    for interval, label in (("0.01", "every 10 ms"), ("1", "every 1 s")):
        values = [v for name in ("completed", "errorOccurred") for v in phases.get(interval, {}).get(name, [])]
        if values:
            lines.append(f"- one completed()/errorOccurred() call at {options.poll_size:,} jobs under 5 ms, polled "
                         f"{label}: median {fmt_ms(statistics.median(values))} ms, max {fmt_ms(max(values))} ms, "
                         f"{verdict(max(values) < 0.005)} (judged on the max)")
    lines.append("")
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
