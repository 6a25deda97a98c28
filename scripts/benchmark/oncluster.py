"""`bench.py --dask`: simplejob on a Dask LocalCluster beside raw Dask and the local pool, in one run.

On one LocalCluster of 2 worker processes with 1 thread each (loopback), every job runs `true`:
    raw Dask     fan: client.submit(subprocess.run, ["true"]) N times, then wait for all;
                 chain: each submitted after the previous result
    simplejob    JobManager(daskScheduler=the cluster).entry(...) and run(), timed from JobManager()
                 to the return of run() (the supervisor's start, its import of distributed and its
                 connection included), and the start alone (runAllReadyJobs())
    local pool   the same batch with JobManager(maxWorkers=2): the worker pool, no Dask
And each as a user runs it, a whole `python -c` process timed from its spawn to its exit (the rule
of the make comparison since issue 13), on the same cluster:
    raw Dask     RAW_PROCESS: import distributed, Client(address), the same submissions, close
    simplejob    SIMPLEJOB_PROCESS: import simplejob, JobManager(daskScheduler=address), entry(),
                 run() (its supervisor imports distributed and connects)
In-process, raw Dask's import of distributed and its connection are outside the timed span while
simplejob's supervisor does both inside it; whole processes pay both on each side.
Medians over --rounds; the ratio is simplejob on Dask over raw Dask. The simplejob measured is this
checkout's (put first on sys.path, as measure.py does), whether or not another one is installed:
the supervisor, the Dask workers (spawned with this sys.path) and their worker processes load it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from . import REPO

FAN, CHAIN = 1000, 300
FIGURES = ("raw", "dask", "dask_start", "local", "raw_whole", "dask_whole")  # lists of seconds, one per round


def _graph(kind: str, size: int) -> list[dict[str, Any]]:
    if kind == "fan":
        return [{"id": f"j{i}", "commandLine": ["true"]} for i in range(size)]
    return [{"id": f"j{i}", "commandLine": ["true"], "waiting": [f"j{i - 1}"] if i else []} for i in range(size)]


def _raw(client: Any, kind: str, size: int) -> float:
    started = time.perf_counter()
    if kind == "fan":
        futures = [client.submit(subprocess.run, ["true"], pure=False) for _ in range(size)]
        client.gather(futures)
    else:
        for _ in range(size):
            client.submit(subprocess.run, ["true"], pure=False).result()
    return time.perf_counter() - started


# argv: KIND SIZE ADDRESS. What a user's own Dask script does for the batch.
RAW_PROCESS = """\
import subprocess, sys
from distributed import Client
kind, size, address = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with Client(address) as client:
    if kind == "fan":
        client.gather([client.submit(subprocess.run, ["true"], pure=False) for _ in range(size)])
    else:
        for _ in range(size):
            client.submit(subprocess.run, ["true"], pure=False).result()
