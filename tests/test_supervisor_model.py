"""The Supervisor driven step by step (an in-memory executor, a fake clock, a real state writer)
through random small batches and random sequences of executor events, against a plain model of
what its records must say (hypothesis): after every step and every cancel the records, the state
file on disk and what was submitted must follow the rules.

A batch: 1 to 7 jobs, each waiting on earlier ones, some with a timeout and retries (delay,
backoff), some with a priority or resources (against the pool's capacities), sometimes targets or
jobs kept done by a resume; keepGoing or not; 1 to 3 slots. The events: attempts start, exit 0 or
1, time out, come back unstarted, lose their worker, answer a cancel; cancel(), the clock moves,
turns (step()); then the rest runs to the end (finish()) or the batch is stopped (stop()).

The rules checked (supervisor.py, scheduler.py, docs/state-file.md):
- never more attempts at once than slots; nothing is submitted twice while in flight (the fake
  asserts it); nothing is submitted for a job whose record has ended;
- a job's first attempt is submitted only when every job it waits on is Completed with exit code
  0, and not once a job failed (Completed non-zero, RetryOut, Interrupted) without keepGoing (the
  fail-fast gate); a Cancelled job does not close the gate;
- a job's attempt n+1 is submitted only after attempt n timed out with retries left, not before
  its retry wait (delay * backoff**(n-1) from the turn that took the timeout) is over; an attempt
  given back unstarted comes again with the same number;
- the supervisor wastes no slot: after a turn, a free slot means nothing may start now;
- cancel() of a job that is not in flight ends it Cancelled at once; of one in flight, asks the
  executor to kill it, and the job then ends Cancelled unless its attempt ended with a result of
  its own (an exit code, RetryOut after its last timeout; its worker's death is no result of its
  own: Cancelled too, unless the batch is stopping); a cancelled job is never submitted again;
- each record (status, exit code, attempts started, reason, pid, the results of its attempts)
  is what the events say, in memory and on disk (statefile.load, what a resume reads) after every
  turn; step() says the batch is done exactly when nothing runs, no retry waits and nothing more
  may start, and the batch always gets there; at its end a job is Ready only if it never started
  because what it waits on did not succeed or the gate closed;
- stop() (a signal, the owner gone) leaves no job Running: what ran, or waited for a retry, is
  Interrupted with the batch's reason.
"""

from __future__ import annotations

import math
import os
import tempfile

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fakes import Batch
from simplejob.model import ENDED, JobRecord, JobRunningStatus
from simplejob.protocol import SupervisorExit
from simplejob.scheduler import closure

SCALE = int(os.environ.get("SIMPLEJOB_PROPERTY_SCALE", "1"))
FIXED = SCALE == 1  # the suite runs the same examples every time (see test_properties.py)

Ready, Running, Completed = JobRunningStatus.Ready, JobRunningStatus.Running, JobRunningStatus.Completed
RetryOut, Cancelled, Interrupted = JobRunningStatus.RetryOut, JobRunningStatus.Cancelled, JobRunningStatus.Interrupted

TIMEOUT = 1  # every job with a timeout has this one (the test says when an attempt timed out)
DIED = "its worker process died"
STOPPED = "interrupted by SIGTERM"


