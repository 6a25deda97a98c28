"""`simplejob logs TARGET ID [--follow]` and `simplejob forget TARGET ID... | --all`.

`logs --follow` is `tail -f` that knows when to stop: it prints what the job writes and ends when
the job has ended (or when no batch runs it any more), with exit code 0 if the job completed with
exit code 0 and 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import BinaryIO

from .. import forget as forgetting
from ..model import JobRunningStatus
from . import location, status
from .describe import outcome
from .parser import EXIT_FAILED, EXIT_OK

FOLLOW_INTERVAL = 0.1  # seconds between reads of a followed log


def _copy(source: BinaryIO) -> None:
    while chunk := source.read(1 << 16):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def command(args: argparse.Namespace) -> int:
    view = status.read(args.target)
    if args.id not in view.records:
        raise ValueError(f"no job {args.id!r} in the batch of {location.shown_path(view.path)}")
    if not view.log_dir:
        raise ValueError(
            f"the batch of {location.shown_path(view.path)} kept no logs (it ran without "
            "--logOutputDirectory in the reference's form)"
        )
    path = os.path.join(view.log_dir, f"{args.id}.log")
    source: BinaryIO | None = None
    try:
        while True:
            if source is None and os.path.exists(path):
                source = open(path, "rb")  # noqa: SIM115  # kept open while following
            if source is not None:
                _copy(source)
            if not args.follow:
                break
            record = view.records[args.id]
            if view.batch != "running" or record.runningStatus not in (
                JobRunningStatus.Ready,
                JobRunningStatus.Running,
            ):
                if source is not None:
                    _copy(source)  # what it wrote last
                return EXIT_OK if outcome(record) == "ok" else EXIT_FAILED
            time.sleep(FOLLOW_INTERVAL)
            view = status.read(args.target)
        if source is None:
            print(f"simplejob: job {args.id!r} has no log yet ({outcome(view.records[args.id])})", file=sys.stderr)
        return EXIT_OK
    finally:
        if source is not None:
            source.close()


def forget_command(args: argparse.Namespace) -> int:
    path = location.resolve_target(args.target)
    forgotten = forgetting.forget(path, None if args.all else args.ids)
    if not forgotten:
        print("simplejob: nothing to forget: those jobs have not run (or run again anyway)")
    else:
        print(
            f"simplejob: forgot {len(forgotten)} job(s): {', '.join(forgotten)}; they run again on the next "
            "`simplejob run`"
        )
    return EXIT_OK
