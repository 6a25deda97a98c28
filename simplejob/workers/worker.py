"""A worker process: runs job attempts one at a time for the supervisor.

Protocol: one JSON object per line. The supervisor writes to our stdin
    {"op": "run", "id", "attempt", "attempts", "argv", "commandText", "shell", "cwd", "env", "timeout",
     "killGrace", "log"}      run it now, or after the attempts already here (see pool.QUEUE_AHEAD)
    {"op": "cancel", "id"}    kill that attempt's tree, or drop it if it has not started
and we answer on stdout
    {"ev": "started", "id", "pid", "t", "returned": [ids]}
    {"ev": "finished", "id", "pid", "startT", "exitCode", "timedOut", "cancelled", "reason", "leftovers", "t"}
    {"ev": "returned", "id", "t"}  a waiting attempt was not started: schedule it elsewhere
End of stdin means the supervisor is gone (or done): we kill what runs and exit.

Short jobs are the common case, so two things keep the supervisor off their critical path: an
attempt waiting here starts the moment the previous one succeeds, and "started" is only sent
for an attempt still running after ANNOUNCE_DELAY (its end would otherwise come right after).
An attempt that runs that long gives the attempts waiting behind it back ("returned" in
"started"), so nothing waits behind a long job while another worker is free.

One thread, one selector: stdin, and a self-pipe that SIGCHLD wakes, so a job's end is seen
at once (no polling) and a timeout is a select() deadline.
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Any, BinaryIO

from ..model import format_datetime
from . import proctree

ANNOUNCE_DELAY = 0.02  # seconds an attempt runs before the supervisor is told it started


def _spawn_failure(error: OSError, attempt: dict[str, Any]) -> tuple[int, str]:
    """Exit code and reason for a command that could not start, as a shell would report it."""
    argv = attempt["argv"]
    program = argv if isinstance(argv, str) else argv[0]
    cwd = attempt.get("cwd")
    if cwd is not None and error.filename == cwd or isinstance(error, NotADirectoryError):
        return 127, f"cannot start: working directory {cwd!r}: {error.strerror}"
    if isinstance(error, FileNotFoundError):
        return 127, f"cannot start: command not found: {program!r}"
    if isinstance(error, PermissionError):
        return 126, f"cannot start: permission denied: {program!r}"
    return 126, f"cannot start {program!r}: {error.strerror or error}"


def _describe_exit(code: int) -> str | None:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return None


_devnull_fd: int | None = None
_programs: dict[tuple[str, str | None], str] = {}  # (name, PATH) -> its path


def _devnull() -> int:
    """One /dev/null descriptor for every job (Popen would open and close one per job)."""
    global _devnull_fd
    if _devnull_fd is None:
        _devnull_fd = os.open(os.devnull, os.O_RDWR)
    return _devnull_fd


def _executable(spec: dict[str, Any], env: dict[str, str] | None) -> str | None:
    """The program's path, looked up in PATH once per name rather than at every spawn."""
    argv = spec["argv"]
    if spec.get("shell") or isinstance(argv, str) or os.sep in argv[0] or spec.get("cwd") is not None:
        return None
    search = (env or os.environ).get("PATH")
    key = (argv[0], search)
    if key not in _programs:
        found = shutil.which(argv[0], path=search)
        if found is None:
            return None  # let the spawn fail and say so
        _programs[key] = found
    return _programs[key]


def _finished(job_id: str, pid: int | None, start: float | None, *, exit_code: int | None, reason: str | None,
              timed_out: bool = False, cancelled: bool = False, leftovers: int = 0) -> dict[str, Any]:
    """The "finished" message (start None: the attempt never started)."""
    return {"ev": "finished", "id": job_id, "pid": pid, "startT": start, "exitCode": exit_code, "timedOut": timed_out,
            "cancelled": cancelled, "reason": reason, "leftovers": leftovers, "t": time.time()}