class Model:
    """What each job's record must say, from what the test told the executor; and the checks."""

    def __init__(self, batch: Batch, keep_going: bool, slots: int, targets=None, resources=None) -> None:
        self.b = batch
        self.keep_going, self.slots, self.capacity = keep_going, slots, resources
        self.defs = {job_id: record.definition for job_id, record in batch.state.records.items()}
        self.ids = list(self.defs)
        # with targets only those and what they wait on run (the others stay Ready, untouched)
        self.wanted = (
            set(self.ids) if targets is None else closure({j: d.waiting for j, d in self.defs.items()}, targets)
        )
        self.status = dict.fromkeys(self.ids, Ready)
        self.exit_code: dict[str, int | None] = dict.fromkeys(self.ids)
        self.reason: dict[str, str | None] = dict.fromkeys(self.ids)
        self.pid: dict[str, int | None] = dict.fromkeys(self.ids)
        self.attempts = dict.fromkeys(self.ids, 0)  # attempts started, as the supervisor counts them
        for job_id, record in batch.state.records.items():
            if record.resumed:
                self.status[job_id], self.exit_code[job_id], self.attempts[job_id] = Completed, 0, 1
        self.results: dict[str, list[tuple[str, int | None]]] = {job_id: [] for job_id in self.ids}
        self.started: dict[str, int] = {}  # in flight, its start taken by the supervisor: job -> pid
        self.told_started: set[str] = set()  # in flight, reported started to the executor
        self.pending: list[tuple] = []  # events the executor holds, not yet taken by a step
        self.cancelling: set[str] = set()  # cancel() asked while in flight
        self.cancel_asked: set[str] = set()  # cancel() returned: never submitted again
        self.due: dict[str, float] = {}  # waiting for a retry: job -> monotonic due time
        self.failed = False  # a failure closed the fail-fast gate (unless keepGoing)
        self.seen = 0  # how much of executor.history was checked
        self.done = False
        self.interrupted: str | None = None

    # --- what the supervisor knows ------------------------------------------------------------------

    def in_flight(self, job_id: str) -> bool:
        """Handed to the executor and its end not yet taken by the supervisor."""
        return job_id in self.b.executor.submitted or any(e[1] == job_id and e[0] != "started" for e in self.pending)

    def gate_closed(self) -> bool:
        return self.failed and not self.keep_going

    def waits_ok(self, job_id: str) -> bool:
        return all(self.status[w] == Completed and self.exit_code[w] == 0 for w in self.defs[job_id].waiting)

    def fits(self, job_id: str) -> bool:
        """Its resources fit beside what the attempts in flight hold (after a turn: the submitted ones)."""
        need = self.defs[job_id].resources
        if not need or self.capacity is None:
            return True
        held = [self.defs[j].resources or {} for j in self.b.executor.submitted]
        return all(amount + sum(h.get(name, 0) for h in held) <= self.capacity[name] for name, amount in need.items())

    def may_start(self, job_id: str, now: float) -> bool:
        """May be submitted now (not in flight)."""
        if self.in_flight(job_id) or not self.fits(job_id):
            return False
        if job_id in self.due:
            return self.due[job_id] <= now
        return self.runnable(job_id)

    def runnable(self, job_id: str) -> bool:
        """A first attempt may start (slots and resources aside)."""
        ready = self.status[job_id] == Ready and job_id in self.wanted
        return ready and self.waits_ok(job_id) and not self.gate_closed()

    def nothing_left(self) -> bool:
        now = self.b.clock.monotonic()
        return not (
            self.b.executor.submitted or self.pending or self.due or any(self.may_start(j, now) for j in self.ids)
        )

    # --- the events, as a turn of the supervisor takes them ------------------------------------------

    def end(self, job_id: str, status: JobRunningStatus, reason: str | None, exit_code: int | None = None) -> None:
        self.status[job_id], self.reason[job_id], self.exit_code[job_id], self.pid[job_id] = (
            status,
            reason,
            exit_code,
            None,
        )
        self.due.pop(job_id, None)
        if status in (RetryOut, Interrupted) or (status == Completed and exit_code != 0):
            self.failed = True

    def absorb(self) -> None:
        """Apply the pending events in order (the supervisor takes them all at its next turn)."""
        now = self.b.clock.monotonic()
        events, self.pending = self.pending, []
        for event in events:
            kind, job_id = event[0], event[1]
            if kind == "started":
                self.attempts[job_id] += 1
                self.started[job_id] = event[2]
                self.status[job_id], self.reason[job_id], self.pid[job_id] = Running, None, event[2]
                continue
            cancelling = job_id in self.cancelling
            self.cancelling.discard(job_id)
            if kind == "returned":
                if cancelling:
                    self.end(job_id, Cancelled, "cancelled")
                elif event[2] > 1:  # a retry: it goes before new jobs
                    self.due[job_id] = -math.inf
                continue
            ran = self.started.pop(job_id, None) is not None
            if not ran and not (kind == "cancelled" and not event[2]):
                self.attempts[job_id] += 1  # a short job: started and ended in one event
                ran = True
            attempts, definition = self.attempts[job_id], self.defs[job_id]
            if kind == "exit":
                code = event[2]
                self.results[job_id].append(("exited", code))
                self.end(job_id, Completed, None if code == 0 else f"exit code {code}", code)
            elif kind == "died":
                self.results[job_id].append(("interrupted", None))
                if cancelling and not self.interrupted:  # the cancel was on its way: as asked
                    self.end(job_id, Cancelled, "cancelled")
                else:
                    self.end(job_id, Interrupted, self.interrupted or DIED)
            elif kind == "cancelled":
                if ran:
                    self.results[job_id].append(("cancelled", None))
                self.end(job_id, Cancelled, "cancelled")
            else:
                assert kind == "timeout"
                self.results[job_id].append(("timedOut", None))
                if attempts <= definition.retry and cancelling:
                    self.end(job_id, Cancelled, "cancelled")
                elif attempts <= definition.retry:
                    wait = definition.delay * definition.backoff ** (attempts - 1)
                    self.due[job_id] = now + wait
                    self.status[job_id], self.pid[job_id] = Running, None
                    self.reason[job_id] = (
                        f"attempt {attempts} timed out after {TIMEOUT} s; retry {attempts} in {wait:g} s"
                    )
                else:
                    self.end(job_id, RetryOut, f"timed out after {TIMEOUT} s")

    # --- the actions ---------------------------------------------------------------------------------

    def step(self) -> bool:
        self.absorb()
        done = self.b.step()
        self.check_submissions()
        self.check_turn(done)
        self.done = done
        return done

    def cancel(self, job_id: str) -> None:
        in_flight, ended = self.in_flight(job_id), self.status[job_id] in ENDED
        killed = len(self.b.executor.cancelled)
        self.b.supervisor.cancel([job_id])
        assert self.b.executor.cancelled[killed:] == ([job_id] if in_flight else []), "kill exactly what is in flight"
        if in_flight:
            self.cancelling.add(job_id)
        elif not ended and job_id in self.wanted:  # waiting for what it waits on, a slot or its retry
            self.end(job_id, Cancelled, "cancelled")
        self.cancel_asked.add(job_id)
        self.check_record(job_id, self.b.state.records[job_id])

    def stop(self) -> None:
        """What the loop does on a signal: stop() instead of the next step()."""
        self.interrupted = STOPPED
        self.b.supervisor.interrupt(STOPPED)
        self.pending += [("died", job_id) for job_id in self.b.executor.submitted]  # shutdown() kills them
        assert self.b.supervisor.stop() == SupervisorExit.INTERRUPTED
        self.absorb()
        for job_id in list(self.due):  # waiting for a retry
            self.end(job_id, Interrupted, STOPPED)
        assert not self.b.executor.submitted
        for job_id, record in self.b.state.records.items():
            assert record.runningStatus != Running, f"{job_id} still Running after stop()"
            self.check_record(job_id, record)

    # --- the checks ----------------------------------------------------------------------------------

    def check_submissions(self) -> None:
        """What the turn handed to the executor, against the rules (the model already took this
        turn's events: the supervisor takes them before it starts anything)."""
        executor, now = self.b.executor, self.b.clock.monotonic()
        assert len(executor.submitted) <= self.slots, "more attempts in flight than slots"
        if self.capacity is not None:
            for name, capacity in self.capacity.items():
                held = sum((self.defs[j].resources or {}).get(name, 0) for j in executor.submitted)
                assert held <= capacity, f"attempts in flight hold {held} {name}, more than {capacity}"
        for job_id, attempt in executor.history[self.seen :]:
            assert job_id not in self.cancel_asked, f"{job_id} submitted after cancel() returned"
            assert attempt == self.attempts[job_id] + 1, f"{job_id} submitted as attempt {attempt}"
            assert self.status[job_id] in (Ready, Running), f"{job_id} submitted though {self.status[job_id].name}"
            if attempt == 1:
                assert self.status[job_id] == Ready and job_id not in self.due
                assert job_id in self.wanted, f"{job_id} submitted though not among the targets' jobs"
                assert self.waits_ok(job_id), f"{job_id} submitted before what it waits on succeeded"
                assert not self.gate_closed(), f"{job_id} started after a failure without keepGoing"
            else:
                assert attempt <= self.defs[job_id].retry + 1, f"{job_id}: attempt {attempt}, more than retry allows"
                assert job_id in self.due, f"{job_id}: attempt {attempt} with no retry due"
                assert self.due[job_id] <= now, f"{job_id}: retry {attempt - 1} before its delay was over"
            self.due.pop(job_id, None)
        self.seen = len(executor.history)

    def check_record(self, job_id: str, record: JobRecord, *, history: bool = False) -> None:
        expected = (self.status[job_id], self.exit_code[job_id], self.attempts[job_id], self.reason[job_id])
        got = (record.runningStatus, record.exitCode, record.attempts, record.reason)
        assert got == expected, f"{job_id}: (status, exitCode, attempts, reason) {got}, expected {expected}"
        assert record.pid == self.pid[job_id], f"{job_id}: pid {record.pid}, expected {self.pid[job_id]}"
        if history:
            results = [(entry["result"], entry["exitCode"]) for entry in record.history]
            assert results == self.results[job_id], f"{job_id}: history {results}, expected {self.results[job_id]}"
            assert [entry["attempt"] for entry in record.history] == list(range(1, len(results) + 1))
            if not record.resumed:
                self.check_times(job_id, record)

    def check_times(self, job_id: str, record: JobRecord) -> None:
        """Dates and timestamps (as read from the file: in memory an ended job lets go of them):
        the first start, the end, and each attempt's, in order."""
        ran = record.attempts > 0
        assert (record.startTimestamp is not None) == ran == (record.startDateTime is not None), job_id
        ended = record.runningStatus in ENDED
        assert (record.finishDateTime is not None) == ended, f"{job_id}: finishDateTime {record.finishDateTime}"
        assert (record.elapsedSeconds is not None) == (ended and ran), f"{job_id}: elapsed {record.elapsedSeconds}"
        assert record.elapsedSeconds is None or record.elapsedSeconds >= 0
        previous = record.startTimestamp
        for entry in record.history:
            assert entry["startTimestamp"] is not None and previous is not None, f"{job_id}: {entry}"
            assert previous <= entry["startTimestamp"] <= entry["finishTimestamp"], f"{job_id}: {record.history}"
            previous = entry["finishTimestamp"]

    def check_turn(self, done: bool) -> None:
        executor, now = self.b.executor, self.b.clock.monotonic()
        for job_id, record in self.b.state.records.items():
            self.check_record(job_id, record)
        for job_id in executor.submitted:
            assert self.status[job_id] in (Ready, Running), f"{job_id} in flight though {self.status[job_id].name}"
        if len(executor.submitted) < self.slots:
            idle = [job_id for job_id in self.ids if self.may_start(job_id, now)]
            assert not idle, f"a slot is free but {idle} may start"
        assert done == self.nothing_left(), f"step() said done={done}"
        self.check_disk()

    def check_disk(self) -> None:
        """The state file (snapshot and journal, what a resume reads) says what the records say."""
        disk = self.b.on_disk()
        assert list(disk.records) == self.ids
        for job_id, record in disk.records.items():
            self.check_record(job_id, record, history=True)

    def check_end(self) -> None:
        """The batch is over (finish() or stop() returned)."""
        disk = self.b.on_disk()
        assert disk.supervisor["running"] is False
        assert disk.supervisor["result"] == ("interrupted" if self.interrupted else "finished")
        for job_id, record in disk.records.items():
            self.check_record(job_id, record, history=True)
            status = record.runningStatus
            assert status != Running, f"{job_id} Running after the batch ended"
            if not record.resumed:
                assert len(record.history) == record.attempts  # every attempt that started ended
            if not self.waits_ok(job_id):
                assert status in (Ready, Cancelled) and record.attempts == 0, f"{job_id} ran, a wait did not succeed"
            if status == Ready and not self.interrupted:
                assert record.attempts == 0
                if job_id in self.wanted:
                    assert job_id not in self.cancel_asked, f"{job_id} cancelled but left Ready"
                    assert not self.runnable(job_id), f"{job_id} could have run but stayed Ready"


