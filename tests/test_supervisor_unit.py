"""The Supervisor's policy driven step by step: an in-memory executor stands in for the worker
pool and a fake clock for time, so retries with backoff, keepGoing, cancel races and attempts
given back unstarted are checked in milliseconds with no sleeping. The state writer is real: what
each test checks is what the state file says afterwards."""

from __future__ import annotations

import json

import pytest

from fakes import EPOCH, Batch
from simplejob import jsonline
from simplejob.model import JobRunningStatus
from simplejob.protocol import Event, SupervisorExit

Ready, Running, Completed = JobRunningStatus.Ready, JobRunningStatus.Running, JobRunningStatus.Completed
RetryOut, Cancelled, Interrupted = JobRunningStatus.RetryOut, JobRunningStatus.Cancelled, JobRunningStatus.Interrupted


def test_a_timed_out_job_is_retried_after_delay_times_backoff_then_ends_retry_out(tmp_path):
    b = Batch(tmp_path, [{"id": "t", "commandLine": "x", "timeout": 1, "retry": 2, "delay": 1, "backoff": 3}])
    b.step()
    assert b.executor.history == [("t", 1)]
    b.executor.start("t")
    b.clock.advance(1)
    b.executor.time_out("t", 1)
    b.step()
    record = b.state.records["t"]
    assert record.runningStatus == Running and record.pid is None
    assert record.reason == "attempt 1 timed out after 1 s; retry 1 in 1 s"
    b.clock.advance(0.999)
    b.step()
    assert b.executor.history == [("t", 1)]  # not yet due
    b.clock.advance(0.001)
    b.step()
    assert b.executor.history == [("t", 1), ("t", 2)]
    b.executor.start("t")
    b.executor.time_out("t", 1)
    b.step()
    assert record.reason == "attempt 2 timed out after 1 s; retry 2 in 3 s"  # delay * backoff
    b.clock.advance(2.9)
    b.step()
    assert len(b.executor.history) == 2
    b.clock.advance(0.1)
    b.step()
    assert b.executor.history[-1] == ("t", 3)
    b.executor.start("t")
    b.executor.time_out("t", 1)
    assert b.step() is True
    assert record.runningStatus == RetryOut and record.attempts == 3 and record.retried == 2
    assert b.supervisor.finish() == SupervisorExit.FINISHED
    assert b.on_disk().records["t"].runningStatus == RetryOut


def test_without_keep_going_a_failure_starts_nothing_new_and_what_waits_stays_ready(tmp_path):
    jobs = [
        {"id": "bad", "commandLine": "x"},
        {"id": "slow", "commandLine": "x"},
        {"id": "later", "commandLine": "x"},
        {"id": "after", "commandLine": "x", "waiting": ["bad"]},
    ]
    b = Batch(tmp_path, jobs)
    b.step()
    assert set(b.executor.submitted) == {"bad", "slow"}
    b.executor.finish("bad", 3)
    assert b.step() is False  # slow still runs
    assert "later" not in b.executor.submitted
    b.run_ok("slow")
    assert b.step() is True
    assert [b.status(j) for j in ("bad", "slow", "later", "after")] == [Completed, Completed, Ready, Ready]
    assert b.state.records["bad"].exitCode == 3


def test_with_keep_going_every_job_not_downstream_of_a_failure_runs(tmp_path):
    jobs = [
        {"id": "bad", "commandLine": "x"},
        {"id": "good", "commandLine": "x"},
        {"id": "after-bad", "commandLine": "x", "waiting": ["bad"]},
        {"id": "after-good", "commandLine": "x", "waiting": ["good"]},
    ]
    b = Batch(tmp_path, jobs, keep_going=True)
    b.step()
    b.executor.finish("bad", 1)
    b.run_ok("good")
    b.step()
    assert list(b.executor.submitted) == ["after-good"]
    b.run_ok("after-good")
    assert b.step() is True
    assert b.status("after-bad") == Ready


