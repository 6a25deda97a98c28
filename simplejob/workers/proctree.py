"""Process-tree control, the platform-specific part: start a job in its own group, find its tree, kill it.

The interface (used by worker.py, pool.py and supervisor.py):

    become_subreaper()        make every descendant of this process findable, even orphans
    popen_options()           subprocess.Popen keyword arguments: start a job in its own group
    descendants(pid)          the tree below pid (for os.getpid(): everything we have started)
    has_children()            whether anything we started is still alive
    kill_tree(procs, ...)     polite signal to the group and the processes, grace, then force
    kill_job_tree(pid, ...)   the same knowing only a job's pid (its launcher is gone)
    kill_orphans(keep, ...)   kill what re-parented to us, except the processes in keep
    reap_zombies()            collect the exit statuses of orphans that re-parented to us

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

import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Any, Collection

import psutil

IS_WINDOWS = os.name == "nt"
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make every descendant of this process findable, orphans included. True if it worked.

    Linux: orphans re-parent to us (prctl). Windows: we and all we start join a Job Object.
    Elsewhere: False; only live parent links and the job's process group are followed.
    """
    if IS_WINDOWS:
        return _windows_job.join()
    if not sys.platform.startswith("linux"):
        return False
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
    if IS_WINDOWS and _windows_job.handle is not None:
        return bool(_windows_job.members())
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
    """The processes below pid. For our own pid on Windows with a Job Object: its other members."""
    if IS_WINDOWS and pid == os.getpid() and _windows_job.handle is not None:
        return _windows_job.members()
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_all(procs: list[psutil.Process], group: int | None, *, force: bool) -> None:
    """POSIX: SIGTERM (force: SIGKILL) to the group and to each process. Windows: the polite step is
    CTRL_BREAK_EVENT to the group only (psutil's terminate() is TerminateProcess there, not polite);
    the forced step is TerminateProcess on each process."""
    if IS_WINDOWS:
        if not force:
            if group is not None:
                try:
                    os.kill(group, signal.CTRL_BREAK_EVENT)
                except OSError:
                    pass  # not a console program, or already gone: the forced step follows
            return
    elif group is not None:
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


def kill_tree(procs: list[psutil.Process], *, group: int | None, grace: float, root: int | None = None) -> list[int]:
    """SIGTERM the processes (and the job's process group), wait up to grace seconds, SIGKILL the rest.

    root, when given, is re-scanned before SIGKILL so that children forked during the grace
    period die too. Returns the pids that were still alive when SIGTERM was sent.
    """
    procs = [p for p in procs if not _gone(p)]
    _signal_all(procs, group, force=False)
    alive = _wait_gone(procs, grace)
    if root is not None:
        known = {p.pid for p in alive}
        alive += [p for p in descendants(root) if p.pid not in known and not _gone(p)]
    if alive or group is not None:
        _signal_all(alive, group, force=True)
        _wait_gone(alive, 1.0)
    return [p.pid for p in procs]


def _gone(proc: psutil.Process) -> bool:
    """Exited (reaped here if it is our child). A zombie counts as gone: it runs nothing, and the
    init process may take seconds to reap an orphan's (psutil.wait_procs would wait for that)."""
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


def kill_orphans(keep: Collection[int], grace: float) -> list[int]:
    """Kill the trees of our children other than keep: after a launcher (a worker) died, what it
    started re-parents to us, its subreaper (Linux), and must not outlive it. Zombies are left
    alone: they are launchers whose exit status their Popen object still has to collect."""
    strays: list[psutil.Process] = []
    for child in psutil.Process().children():
        try:
            if child.pid in keep or child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        strays += [child, *descendants(child.pid)]
    return kill_tree(strays, group=None, grace=grace) if strays else []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


# --- Windows: a Job Object around this process and everything it starts (not verified) ------------
# The structures are plain ctypes, defined on every platform (their Win64 layout is checked in
# the tests); the functions are only called on Windows.

