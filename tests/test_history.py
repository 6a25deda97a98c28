"""Each job's history of attempts and the worker slot they ran in (state file "history" and "slot",
docs/state-file.md): what the HTML report's timeline draws. Real batches, real workers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from conftest import read_state, wait_until
from simplejob import CalledJobError, JobManager, StateFileError
from simplejob.statefile import journal_path, load
from test_state_file import DATA, schema_validator


def check_attempts(history: list[dict]) -> None:
    assert [entry["attempt"] for entry in history] == list(range(1, len(history) + 1))
    for entry in history:
        assert entry["startTimestamp"] <= entry["finishTimestamp"]
        assert isinstance(entry["pid"], int) and entry["slot"] in (0, 1)


def test_every_attempt_is_recorded_with_its_slot_and_one_journal_line_per_end(tmp_path):
    path = tmp_path / "state.json"
    marker = tmp_path / "tried"
    jm = JobManager(stateFile=str(path), maxWorkers=2, keepGoing=True)
    jm.entry(
        [
            {
                "id": "flaky",  # the first attempt hangs and times out; the second succeeds
                "commandLine": f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; sleep 30",
                "shell": True,
                "timeout": 0.5,
                "retry": 2,
            },
            {"id": "fails", "commandLine": "sh -c 'exit 3'"},
            *({"id": f"fan{i}", "commandLine": "sleep 0.1"} for i in range(6)),
        ]
    )
    with pytest.raises(CalledJobError):
        jm.run(interval=0.05)
    state = read_state(path)
    schema_validator().validate(state)
    jobs = state["jobs"]
    flaky = jobs["flaky"]["history"]
    check_attempts(flaky)
    assert [(e["result"], e["exitCode"]) for e in flaky] == [("timedOut", None), ("exited", 0)]
    assert flaky[0]["reason"] == "timed out after 0.5 s" and flaky[1]["startTimestamp"] >= flaky[0]["finishTimestamp"]
    assert flaky[1]["startTimestamp"] == jobs["flaky"]["attemptStartTimestamp"]
    assert flaky[0]["startTimestamp"] == jobs["flaky"]["startTimestamp"]
    assert [(e["result"], e["exitCode"], e["reason"]) for e in jobs["fails"]["history"]] == [
        ("exited", 3, "exit code 3")
    ]
    for job in jobs.values():
        check_attempts(job["history"])
        assert job["slot"] == job["history"][-1]["slot"]
    # two attempts in one slot never overlap: a slot is one worker, running one attempt at a time
    by_slot: dict[int, list[tuple[float, float]]] = {}
    for job in jobs.values():
        for entry in job["history"]:
            by_slot.setdefault(entry["slot"], []).append((entry["startTimestamp"], entry["finishTimestamp"]))
    assert set(by_slot) == {0, 1}
    for spans in by_slot.values():
        spans.sort()
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False))
    # the end of each attempt is one journal line carrying the whole new history
    header, *lines = Path(journal_path(str(path))).read_text().splitlines()
    for line in lines:
        schema_validator("journalLine").validate(json.loads(line))
    flaky_lines = [json.loads(line) for line in lines if '"id": "flaky"' in line and "history" in line]
    assert [len(line["history"]) for line in flaky_lines] == [1, 2]
    # read back through the state file reader: the same, typed as the model says
    record = load(str(path)).records["flaky"]
    assert record.history == flaky and record.slot == flaky[-1]["slot"]


def test_a_cancelled_attempt_is_recorded_and_a_job_cancelled_before_it_ran_has_none(tmp_path):
    jm = JobManager(stateFile=str(tmp_path / "state.json"), maxWorkers=1, keepGoing=True)
    jm.entry([{"id": "long", "commandLine": "sleep 30"}, {"id": "queued", "commandLine": "true"}])
    jm.runAllReadyJobs()
    wait_until(lambda: read_state(tmp_path / "state.json")["jobs"]["long"]["pid"], message="long to start")
    jm.cancel("queued")
    jm.cancel("long")
    jm.join()
    jobs = read_state(tmp_path / "state.json")["jobs"]
    assert [(e["result"], e["reason"], e["exitCode"]) for e in jobs["long"]["history"]] == [
        ("cancelled", "cancelled", None)
    ]
    assert jobs["queued"]["history"] == [] and jobs["queued"]["runningStatus"] == "Cancelled"


def test_the_replacement_of_a_dead_worker_takes_its_slot(tmp_path):
    gate = tmp_path / "gate"
    path = tmp_path / "state.json"
    jm = JobManager(stateFile=str(path), maxWorkers=2, keepGoing=True)
    jm.entry(
        [
            {"id": "hold", "commandLine": f"while [ ! -e {gate} ]; do sleep 0.02; done", "shell": True},
            {"id": "victim", "commandLine": "sleep 30"},
            {"id": "after", "commandLine": "true"},
        ]
    )
    jm.runAllReadyJobs()
    jobs = wait_until(
        lambda: (j := load(str(path)).records) and j["hold"].pid and j["victim"].pid and j,
        message="hold and victim to run",
    )
    worker = psutil.Process(jobs["victim"].pid).ppid()
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: load(str(path)).records["after"].history, message="after to run on the new worker")
    gate.touch()
    with pytest.raises(CalledJobError):  # victim was interrupted
        jm.run(interval=0.05)
    jobs = read_state(path)["jobs"]
    (victim,) = jobs["victim"]["history"]
    assert victim["result"] == "interrupted" and "its worker process" in victim["reason"]
    assert victim["exitCode"] is None and victim["startTimestamp"] is not None
    (after,) = jobs["after"]["history"]
    assert after["slot"] == victim["slot"] != jobs["hold"]["history"][0]["slot"]


def test_files_written_before_history_existed_still_load_with_an_empty_one():
    state = load(str(DATA / "v1-finished" / "state.json"))
    assert all(r.history == [] and r.slot is None for r in state.records.values())


@pytest.mark.parametrize(
    "damage",
    [
        lambda job: job.update(history=[{"attempt": 1}]),  # keys missing
        lambda job: job.update(history=[{**job["history"][0], "result": "finished"}]),
        lambda job: job.update(history=[{**job["history"][0], "finishTimestamp": "soon"}]),
        lambda job: job.update(history={}),
        lambda job: job.update(slot=-1),
    ],
)
def test_a_damaged_history_or_slot_is_refused_naming_the_key(tmp_path, damage):
    path = tmp_path / "state.json"
    jm = JobManager(stateFile=str(path), maxWorkers=1)
    jm.entry([{"id": "a", "commandLine": "true"}])
    jm.run(interval=0.05)
    state = read_state(path)
    damage(state["jobs"]["a"])
    path.write_text(json.dumps(state))
    with pytest.raises(StateFileError) as raised:
        load(str(path))
    assert "'a'" in str(raised.value) and ("history" in str(raised.value) or "slot" in str(raised.value))


def test_the_managers_picture_leaves_the_history_to_the_state_file(tmp_path):
    """The JobManager never uses a job's history: it checks it and drops it (its memory per job
    stays small at 100,000 jobs); the state file, load() and the report have it."""
    manager = JobManager(stateFile=tmp_path / "state.json")
    manager.entry([{"id": "a", "commandLine": "true"}])
    manager.run(interval=0.05)
    assert manager.jobs[0].history == []
    assert [entry["result"] for entry in load(str(tmp_path / "state.json")).records["a"].history] == ["exited"]
