"""Shared test helpers, and the session-end check that no process started by the suite is left.

Every process the suite starts (supervisors, workers, jobs and whatever they fork) inherits
SIMPLEJOB_TEST_SESSION from os.environ; at the end of the session any live process carrying
it (other than pytest itself) is a leak: it is listed, killed, and fails the session.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

MARKER = "SIMPLEJOB_TEST_SESSION"

# The suite starts commands as a terminal would: SIGINT and SIGQUIT with their default actions.
# A runner started with "&" by a non-interactive shell ignores both, and exec keeps a signal
# ignored (simplejob, like make, leaves it so): Ctrl-C would do nothing, and a job would start
# with SIGQUIT ignored. Python's handler for SIGINT is reset to the default by exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if hasattr(signal, "SIGQUIT") and signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:  # (not on Windows)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def session_processes(marker: str, variable: str = MARKER) -> list[psutil.Process]:
    """Live processes (not this one) whose environment has variable=marker: what we started."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(variable) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    marker = uuid.uuid4().hex
    os.environ[MARKER] = marker
    yield
    # Batches of JobManager() without a stateFile that failed on purpose keep their temporary
    # directories at exit (and name them): the suite removes its own instead.
    from simplejob import manager

    for directory in manager._temporary_dirs:
        shutil.rmtree(directory, ignore_errors=True)
    manager._temporary_dirs.clear()
    deadline = time.monotonic() + 5.0
    left = session_processes(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = session_processes(marker)
    if left:
        described = []
        for proc in left:
            try:
                described.append(f"{proc.pid} {proc.cmdline()}")
                proc.kill()
            except psutil.Error:
                pass
        pytest.fail("processes started by the test suite are still running:\n" + "\n".join(described))


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01, message: str = "condition"):
    """Poll predicate against a monotonic deadline; returns its first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def py(code: str) -> list[str]:
    """A command line running Python code (a portable way to write test jobs)."""
    return [sys.executable, "-c", code]


def read_state(path) -> dict:
    return json.loads(Path(path).read_text())
