"""The Dask executor: attempts run as tasks on a Dask cluster; the supervisor stays here.

    supervisor process                         Dask scheduler            Dask worker (any machine)
    Supervisor --submit--> DaskExecutor --client.map(keys, priority, resources)--> run_attempt()
        ^       --flush-->  | Client (its own event-loop thread)         (workers/dask_task.py)
        +-- wake pipe <-----+ "started"/"end" events, done callbacks <---------+

The supervisor's loop is select()-based and the Dask client runs its own event loop in a thread:
the client's handlers put Events in a list and write a byte to a pipe the supervisor selects on.
Only this module and dask_task.py import distributed, and only when a batch asks for Dask.

Where the time goes on tiny jobs (docs/dask.md, "What it costs"): the cluster's own work per task
(the scheduler's and the worker's state machines and messages) is most of it, so the supervisor
adds as few messages as it can:
- Submitted attempts are sent once per turn of the supervisor's loop (flush()), one client.map
  (one graph, one update_graph message) per (priority, resources), each attempt as its RunMessage
  already encoded (a JSON line: one string to pickle and unpickle, written to the worker process
  as it is).
- An attempt's end comes as an event on the batch's topic, in the stream the scheduler already
  sends the client: no gather (client -> scheduler -> worker and back) per result. The task also
  returns it, and it is gathered only if a task ends without its event having come (not expected:
  the worker sends the event before the task's end, on the same stream).
- On the worker, the task is a coroutine on the worker's event loop (dask_task.py): no thread
  handoff each way.
- Queued ahead (maxWorkers not given), attempts are refilled when half of the queue is free, not
  one by one: the cluster keeps at least half of QUEUE_AHEAD attempts per thread at hand. Until
  then nothing can start, so an attempt that succeeded wakes the supervisor only WAKE_DELAY
  later, with the others of that while (its state is written that much later); a failure (the
  batch may have to hold), a "started", and an end that lets attempts be submitted wake it at once.

Choices (docs/dask.md):
- No rerun by Dask: a worker that dies while running an attempt makes Dask run the task again
  elsewhere (up to the scheduler's allowed_failures). simplejob decides retries itself, so a small
  scheduler plugin, installed by value (the scheduler needs no simplejob), starts each simplejob
  task at the last allowed failure: the first death ends it with KilledWorker, which the
  supervisor records as Interrupted naming the worker. Nothing else on the scheduler changes.
- In flight: maxWorkers if given; otherwise QUEUE_AHEAD times the cluster's threads when the
  batch starts, so that Dask always has the next attempts at hand (a finished attempt would
  otherwise wait for a round trip through the supervisor), topped up when 1/REFILL of it is free.
  Dask's threads still cap what runs.
- Cancel: client.cancel(); the task sees it on its worker and has the tree killed there. A batch
  that stops waits (up to killGrace and a margin) for the "end" of each attempt known to run.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import distributed

from ..pipes import drain
from ..protocol import AttemptSpec, Event, run_message
from . import dask_task
from .executor import Executor

CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler
WORKER_WAIT = 30.0  # seconds to wait for a first worker when the cluster has none yet
QUEUE_AHEAD = 50  # attempts in flight per cluster thread (when maxWorkers is not given)
REFILL = 2  # queued ahead, attempts are submitted when 1/REFILL of the queue is free
WAKE_DELAY = 0.02  # seconds a plain success may wait to be taken with others when nothing can start
SHUTDOWN_MARGIN = 3.0  # seconds beyond the largest killGrace to hear that the killed trees are gone
TASK_PREFIX = "simplejob-"  # every simplejob task key starts so (the no-rerun plugin looks for it)


class DaskProblem(Exception):
    """The batch cannot run on this cluster; kind is the ProblemReply's error ("dask", "resources")."""

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.kind = kind


