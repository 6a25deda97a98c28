"""Process-tree control on POSIX: sessions, process groups, signals, and Linux's child subreaper.

proctree.py imports this module on every platform but Windows and re-exports its interface;
verified on Linux by tests/test_process_control.py.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

import psutil

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make every descendant of this process findable, orphans included. True if it worked.

    Linux: orphans re-parent to us (prctl). Elsewhere (macOS, the BSDs): False; only live parent
    links and the job's process group are followed.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        result: int = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return result == 0


def popen_options() -> dict[str, Any]:
    """subprocess.Popen keyword arguments that start a job in its own session (its group is its pid)."""
    return {"start_new_session": True}


def descendants(pid: int) -> list[psutil.Process]:
    """The processes below pid, by their parent links (orphans included where we are a subreaper)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def has_children() -> bool:
    """Whether this process has any child left (cheap on Linux: one small /proc read)."""
    try:
        fd = os.open(f"/proc/self/task/{os.getpid()}/children", os.O_RDONLY)
        try:
            return bool(os.read(fd, 64).strip())
        finally:
            os.close(fd)
    except OSError:
        return bool(psutil.Process().children())


def reap_zombies() -> None:
    """Collect exit statuses of orphans that re-parented to us and have exited."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def signal_all(procs: list[psutil.Process], group: int | None, *, force: bool) -> None:
    """SIGTERM (force: SIGKILL) to the job's process group and to each process."""
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL if force else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            if force:
                proc.kill()
            else:
                proc.terminate()
        except psutil.NoSuchProcess:
            pass


def job_group(pid: int) -> tuple[int | None, list[psutil.Process]]:
    """For a job whose launcher is gone: its process group (its pid, the job started a session)
    and the other processes still in it, which may have lost their parent link to the job."""
    return pid, [p for p in psutil.process_iter() if p.pid != pid and _pgid(p.pid) == pid]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
