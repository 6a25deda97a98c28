"""The local executor: a pool of worker processes (simplejob/workers/worker.py) fed over pipes.

A worker claims an attempt when it has room: nothing running, or a short job running (not yet
announced as started) and fewer than QUEUE_AHEAD attempts waiting behind it, so that it starts
the next attempt without a round trip through the supervisor. A worker starts a waiting attempt
only if the one before it succeeded, so an attempt can also wait there behind the job it waits on
(Executor.tails, Scheduler.follow): a chain of short jobs runs link after link in one worker.
A worker reports "started", "finished" and "returned" events on its stdout. A worker that dies is
noticed at once (end of its stdout): the tree of the job it ran is killed and the attempt is
reported as failed with the reason.
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import threading
import time
from typing import TYPE_CHECKING

from ..pipes import LineReader, encode_lines, select_timeout, write_all
from ..programs import python_command
from ..protocol import AttemptSpec, CancelAttemptMessage, Event, WorkerCommand, run_message
from . import proctree
from .executor import Executor
from .worker import main as worker_main

if TYPE_CHECKING:  # (subprocess and traceback are imported where used: a supervisor that forks needs neither)
    import subprocess

QUEUE_AHEAD = 8  # attempts a worker may hold behind a short running one: rides out a slow supervisor
MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1 << 16
SHUTDOWN_MARGIN = 2.0  # seconds a worker gets beyond its job's kill grace to exit when told to


class ForkedWorker:
    """A worker forked from this process (the supervisor): what the pool uses of a Popen."""

    def __init__(self, pid: int, stdin: int, stdout: int) -> None:
        self.pid = pid
        self.stdin = os.fdopen(stdin, "wb", buffering=0)
        self.stdout = os.fdopen(stdout, "rb", buffering=0)
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # reaped by a tree kill's psutil wait: only a kill gets there
                self.returncode = -signal.SIGKILL
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def fork_worker() -> ForkedWorker | subprocess.Popen[bytes]:
    """A worker process, forked: it starts in a millisecond with every module already loaded
    (a new interpreter takes tens of milliseconds). Only while this process has one thread
    (a fork copies only the calling thread; the state writer's may hold locks): otherwise, and
    where there is no fork, a new interpreter (start_worker)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return start_worker()
    commands_r, commands_w = os.pipe()
    events_r, events_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.dup2(commands_r, 0)
            os.dup2(events_w, 1)
            # Only stdin, stdout and stderr stay open: a descendant holding the state file's lock, the
            # manager's pipe or another worker's stdin would keep them alive after we are gone.
            os.closerange(3, MAX_FD)
            gc.freeze()  # what we inherited stays shared with the supervisor: the collector never touches it
            worker_main()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(commands_r)
    os.close(events_w)
    return ForkedWorker(pid, commands_w, events_r)


def start_worker() -> subprocess.Popen[bytes]:
    """A worker process (simplejob/workers/worker.py) in a new interpreter, its stdin and stdout
    pipes unbuffered. Also used on Dask workers (dask_task.py)."""
    import subprocess

    proc = subprocess.Popen(
        python_command("simplejob.workers.worker"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
        close_fds=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    return proc


class _Worker:
    def __init__(self, slot: int) -> None:
        self.slot = slot  # stable: the events of its attempts carry it (the report's timeline rows)
        self.proc = fork_worker()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.reader = LineReader(self.stdout.fileno())
        self.outbox: list[WorkerCommand] = []
        self.assigned: list[AttemptSpec] = []  # the running attempt's spec, then the waiting ones
        self.announced = False  # the running attempt said it started: it is not a short one
        self.job_pid: int | None = None
        self.job_started: float | None = None

    def room(self) -> int:
        if self.announced:
            return 0
        return 1 + QUEUE_AHEAD - len(self.assigned)

    def drop(self, job_id: str) -> None:
        self.assigned = [spec for spec in self.assigned if spec["id"] != job_id]
        if not self.assigned:
            self.announced = False

    def send(self, message: WorkerCommand) -> None:
        """Queue a message; flush() writes the queue in one go (a pipe write that wakes the worker
        costs about 30 us, so the attempts handed out in one turn of the loop share one)."""
        self.outbox.append(message)

    def flush(self) -> None:
        if self.outbox:
            data = encode_lines(self.outbox)
            self.outbox.clear()
            try:
                write_all(self.stdin.fileno(), data)
            except BrokenPipeError:
                pass  # it died; the end of its stdout reports its attempts


class LocalProcessPool(Executor):
    def __init__(self, selector: selectors.BaseSelector, max_workers: int) -> None:
        super().__init__(selector)
        self.max_workers = max_workers
        self.workers: list[_Worker] = []
        self.events: list[Event] = []
        proctree.become_subreaper()  # what a dead worker's job left re-parents to us: see _lost

    def prepare(self, slots: int) -> None:
        """Start the workers now: a worker's start (a Python interpreter) takes tens of milliseconds."""
        while len(self.workers) < min(slots, self.max_workers):
            self._spawn()

    def _spawn(self) -> _Worker:
        taken = {w.slot for w in self.workers}
        worker = _Worker(next(slot for slot in range(len(self.workers) + 1) if slot not in taken))
        self.workers.append(worker)
        self.selector.register(worker.reader.fd, selectors.EVENT_READ, lambda: self._on_output(worker))
        return worker

    def free_slots(self) -> int:
        return sum(w.room() for w in self.workers) + self.max_workers - len(self.workers)

    def tails(self) -> list[tuple[str, int]]:
        return [(w.assigned[-1]["id"], room) for w in self.workers if w.assigned and (room := w.room()) > 0]

    def submit(self, spec: AttemptSpec, after: str | None = None) -> None:
        if after is not None:
            worker = next(w for w in self.workers if w.assigned and w.assigned[-1]["id"] == after)
        else:
            found = next((w for w in self.workers if not w.assigned), None)
            if found is None and len(self.workers) < self.max_workers:
                found = self._spawn()
            worker = found or max(self.workers, key=_Worker.room)
        if not worker.assigned:
            worker.job_pid = worker.job_started = None
        worker.assigned.append(spec)
        worker.send(run_message(spec, after))

    def flush(self) -> None:
        for worker in self.workers:
            worker.flush()

    def hold(self) -> None:
        for worker in self.workers:
            if any(spec["attempt"] == 1 for spec in worker.assigned[1:]):  # first attempts wait behind the running one
                worker.send({"op": "hold"})

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def cancel(self, job_id: str) -> None:
        for worker in self.workers:
            if any(spec["id"] == job_id for spec in worker.assigned):
                cancel: CancelAttemptMessage = {"op": "cancel", "id": job_id}
                worker.send(cancel)
                worker.flush()

    def _on_output(self, worker: _Worker) -> None:
        messages = worker.reader.messages()
        if messages is None:
            self._lost(worker)
            return
        for message in messages:
            event = Event.from_json(message)
            event.slot = worker.slot
            kind = event.kind
            if kind == "started":
                worker.job_pid, worker.job_started, worker.announced = event.pid, event.t, True
                for job_id in event.returned or ():
                    worker.drop(job_id)
                    self.events.append(Event(kind="returned", id=job_id, t=event.t))
                event.returned = None
            else:  # finished or returned
                worker.drop(event.id)
                if kind == "finished" and worker.assigned:  # the waiting attempt is now running
                    worker.announced = False
                    worker.job_pid = worker.job_started = None
            self.events.append(event)

    def _lost(self, worker: _Worker) -> None:
        """A worker died: kill what its job left, report the attempt, forget the worker."""
        self.selector.unregister(worker.reader.fd)
        self.workers.remove(worker)
        code = worker.proc.wait()
        if worker.assigned:
            running, *waiting = worker.assigned
            if worker.job_pid is not None:
                proctree.kill_job_tree(worker.job_pid, worker.job_started, running["killGrace"])
            # what had already left the job's tree (a daemon whose parent exited) re-parented to us
            proctree.kill_orphans({w.proc.pid for w in self.workers}, running["killGrace"])
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            self.events.append(
                Event(
                    kind="finished",
                    id=running["id"],
                    t=time.time(),
                    pid=worker.job_pid,
                    start_t=worker.job_started,
                    exit_code=None,
                    slot=worker.slot,
                    reason=f"its worker process (pid {worker.proc.pid}) died ({how}); its process tree was killed",
                )
            )
            self.events += [Event(kind="returned", id=spec["id"], t=time.time()) for spec in waiting]
        for pipe in (worker.stdin, worker.stdout):
            try:
                pipe.close()
            except BrokenPipeError:
                pass

    def shutdown(self) -> None:
        """Close every worker's stdin (it kills its job's tree and exits); force what lingers."""
        own = selectors.DefaultSelector()  # only the workers: the caller's other fds may stay readable
        for worker in self.workers:
            self.selector.unregister(worker.reader.fd)
            own.register(worker.reader.fd, selectors.EVENT_READ, lambda w=worker: self._on_output(w))
            try:
                worker.stdin.close()
            except BrokenPipeError:
                pass
        self.selector = own
        grace = max((w.assigned[0]["killGrace"] for w in self.workers if w.assigned), default=0.0)
        deadline = time.monotonic() + SHUTDOWN_MARGIN + grace
        while self.workers and time.monotonic() < deadline:
            for key, _ in own.select(select_timeout(deadline - time.monotonic())):
                key.data()
        for worker in list(self.workers):
            worker.proc.kill()
            while worker in self.workers:
                self._on_output(worker)
        own.close()
