"""The parts of scripts/bench.py, the benchmark of simplejob against `make -j2`.

    cli.py        the command line: options, then run, print the report, write --json
    rounds.py     the order of the runs: rounds of every system on every graph (again when
                  noisy), then the extra measurements
    systems.py    how each system is run and timed (whole processes, start to exit): make, this
                  simplejob, simplejob 0.0.6, doit, the floor; the temporary workspace and the
                  throw-away virtual environment
    measure.py    what runs in a fresh Python process: the timed simplejob and 0.0.6 runs and the
                  floor (`python -c`), and, as `bench.py --child KIND JSON`, the untimed check of a
                  run's state file and report(), entry(), completed()/errorOccurred() polling
    checks.py     what the state file shows: the jobs, what went wrong, the chain's delays
    graphs.py     the generated job graphs (fan, layers, chain) as job contexts, Makefile, dodo.py
    processes.py  running one command: wall-clock and CPU time, a timeout, the child's JSON line
    rss.py        the sampler of peak RSS and CPU time per process kind (caller, supervisor,
                  workers), and the split of a run's CPU time by process (the jobs: the rest)
    machine.py    the machine: its description, and how busy other processes keep it (noise)
    render.py     the Markdown report, one function per section, and the --json figures
    targets.py    the report's section on issue 13's targets, each judged on this run's figures
    figures.py    formatting and medians shared by the report's sections

Data flow: cli → rounds → systems → processes (→ `python -c measure.TIMED_SIMPLEJOB`, then
`bench.py --child check` → measure → checks), with rss sampling the timed process's tree; the
Outcomes come back to rounds, and render (with targets) turns them into Markdown.
"""

from __future__ import annotations

import os
import sys

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(SCRIPTS)  # the checkout whose simplejob is measured
BENCH_SCRIPT = os.path.join(SCRIPTS, "bench.py")  # what the child processes run (`--child KIND JSON`)
WORKERS = 2  # maxWorkers of simplejob, make -j, doit -n


def progress(message: str) -> None:
    """A progress line on stderr (stdout is the report)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
