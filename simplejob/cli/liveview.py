"""The live view of `simplejob run` on a terminal, drawn by rich (imported only here: a run in a
pipe or CI prints plain lines, progress.py, and does not load rich)."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..model import JobRecord, JobRunningStatus
from .describe import outcome, seconds
from .progress import Tracker

RUNNING_SHOWN = 10  # running jobs listed in the live view; the others are counted


class LiveView:
    """A terminal: a bar with done/total, elapsed and ETA, the running jobs with their elapsed
    time, and each failure printed above the view as it happens. Redrawn by rich."""

    def __init__(self, out: TextIO, selected: list[str]) -> None:
        console = Console(file=out)
        self.tracker = Tracker(selected)
        self.progress = Progress(
            TextColumn("[bold]jobs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task("jobs", total=len(selected))
        self.running = Text("")
        self.failures = 0
        self.lock = threading.Lock()
        self.live = Live(self._view(), console=console, refresh_per_second=8, transient=False)
        self.live.start()

    def _view(self) -> Group:
        return Group(self.progress, self.running)

    def update(self, records: dict[str, JobRecord]) -> None:
        with self.lock:
            for record in self.tracker.ended(records):
                if record.failure():
                    self.failures += 1
                    self.live.console.print(Text(f"✗ {record.id}: {outcome(record)}", style="red"))
            self.progress.update(self.task, completed=self.tracker.done)
            now = time.time()
            running = [r for r in records.values() if r.runningStatus == JobRunningStatus.Running]
            table = Table.grid(padding=(0, 2))
            for record in running[:RUNNING_SHOWN]:
                started = record.startTimestamp or now
                attempt = f"attempt {record.attempts}" if record.attempts > 1 else ""
                table.add_row(Text("running", style="cyan"), record.id, seconds(max(0.0, now - started)), attempt)
            more = len(running) - RUNNING_SHOWN
            extra = Text(f"and {more} more running") if more > 0 else Text("")
            self.live.update(Group(self.progress, table, extra))

    def stop(self) -> None:
        with self.lock:
            self.live.update(self.progress)  # the final picture: the bar, no running list
            self.live.stop()
