"""What runs on a Dask worker: one attempt, in a simplejob worker process kept by that Dask worker.

    supervisor (DaskExecutor) --client.map--> Dask scheduler --> Dask worker's event loop: run_attempt()
                                                                        | RunMessage / cancel (pipe)
                                                                        v
                                                   simplejob worker process (workers/worker.py) --> job tree

The attempt is run by the same program as on the local pool (workers/worker.py: the job's own
session, cwd, env, shell, timeout, the tree killed with TERM, killGrace, KILL, what it leaves
killed, exit 127/126 when it cannot start, the log). Each Dask worker keeps one such process per
thread, started on first use (a Python start-up costs tens of milliseconds; a job costs less).
That process is also the watchdog the cluster needs: it reads its stdin from the Dask worker, so
when the Dask worker dies, however it dies, the end of that pipe makes it kill the job's tree.

run_attempt() gets the attempt as its RunMessage already encoded (one JSON line, written to the
worker process as it is) and relays the worker process's events to the supervisor as Dask events
(Worker.log_event on the batch's topic: they ride the worker's batched stream to the scheduler,
which forwards them on the supervisor's client stream; no round trip): "started", and the
attempt's end ("finished", or "returned" when the batch's gate closed), which is also the task's
result (JSON text), fetched by the supervisor only if the event did not reach it first. It
watches, every POLL seconds, whether the task is still wanted: the supervisor's client.cancel(),
or the supervisor gone (the scheduler then releases its tasks), or the Dask worker closing (it
lost its scheduler; it also cancels the coroutine) make the worker process kill the tree; the
end event then also tells a stopping supervisor that the tree is dead.

run_attempt() is a coroutine: Dask runs it on the worker's event loop, still one at a time per
thread (Dask counts it as executing), and it waits for the pipe there, beside the worker's
sockets, instead of a thread handoff each way and a cross-thread callback for each event. It
never blocks that loop but for a line's write or read, and a worker process's start (once per
thread). The loop must be able to watch a pipe (POSIX; so did the select() before it).

Imported by the Dask workers only (by reference: simplejob must be installed on the workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from typing import Any

from ..pipes import LineReader, write_all
from ..protocol import CancelAttemptMessage
from .pool import start_worker

POLL = 0.1  # seconds between checks that the task is still wanted
_STILL_WANTED = frozenset({"executing", "long-running"})  # the worker's states of a task it runs
_WORKER_UP = frozenset({"running", "paused", "closing_gracefully"})  # Dask worker statuses that keep attempts

_lock = threading.Lock()
_idle: list[_Helper] = []  # simplejob worker processes with nothing to run
_closed_gates: set[str] = set()  # batches in which nothing new may start (a job failed, no keepGoing)


class _Helper:
    """A simplejob worker process (workers/worker.py), one attempt at a time."""

    def __init__(self) -> None:
        self.proc = start_worker()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.reader = self.proc.stdin, LineReader(self.proc.stdout.fileno())
        # Read from the Dask worker's event loop: a read must never block it (it would not see
        # its scheduler go away, and the job would outlive the batch).
        os.set_blocking(self.reader.fd, False)

    def send(self, message: CancelAttemptMessage) -> None:
        write_all(self.stdin.fileno(), (json.dumps(message) + "\n").encode())


async def close_gate(topic: str) -> None:
    """Run on every worker by client.run (a coroutine: the caller need not wait) when a job failed
    without keepGoing: the batch's attempts that have not started are given back ("returned")."""
    _closed_gates.add(topic)


async def run_attempt(line: str, job_id: str, topic: str, serial: int) -> str:
    """The Dask task of one attempt (its key: topic-serial; the key itself is not passed, as Dask
    could take a key among a task's arguments for a dependency): line is its RunMessage (a JSON
    line). Returns its end event (JSON text), after logging it on the topic (module docstring)."""
    from distributed import get_worker

    worker = get_worker()
    key = f"{topic}-{serial}"
    if topic in _closed_gates:
        return _report(worker, topic, key, {"ev": "returned", "id": job_id, "t": time.time()})
    with _lock:
        helper = _idle.pop() if _idle else None
    if helper is None or helper.proc.poll() is not None:
        helper = _Helper()  # (a Popen: blocks the loop for a few milliseconds, once per thread)
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bool] = loop.create_future()

    def wake(readable: bool) -> None:
        if not waiter.done():
            waiter.set_result(readable)

    loop.add_reader(helper.reader.fd, wake, True)
    finished: dict[str, Any] | None = None
    cancelled = False
    try:
        write_all(helper.stdin.fileno(), line.encode())
        while finished is None:
            timer = loop.call_later(POLL, wake, False)
            readable = await waiter
            timer.cancel()
            waiter = loop.create_future()
            if readable:
                messages = helper.reader.messages()
                if messages is None:  # it died (killed by hand?): what it ran went with it or is orphaned
                    break
                for message in messages:
                    if message["ev"] == "started":
                        worker.log_event(topic, {"ev": "started", "id": job_id, "t": message["t"], "key": key})
                    elif message["ev"] == "finished":
                        finished = message
            if finished is None and not cancelled and not _wanted(worker, key):
                cancelled = True  # the worker process kills the tree, then says "finished"
                helper.send({"op": "cancel", "id": job_id})
    except (OSError, ValueError):
        pass
    except asyncio.CancelledError:  # the Dask worker is closing: its tree is killed, not waited for
        if finished is None and not cancelled:
            with contextlib.suppress(OSError, ValueError):
                helper.send({"op": "cancel", "id": job_id})
        raise  # (the worker process is not kept: it may still be killing the tree)
    finally:
        loop.remove_reader(helper.reader.fd)
    if finished is None:
        helper.proc.kill()  # its own tree is killed when its stdin closes, below
        helper.stdin.close()
        helper.proc.wait()
        reason = f"its simplejob worker process on Dask worker {worker.address} died"
        return _report(worker, topic, key, {"ev": "finished", "id": job_id, "t": time.time(), "reason": reason})
    with _lock:
        _idle.append(helper)
    finished.pop("pid", None)  # a process of another machine: the supervisor must never signal it
    return _report(worker, topic, key, finished)


def _report(worker: Any, topic: str, key: Any, event: dict[str, Any]) -> str:
    """The attempt's end (its tree is gone), sent on the topic now and returned as the task's result."""
    text = json.dumps(event)
    worker.log_event(topic, {"ev": "end", "key": key, "event": text})
    return text


def _wanted(worker: Any, key: Any) -> bool:
    """Still wanted: not cancelled by the supervisor, not released because the supervisor is gone,
    and the Dask worker is not closing (it does when its scheduler is gone)."""
    task = worker.state.tasks.get(key)
    return task is not None and task.state in _STILL_WANTED and worker.status.name in _WORKER_UP
