"""Process-tree control, the platform-specific part: start a job in its own group, find its tree, kill it.

POSIX: each job starts in its own session (so its process group is its pid), and the process
that launches jobs makes itself a child subreaper on Linux (prctl PR_SET_CHILD_SUBREAPER), so
that orphans, double-forked daemons and setsid'd grandchildren re-parent to it instead of to
init and psutil still finds them among its descendants. Without a subreaper (macOS, BSD) a
descendant that escaped both the job's session and its parent cannot be found.

Windows (written, not run here): jobs start with CREATE_NEW_PROCESS_GROUP and the tree is
found through psutil's parent links; a Job Object would also catch orphans.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import psutil

IS_WINDOWS = os.name == "nt"
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux only). True if it worked."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def popen_options() -> dict[str, Any]:
    """subprocess.Popen keyword arguments that start a job in its own group."""
    if IS_WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def has_children() -> bool:
    """Whether this process has any child left (cheap on Linux: one small /proc read)."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children", "rb") as f:
            return bool(f.read().strip())
    except OSError:
        return bool(psutil.Process().children())


def reap_zombies() -> None:
    """Collect exit statuses of orphans that re-parented to us and have exited."""
    if IS_WINDOWS:
        return
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_all(procs: list[psutil.Process], group: int | None, sig: int) -> None:
    if group is not None and not IS_WINDOWS:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            if sig == signal.SIGTERM:
                proc.terminate()
            else:
                proc.kill()
        except psutil.NoSuchProcess:
            pass


def kill_tree(procs: list[psutil.Process], *, group: int | None, grace: float, root: int | None = None) -> list[int]:
    """SIGTERM the processes (and the job's process group), wait up to grace seconds, SIGKILL the rest.

    root, when given, is re-scanned before SIGKILL so that children forked during the grace
    period die too. Returns the pids that were still alive when SIGTERM was sent.
    """
    procs = [p for p in procs if p.is_running()]
    _signal_all(procs, group, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace) if procs else ([], [])
    if root is not None:
        known = {p.pid for p in alive}
        alive += [p for p in descendants(root) if p.pid not in known]
    if alive or group is not None:
        _signal_all(alive, group, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=1.0)
    return [p.pid for p in procs]


def find_process(pid: int, started_at: float | None) -> psutil.Process | None:
    """The process with this pid if it is the one that started at started_at (pids get reused)."""
    try:
        proc = psutil.Process(pid)
        if started_at is not None and abs(proc.create_time() - started_at) > 1.0:
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
    if not IS_WINDOWS:
        procs += [p for p in psutil.process_iter() if p.pid != pid and _pgid(p.pid) == pid]
    return kill_tree(procs, group=None if IS_WINDOWS else pid, grace=grace)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
