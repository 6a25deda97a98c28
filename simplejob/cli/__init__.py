"""The command line: `simplejob run|status|logs|forget|graph|report`, and the reference's own form
`simplejob JOBS.json --logOutputDirectory DIR --loopInterval S`. See docs/command-line.md.

Where things are:

    parser.py    the commands, their flags, examples and one-line errors
    location.py  where a batch lives (.simplejob/<name>/ beside the jobs file) and what a TARGET names
    describe.py  the words for a job's outcome, and which jobs are blocked by a failure
    run.py       `run`: the batch, its exit code, the summary, a failed job's last lines
    progress.py  what `run` shows meanwhile: one line per job, or on a terminal liveview.py's bar
    dryrun.py    `run -n`: what would run, in order, and why
    status.py    `status`: the table, --json, --watch
    logs.py      `logs`, `logs --follow`; `forget` (on simplejob.forget)
    pictures.py  `graph` (DOT, Mermaid; on simplejob.graph) and `report` (JSON, --html)
    htmlreport.py the HTML report (also `run --html`): data, summary, graph; report.html is its page
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from ..errors import SimplejobError
from . import parser
from .parser import EXIT_INTERRUPTED, EXIT_USAGE

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell tool killed by the closed pipe would return

# command -> (module, function), imported when that command runs: `--version`, `--help` or
# `logs` need neither rich nor psutil nor the manager (95 -> 38 ms for `simplejob --version`)
COMMANDS = {
    "run": ("run", "command"),
    "status": ("status", "command"),
    "logs": ("logs", "command"),
    "forget": ("logs", "forget_command"),
    "graph": ("pictures", "graph_command"),
    "report": ("pictures", "report_command"),
}


def _interrupt(signum: int, _frame: object) -> None:
    # SIGTERM stops the batch the same orderly way as Ctrl-C; the argument is the reason recorded.
    raise KeyboardInterrupt(f"interrupted by {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse(argv)
        if args is None:
            return EXIT_USAGE
        module, function = COMMANDS[args.command]
        return int(getattr(importlib.import_module(f".{module}", __name__), function)(args))
    except BrokenPipeError:
        # `simplejob status x | head -1`: the reader left. Say nothing more (no traceback), and
        # point stdout at /dev/null so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (ValueError, SimplejobError) as error:
        print(f"simplejob: {parser.cli_words(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
