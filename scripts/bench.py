#!/usr/bin/env python3
"""Benchmark simplejob against `make -j2` on generated job graphs, and print a Markdown report.

    python scripts/bench.py                                    # fan, layers and chain of 10,000; 3 rounds
    python scripts/bench.py fan:100000 layers:100000 --rounds 1
    python scripts/bench.py fan:1000 chain:1000 --rss-size 100000   # issue 13's targets
    python scripts/bench.py --quick                            # a few hundred jobs, 1 round: seconds
    python scripts/bench.py --reference --doit fan:10000 layers:1000 layers:2000 chain:1000
    python scripts/bench.py --dask [--rounds N]                # on a Dask LocalCluster beside raw Dask

Graphs (GRAPH:JOBS arguments), every job running `true`:
    fan     JOBS independent jobs
    layers  layers of 50 jobs; each job waits on 2 jobs of the previous layer
    chain   JOBS jobs in sequence

After an untimed warm-up run of make and simplejob on the first graph (--no-warm-up skips it: the
first heavy runs on this machine kind are slower for both), each round runs every system once on
every graph, in an order that rotates between rounds, one thing at a time, and times each as a
user sees it (issue 13): the wall clock from spawning its
process to the exit of that process and of everything it started. The systems: make (`make -r -s
-j2` on a generated Makefile of .PHONY targets); this checkout's simplejob, installed as a user
installs it (`pip install .`, not editable, into a throw-away virtual environment: an editable
install's import hook would add about 10 ms to the start of each Python process), timed as a fresh
`python -c` process of that environment that imports simplejob, builds the job contexts, calls
JobManager(maxWorkers=2, stateFile=<a real file in a new temporary directory>), entry() and run(),
prints its in-process times and exits; and with --reference / --doit, simplejob 0.0.6 from PyPI (a `python -c` process
too, its run() with the default 1-second poll interval; it has no parallelism limit) and `doit -n
2`, both installed with pip into a throw-away virtual environment. The table shows the median
over rounds, and simplejob's in-process time (JobManager() to the return of run()) beside it.

Besides wall-clock time it measures: peak RSS of simplejob's processes per kind (the caller, the
supervisor, and the sum over the worker processes of each one's peak; job processes excluded),
sampled from a thread; CPU time of everything each system ran, and simplejob's split by process
(the caller's, the supervisor's and the workers' own utime + stime from /proc/PID/stat, read every
50 ms, so at most each one's last 50 ms before its exit is missed; the jobs: the rest); where
simplejob's whole process spends its time (start + exit, import, job contexts, entry(), run());
when a fan was run, the floor at the largest fan's size: a fresh `python -c` process forks 2, each
starts its half of the jobs (`true`) one at a time with os.posix_spawn(..., setsid=True) and
os.waitpid, timed as make is, beside make's median on that fan; with --rss-size N, one fan of N
jobs for the peak RSS; entry() of --entry-size jobs (validation included); the delay between a
job's dependency finishing and the job starting over a chain (from the state file:
startTimestamp, and the previous job's startTimestamp + elapsedSeconds); one completed() /
errorOccurred() call during a running --poll-size-job fan; report(); and the state file's size.
After each simplejob run, in a second process that is not timed, the state file is
checked: every job Completed with exit code 0, none started before its dependencies finished,
never more than 2 running at once; report() is timed there too. A violation, a crash, a failure of
make or of the floor is an error (exit status 1); a time never is, nor a target of issue 13 not
met (the report's last section judges them). The Markdown goes to stdout, progress to stderr;
--json FILE also writes every raw figure and the targets' verdicts.

The parts are in the package scripts/benchmark/, whose docstring says which module holds what.
"""

from __future__ import annotations

import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
