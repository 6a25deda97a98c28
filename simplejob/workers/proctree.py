"""Process-tree control: start a job in its own group, find its tree, kill it.

The interface (used by worker.py, pool.py and supervisor.py):

    become_subreaper()        make every descendant of this process findable, even orphans
    spawn(argv, ...)          start a job in its own group; a Spawned: pid, poll(), wait(timeout)
    descendants(pid)          the tree below pid (for os.getpid(): everything we have started)
    kill_tree(procs, ...)     polite signal to the group and the processes, grace, then force
    kill_job_tree(pid, ...)   the same knowing only a job's pid (its launcher is gone)
    kill_orphans(keep, ...)   kill what re-parented to us, except the processes in keep
    reap_zombies()            collect the exit statuses of orphans that re-parented to us;
                              True if anything we started is still alive
    find_process(pid, ...)    the process with this pid, if it is the one that started then

This module holds what is the same everywhere: the order of a kill (polite signal, grace,
re-scan, force) and the waiting. What differs is in one module per platform, chosen once when
this one is imported: proctree_posix.py or proctree_windows.py (the _Platform protocol below).

POSIX (verified on Linux by tests/test_process_control.py): each job starts in its own session,
so its process group is its pid; the process that launches jobs makes itself a child subreaper
(prctl PR_SET_CHILD_SUBREAPER), so orphans, double-forked daemons and setsid'd grandchildren
re-parent to it instead of to init and stay among its descendants. A kill sends SIGTERM to the
group and to every descendant found, waits up to the grace period, re-scans, and sends SIGKILL
to what is left. Without a subreaper (macOS, the BSDs) a descendant that left both the job's
session and its parent cannot be found: only the group and the live parent links are reached.

Windows (written from the Win32 documentation, never run: NOT verified): jobs start with
CREATE_NEW_PROCESS_GROUP; become_subreaper() puts this process in a Job Object with
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, so everything it starts (orphans too: membership is
inherited, not a parent link) is in the Job Object, is listed from it, and dies when this
process dies and the Job Object's last handle closes. The polite step is CTRL_BREAK_EVENT to the
job's process group (reaches console programs only), the forced step TerminateProcess. When the
Job Object cannot be had (an older Windows forbidding nested jobs), the tree is found through
psutil's parent links, which miss orphans.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Protocol

# psutil is imported by the functions that use it, on POSIX: most batches kill nothing, and the
# import took 14 ms of every supervisor's start (its workers, forked from it, inherit what it imported).
if TYPE_CHECKING:
    import psutil

if sys.platform == "win32":
    from . import proctree_windows as _platform
else:
    from . import proctree_posix as _platform


class Spawned(Protocol):
    """A job's process as spawn() returns it."""

    pid: int

    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float) -> int | None: ...


class _Platform(Protocol):
    """What each platform module provides; the first four are re-exported as they are."""

    def become_subreaper(self) -> bool: ...
    def spawn(
        self,
        argv: list[str] | str,
        *,
        shell: bool,
        cwd: str | None,
        env: Mapping[str, str] | None,
        stdin: int,
        stdout: int,
        stderr: int,
    ) -> Spawned: ...
    def descendants(self, pid: int) -> list[psutil.Process]: ...
    def reap_zombies(self) -> bool: ...
    def signal_all(self, procs: list[psutil.Process], group: int | None, *, force: bool) -> None: ...
    def job_group(self, pid: int) -> tuple[int | None, list[psutil.Process]]: ...


if TYPE_CHECKING:  # mypy holds the chosen module to the protocol, and the Windows one on any platform
    from . import proctree_windows

    _checked: tuple[_Platform, _Platform] = (_platform, proctree_windows)

become_subreaper = _platform.become_subreaper
spawn = _platform.spawn
descendants = _platform.descendants
reap_zombies = _platform.reap_zombies


def kill_tree(procs: list[psutil.Process], *, group: int | None, grace: float, root: int | None = None) -> list[int]:
    """Polite signal to the processes (and the job's process group), wait up to grace seconds, force the rest.

    root, when given, is re-scanned before the forced step so that children forked during the
    grace period die too. Returns the pids that were still alive when the polite signal was sent.
    """
    procs = [p for p in procs if not _gone(p)]
    _platform.signal_all(procs, group, force=False)
    alive = _wait_gone(procs, grace)
    if root is not None:
        known = {p.pid for p in alive}
        alive += [p for p in descendants(root) if p.pid not in known and not _gone(p)]
    if alive or group is not None:
        _platform.signal_all(alive, group, force=True)
        _wait_gone(alive, 1.0)
    return [p.pid for p in procs]


def _gone(proc: psutil.Process) -> bool:
    """Exited (reaped here if it is our child). A zombie counts as gone: it runs nothing, and the
    init process may take seconds to reap an orphan's (psutil.wait_procs would wait for that)."""
    import psutil

    try:
        proc.wait(timeout=0)
        return True
    except psutil.TimeoutExpired:
        try:
            return proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to timeout seconds for the processes to be gone; returns those still running."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if not _gone(p)]
    return alive


# Seconds between a job's recorded start and its process's creation time as psutil tells it: that
# can be up to a second early on Linux (the boot time it adds is /proc/stat's, in whole seconds).
START_TOLERANCE = 2.0


def find_process(pid: int, started_at: float | None) -> psutil.Process | None:
    """The process with this pid if it is the one that started at started_at (pids get reused).
    Without a recorded start time nothing is known about the pid's owner: None."""
    if started_at is None:
        return None
    import psutil

    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started_at) > START_TOLERANCE:
            return None
        return proc
    except psutil.Error:
        return None


def kill_job_tree(pid: int, started_at: float | None, grace: float) -> list[int]:
    """Kill a job's whole tree knowing only its pid (its launcher is gone): its descendants and its group."""
    proc = find_process(pid, started_at)
    if proc is None:
        return []
    procs = [proc, *descendants(pid)]
    group, in_group = _platform.job_group(pid)
    return kill_tree(procs + in_group, group=group, grace=grace)


def kill_orphans(keep: Collection[int], grace: float) -> list[int]:
    """Kill the trees of our children other than keep: after a launcher (a worker) died, what it
    started re-parents to us, its subreaper (Linux), and must not outlive it. Zombies are left
    alone: they are launchers whose exit status their Popen object still has to collect."""
    import psutil

    strays: list[psutil.Process] = []
    for child in psutil.Process().children():
        try:
            if child.pid in keep or child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        strays += [child, *descendants(child.pid)]
    return kill_tree(strays, group=None, grace=grace) if strays else []
