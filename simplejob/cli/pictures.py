"""`simplejob graph TARGET` (DOT or Mermaid) and `simplejob report TARGET [--html]`: a batch to look at.

TARGET is resolved as `status` does (a jobs file, a state file or a batch folder). A jobs file
that never ran gives the bare graph; a state colours every node by its outcome.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import graph
from ..report import Report
from . import htmlreport, status
from .parser import EXIT_OK


def _write(text: str, output: str | None) -> None:
    if output in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    assert output is not None
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)


def graph_command(args: argparse.Namespace) -> int:
    view = status.read(args.target)
    drawn = htmlreport.graph_nodes(view)
    text = graph.to_mermaid(drawn) if args.format == "mermaid" else graph.to_dot(drawn)
    _write(text, args.output)
    return EXIT_OK


def report_command(args: argparse.Namespace) -> int:
    view = status.read(args.target)
    if not args.html:
        report = Report({"results": [{r.id: r.report()} for r in view.records.values()]})
        _write(str(report) + "\n", args.output)
        return EXIT_OK
    output = args.output or os.path.join(os.path.dirname(view.path), "report.html")
    htmlreport.write(view, output)
    print(f"simplejob: report written to {output}", file=sys.stderr)
    return EXIT_OK
