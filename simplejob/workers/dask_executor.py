"""The Dask executor: attempts run as tasks on a Dask cluster; the supervisor stays here.

    supervisor process                         Dask scheduler            Dask worker (any machine)
    Supervisor --submit--> DaskExecutor --client.submit(key, priority, resources)--> run_attempt()
        ^                   | Client (its own event-loop thread)         (workers/dask_task.py)
        +-- wake pipe <-----+ done callbacks, "started"/"gone" events <-------+

The supervisor's loop is select()-based and the Dask client runs its own event loop in a thread:
the client's callbacks put Events in a list and write a byte to a pipe the supervisor selects on.
Only this module and dask_task.py import distributed, and only when a batch asks for Dask.

Choices (docs/dask.md):
- No rerun by Dask: a worker that dies while running an attempt makes Dask run the task again
  elsewhere (up to the scheduler's allowed_failures). simplejob decides retries itself, so a small
  scheduler plugin, installed by value (the scheduler needs no simplejob), starts each simplejob
  task at the last allowed failure: the first death ends it with KilledWorker, which the
  supervisor records as Interrupted naming the worker. Nothing else on the scheduler changes.
- In flight: maxWorkers if given; otherwise QUEUE_AHEAD times the cluster's threads when the
  batch starts, so that Dask always has the next attempts at hand (a finished attempt would
  otherwise wait for a round trip through the supervisor). Dask's threads still cap what runs.
- Cancel: client.cancel(); the task sees it on its worker and has the tree killed there. A batch
  that stops waits (up to killGrace and a margin) for the "gone" of each attempt known to run.
"""

from __future__ import annotations

import os
import selectors
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import distributed

from ..pipes import drain
from ..protocol import AttemptSpec, Event
from . import dask_task
from .executor import Executor

CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler
WORKER_WAIT = 30.0  # seconds to wait for a first worker when the cluster has none yet
QUEUE_AHEAD = 50  # attempts in flight per cluster thread (when maxWorkers is not given)
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
        self.topic = f"{TASK_PREFIX}{uuid.uuid4().hex[:16]}"
        self.serial = 0
        self.lock = threading.Lock()  # the client's threads append; the supervisor takes
        self.events: list[Event] = []
        self.results: list[str] = []  # keys of finished tasks whose result is still on the cluster
        self.futures: dict[str, tuple[str, Any]] = {}  # key -> (job id, its future)
        self.key_of: dict[str, str] = {}  # job id -> key of its attempt in flight
        self.cancelled: set[str] = set()  # keys we cancelled (their futures end "cancelled")
        self.started: set[str] = set()  # keys known to run (a "started" event came)
        self.gone: set[str] = set()  # cancelled keys whose tree is known to be dead
        self.grace: dict[str, float] = {}
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
        return 0 if self.lost else self.limit - len(self.futures)

    def submit(self, spec: AttemptSpec) -> None:
        self.serial += 1
        key = f"{self.topic}-{self.serial}"
        future = self.client.submit(
            dask_task.run_attempt,
            spec,
            self.topic,
            key=key,
            priority=spec["priority"],
            resources=spec["resources"] or None,
            retries=0,
            pure=False,
        )
        self.futures[key] = (spec["id"], future)
        self.key_of[spec["id"]] = key
        self.grace[key] = spec["killGrace"]
        future.add_done_callback(lambda done: self._on_done(key, done))

    def take_events(self) -> list[Event]:
        with self.lock:
            events, self.events = self.events, []
            keys, self.results = self.results, []
        if keys:  # one round trip for every result at hand, not one each (the fan's cost)
            futures = [self.futures[key][1] for key in keys]
            try:
                events += [Event.from_json(result) for result in self.client.gather(futures)]
            except Exception as error:  # noqa: BLE001  (the scheduler went away meanwhile)
                events += [self._interrupted(self.futures[key][0], self._lost(f"{error}")) for key in keys]
        for event in events:
            if event.kind != "started":
                key = self.key_of.pop(event.id, None)
                if key is not None:
                    self.futures.pop(key, None)  # the client releases the task's data
        return events

    def cancel(self, job_id: str) -> None:
        self._kill(job_id, Event("finished", job_id, time.time(), cancelled=True, reason="cancelled"))

    def _kill(self, job_id: str, event: Event) -> None:
        """Have the attempt's tree killed on its worker (its task sees the cancel); post event now."""
        key = self.key_of.get(job_id)
        if key is None or key in self.cancelled:
            return
        self.cancelled.add(key)
        self._post(event)
        if not self.lost:
            self.client.cancel([self.futures[key][1]], reason="cancelled by simplejob")

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
        running = [key for key in self.futures if key not in self.cancelled]
        for key in running:
            job_id = self.futures[key][0]
            self._kill(job_id, Event("finished", job_id, time.time(), exit_code=None, reason="its supervisor stopped"))
        waiting = {key for key in running if key in self.started}
        grace = max((self.grace[key] for key in waiting), default=0.0)
        deadline = time.monotonic() + grace + SHUTDOWN_MARGIN
        while not self.lost and waiting - self.gone and time.monotonic() < deadline:
            time.sleep(0.02)
        self.selector.unregister(self.wake_r)
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:  # noqa: BLE001  (closing regardless)
            pass
        self.client.close(timeout=2 if self.lost else 10)
        os.close(self.wake_r)
        os.close(self.wake_w)

    # --- the client's threads -----------------------------------------------------------------------

    def _post(self, event: Event | None) -> None:
        """Add an event (None: only wake the supervisor) and wake the supervisor."""
        if event is not None:
            with self.lock:
                self.events.append(event)
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the supervisor will wake) or closed (shut down)

    def _on_message(self, event: tuple[float, dict[str, Any]]) -> None:
        """A "started" or "gone" from a task (Worker.log_event on our topic)."""
        message = event[1]
        key = str(message.get("key"))
        if message.get("ev") == "gone":
            self.gone.add(key)
        elif message.get("ev") == "started" and key in self.futures and key not in self.cancelled:
            self.started.add(key)
            self._post(Event("started", message["id"], message["t"]))

    def _on_done(self, key: str, future: Any) -> None:
        job_id = self.futures[key][0] if key in self.futures else None
        if job_id is None or key in self.cancelled:
            return  # its "finished" (cancelled) was posted by cancel()
        status = future.status
        if status == "finished":  # its result is fetched by take_events(), with the others at hand
            with self.lock:
                self.results.append(key)
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
