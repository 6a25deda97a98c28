"""The commands and their flags: what `simplejob --help` and `simplejob COMMAND --help` show.

argparse's own error (a usage block, then "unrecognized arguments") is replaced by one line that
names the problem and where the help is; an unknown command is named as such.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from .. import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FINISHED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

RUN_EXAMPLES = """examples:
  simplejob run jobs.json                 run (or resume) the batch; it lives in .simplejob/jobs/
  simplejob run jobs.json -n              show what would run and why; write and start nothing
  simplejob run jobs.json link            run only the job 'link' and what it waits on
  simplejob run jobs.json --fresh         start over (the old state is moved aside)
  simplejob run jobs.json --report        print the report JSON at the end
  simplejob run jobs.json --dask tcp://scheduler:8786   run the jobs on a Dask cluster

exit codes: 0 every job completed with exit code 0; 1 a job failed, timed out, was cancelled or
could not run; 2 bad input (nothing written); 130 interrupted (Ctrl-C, SIGTERM)."""

STATUS_EXAMPLES = """examples:
  simplejob status jobs.json              the batch of jobs.json (in .simplejob/jobs/)
  simplejob status state.json --json      one JSON object, for scripts
  simplejob status jobs.json --watch      redraw until the batch ends

exit codes: 0 finished, every job completed with exit code 0; 1 a job failed, is blocked, was
cancelled or interrupted; 2 unreadable input; 3 not finished (running, never run, jobs left to run)."""

LOGS_EXAMPLES = """examples:
  simplejob logs jobs.json compile        print the log of job 'compile'
  simplejob logs jobs.json compile -f     stream it until the job ends (exit code 1 if it failed)"""

GRAPH_EXAMPLES = """examples:
  simplejob graph jobs.json | dot -Tsvg > graph.svg     draw it with Graphviz
  simplejob graph jobs.json --format mermaid          a Mermaid flowchart, for a Markdown page
  simplejob graph .simplejob/jobs/state.json -o g.dot  coloured by outcome, with elapsed times"""

REPORT_EXAMPLES = """examples:
  simplejob report jobs.json --html -o report.html   one self-contained page: summary, timeline, graph, jobs
  simplejob report jobs.json                          the report JSON (as `run --report` prints it)"""

FORGET_EXAMPLES = """examples:
  simplejob forget jobs.json fetch        'fetch' and every job waiting on it run again next time
  simplejob forget jobs.json --all        every job runs again next time"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not a usage block: what is wrong and where the help is."""
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _number(*, integer: bool = False, minimum: float = 0, inclusive: bool = False) -> Callable[[str], float]:
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    kind = "an integer" if integer else "a number"

    def parse(text: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} {bound}, not {text!r}") from None
        if value != value or value in (float("inf"),) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {kind} {bound}, not {text!r}")
        return value

    return parse


def _resource(text: str) -> tuple[str, float]:
    name, equals, amount = text.partition("=")
    try:
        value = float(amount)
    except ValueError:
        value = -1.0
    if not equals or not name.strip() or not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be NAME=AMOUNT with an amount >= 0, e.g. gpu=1, not {text!r}")
    return name.strip(), value


