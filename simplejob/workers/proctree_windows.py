"""Process-tree control on Windows: a Job Object around this process and everything it starts.

Written from the Win32 documentation and never run: NOT verified. Only the layout of the ctypes
structures is checked (tests/test_process_control.py, against the documented 64-bit sizes).

proctree.py imports this module on Windows and re-exports its interface. It also imports on any
other platform, where the tests check those structures: the structures are plain ctypes,
kernel32 is only loaded inside functions, and the few names the standard library has on Windows
only get stand-ins below (nothing uses them outside Windows).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Mapping

import psutil

if sys.platform == "win32":
    from ctypes import WinDLL, get_last_error
    from signal import CTRL_BREAK_EVENT
    from subprocess import CREATE_NEW_PROCESS_GROUP
else:  # stand-ins with the same types, so that the module imports and type-checks elsewhere
    CTRL_BREAK_EVENT = 1  # the documented values
    CREATE_NEW_PROCESS_GROUP = 0x00000200

    def WinDLL(name: str, *, use_last_error: bool = False) -> ctypes.CDLL:
        raise NotImplementedError("kernel32: Windows only")

    def get_last_error() -> int:
        raise NotImplementedError("GetLastError: Windows only")


def become_subreaper() -> bool:
    """Put this process, and so everything it will start, in a Job Object. True if it worked."""
    return _job_object.join()


class Spawned:
    """A job's process: a subprocess.Popen (Windows has no posix_spawn)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after timeout seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def spawn(
    argv: list[str] | str,
    *,
    shell: bool,
    cwd: str | None,
    env: Mapping[str, str] | None,
    stdin: int,
    stdout: int,
    stderr: int,
) -> Spawned:
    """Start a job in its own process group with these handles as its standard ones, and env's
    variables added to this process's environment."""
    proc = subprocess.Popen(
        argv,
        shell=shell,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        creationflags=CREATE_NEW_PROCESS_GROUP,
    )
    return Spawned(proc)


def descendants(pid: int) -> list[psutil.Process]:
    """The processes below pid. For our own pid with a Job Object: its other members, orphans too."""
    if pid == os.getpid() and _job_object.handle is not None:
        return _job_object.members()
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def reap_zombies() -> bool:
    """Windows has no zombies to collect; True if anything this process started is still alive
    (with a Job Object: orphans too)."""
    if _job_object.handle is not None:
        return bool(_job_object.members())
    return bool(psutil.Process().children())


def signal_all(procs: list[psutil.Process], group: int | None, *, force: bool) -> None:
    """The polite step is CTRL_BREAK_EVENT to the group only (psutil's terminate() is
    TerminateProcess here, not polite); the forced step is TerminateProcess on each process."""
    if not force:
        if group is not None:
            try:
                os.kill(group, CTRL_BREAK_EVENT)
            except OSError:
                pass  # not a console program, or already gone: the forced step follows
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def job_group(pid: int) -> tuple[int | None, list[psutil.Process]]:
    """For a job whose launcher is gone: no group to signal and no one to find by group, so the job
    and its descendants get no polite step, only TerminateProcess once the grace has run out."""
    return None, []


# --- the Job Object ------------------------------------------------------------------------------

_DWORD = ctypes.c_uint32
_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
_JOB_OBJECT_LIMIT_BREAKAWAY_OK = 0x0800
_JobObjectBasicProcessIdList = 3
_JobObjectExtendedLimitInformation = 9
_ERROR_MORE_DATA = 234


class _JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", _DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", _DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", _DWORD),
        ("SchedulingClass", _DWORD),
    ]


class _IO_COUNTERS(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "ReadOperationCount",
            "WriteOperationCount",
            "OtherOperationCount",
            "ReadTransferCount",
            "WriteTransferCount",
            "OtherTransferCount",
        )
    ]


class _JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _JOBOBJECT_BASIC_LIMIT_INFORMATION),
        ("IoInfo", _IO_COUNTERS),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryLimit", ctypes.c_size_t),
        ("PeakJobMemoryLimit", ctypes.c_size_t),
    ]


def _process_id_list(capacity: int) -> ctypes.Structure:
    """A JOBOBJECT_BASIC_PROCESS_ID_LIST with room for capacity pids."""

    class _JOBOBJECT_BASIC_PROCESS_ID_LIST(ctypes.Structure):
        _fields_ = [
            ("NumberOfAssignedProcesses", _DWORD),
            ("NumberOfProcessIdsInList", _DWORD),
            ("ProcessIdList", ctypes.c_size_t * capacity),
        ]

    return _JOBOBJECT_BASIC_PROCESS_ID_LIST()


class _JobObject:
    """This process's Job Object; handle stays None until join() succeeds."""

    def __init__(self) -> None:
        self.handle: int | None = None
        self.kernel32: ctypes.CDLL | None = None

    def join(self) -> bool:
        if self.handle is not None:
            return True
        kernel32 = WinDLL("kernel32", use_last_error=True)
        kernel32.CreateJobObjectW.restype = ctypes.c_void_p
        kernel32.GetCurrentProcess.restype = ctypes.c_void_p
        kernel32.SetInformationJobObject.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, _DWORD]
        kernel32.AssignProcessToJobObject.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        kernel32.QueryInformationJobObject.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            _DWORD,
            ctypes.c_void_p,
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
            handle,
            _JobObjectExtendedLimitInformation,
            ctypes.byref(info),
            ctypes.sizeof(info),
        ) and kernel32.AssignProcessToJobObject(handle, kernel32.GetCurrentProcess())
        if not ok:  # e.g. already in a job that forbids nesting (before Windows 8)
            kernel32.CloseHandle(handle)
            return False
        self.kernel32, self.handle = kernel32, handle
        return True

    def members(self) -> list[psutil.Process]:
        """The live processes in the Job Object other than this one."""
        if self.kernel32 is None:
            return []
        capacity = 256
        while True:
            pids = _process_id_list(capacity)
            ok = self.kernel32.QueryInformationJobObject(
                self.handle,
                _JobObjectBasicProcessIdList,
                ctypes.byref(pids),
                ctypes.sizeof(pids),
                None,
            )
            if ok and pids.NumberOfProcessIdsInList >= pids.NumberOfAssignedProcesses:
                break
            if not ok and get_last_error() != _ERROR_MORE_DATA:
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


_job_object = _JobObject()
