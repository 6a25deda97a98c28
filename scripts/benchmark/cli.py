"""The command line of scripts/bench.py: the options, then run, print the report, write --json.

`bench.py --child KIND JSON` is not for people: it is how the untimed check of a run and the
measurements inside a process run in a fresh Python process (measure.py).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import sys

from . import REPO
from .graphs import Spec, parse_spec
from .machine import machine
from .measure import child_main
from .render import json_figures, report
from .rounds import measure
from .systems import REFERENCE_PACKAGE, Bench


def main(argv: list[str]) -> int:
    """The exit status: 0, 1 when the benchmark found an error (never for a time), 2 without make."""
    if argv[:1] == ["--child"]:
        child_main(argv[1], argv[2])
        return 0
    if "--dask" in argv:  # simplejob on a Dask LocalCluster beside raw Dask: benchmark/oncluster.py
        from .oncluster import main as dask_main

        precompile()

        rounds = argv[argv.index("--rounds") + 1] if "--rounds" in argv else "1"
        return dask_main(int(rounds))
    options = parse_args(argv)
    if shutil.which("make") is None:
        print("bench: make is not installed; it is the baseline", file=sys.stderr)
        return 2
    header = machine()
    bench = Bench(options)
    try:
        precompile()
        against = bench.install_against()  # first: a REV that names nothing fails at once
        if against:
            header.append(against)
        bench.install_simplejob()
        bench.setup_venv()
        measured = measure(bench, options)
    finally:
        bench.close()
    command = ("python scripts/bench.py " + " ".join(sys.argv[1:])).strip()
    print(report(options, measured, header, command))
    if options.json_path:
        with open(options.json_path, "w") as f:
            json.dump(json_figures(options, measured, header, command), f, indent=1)
    return 1 if measured.errors else 0


def precompile() -> None:
    """Byte-compile the measured simplejob, as an installed package is (pip compiles at install
    time): where PYTHONDONTWRITEBYTECODE is set, every process would otherwise compile the
    package's source again at each start (about 40 ms for the caller and for the supervisor)."""
    compileall.compile_dir(os.path.join(REPO, "simplejob"), quiet=1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
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
    if options.rss_size < 0:
        parser.error("--rss-size must be 0 (skip) or a number of jobs")
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark simplejob against make -j2, each timed as a whole process from its start to\n"
        "its exit, and judge issue 13's targets (scripts/bench.py's docstring says what is measured).\n"
        "simplejob's CPU time is split by process (caller / supervisor / workers / jobs); when a fan is\n"
        "run, a floor follows the rounds: 2 Python processes that each posix_spawn + waitpid half of\n"
        "the largest fan's `true` jobs, timed as make is.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_what_runs(parser)
    add_limits_and_sizes(parser)
    add_noise_options(parser)
    parser.add_argument("--tmpdir", help="where the state files and Makefiles go (default: the system's)")
    parser.add_argument(
        "--json", dest="json_path", help="also write every raw figure and the targets' verdicts to this file"
    )
    return parser


def add_what_runs(parser: argparse.ArgumentParser) -> None:
    """The options on graphs, rounds and systems."""
    parser.add_argument(
        "graphs",
        nargs="*",
        type=parse_spec,
        metavar="GRAPH:JOBS",
        help="graphs to run: fan:N, layers:N, chain:N (default fan:10000 layers:10000 chain:10000)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every system on every graph (default 3)")
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="skip the untimed run of each system on the first graph before the rounds",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run: fan:300 layers:300 chain:300, 1 round, small extra measurements",
    )
    parser.add_argument("--reference", action="store_true", help=f"add {REFERENCE_PACKAGE} from PyPI")
    parser.add_argument("--doit", action="store_true", help="add doit -n 2 (doit from PyPI)")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="add simplejob as of REV (a commit, tag or branch of this repository), installed and timed "
        "as this checkout's is, in the same rounds: two versions side by side with make (an A/B)",
    )
    parser.add_argument(
        "--venv", help="virtual environment for --reference/--doit, reused if it exists (default: a throw-away one)"
    )


def add_limits_and_sizes(parser: argparse.ArgumentParser) -> None:
    """The options on time limits and the sizes of the extra measurements."""
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds one run of simplejob 0.0.6 or doit may take before it is stopped and shown as '> N s' "
        "(default 120)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=1800.0,
        help="seconds one run of make or simplejob (its whole process) may take before it is stopped "
        "(an error; default 1800)",
    )
    parser.add_argument(
        "--entry-size",
        type=int,
        default=None,
        help="jobs in the entry() measurement (default 100000, the size of issue 13's target; 2000 with --quick)",
    )
    parser.add_argument(
        "--poll-size",
        type=int,
        default=None,
        help="jobs in the fan during which completed()/errorOccurred() are timed (default: the largest graph size)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="seconds of polling every 10 ms (default 3), followed by 4 polls 1 s apart",
    )
    parser.add_argument(
        "--rss-size",
        type=int,
        default=0,
        metavar="N",
        help="after the rounds, run a fan and layers of N jobs each with simplejob (whole process) for the peak "
        "RSS of the caller, the supervisor and the workers; issue 13's target is at 100000 (default 0: skip)",
    )
    parser.add_argument(
        "--delay-size",
        type=int,
        default=1000,
        help="chain length for the dependency-to-start delay when no chain graph is run",
    )


def add_noise_options(parser: argparse.ArgumentParser) -> None:
    """The options on how to deal with other processes' load on the shared machine."""
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="before each run, wait up to this many seconds for other processes to use under 10%% of the CPUs "
        "(default 0: do not wait)",
    )
    parser.add_argument(
        "--max-noise",
        type=float,
        default=None,
        metavar="SHARE",
        help="run again a run during which other processes used more than this share of the CPUs "
        "(0..1; default: keep every run)",
    )
    parser.add_argument(
        "--noisy-retries",
        type=int,
        default=3,
        help="with --max-noise, how many times a run is repeated at most; the quietest attempt is kept (default 3)",
    )