@st.composite
def batches(draw):
    size = draw(st.integers(1, 7))
    resources = draw(st.sampled_from([None, None, {"r": 2.0}]))  # the local pool's capacities
    contexts = []
    for i in range(size):
        context = {"id": f"j{i}", "commandLine": "x"}
        waits = sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3)))) if i else []
        if waits:
            context["waiting"] = [f"j{w}" for w in waits]
        if draw(st.booleans()):
            context.update(
                timeout=TIMEOUT,
                retry=draw(st.integers(0, 2)),
                delay=draw(st.integers(0, 2)),
                backoff=draw(st.sampled_from([1, 2])),
            )
        if draw(st.integers(0, 3)) == 0:
            context["priority"] = draw(st.integers(-1, 1))
        if resources is not None and draw(st.booleans()):
            context["resources"] = {"r": draw(st.sampled_from([1, 2]))}
        contexts.append(context)
    kept: list[str] = []  # a resume keeps a job done if what it waits on is kept too
    if draw(st.integers(0, 3)) == 0:
        for context in contexts:
            if all(w in kept for w in context.get("waiting", ())) and draw(st.booleans()):
                kept.append(context["id"])
    targets = None
    if draw(st.integers(0, 4)) == 0:
        targets = sorted(draw(st.sets(st.sampled_from([c["id"] for c in contexts]), min_size=1)))
    return contexts, draw(st.booleans()), draw(st.integers(1, 3)), targets, resources, kept