_DWORD = ctypes.c_uint32
_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
_JOB_OBJECT_LIMIT_BREAKAWAY_OK = 0x0800
_JobObjectBasicProcessIdList = 3
_JobObjectExtendedLimitInformation = 9
_ERROR_MORE_DATA = 234


class _JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", _DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", _DWORD),
        ("Affinity", ctypes.c_size_t), ("PriorityClass", _DWORD), ("SchedulingClass", _DWORD),
    ]


class _IO_COUNTERS(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount",
    )]


class _JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _JOBOBJECT_BASIC_LIMIT_INFORMATION), ("IoInfo", _IO_COUNTERS),
        ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryLimit", ctypes.c_size_t), ("PeakJobMemoryLimit", ctypes.c_size_t),
    ]


def _process_id_list(capacity: int) -> ctypes.Structure:
    """A JOBOBJECT_BASIC_PROCESS_ID_LIST with room for capacity pids."""

    class _JOBOBJECT_BASIC_PROCESS_ID_LIST(ctypes.Structure):
        _fields_ = [
            ("NumberOfAssignedProcesses", _DWORD), ("NumberOfProcessIdsInList", _DWORD),
            ("ProcessIdList", ctypes.c_size_t * capacity),
        ]

    return _JOBOBJECT_BASIC_PROCESS_ID_LIST()


class _WindowsJob:
    """This process's Job Object (Windows only); handle stays None elsewhere or if it failed."""

    def __init__(self) -> None:
        self.handle: int | None = None

    def join(self) -> bool:
        if self.handle is not None:
            return True
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        kernel32.CreateJobObjectW.restype = ctypes.c_void_p
        kernel32.GetCurrentProcess.restype = ctypes.c_void_p
        kernel32.SetInformationJobObject.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, _DWORD]
        kernel32.AssignProcessToJobObject.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        kernel32.QueryInformationJobObject.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, _DWORD, ctypes.c_void_p,
        ]
        kernel32.CloseHandle.argtypes = [ctypes.c_void_p]
        handle = kernel32.CreateJobObjectW(None, None)
        if not handle:
            return False
        info = _JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
        # Kill on close: when this process dies, the job's last handle closes and all it started dies.
        # Breakaway allowed: a job that asks for CREATE_BREAKAWAY_FROM_JOB may leave on purpose.
        info.BasicLimitInformation.LimitFlags = _JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | _JOB_OBJECT_LIMIT_BREAKAWAY_OK
        ok = kernel32.SetInformationJobObject(
            handle, _JobObjectExtendedLimitInformation, ctypes.byref(info), ctypes.sizeof(info),
        ) and kernel32.AssignProcessToJobObject(handle, kernel32.GetCurrentProcess())
        if not ok:  # e.g. already in a job that forbids nesting (before Windows 8)
            kernel32.CloseHandle(handle)
            return False
        self.kernel32, self.handle = kernel32, handle
        return True

    def members(self) -> list[psutil.Process]:
        """The live processes in the Job Object other than this one."""
        capacity = 256
        while True:
            pids = _process_id_list(capacity)
            ok = self.kernel32.QueryInformationJobObject(
                self.handle, _JobObjectBasicProcessIdList, ctypes.byref(pids), ctypes.sizeof(pids), None,
            )
            if ok and pids.NumberOfProcessIdsInList >= pids.NumberOfAssignedProcesses:
                break
            if not ok and ctypes.get_last_error() != _ERROR_MORE_DATA:  # type: ignore[attr-defined]
                return []
            capacity = max(4 * capacity, pids.NumberOfAssignedProcesses + 16)
        procs = []
        for pid in pids.ProcessIdList[: pids.NumberOfProcessIdsInList]:
            if pid != os.getpid():
                try:
                    procs.append(psutil.Process(pid))
                except psutil.NoSuchProcess:
                    pass
        return procs


_windows_job = _WindowsJob()