def _no_rerun_installer() -> Callable[..., None]:
    """A function for client.run_on_scheduler, pickled by value (it is not importable by name), so
    the scheduler needs no simplejob: it adds a plugin that starts simplejob's tasks at their last
    allowed failure (Dask's TaskState.suspicious), so that a worker dying ends them (KilledWorker)."""

    def install(prefix: str, dask_scheduler: Any = None) -> None:
        from distributed.diagnostics.plugin import SchedulerPlugin

        class SimplejobNoRerun(SchedulerPlugin):
            name = "simplejob-no-rerun"

            def update_graph(self, scheduler: Any, *, keys: Iterable[Any], **kwargs: Any) -> None:
                for key in keys:
                    task = scheduler.tasks.get(key) if isinstance(key, str) and key.startswith(prefix) else None
                    if task is not None:
                        task.suspicious = max(task.suspicious, scheduler.allowed_failures)

        if SimplejobNoRerun.name not in dask_scheduler.plugins:
            dask_scheduler.add_plugin(SimplejobNoRerun())

    return install


class DaskExecutor(Executor):
    def __init__(self, selector: selectors.BaseSelector, address: str, max_workers: int) -> None:
        """Connect to the scheduler at address; max_workers 0: the cluster's threads (see QUEUE_AHEAD)."""
        super().__init__(selector)
        self.address = address
        # distributed has no type hints: the client and its futures are held as Any, here only.
        self.client: Any = None
        try:
            self.client = distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as error:
            raise DaskProblem("dask", f"cannot reach the Dask scheduler at {address}: {error}") from None
        try:
            self.client.run_on_scheduler(_no_rerun_installer(), TASK_PREFIX)
            workers = self._workers()
            if not workers:
                self.client.wait_for_workers(1, timeout=WORKER_WAIT)
                workers = self._workers()
        except (OSError, TimeoutError) as error:
            self.client.close()
            raise DaskProblem("dask", f"the Dask scheduler at {address} has no worker ({error})") from None
        self.workers = workers
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
        self.max_workers = max_workers or max(1, threads)  # what the state file's options say
        self.limit = max_workers or max(1, QUEUE_AHEAD * threads)
        self.refill = 1 if max_workers else max(1, self.limit // REFILL)  # slots free before submitting
        self.topic = f"{TASK_PREFIX}{uuid.uuid4().hex[:16]}"
        self.serial = 0
        self.lock = threading.Lock()  # the client's threads append; the supervisor takes
        self.events: list[Event] = []
        self.results: list[str] = []  # keys of finished tasks whose end event did not come: gathered
        self.pending: list[tuple[str, AttemptSpec]] = []  # submitted, not yet sent (flush())
        self.job_of: dict[str, str] = {}  # key -> job id, for every attempt in flight (pending too)
        self.futures: dict[str, Any] = {}  # key -> its future, once sent
        self.key_of: dict[str, str] = {}  # job id -> key of its attempt in flight
        self.ended: set[str] = set()  # keys whose end was posted, not yet taken by take_events()
        self.cancelled: set[str] = set()  # keys we cancelled (their futures end "cancelled")
        self.started: set[str] = set()  # keys known to run (a "started" event came)
        self.gone: set[str] = set()  # cancelled keys whose tree is known to be dead (their "end" came)
        self.grace: dict[str, float] = {}
        self.closed = False
        self.wake_due = False  # a wake-up of the supervisor is set for WAKE_DELAY after a success
        self.lost: str | None = None
        self.gate_closed = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, lambda: drain(self.wake_r))
        self.client.subscribe_topic(self.topic, self._on_message)

    def _workers(self) -> dict[str, dict[str, Any]]:
        workers: dict[str, dict[str, Any]] = self.client.scheduler_info(n_workers=-1)["workers"]
        return workers

    def check_resources(self, needs: Mapping[str, Mapping[str, float]]) -> None:
        """Refuse, naming them, the jobs no worker can run: Dask would hold them forever."""
        have = [w.get("resources") or {} for w in self.workers.values()]
        problems = []
        for job_id, need in needs.items():
            if not any(all(r.get(name, 0) >= amount for name, amount in need.items()) for r in have):
                wanted = ", ".join(f"{name}={amount:g}" for name, amount in need.items())
                problems.append(f"job {job_id!r}: needs {wanted}; no Dask worker of {self.address} has that")
        if problems:
            shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
            raise DaskProblem("resources", "jobs need more resources than exist:\n  " + "\n  ".join(shown))

    # --- the Executor interface ---------------------------------------------------------------------

    def free_slots(self) -> int:
        free = 0 if self.lost else self.limit - len(self.job_of)
        return free if free >= self.refill else 0

    def submit(self, spec: AttemptSpec, after: str | None = None) -> None:
        assert after is None, "a Dask slot gives no tails()"
        self.serial += 1
        key = f"{self.topic}-{self.serial}"
        with self.lock:  # before it is sent: its events may come before client.map() returns
            self.job_of[key] = spec["id"]
        self.key_of[spec["id"]] = key
        self.grace[key] = spec["killGrace"]
        self.pending.append((key, spec))

    def flush(self) -> None:
        """Send the attempts submitted this turn: one client.map per (priority, resources)."""
        groups: dict[tuple[int, tuple[tuple[str, float], ...]], list[tuple[str, AttemptSpec]]] = {}
        for key, spec in self.pending:
            needs = tuple(sorted((spec["resources"] or {}).items()))
            groups.setdefault((spec["priority"], needs), []).append((key, spec))
        self.pending = []
        for (priority, needs), members in groups.items():
            keys = [key for key, _ in members]
            if self.lost:
                self._post_all(self._interrupted(spec["id"], self.lost) for _, spec in members)
                continue
            lines = [json.dumps(run_message(spec)) + "\n" for _, spec in members]
            ids = [spec["id"] for _, spec in members]
            serials = [int(key.rsplit("-", 1)[1]) for key in keys]
            try:
                futures = self.client.map(
                    dask_task.run_attempt,
                    lines,
                    ids,
                    [self.topic] * len(keys),
                    serials,
                    key=keys,
                    priority=priority,
                    resources=dict(needs) or None,
                    retries=0,
                    pure=False,
                )
            except Exception as error:  # noqa: BLE001  (the client lost its scheduler meanwhile)
                self._post_all(self._interrupted(job_id, self._lost(f"{error}")) for job_id in ids)
                continue
            for key, future in zip(keys, futures, strict=True):
                self.futures[key] = future
                future.add_done_callback(lambda done, key=key: self._on_done(key, done))

    def take_events(self) -> list[Event]:
        with self.lock:
            events, self.events = self.events, []
            keys, self.results = self.results, []
        if keys:  # not expected (see the module's docstring): one round trip for all of them
            try:
                texts = self.client.gather([self.futures[key] for key in keys])
                events += [Event.from_json(json.loads(text)) for text in texts]
            except Exception as error:  # noqa: BLE001  (the scheduler went away meanwhile)
                events += [self._interrupted(self.job_of[key], self._lost(f"{error}")) for key in keys]
        ended = []
        for event in events:
            if event.kind != "started":
                key = self.key_of.pop(event.id, None)
                if key is not None:
                    ended.append(key)
        if ended:
            with self.lock:
                for key in ended:
                    self.job_of.pop(key, None)
                    self.futures.pop(key, None)  # the client releases the task and its result
                    self.ended.discard(key)
                    self.started.discard(key)
                    self.gone.discard(key)
                    self.grace.pop(key, None)
        return events

    def cancel(self, job_id: str) -> None:
        self._kill(job_id, Event("finished", job_id, time.time(), cancelled=True, reason="cancelled"))

    def _kill(self, job_id: str, event: Event) -> None:
        """Have the attempt's tree killed on its worker (its task sees the cancel); post event now."""
        key = self.key_of.get(job_id)
        if key is None or key in self.cancelled:
            return
        with self.lock:
            self.cancelled.add(key)
            ended = key in self.ended  # its end was posted (not yet taken): the attempt is over
        if ended:
            return
        self._post(event)
        pending = [item for item in self.pending if item[0] == key]
        if pending:  # never sent
            self.pending.remove(pending[0])
        elif not self.lost:
            self.client.cancel([self.futures[key]], reason="cancelled by simplejob")

    def hold(self) -> None:
        """Nothing new may start: attempts submitted ahead that have not started are given back."""
        if not self.gate_closed and not self.lost:
            self.gate_closed = True
            try:
                self.client.run(dask_task.close_gate, self.topic, wait=False)
            except Exception:  # noqa: BLE001  (at worst, attempts already queued on the cluster run)
                pass

    def broken(self) -> str | None:
        return self.lost

    def shutdown(self) -> None:
        """Cancel what is in flight; wait until the trees known to run are gone; close the client."""
        with self.lock:  # (an attempt whose end came is over: there is nothing to kill)
            running = [key for key in self.job_of if key not in self.cancelled and key not in self.ended]
        for key in running:
            job_id = self.job_of[key]
            self._kill(job_id, Event("finished", job_id, time.time(), exit_code=None, reason="its supervisor stopped"))
        waiting = {key for key in running if key in self.started}
        grace = max((self.grace[key] for key in waiting), default=0.0)
        deadline = time.monotonic() + grace + SHUTDOWN_MARGIN
        while not self.lost and self._still_running(waiting) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.closed = True  # (no more wake-ups: the pipe's descriptors are closed below)
        self.selector.unregister(self.wake_r)
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:  # noqa: BLE001  (closing regardless)
            pass
        self.client.close(timeout=2 if self.lost else 10)
        os.close(self.wake_r)
        os.close(self.wake_w)
        # The supervisor's process ends after shutdown(), and its interpreter's last collection would
        # walk every object distributed made (~70 ms on 2 CPUs, while the caller waits for that
        # exit): they are frozen, left to the exit. What is made afterwards is collected as usual.
        gc.freeze()

    # --- the client's threads -----------------------------------------------------------------------

    def _still_running(self, keys: set[str]) -> bool:
        with self.lock:  # (an attempt whose end came before it was cancelled is over too)
            return bool(keys - self.gone - self.ended)

    def _post(self, event: Event | None) -> None:
        """Add an event (None: only wake the supervisor) and wake the supervisor."""
        if event is not None:
            with self.lock:
                self.events.append(event)
        if self.closed:
            return
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the supervisor will wake) or closed (shut down)

    def _post_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self._post(event)

    def _on_message(self, event: tuple[float, dict[str, Any]]) -> None:
        """A "started" or "end" from a task (Worker.log_event on our topic)."""
        message = event[1]
        kind, key = message.get("ev"), str(message.get("key"))
        if kind == "end":
            end = Event.from_json(json.loads(message["event"]))
            with self.lock:
                if key in self.cancelled:
                    self.gone.add(key)
                if key not in self.job_of or key in self.cancelled or key in self.ended:
                    return  # cancelled (its "finished" was posted by _kill()), or known already
                self.ended.add(key)
                self.events.append(end)
                # the slots free once the ends at hand are taken: below refill, nothing can start
                later = self.limit - len(self.job_of) + len(self.ended) < self.refill and _success(end)
            if not later:
                self._post(None)
            elif not self.wake_due:  # (this handler runs in the client's event loop)
                self.wake_due = True
                self.client.loop.call_later(WAKE_DELAY, self._wake_later)
        elif kind == "started":
            with self.lock:
                if key not in self.job_of or key in self.cancelled or key in self.ended:
                    return
                self.started.add(key)
            self._post(Event("started", message["id"], message["t"]))

    def _wake_later(self) -> None:
        self.wake_due = False
        self._post(None)

    def _on_done(self, key: str, future: Any) -> None:
        """The task's future ended: normally its "end" event came first, and there is nothing to do."""
        with self.lock:
            job_id = self.job_of.get(key)
            if job_id is None or key in self.cancelled or key in self.ended:
                return  # taken, or its "finished" (cancelled) was posted by _kill()
            self.ended.add(key)
            status = future.status
            if status == "finished":  # its end event did not come: take_events() gathers the result
                self.results.append(key)
        if status == "finished":
            self._post(None)
        elif status == "error":
            failure = future.exception()
            if isinstance(failure, distributed.scheduler.KilledWorker):
                reason = f"its Dask worker {failure.last_worker.address} died while it ran; Dask did not run it again"
            else:
                reason = f"its Dask task failed: {type(failure).__name__}: {failure}"
            self._post(self._interrupted(job_id, reason))
        else:  # cancelled, and not by us: the client lost the scheduler (it cancels every future then)
            self._post(self._interrupted(job_id, self._lost("the connection was lost")))

    def _lost(self, how: str) -> str:
        self.lost = self.lost or f"interrupted: lost the Dask scheduler at {self.address} ({how})"
        return self.lost

    @staticmethod
    def _interrupted(job_id: str, reason: str) -> Event:
        return Event("finished", job_id, time.time(), exit_code=None, reason=reason)


def _success(event: Event) -> bool:
    return event.kind == "finished" and event.exit_code == 0 and not event.reason and not event.timed_out
