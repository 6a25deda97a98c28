"""The sampler of a simplejob run's processes: a thread that watches the timed process's tree
for each process's peak RSS and CPU time, by kind (caller, supervisor, workers)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # the unit of /proc/PID/stat's times


class RssSampler(threading.Thread):
    """Peak RSS and CPU time of a simplejob caller process and its Python descendants, by kind.

    The caller is the root; its Python children are supervisors; their Python children are
    workers; anything else (the jobs) is left out. Each process's peak is its VmHWM (the
    kernel's high-water mark, so nothing between two samples is missed) where /proc has it,
    else the largest RSS sampled. Its CPU time is utime + stime from /proc/PID/stat (its own,
    its children's not included), the last value read: what it used after the last sample
    before its exit (at most 50 ms of it) is missed; where /proc has no stat, none is recorded.
    Memory and CPU time are read every 50 ms; the process tree as often during the first 2 s
    (while the processes start), then every 0.5 s.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil  # here: the children in 0.0.6's environment import this package, psutil need not be there

        self.psutil = psutil
        self.root = pid
        self.kinds: dict[int, str] = {pid: "caller"}
        self.procs: dict[int, Any] = {}
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds (utime + stime) at its last sample
        self.starts: dict[int, str] = {}  # pid -> its start time (/proc/PID/stat): a reused pid is not it
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
            self._sample_cpu(pid)

    def _sample_cpu(self, pid: int) -> None:
        """The process's CPU seconds so far, unless its pid now belongs to another process."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            return
        fields = stat.rpartition(")")[2].split()  # after the command's name, which may hold spaces
        if len(fields) < 20:
            return
        # fields[0] is field 3 (state): utime and stime are fields 14 and 15, starttime field 22.
        if self.starts.setdefault(pid, fields[19]) != fields[19]:
            return
        self.cpu[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

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
        """{kind: {"count", "maxBytes", "sumBytes", "cpuSeconds"}} over the processes of each kind;
        cpuSeconds: the sum of their CPU times (None where /proc gave none)."""
        by_kind: dict[str, list[int]] = {}
        for pid in self.peaks:
            by_kind.setdefault(self.kinds[pid], []).append(pid)
        result: dict[str, Any] = {}
        for kind, pids in by_kind.items():
            peaks, cpu = [self.peaks[pid] for pid in pids], [self.cpu[pid] for pid in pids if pid in self.cpu]
            result[kind] = {
                "count": len(pids),
                "maxBytes": max(peaks),
                "sumBytes": sum(peaks),
                "cpuSeconds": round(sum(cpu), 3) if cpu else None,
            }
        return result


PROCESS_KINDS = (("caller", "caller"), ("supervisor", "supervisor"), ("workers", "worker"))  # (shown as, kind)


def cpu_by_process(rss: dict[str, Any], total: float | None, jobs: int) -> dict[str, Any] | None:
    """A run's CPU seconds split by process: caller, supervisor, workers (RssSampler.result()),
    and jobs, the rest of the whole tree's `total` (never below 0); per job in µs too. None where
    a kind has no CPU time or the total is unknown."""
    split: dict[str, float] = {}
    for shown, kind in PROCESS_KINDS:
        seconds = (rss.get(kind) or {}).get("cpuSeconds")
        if seconds is None:
            return None
        split[shown] = seconds
    if total is None:
        return None
    split["jobs"] = max(0.0, total - sum(split.values()))
    split["total"] = total
    return {
        "seconds": {k: round(v, 3) for k, v in split.items()},
        "microsecondsPerJob": {k: round(v / jobs * 1e6, 1) for k, v in split.items()},
    }
