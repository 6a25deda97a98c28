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

    def _discover(self) -> None:
        psutil = self.psutil
        try:
            root = psutil.Process(self.root)
            self.procs.setdefault(self.root, root)
            for child in root.children(recursive=True):
                if child.pid in self.kinds:
                    continue
                try:
                    if "python" not in child.name().lower():
                        continue
                    depth, parent = 1, child.ppid()
                    while parent != self.root and depth < 4:
                        parent = psutil.Process(parent).ppid()
                        depth += 1
                except psutil.Error:
                    continue
                self.kinds[child.pid] = {1: "supervisor", 2: "worker"}.get(depth, "other")
                self.procs[child.pid] = child
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
