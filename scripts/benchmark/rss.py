"""The peak-RSS sampler of a simplejob run: a thread that watches the child's process tree."""

from __future__ import annotations

import threading
import time
from typing import Any


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
        import psutil  # here: the children in 0.0.6's environment import this package, psutil need not be there

        self.psutil = psutil
        self.root = pid
        self.kinds: dict[int, str] = {pid: "caller"}
        self.procs: dict[int, Any] = {}
        self.peaks: dict[int, int] = {}
        self.stopping = threading.Event()

    def _children(self, pid: int) -> list[int]:
        """pid's children: from /proc/PID/task/PID/children on Linux (a few bytes, where psutil
        would read the stat file of every process on the machine), else psutil's."""
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(child) for child in f.read().split()]
        except OSError:
            pass
        try:
            return [child.pid for child in self.psutil.Process(pid).children()]
        except self.psutil.Error:
            return []

    def _discover(self) -> None:
        """The caller's Python children are supervisors, theirs are workers, theirs "other"."""
        psutil = self.psutil
        level = [self.root]
        for kind in ("supervisor", "worker", "other"):
            found = []
            for parent in level:
                for pid in self._children(parent):
                    if pid not in self.kinds:
                        try:
                            proc = psutil.Process(pid)
                            if "python" not in proc.name().lower():
                                continue
                        except psutil.Error:
                            continue
                        self.kinds[pid], self.procs[pid] = kind, proc
                    found.append(pid)
            level = found
        try:
            self.procs.setdefault(self.root, psutil.Process(self.root))
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
        """{kind: {"count", "maxBytes", "sumBytes"}} over the processes of each kind."""
        by_kind: dict[str, list[int]] = {}
        for pid, peak in self.peaks.items():
            by_kind.setdefault(self.kinds[pid], []).append(peak)
        return {
            kind: {"count": len(peaks), "maxBytes": max(peaks), "sumBytes": sum(peaks)}
            for kind, peaks in by_kind.items()
        }