# What the test tells: start, exit 0, exit 1, time out, give back unstarted, worker died, the
# worker's answer to a cancel (cancelled), cancel(), the clock moves, a turn; most actions are followed
# by a turn, as in the supervisor's loop.
KINDS = [
    *["start"] * 4,
    *["ok"] * 4,
    "fail",
    *["timeout"] * 3,
    *["giveback"] * 2,
    "died",
    *["cancelled"] * 2,
    *["cancel"] * 2,
    *["tick"] * 2,
    "step",
]
THEN_STEP = st.sampled_from([True, True, True, False])
ACTIONS = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 20), THEN_STEP), min_size=12, max_size=40)
# How the run ends after the actions: the rest of the batch runs to its end, or stop() (a signal).
ENDS = st.sampled_from(["finish", "finish", "stop"])


def act(model: Model, kind: str, number: int) -> None:
    b = model.b
    executor = b.executor
    flying = sorted(executor.submitted)
    unstarted = [job_id for job_id in flying if job_id not in model.told_started]
    asked = [job_id for job_id in flying if job_id in model.cancelling]

    job_id = None

    def pick(among):
        return among[number % len(among)] if among else None

    if kind == "start" and (job_id := pick(unstarted)) is not None:
        model.told_started.add(job_id)
        model.pending.append(("started", job_id, executor.start(job_id)))
    elif kind in ("ok", "fail") and (job_id := pick(flying)) is not None:
        code = 0 if kind == "ok" else 1
        executor.finish(job_id, code)
        model.pending.append(("exit", job_id, code))
    elif kind == "timeout" and (job_id := pick([j for j in flying if model.defs[j].timeout])) is not None:
        executor.time_out(job_id, TIMEOUT)
        model.pending.append(("timeout", job_id))
    elif kind == "giveback" and (job_id := pick(unstarted)) is not None:
        attempt = executor.submitted[job_id]["attempt"]
        executor.give_back(job_id)
        model.pending.append(("returned", job_id, attempt))
    elif kind == "died" and (job_id := pick(flying)) is not None:
        executor.finish(job_id, None, reason=DIED)
        model.pending.append(("died", job_id))
    elif kind == "cancelled" and (job_id := pick(asked)) is not None:
        # killed while it ran, or dropped from the worker's queue (with its start time when it
        # had started without its "started" reported yet)
        with_start = job_id in model.told_started or number % 2 == 1
        executor.finish(
            job_id, None, cancelled=True, reason="cancelled", start_t=b.clock.time() if with_start else None
        )
        model.pending.append(("cancelled", job_id, with_start))
    if job_id is not None and kind not in ("start", "cancel"):
        model.told_started.discard(job_id)  # its attempt left the executor
    if kind == "cancel":
        # half the time one in flight (the races), else any job
        model.cancel(pick(flying) if flying and number % 2 else model.ids[number // 2 % len(model.ids)])
    elif kind == "tick":
        b.clock.advance(number % 4)
    elif kind == "step":
        model.step()


def run(batch, actions, end) -> None:
    contexts, keep_going, slots, targets, resources, kept = batch
    with tempfile.TemporaryDirectory() as directory:
        options = {"keep_going": keep_going, "targets": targets, "resources": resources, "kept": kept}
        b = Batch(directory, contexts, slots=slots, **options)
        model = Model(b, keep_going, slots, targets, resources)
        try:
            model.check_disk()
            model.step()  # the loop's first turn
            for kind, number, then_step in actions:
                act(model, kind, number)
                if model.done or (then_step and model.step()):
                    break
            if end == "stop" and not model.done:
                model.stop()
            else:
                # the rest of the batch runs: what was cancelled is killed, everything else succeeds
                for _ in range(200):
                    if model.done:
                        break
                    for job_id in sorted(b.executor.submitted):
                        started = job_id in model.told_started
                        model.told_started.discard(job_id)
                        if job_id in model.cancelling:
                            b.executor.finish(job_id, None, cancelled=True, reason="cancelled")
                            model.pending.append(("cancelled", job_id, started))
                        else:
                            b.executor.finish(job_id, 0)
                            model.pending.append(("exit", job_id, 0))
                    model.step()
                    b.clock.advance(5)  # (longer than any retry wait)
                assert model.done, "the batch never ended"
                assert b.supervisor.finish() == SupervisorExit.FINISHED
                assert not b.executor.submitted
            model.check_end()
        finally:
            b.writer.abandon()  # (a no-op once closed: the file descriptor is released)


def job(job_id, *waiting, **fields):
    return {"id": job_id, "commandLine": "x", "waiting": list(waiting), **fields}


RETRIED = {"timeout": TIMEOUT, "retry": 2, "delay": 0}
A_THEN_B = [job("a"), job("b", "a")]  # (an odd number picks a job in flight to cancel)


@settings(max_examples=250 * SCALE, deadline=None, derandomize=FIXED, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), ACTIONS, ENDS)
# the races of tests/test_supervisor_unit.py: a cancel on its way while the attempt timed out with
# retries left, came back unstarted, succeeded, or its worker died
@example(
    ([job("t", **RETRIED), job("w", "t"), job("o")], False, 1, None, None, []),
    [("start", 0, False), ("cancel", 1, False), ("timeout", 0, True)],
    "finish",
)
@example((A_THEN_B, False, 2, None, None, []), [("cancel", 1, False), ("giveback", 0, True)], "finish")
@example((A_THEN_B, False, 2, None, None, []), [("cancel", 1, False), ("ok", 0, True)], "finish")
@example((A_THEN_B, True, 2, None, None, []), [("start", 0, True), ("cancel", 1, False), ("died", 0, True)], "finish")
# a retry waiting out its delay when the batch is stopped; a failure without keepGoing
@example(
    ([job("r"), job("t", timeout=TIMEOUT, retry=1, delay=2), job("n", "r")], False, 2, None, None, []),
    [("start", 0, False), ("timeout", 0, True)],
    "stop",
)
@example(
    ([job("bad"), job("slow"), job("later"), job("after", "bad")], False, 2, None, None, []),
    [("fail", 0, True), ("ok", 0, True)],
    "finish",
)
def test_the_supervisor_records_what_happened_and_starts_only_what_the_rules_allow(batch, actions, end):
    run(batch, actions, end)