def build() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    top = _Parser(
        prog="simplejob",
        description="Run a batch of commands in dependency order, several at a time; watch it, keep its "
        "output, resume it by running the same command again.",
        epilog=RUN_EXAMPLES.replace("examples:", "examples (see also simplejob COMMAND --help):"),
        formatter_class=raw,
    )
    top.add_argument("--version", action="version", version=f"simplejob {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run (or resume) a batch",
        epilog=RUN_EXAMPLES,
        formatter_class=raw,
        description="Run the jobs of JOBS.json, in dependency order. Running the same "
        "command again resumes the batch: jobs done earlier are kept.",
    )
    run.add_argument("jobContexts", metavar="JOBS.json", help='JSON file holding {"jobContexts": [...]}')
    run.add_argument(
        "targets", metavar="ID", nargs="*", help="run only these jobs and what they wait on (default: every job)"
    )
    run.add_argument(
        "--stateFile",
        "--state-file",
        metavar="FILE",
        default=None,
        help="keep the batch's state in FILE (default: .simplejob/<name>/state.json beside JOBS.json)",
    )
    run.add_argument(
        "--logOutputDirectory",
        "--log-dir",
        metavar="DIR",
        default=None,
        help="write each job's output to DIR/<id>.log (default: logs/ beside the state file)",
    )
    run.add_argument(
        "--maxWorkers",
        "-j",
        metavar="N",
        type=_number(integer=True, minimum=1, inclusive=True),
        default=None,
        help="jobs at a time (default: the number of CPUs)",
    )
    run.add_argument(
        "--keepGoing", "-k", action="store_true", help="after a failure, still run every job that does not depend on it"
    )
    run.add_argument(
        "--loopInterval",
        metavar="S",
        type=_number(),
        default=1.0,
        help="seconds between checks of the batch (jobs start on time regardless)",
    )
    run.add_argument(
        "--fresh", action="store_true", help="start over: move the old state aside (never deleted) instead of resuming"
    )
    run.add_argument(
        "--dry-run",
        "-n",
        dest="dryRun",
        action="store_true",
        help="print what would run, in order, and why; write and start nothing",
    )
    run.add_argument("--report", action="store_true", help="print the report JSON at the end (as the API's report())")
    run.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="run the jobs on the Dask cluster of this scheduler (tcp://HOST:PORT); needs simplejob[dask]; "
        "see docs/dask.md",
    )
    run.add_argument(
        "--resource",
        metavar="NAME=AMOUNT",
        dest="resources",
        action="append",
        type=_resource,
        default=[],
        help="what the jobs' resources may add up to at once on this machine, e.g. --resource gpu=1 (repeatable)",
    )
    run.add_argument(
        "--html",
        metavar="FILE",
        default=None,
        help="write an HTML report (timeline, graph, jobs) to FILE when the batch ends, however it ends",
    )

    status = commands.add_parser(
        "status",
        help="show a batch's jobs (running or finished)",
        epilog=STATUS_EXAMPLES,
        formatter_class=raw,
        description="Show the jobs of a batch: outcomes, failures, "
        "jobs blocked by a failure, log paths. Reads the state; never disturbs the batch.",
    )
    status.add_argument("target", metavar="TARGET", help="a state file, a jobs file (its batch), or a batch folder")
    status.add_argument("--json", action="store_true", help="print one JSON object (stable keys) instead of a table")
    status.add_argument("--watch", "-w", action="store_true", help="redraw until the batch ends")
    status.add_argument("--interval", metavar="S", type=_number(), default=1.0, help="seconds between redraws")

    logs = commands.add_parser(
        "logs",
        help="print a job's log",
        epilog=LOGS_EXAMPLES,
        formatter_class=raw,
        description="Print the log of one job of a batch.",
    )
    logs.add_argument("target", metavar="TARGET", help="a state file, a jobs file (its batch), or a batch folder")
    logs.add_argument("id", metavar="ID", help="the job's id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing what the job writes until it ends")

    graph = commands.add_parser(
        "graph",
        help="print a batch's dependency graph (Graphviz DOT or Mermaid)",
        epilog=GRAPH_EXAMPLES,
        formatter_class=raw,
        description="Print the dependency graph of a batch: every job a node, every wait an edge from the "
        "job waited on to the job that waits. With a state, nodes are coloured by outcome and show their "
        "elapsed time.",
    )
    graph.add_argument("target", metavar="TARGET", help="a jobs file, a state file, or a batch folder")
    graph.add_argument("--format", choices=("dot", "mermaid"), default="dot", help="dot (default) or mermaid")
    graph.add_argument("--output", "-o", metavar="FILE", default=None, help="write to FILE instead of stdout")

    report = commands.add_parser(
        "report",
        help="a batch's report: JSON, or --html, a page with its timeline and graph",
        epilog=REPORT_EXAMPLES,
        formatter_class=raw,
        description="Print the report JSON of a batch, or with --html write one self-contained HTML page "
        "(no network needed): a summary, a timeline of the run, the dependency graph and a table of the jobs.",
    )
    report.add_argument("target", metavar="TARGET", help="a state file, a jobs file (its batch), or a batch folder")
    report.add_argument(
        "--html", action="store_true", help="write the HTML report (default FILE: report.html beside the state file)"
    )
    report.add_argument("--output", "-o", metavar="FILE", default=None, help="write to FILE instead of stdout")

    forget = commands.add_parser(
        "forget",
        help="make jobs run again on the next run",
        epilog=FORGET_EXAMPLES,
        formatter_class=raw,
        description="Forget that jobs ran: they, and every job "
        "waiting on them, run again on the next `simplejob run`. Refused while the batch runs.",
    )
    forget.add_argument("target", metavar="TARGET", help="a state file, a jobs file (its batch), or a batch folder")
    forget.add_argument("ids", metavar="ID", nargs="*", help="the jobs to forget")
    forget.add_argument("--all", action="store_true", help="forget every job")
    return top


COMMAND_NAMES = ("run", "status", "logs", "forget", "graph", "report")


def parse(argv: list[str]) -> argparse.Namespace | None:
    """The parsed arguments, or None after printing why there are none (exit code 2)."""
    reference = bool(argv) and argv[0] not in COMMAND_NAMES and not argv[0].startswith("-")
    if reference:
        first = argv[0]
        if not (os.path.exists(first) or first.endswith(".json") or os.sep in first):
            close = difflib.get_close_matches(first, COMMAND_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            print(
                f"simplejob: unknown command {first!r}{hint}; the commands are {', '.join(COMMAND_NAMES)}, "
                "or give a jobs file: simplejob JOBS.json",
                file=sys.stderr,
            )
            return None
        argv = ["run", *argv]  # the reference's form: simplejob JOBS.json [--logOutputDirectory DIR] ...
    parser = build()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return None
    args.referenceForm = reference
    if args.command == "forget" and not args.ids and not args.all:
        parser.error("forget: give the ids of the jobs to forget, or --all")
    return args


def cli_words(message: str) -> str:
    """An API message in command-line words: the option is --stateFile, not a Python argument."""
    return message.replace("another stateFile", "another --stateFile").replace(
        "choose another --stateFile", "choose another --stateFile (or wait: simplejob status)"
    )
