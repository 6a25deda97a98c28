"""A worker process: runs job attempts one at a time for the supervisor.

Protocol (simplejob/protocol.py): one JSON object per line. The supervisor writes to our stdin
    RunMessage            run it now, or after the attempts already here (see pool.QUEUE_AHEAD)
    CancelAttemptMessage  kill that attempt's tree, or drop it if it has not started
    HoldMessage           give back every first attempt waiting here (retries go on)
and we answer on stdout with Events: "started" (with the ids of the attempts we give back),
"finished", and "returned" (a waiting attempt was not started: schedule it elsewhere).
End of stdin means the supervisor is gone (or done): we kill what runs and exit.

Short jobs are the common case, so two things keep the supervisor off their critical path: an
attempt waiting here starts the moment the previous one succeeds (only then: it may wait on that
one, see Scheduler.follow), before that end is reported; and "started" is only sent for an
attempt still running after ANNOUNCE_DELAY (its end would otherwise come right after).
An attempt that runs that long gives the attempts waiting behind it back ("returned" in
"started"), so nothing waits behind a long job while another worker is free.

One thread, one selector: stdin, and a self-pipe that SIGCHLD wakes, so a job's end is seen
at once (no polling) and a timeout is a select() deadline.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time
from collections import deque
from typing import Any, BinaryIO, cast

from .. import jsonline
from ..dates import format_datetime
from ..pipes import LineReader, drain, open_regular, select_timeout, signal_wakeup, write_all
from ..protocol import AttemptSpec, Event, RunMessage
from . import proctree

ANNOUNCE_DELAY = 0.02  # seconds an attempt runs before the supervisor is told it started


def _spawn_failure(error: OSError, attempt: AttemptSpec) -> tuple[int, str]:
    """Exit code and reason for a command that could not start, as a shell would report it."""
    argv = attempt["argv"]
    program = argv if isinstance(argv, str) else argv[0]
    cwd = attempt["cwd"]
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


def _devnull() -> int:
    """One /dev/null descriptor for every job, opened once."""
    global _devnull_fd
    if _devnull_fd is None:
        _devnull_fd = os.open(os.devnull, os.O_RDWR)
    return _devnull_fd


def _open_log(path: str) -> BinaryIO | str:
    """The job's log, opened for appending (created readable by its owner only), or why it
    cannot be: a FIFO (which would block), a directory, a device or an unwritable place fails
    the attempt (exit code 126) instead of hanging or killing this worker."""
    try:
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except OSError as error:  # on a cluster, also: the log directory is not shared with this machine
        import socket  # here: the supervisor, which workers are forked from, does not need it

        return f"cannot open its log file {path!r} on host {socket.gethostname()}: {error.strerror}"
    return os.fdopen(fd, "ab", buffering=0)


class Attempt:
    """One running attempt: its process, log and deadline."""

    def __init__(self, spec: AttemptSpec) -> None:
        self.spec = spec
        self.id: str = spec["id"]
        self.process: proctree.Spawned | None = None
        self.log: BinaryIO | None = None
        started = time.monotonic()
        self.start_time = time.time()
        timeout = spec["timeout"]
        self.deadline = started + timeout if timeout else None
        self.announce_at: float | None = started + ANNOUNCE_DELAY

    def note(self, text: str) -> None:
        if self.log is not None:
            self.log.write(f"--- simplejob {format_datetime(time.time())}: {text}\n".encode())
            self.log.flush()

    def start(self) -> tuple[int, str] | None:
        """Start the process; on failure returns (exit code, reason)."""
        spec = self.spec
        if spec["log"]:
            opened = _open_log(spec["log"])
            if isinstance(opened, str):
                return 126, opened
            self.log = opened
            self.note(f"job {self.id!r} attempt {spec['attempt']}/{spec['attempts']}: {spec['command_text']}")
        out = self.log.fileno() if self.log is not None else _devnull()
        try:
            null = _devnull()
            self.process = proctree.spawn(
                spec["argv"], shell=spec["shell"], cwd=spec["cwd"], env=spec["env"], stdin=null, stdout=out, stderr=out
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
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # Ctrl-C, hangup: the supervisor decides. A no-op handler, not SIG_IGN: the jobs would inherit that.
        self.wake_r = signal_wakeup((signal.SIGINT, signal.SIGHUP), lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self.commands = LineReader(sys.stdin.fileno())
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.selector.register(self.commands.fd, selectors.EVENT_READ)
        self.current: Attempt | None = None
        self.waiting: deque[AttemptSpec] = deque()  # the attempts to run next
        self.last_ended: tuple[str, bool] | None = None  # the last attempt that ended here, and whether it succeeded
        self.stdin_open = True
        proctree.become_subreaper()

    def _on_sigterm(self, *_: Any) -> None:
        self.stdin_open = False  # treated like the supervisor going away

    def send(self, event: Event) -> None:
        write_all(1, (jsonline.encode(event.to_json()) + "\n").encode())

    def run_forever(self) -> None:
        while self.stdin_open or self.current is not None:
            timeout = None
            if self.current is not None:
                times = [t for t in (self.current.deadline, self.current.announce_at) if t is not None]
                timeout = max(0.0, min(times) - time.monotonic()) if times else None
            for key, _ in self.selector.select(select_timeout(timeout)):
                if key.fd == self.wake_r:
                    drain(self.wake_r)
                else:
                    self.read_commands()
            if not self.stdin_open and self.current is not None:
                self.stop_current("its supervisor stopped", cancelled=False)
            elif self.current is not None:
                self.check_current()

    def read_commands(self) -> None:
        messages = self.commands.messages()
        if messages is None:
            self.stdin_open = False
            self.selector.unregister(self.commands.fd)
            return
        for message in messages:
            if message["op"] == "run":
                spec = cast(RunMessage, message)  # its "op" and "after" keys are harmless
                after = spec["after"]
                if after is not None and not self.holds(after) and self.last_ended != (after, True):
                    # what it waits on failed, was cancelled or given back before this came
                    self.send(Event("returned", spec["id"], time.time()))
                elif self.current is None:
                    self.start(spec)
                else:
                    self.waiting.append(spec)
            elif message["op"] == "cancel":
                self.cancel(message["id"])
            elif message["op"] == "hold":
                self.hold()

    def holds(self, job_id: str) -> bool:
        """The attempt runs or waits here."""
        if self.current is not None and self.current.id == job_id:
            return True
        return any(spec["id"] == job_id for spec in self.waiting)

    def cancel(self, job_id: str) -> None:
        ids = [spec["id"] for spec in self.waiting]
        if self.current is not None and self.current.id == job_id:
            self.stop_current("cancelled", cancelled=True)
        elif job_id in ids:
            at = ids.index(job_id)
            del self.waiting[at]
            self.send(Event("finished", job_id, time.time(), cancelled=True, reason="cancelled"))
            self.give_back(keep=at)  # what waited behind it may wait on it: the supervisor decides again

    def hold(self) -> None:
        """Give back the waiting attempts that are a job's first: nothing new may start. Retries
        go on (the fail-fast gate lets them through; given back, they would only come again)."""
        first = [spec for spec in self.waiting if spec["attempt"] == 1]
        self.waiting = deque(spec for spec in self.waiting if spec["attempt"] > 1)
        for spec in first:
            self.send(Event("returned", spec["id"], time.time()))

    def give_back(self, keep: int = 0) -> None:
        """Return the attempts waiting here, after the first keep, unstarted: the supervisor
        schedules them again (or not)."""
        returned = list(self.waiting)[keep:]
        self.waiting = deque(list(self.waiting)[:keep])
        for spec in returned:
            self.send(Event("returned", spec["id"], time.time()))

    def start(self, spec: AttemptSpec, *, report_after_spawn: Event | None = None) -> None:
        """Start an attempt; report_after_spawn (the end of the one before) is sent once its
        process exists: a chain's next link does not wait for the pipe write that wakes the
        supervisor."""
        attempt = Attempt(spec)
        failure = attempt.start()
        if report_after_spawn is not None:
            self.send(report_after_spawn)
        if failure is None:
            self.current = attempt
        else:
            attempt.close()
            self.finish(attempt, exit_code=failure[0], reason=failure[1])

    def check_current(self) -> None:
        attempt = self.current
        assert attempt is not None and attempt.process is not None
        code = attempt.process.poll()
        if code is None and attempt.announce_at is not None and time.monotonic() >= attempt.announce_at:
            attempt.announce_at = None
            returned = [spec["id"] for spec in self.waiting]
            self.waiting.clear()
            self.send(Event("started", attempt.id, attempt.start_time, pid=attempt.process.pid, returned=returned))
        if code is not None:
            self.finish(attempt, exit_code=code, reason=_describe_exit(code))
        elif attempt.deadline is not None and time.monotonic() >= attempt.deadline:
            self.kill(attempt)
            timeout = attempt.spec["timeout"]
            attempt.note(f"timed out after {timeout} s; killed its process tree")
            self.finish(attempt, exit_code=None, timed_out=True, reason=f"timed out after {timeout} s")

    def stop_current(self, why: str, *, cancelled: bool) -> None:
        attempt = self.current
        assert attempt is not None
        self.kill(attempt)
        attempt.note(f"{why}; killed its process tree")
        self.finish(attempt, exit_code=None, cancelled=cancelled, reason=why)

    def kill(self, attempt: Attempt) -> None:
        """Kill the attempt's whole tree: its group and every descendant we (the subreaper) have."""
        assert attempt.process is not None
        pid = attempt.process.pid
        procs = proctree.descendants(os.getpid())
        proctree.kill_tree(procs, group=pid, grace=attempt.spec["killGrace"], root=os.getpid())
        attempt.process.wait(timeout=1.0)
        proctree.reap_zombies()

    def finish(
        self,
        attempt: Attempt,
        *,
        exit_code: int | None,
        reason: str | None = None,
        timed_out: bool = False,
        cancelled: bool = False,
    ) -> None:
        leftovers: list[int] = []
        pid = attempt.process.pid if attempt.process else None
        if proctree.reap_zombies():
            # The job exited but left processes running: they would outlive the batch unseen.
            leftovers = proctree.kill_tree(
                proctree.descendants(os.getpid()), group=pid, grace=attempt.spec["killGrace"], root=os.getpid()
            )
            proctree.reap_zombies()
            if leftovers:
                attempt.note(f"the job left {len(leftovers)} process(es) running {leftovers}; killed them")
        attempt.close()
        self.current = None
        self.last_ended = (attempt.id, exit_code == 0)
        ended = Event(
            "finished", attempt.id, time.time(), pid=pid, start_t=attempt.start_time,
            exit_code=exit_code, timed_out=timed_out, cancelled=cancelled, reason=reason, leftovers=len(leftovers),
        )  # fmt: skip
        if self.waiting and exit_code == 0 and self.stdin_open:
            self.start(self.waiting.popleft(), report_after_spawn=ended)
        else:
            self.send(ended)
            self.give_back()  # after a failure the supervisor decides whether anything else may start


def main() -> None:
    try:
        Worker().run_forever()
    except BrokenPipeError:
        pass  # the supervisor is gone; what we ran has been killed


if __name__ == "__main__":
    main()