class Attempt:
    """One running attempt: its process, log and deadline."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.id: str = spec["id"]
        self.proc: subprocess.Popen | None = None
        self.log: BinaryIO | None = None
        started = time.monotonic()
        self.start_time = time.time()
        self.deadline = started + spec["timeout"] if spec.get("timeout") else None
        self.announce_at: float | None = started + ANNOUNCE_DELAY

    def note(self, text: str) -> None:
        if self.log is not None:
            self.log.write(f"--- simplejob {format_datetime(time.time())}: {text}\n".encode())
            self.log.flush()

    def start(self) -> tuple[int, str] | None:
        """Start the process; on failure returns (exit code, reason)."""
        spec = self.spec
        if spec.get("log"):
            self.log = open(spec["log"], "ab", buffering=0)
            self.note(f"job {self.id!r} attempt {spec['attempt']}/{spec['attempts']}: {spec['commandText']}")
        env = {**os.environ, **spec["env"]} if spec.get("env") else None
        output = self.log if self.log is not None else _devnull()
        try:
            self.proc = subprocess.Popen(
                spec["argv"], executable=_executable(spec, env), shell=spec.get("shell", False), cwd=spec.get("cwd"),
                env=env, stdin=_devnull(), stdout=output, stderr=subprocess.STDOUT if self.log else output,
                **proctree.popen_options(),
            )
        except (OSError, ValueError) as error:
            failure = _spawn_failure(error, spec) if isinstance(error, OSError) else (126, f"cannot start: {error}")
            self.note(failure[1])
            return failure
        return None

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


class Worker:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for signum in (signal.SIGINT, signal.SIGHUP):  # Ctrl-C, hangup: the supervisor decides. A no-op
            signal.signal(signum, lambda *_: None)  # handler, not SIG_IGN: the jobs would inherit that
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self.wake_r = wake_r
        self.selector.register(wake_r, selectors.EVENT_READ)
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
        self.inbox = b""
        self.current: Attempt | None = None
        self.waiting: deque[dict[str, Any]] = deque()  # specs of the attempts to run next
        self.stdin_open = True
        proctree.become_subreaper()

    def _on_sigterm(self, *_: Any) -> None:
        self.stdin_open = False  # treated like the supervisor going away

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(1, data):]

    def run_forever(self) -> None:
        while self.stdin_open or self.current is not None:
            timeout = None
            if self.current is not None:
                times = [t for t in (self.current.deadline, self.current.announce_at) if t is not None]
                timeout = max(0.0, min(times) - time.monotonic()) if times else None
            for key, _ in self.selector.select(timeout):
                if key.fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self.read_commands()
            if not self.stdin_open and self.current is not None:
                self.stop_current("its supervisor stopped", cancelled=False)
            elif self.current is not None:
                self.check_current()

    def read_commands(self) -> None:
        chunk = os.read(sys.stdin.fileno(), 1 << 16)
        if not chunk:
            self.stdin_open = False
            self.selector.unregister(sys.stdin.fileno())
            return
        self.inbox += chunk
        *lines, self.inbox = self.inbox.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if message["op"] == "run":
                if self.current is None:
                    self.start(message)
                else:
                    self.waiting.append(message)
            elif message["op"] == "cancel":
                self.cancel(message["id"])

    def cancel(self, job_id: str) -> None:
        if self.current is not None and self.current.id == job_id:
            self.stop_current("cancelled", cancelled=True)
        elif any(spec["id"] == job_id for spec in self.waiting):
            self.waiting = deque(spec for spec in self.waiting if spec["id"] != job_id)
            self.send(_finished(job_id, None, None, exit_code=None, cancelled=True, reason="cancelled"))

    def start(self, spec: dict[str, Any]) -> None:
        attempt = Attempt(spec)
        failure = attempt.start()
        if failure is not None:
            attempt.close()
            self.finish(attempt, exit_code=failure[0], reason=failure[1])
            return
        self.current = attempt

    def check_current(self) -> None:
        attempt = self.current
        code = attempt.proc.poll()
        if code is None and attempt.announce_at is not None and time.monotonic() >= attempt.announce_at:
            attempt.announce_at = None
            returned = [spec["id"] for spec in self.waiting]
            self.waiting.clear()
            self.send({"ev": "started", "id": attempt.id, "pid": attempt.proc.pid, "t": attempt.start_time,
                       "returned": returned})
        if code is not None:
            self.finish(attempt, exit_code=code, reason=_describe_exit(code))
        elif attempt.deadline is not None and time.monotonic() >= attempt.deadline:
            self.kill(attempt)
            attempt.note(f"timed out after {attempt.spec['timeout']} s; killed its process tree")
            self.finish(attempt, exit_code=None, timed_out=True, reason=f"timed out after {attempt.spec['timeout']} s")

    def stop_current(self, why: str, *, cancelled: bool) -> None:
        attempt = self.current
        self.kill(attempt)
        attempt.note(f"{why}; killed its process tree")
        self.finish(attempt, exit_code=None, cancelled=cancelled, reason=why)

    def kill(self, attempt: Attempt) -> None:
        """Kill the attempt's whole tree: its group and every descendant we (the subreaper) have."""
        pid = attempt.proc.pid
        procs = proctree.descendants(os.getpid())
        proctree.kill_tree(procs, group=pid, grace=attempt.spec["killGrace"], root=os.getpid())
        try:
            attempt.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        proctree.reap_zombies()

    def finish(self, attempt: Attempt, *, exit_code: int | None, reason: str | None = None,
               timed_out: bool = False, cancelled: bool = False) -> None:
        leftovers: list[int] = []
        proctree.reap_zombies()
        if proctree.has_children():
            # The job exited but left processes running: they would outlive the batch unseen.
            leftovers = proctree.kill_tree(
                proctree.descendants(os.getpid()), group=attempt.proc.pid if attempt.proc else None,
                grace=attempt.spec["killGrace"], root=os.getpid(),
            )
            proctree.reap_zombies()
            if leftovers:
                attempt.note(f"the job left {len(leftovers)} process(es) running {leftovers}; killed them")
        attempt.close()
        self.current = None
        self.send(_finished(
            attempt.id, attempt.proc.pid if attempt.proc else None, attempt.start_time, exit_code=exit_code,
            timed_out=timed_out, cancelled=cancelled, reason=reason, leftovers=len(leftovers),
        ))
        if not self.waiting:
            return
        if exit_code == 0 and self.stdin_open:
            self.start(self.waiting.popleft())
        else:  # after a failure the supervisor decides whether anything else may start
            for spec in self.waiting:
                self.send({"ev": "returned", "id": spec["id"], "t": time.time()})
            self.waiting.clear()


def main() -> None:
    try:
        Worker().run_forever()
    except BrokenPipeError:
        pass  # the supervisor is gone; what we ran has been killed


if __name__ == "__main__":
    main()