"""

# argv: REPO KIND SIZE ADDRESS STATE_FILE. The same batch through simplejob (this checkout).
SIMPLEJOB_PROCESS = """\
import sys
repo, kind, size, address, state = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, repo)
from simplejob import JobManager
jobs = [
    {"id": f"j{i}", "commandLine": ["true"], **({"waiting": [f"j{i - 1}"]} if kind == "chain" and i else {})}
    for i in range(size)
]
manager = JobManager(stateFile=state, daskScheduler=address)
manager.entry(jobs)
manager.run(interval=0.05)
"""


def _whole(argv: list[str]) -> float:
    """Seconds from spawning a `python -c` process to its exit (it must succeed)."""
    started = time.perf_counter()
    ran = subprocess.run([sys.executable, "-c", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if ran.returncode != 0:
        raise RuntimeError(f"a timed process failed ({ran.returncode}):\n{ran.stderr[-2000:]}")
    return seconds


def _simplejob(kind: str, size: int, directory: str, address: str | None) -> tuple[float, float]:
    """(seconds from JobManager() to the return of run(), seconds of runAllReadyJobs() alone)."""
    from simplejob import JobManager  # (main() put this checkout first on sys.path)

    state = os.path.join(directory, f"{kind}-{size}-{'dask' if address else 'local'}-{time.time_ns()}.json")
    started = time.perf_counter()
    manager = JobManager(stateFile=state, maxWorkers=None if address else 2, daskScheduler=address)
    manager.entry(_graph(kind, size))
    before = time.perf_counter()
    manager.runAllReadyJobs()
    start = time.perf_counter() - before
    manager.run(interval=0.05)
    total = time.perf_counter() - started
    bad = [job.id for job in manager.jobs if job.exitCode != 0]
    if bad:
        raise RuntimeError(f"simplejob {kind}:{size} on {address or 'the local pool'}: jobs failed: {bad[:5]}")
    return total, start


def main(rounds: int) -> int:
    sys.path.insert(0, REPO)  # this checkout's simplejob, whether or not another one is installed
    import distributed

    import simplejob

    print(f"[bench --dask] simplejob from {os.path.dirname(simplejob.__file__)}", file=sys.stderr)

    rows: dict[tuple[str, int], dict[str, list[float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="simplejob-bench-dask-") as directory,
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.gather([client.submit(subprocess.run, ["true"], pure=False) for _ in range(20)])  # warm up
        for round_number in range(rounds):
            for kind, size in (("fan", FAN), ("chain", CHAIN)):
                figures = rows.setdefault((kind, size), {name: [] for name in FIGURES})
                print(f"[bench --dask] round {round_number + 1}/{rounds} {kind}:{size}", file=sys.stderr)
                figures["raw"].append(_raw(client, kind, size))
                total, start = _simplejob(kind, size, directory, cluster.scheduler_address)
                figures["dask"].append(total)
                figures["dask_start"].append(start)
                figures["local"].append(_simplejob(kind, size, directory, None)[0])
                address = cluster.scheduler_address
                figures["raw_whole"].append(_whole([RAW_PROCESS, kind, str(size), address]))
                state = os.path.join(directory, f"whole-{kind}-{size}-{time.time_ns()}.json")
                figures["dask_whole"].append(_whole([SIMPLEJOB_PROCESS, REPO, kind, str(size), address, state]))
    print("## simplejob on Dask\n")
    print(f"Command: `python scripts/bench.py --dask --rounds {rounds}`; LocalCluster of 2 worker processes x 1 thread")
    print(f"on 127.0.0.1, CPUs (nproc): {os.cpu_count()}; medians over {rounds} round(s), seconds.\n")
    print("| graph | jobs | raw Dask (s) | simplejob on Dask (s) | of which start-up (s) | × raw Dask "
          "| ms per job: raw / simplejob on Dask | local pool, 2 workers (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for (kind, size), figures in rows.items():
        raw, dask = statistics.median(figures["raw"]), statistics.median(figures["dask"])
        start, local = statistics.median(figures["dask_start"]), statistics.median(figures["local"])
        print(
            f"| {kind} | {size:,} | {raw:.2f} | {dask:.2f} | {start:.2f} | {dask / raw:.2f}x "
            f"| {1000 * raw / size:.1f} / {1000 * dask / size:.1f} | {local:.2f} |"
        )
    print(
        "\nWhole processes, as a user runs each (a fresh `python -c` from its spawn to its exit: raw Dask's "
        "import of distributed and Client() included, as simplejob's supervisor's are):\n"
    )
    print("| graph | jobs | raw Dask script (s) | simplejob script (s) | × raw Dask | worst round |")
    print("|---|---|---|---|---|---|")
    for (kind, size), figures in rows.items():
        raw, dask = statistics.median(figures["raw_whole"]), statistics.median(figures["dask_whole"])
        worst = max(d / r for d, r in zip(figures["dask_whole"], figures["raw_whole"], strict=True))
        print(f"| {kind} | {size:,} | {raw:.2f} | {dask:.2f} | {dask / raw:.2f}x | {worst:.2f}x |")
    return 0