def test_an_attempt_given_back_unstarted_runs_again_first_with_the_same_attempt_number(tmp_path):
    jobs = [{"id": name, "commandLine": "x"} for name in ("a", "b", "c")]
    b = Batch(tmp_path, jobs)
    b.step()
    b.executor.give_back("b")
    b.step()
    assert b.executor.history == [("a", 1), ("b", 1), ("b", 1)]  # before c
    assert b.status("b") == Ready and b.state.records["b"].attempts == 0


def test_cancel_racing_an_attempt_that_comes_back_unstarted_records_it_cancelled_never_run(tmp_path):
    b = Batch(tmp_path, [{"id": "a", "commandLine": "x"}, {"id": "b", "commandLine": "x", "waiting": ["a"]}])
    b.step()
    b.supervisor.cancel(["a"])
    assert b.executor.cancelled == ["a"]
    b.executor.give_back("a")
    assert b.step() is True
    record = b.state.records["a"]
    assert record.runningStatus == Cancelled and record.attempts == 0 and record.startTimestamp is None
    assert b.executor.history == [("a", 1)]  # not run again, and b never
    assert b.on_disk().records["a"].reason == "cancelled"


def test_cancel_racing_an_attempt_that_already_succeeded_keeps_the_success(tmp_path):
    b = Batch(tmp_path, [{"id": "a", "commandLine": "x"}, {"id": "b", "commandLine": "x", "waiting": ["a"]}])
    b.step()
    b.supervisor.cancel(["a"])
    b.run_ok("a")  # finished before the cancel reached it
    b.step()
    assert b.status("a") == Completed
    assert list(b.executor.submitted) == ["b"]


DIED = "its worker process (pid 1) died (signal 9); its process tree was killed"


@pytest.mark.parametrize(
    "end, result",
    [
        (lambda executor: executor.time_out("t", 1), "timedOut"),  # with retries left: not retried
        (lambda executor: executor.finish("t", None, reason=DIED), "interrupted"),  # not a failure of its own
    ],
    ids=["timed out", "worker died"],
)
def test_cancel_racing_an_end_that_is_not_the_jobs_own_result_records_it_cancelled(tmp_path, end, result):
    # the attempt ended in its worker while the cancel was on its way there
    jobs = [
        {"id": "t", "commandLine": "x", "timeout": 1, "retry": 2, "delay": 0},
        {"id": "w", "commandLine": "x", "waiting": ["t"]},
        {"id": "other", "commandLine": "x"},
    ]
    b = Batch(tmp_path, jobs, slots=1)
    b.step()
    b.executor.start("t")
    b.supervisor.cancel(["t"])
    assert b.executor.cancelled == ["t"]
    end(b.executor)
    b.step()
    record = b.on_disk().records["t"]
    assert record.runningStatus == Cancelled and record.reason == "cancelled"
    assert [attempt["result"] for attempt in record.history] == [result]  # what the attempt did
    b.clock.advance(10)
    b.step()
    assert [job for job, _ in b.executor.history] == ["t", "other"]  # t never again; the gate stays open
    b.run_ok("other")
    assert b.step() is True
    assert b.status("w") == Ready  # never runs: what it waits on was cancelled


def test_cancel_of_a_job_waiting_for_its_retry_or_for_its_dependencies_is_immediate(tmp_path):
    jobs = [
        {"id": "t", "commandLine": "x", "timeout": 1, "retry": 1, "delay": 60},
        {"id": "w", "commandLine": "x", "waiting": ["t"]},
    ]
    b = Batch(tmp_path, jobs)
    b.step()
    b.executor.start("t")
    b.executor.time_out("t", 1)
    b.step()
    b.supervisor.cancel(["t", "w"])
    assert b.executor.cancelled == []  # nothing in flight to kill
    assert b.status("t") == Cancelled and b.status("w") == Cancelled
    assert b.step() is True


def test_cancel_of_everything_before_the_start_starts_nothing(tmp_path):
    b = Batch(tmp_path, [{"id": "a", "commandLine": "x"}, {"id": "b", "commandLine": "x"}])
    b.supervisor.cancel(["a", "b"])
    assert b.step() is True
    assert b.executor.history == []


