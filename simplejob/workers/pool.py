"""The local executor: a pool of worker processes (simplejob/workers/worker.py) fed over pipes.

A worker claims an attempt by being idle when the supervisor has one; it reports "started" and
"finished" events on its stdout. A worker that dies is noticed at once (end of its stdout):
the tree of the job it ran is killed and the attempt is reported as failed with the reason.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from typing import Any

from ..programs import python_command
from . import proctree
from .executor import Event, Executor

SHUTDOWN_MARGIN = 2.0  # seconds a worker gets beyond its job's kill grace to exit when told to


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            python_command("simplejob.workers.worker"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            bufsize=0, close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        self.inbox = b""
        self.spec: dict[str, Any] | None = None
        self.job_pid: int | None = None
        self.job_started: float | None = None

    def send(self, message: dict[str, Any]) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())


class LocalProcessPool(Executor):
    def __init__(self, selector: selectors.BaseSelector, max_workers: int) -> None:
        super().__init__(selector)
        self.max_workers = max_workers
        self.workers: list[_Worker] = []
        self.events: list[Event] = []

    def prepare(self, slots: int) -> None:
        """Start the workers now: a worker's start (a Python interpreter) takes tens of milliseconds."""
        while len(self.workers) < min(slots, self.max_workers):
            self._spawn()

    def _spawn(self) -> _Worker:
        worker = _Worker()
        self.workers.append(worker)
        self.selector.register(worker.fd, selectors.EVENT_READ, lambda: self._on_output(worker))
        return worker

    def free_slots(self) -> int:
        return self.max_workers - sum(1 for w in self.workers if w.spec is not None)

    def submit(self, spec: dict[str, Any]) -> None:
        worker = next((w for w in self.workers if w.spec is None), None)
        if worker is None:
            worker = self._spawn()
        worker.spec = spec
        worker.job_pid = worker.job_started = None
        try:
            worker.send({"op": "run", **spec})
        except BrokenPipeError:
            pass  # it died; the end of its stdout reports the attempt as failed

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def cancel(self, job_id: str) -> None:
        for worker in self.workers:
            if worker.spec is not None and worker.spec["id"] == job_id:
                try:
                    worker.send({"op": "cancel"})
                except BrokenPipeError:
                    pass

    def _on_output(self, worker: _Worker) -> None:
        chunk = os.read(worker.fd, 1 << 16)
        if not chunk:
            self._lost(worker)
            return
        worker.inbox += chunk
        *lines, worker.inbox = worker.inbox.split(b"\n")
        for line in lines:
            message = json.loads(line)
            kind = message.pop("ev")
            event = Event(kind=kind, **message)
            if kind == "started":
                worker.job_pid, worker.job_started = event.pid, event.t
            elif kind == "finished":
                worker.spec = None
            self.events.append(event)

    def _lost(self, worker: _Worker) -> None:
        """A worker died: kill what its job left, report the attempt, forget the worker."""
        self.selector.unregister(worker.fd)
        self.workers.remove(worker)
        code = worker.proc.wait()
        if worker.spec is not None:
            if worker.job_pid is not None:
                proctree.kill_job_tree(worker.job_pid, worker.job_started, worker.spec["killGrace"])
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            self.events.append(Event(
                kind="finished", id=worker.spec["id"], t=time.time(), exitCode=None,
                reason=f"its worker process (pid {worker.proc.pid}) died ({how}); its process tree was killed",
            ))
        for pipe in (worker.proc.stdin, worker.proc.stdout):
            try:
                pipe.close()
            except BrokenPipeError:
                pass

    def shutdown(self) -> None:
        """Close every worker's stdin (it kills its job's tree and exits); force what lingers."""
        own = selectors.DefaultSelector()  # only the workers: the caller's other fds may stay readable
        for worker in self.workers:
            self.selector.unregister(worker.fd)
            own.register(worker.fd, selectors.EVENT_READ, lambda w=worker: self._on_output(w))
            try:
                worker.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.selector = own
        grace = max((w.spec["killGrace"] for w in self.workers if w.spec is not None), default=0.0)
        deadline = time.monotonic() + SHUTDOWN_MARGIN + grace
        while self.workers and time.monotonic() < deadline:
            for key, _ in own.select(max(0.0, deadline - time.monotonic())):
                key.data()
        for worker in list(self.workers):
            worker.proc.kill()
            while worker in self.workers:
                self._on_output(worker)
        own.close()
