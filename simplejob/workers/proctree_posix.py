"""Process-tree control on POSIX: sessions, process groups, signals, and Linux's child subreaper.

proctree.py imports this module on every platform but Windows and re-exports its interface;
verified on Linux by tests/test_process_control.py.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, as in proctree.py
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


SHELL = "/bin/sh"
# Python ignores SIGPIPE and SIGXFSZ; a job gets their default actions back, as subprocess's
# restore_signals gives them (`yes | head` must end).
_RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
_programs: dict[tuple[str, str], str] = {}  # (name, PATH) -> its path, found once


class Spawned:
    """A job's process, reaped by waitpid (no subprocess.Popen per job: see spawn)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None  # as subprocess's: -N when killed by signal N

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Collected by a tree kill (psutil waits for the processes it killed): its status is lost.
                self.returncode = -signal.SIGKILL
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after timeout seconds."""
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.returncode


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
    """Start a job in its own session (its group is its pid) with these descriptors as 0, 1, 2,
    and env's variables added to this process's environment.

    os.posix_spawn (vfork and exec), the environment copied once into a dict: Popen(env=None)
    passes the C environ through, but posix_spawn would decode every entry of os.environ per job
    (that, not the spawn itself, took a worker from 212 to 170-188 µs of CPU per job). The working
    directory: posix_spawn cannot change it, so this (single-threaded) process changes its own
    around the spawn. Raises OSError as Popen would: filename is cwd when the directory is the problem, the
    program when it cannot be run.
    """
    if shell:
        argv = [SHELL, "-c", argv] if isinstance(argv, str) else [SHELL, "-c", *argv]
    assert isinstance(argv, list)
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1), (os.POSIX_SPAWN_DUP2, stderr, 2)]
    environment = {**_environment(), **env} if env else _environment()
    home = None
    if cwd is not None:
        home = os.open(".", os.O_RDONLY)
        try:
            os.chdir(cwd)
        except OSError:
            os.close(home)
            raise
    try:
        program = _program(argv[0], environment.get("PATH", os.defpath), cache=cwd is None)
        pid = os.posix_spawn(program, argv, environment, file_actions=actions, setsid=True, setsigdef=_RESTORED_SIGNALS)
    finally:
        if home is not None:
            os.fchdir(home)
            os.close(home)
    return Spawned(pid)


_own_environment: dict[str, str] | None = None


def _environment() -> dict[str, str]:
    """This process's environment as a plain dict, copied once: posix_spawn reads a dict much
    faster than os.environ, which decodes every entry on every read."""
    global _own_environment
    if _own_environment is None:
        _own_environment = dict(os.environ)
    return _own_environment


def _program(name: str, search: str, *, cache: bool) -> str:
    """The file to execute for argv[0]: as given when it names a path, else found in PATH (as
    execvpe would; once per name and PATH unless relative to a job's own directory)."""
    if os.sep in name:
        return name
    key = (name, search)
    found = _programs.get(key) if cache else None
    if found is None:
        found = shutil.which(name, path=search)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        if cache:
            _programs[key] = found
    return found


def descendants(pid: int) -> list[psutil.Process]:
    """The processes below pid, by their parent links (orphans included where we are a subreaper)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def reap_zombies() -> bool:
    """Collect the exit statuses of children that have exited (orphans that re-parented to us
    included); True if a child is still running. After a job ended this is usually one system
    call: waitpid says there is no child at all."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def signal_all(procs: list[psutil.Process], group: int | None, *, force: bool) -> None:
    """SIGTERM (force: SIGKILL) to the job's process group and to each process."""
    import psutil

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
    import psutil

    return pid, [p for p in psutil.process_iter() if p.pid != pid and _pgid(p.pid) == pid]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