def test_stop_records_running_and_retry_waiting_jobs_interrupted_with_the_reason(tmp_path):
    jobs = [
        {"id": "runs", "commandLine": "x"},
        {"id": "t", "commandLine": "x", "timeout": 1, "retry": 1, "delay": 60},
        {"id": "never", "commandLine": "x", "waiting": ["runs"]},
    ]
    b = Batch(tmp_path, jobs)
    b.step()
    b.executor.start("runs")
    b.executor.start("t")
    b.executor.time_out("t", 1)
    b.step()
    b.supervisor.command({"op": "stop", "reason": "interrupted by SIGTERM"})
    assert b.supervisor.stop() == SupervisorExit.INTERRUPTED
    disk = b.on_disk()
    assert [disk.records[j].runningStatus for j in ("runs", "t", "never")] == [Interrupted, Interrupted, Ready]
    assert disk.records["runs"].reason == disk.records["t"].reason == "interrupted by SIGTERM"
    assert disk.supervisor["result"] == "interrupted" and disk.supervisor["reason"] == "interrupted by SIGTERM"


def test_a_short_job_reported_only_as_finished_gets_its_start_from_the_event(tmp_path):
    b = Batch(tmp_path, [{"id": "a", "commandLine": "x"}])
    b.step()
    started = b.clock.time()
    b.clock.advance(0.25)
    b.executor.finish("a", 0, pid=4242, start_t=started)
    b.step()
    record = b.state.records["a"]
    assert record.attempts == 1 and record.startTimestamp == started
    assert record.elapsedSeconds == pytest.approx(0.25)
    assert record.startTimestamp >= EPOCH


def test_targets_leave_the_other_jobs_alone(tmp_path):
    jobs = [
        {"id": "a", "commandLine": "x"},
        {"id": "b", "commandLine": "x", "waiting": ["a"]},
        {"id": "other", "commandLine": "x"},
    ]
    b = Batch(tmp_path, jobs, targets=["b"])
    b.step()
    b.run_ok("a")
    b.step()
    b.run_ok("b")
    assert b.step() is True
    assert [h[0] for h in b.executor.history] == ["a", "b"]
    assert b.status("other") == Ready


def test_a_worker_lost_mid_attempt_is_recorded_interrupted_and_closes_the_gate(tmp_path):
    b = Batch(tmp_path, [{"id": "a", "commandLine": "x"}, {"id": "b", "commandLine": "x"}], slots=1)
    b.step()
    b.executor.start("a")
    b.executor.finish("a", None, reason="its worker process (pid 1) died (signal 9)")
    assert b.step() is True
    assert b.status("a") == Interrupted and b.status("b") == Ready


def test_an_ended_jobs_entry_keeps_its_dates_and_history_through_later_snapshots(tmp_path):
    """The supervisor lets go of an ended job's history and dates once its snapshot piece holds
    them: every later snapshot must still have them."""
    b = Batch(tmp_path, [{"id": "a", "commandLine": "x"}, {"id": "b", "commandLine": "x", "waiting": ["a"]}])
    b.step()
    b.run_ok("a")
    b.step()
    b.writer.compact()  # a's final entry encoded
    first = b.on_disk().records["a"]
    b.run_ok("b")
    b.step()
    b.writer.compact()  # and written again beside b's
    again = b.on_disk().records["a"]
    assert first.startDateTime and first.finishDateTime and len(first.history) == 1
    assert (again.startDateTime, again.finishDateTime, again.history) == (
        first.startDateTime,
        first.finishDateTime,
        first.history,
    )
    assert b.on_disk().records["b"].history[0]["result"] == "exited"


@pytest.mark.parametrize(
    "event",
    [
        Event("started", "a", 1.5, pid=7, returned=[]),
        Event("started", "a", 1.5, pid=7, returned=["b", "c"]),
        Event("finished", "a", 2.0, pid=7, start_t=1.5, exit_code=0),
        Event("finished", "a", 2.0, exit_code=-9, timed_out=True, cancelled=True, reason="r", leftovers=2, slot=1),
        Event("returned", "b", 3.0),
    ],
)
def test_an_event_on_the_wire_has_the_fields_that_differ_from_their_defaults_and_reads_back(event):
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(Event) if f.default is not dataclasses.MISSING}
    expected = {"ev": event.kind, "id": event.id, "t": event.t}
    expected.update({name: value for name, default in defaults.items() if (value := getattr(event, name)) != default})
    assert event.to_json() == expected
    assert Event.from_json(jsonline.decode(jsonline.encode(event.to_json()))) == event


def test_an_ended_jobs_snapshot_piece_is_encoded_when_it_ends_not_at_the_next_compaction(tmp_path):
    """A compaction only joins pieces: encoding every job that ended since the last one in one go
    stopped the supervisor's loop long enough for the workers' queues to run dry."""
    batch = Batch(tmp_path, [{"id": "a", "commandLine": "true"}, {"id": "b", "commandLine": "true"}])
    batch.step()
    batch.executor.start("a")
    batch.clock.advance(0.01)  # (well before the next compaction is due)
    batch.executor.finish("a", 0)
    batch.step()
    assert batch.status("a") == Completed
    writer = batch.writer
    assert writer.compacted_offset < writer.offset  # no compaction since "a" ended
    assert "a" not in writer.dirty
    piece = json.loads("{" + writer.tails["a"].decode())
    assert piece["runningStatus"] == "Completed" and [h["result"] for h in piece["history"]] == ["exited"]
    assert batch.state.records["a"].history == []  # let go: the piece holds it
    writer.compact()
    on_disk = batch.on_disk().records["a"]
    assert on_disk.runningStatus == Completed and [h["result"] for h in on_disk.history] == ["exited"]


def test_a_snapshot_entry_is_its_definition_and_state_as_json_writes_them_with_one_settings_piece_shared(tmp_path):
    """Each job's entry is three pieces (id, command and waits; the rest of its definition; its
    state): jobs whose rest is the same share one piece (100,000 jobs: 15 MB less in the
    supervisor), and the text is what json.dumps writes for the whole entry, in entry order."""
    contexts = [
        {"id": "b", "commandLine": "true"},
        {"id": 'a "timeout": ,', "commandLine": ["echo", ', "timeout": 1'], "waiting": ["b"]},
        {"id": "c", "commandLine": "true", "timeout": 5, "env": {"K": "v"}},
        {"id": "d", "commandLine": "false", "waiting": ["b", 'a "timeout": ,']},
    ]
    batch = Batch(tmp_path, contexts)
    writer = batch.writer
    assert writer.settings["b"] is writer.settings['a "timeout": ,'] is writer.settings["d"]
    assert writer.settings["c"] is not writer.settings["b"]
    text = b"".join(writer.snapshot_parts()).decode()
    entries = text.split('\n "jobs": {\n')[1].splitlines()[: len(contexts)]
    records = batch.state.records
    expected = [
        f"  {json.dumps(job_id, ensure_ascii=False)}: {json.dumps(records[job_id].to_json(), ensure_ascii=False)}"
        for job_id in records
    ]
    assert [entry.rstrip(",") for entry in entries] == expected
    assert list(json.loads(text)["jobs"]) == ["b", 'a "timeout": ,', "c", "d"]


def test_a_wait_names_its_job_by_that_jobs_own_id_string(tmp_path):
    """The decoder makes a new string for every occurrence of an id; the supervisor keeps one per
    job (100,000 layered jobs: 10 MB less)."""
    from simplejob.batchstart import open_batch

    jobs = [
        {"id": "job-a", "commandLine": "true"},
        {"id": "job-b", "commandLine": "true", "waiting": ["job-a", "job-z"]},
    ]
    options = {"maxWorkers": 1, "keepGoing": False, "logOutputDirectory": None}
    owner = {"commandLine": ["python"], "cwd": None}
    spec = json.loads(
        json.dumps(
            {"stateFile": str(tmp_path / "s.json"), "options": options, "cancel": [], "jobs": jobs, "owner": owner}
        )
    )
    assert spec["jobs"][1]["waiting"][0] is not spec["jobs"][0]["id"]
    state, writer, lock, _ = open_batch(spec)
    try:
        a, b = state.records["job-a"].definition, state.records["job-b"].definition
        assert b.waiting == ["job-a", "job-z"] and b.waiting[0] is a.id
    finally:
        writer.close()
        lock.release()
