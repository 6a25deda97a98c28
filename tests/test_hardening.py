"""Issue 11: nothing escapes a killed process group, no hostile or broken file crashes or hangs a
batch, secrets stay out of the state file. Each test reproduces a break found by an adversarial
test of the earlier code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import wait_until
from simplejob import CalledJobError, JobManager, StateFileError
from test_process_control import (
    OWNER_GRACE,
    Guard,
    alive,
    assert_batch_interrupted,
    assert_gone_by,
    load_state,
    start_owner,
)


@pytest.fixture
def guard(tmp_path):
    guard = Guard(tmp_path)
    yield guard
    guard.cleanup()


# --- 1. a killed process group leaves no job running ----------------------------------------------


@pytest.mark.parametrize(
    "kind, sig",
    [
        ("library", signal.SIGKILL),  # timeout -s KILL, kill -9 -PGID
        ("library", signal.SIGQUIT),  # Ctrl-\ from the terminal
        ("library", signal.SIGUSR1),  # any signal whose default action is to terminate
        ("cli", signal.SIGKILL),
    ],
    ids=["library-SIGKILL", "library-SIGQUIT", "library-SIGUSR1", "cli-SIGKILL"],
)
def test_whatever_kills_the_owners_process_group_the_batch_dies_with_the_owner(guard, tmp_path, kind, sig):
    owner, pids = start_owner(guard, tmp_path, kind)
    sent = time.monotonic()
    os.killpg(owner.pid, sig)
    owner.wait(timeout=10)
    # The supervisor (in a session of its own) saw its owner die: it kills every job tree,
    # records the jobs Interrupted and exits; its workers go with it.
    assert_gone_by(pids, sent + OWNER_GRACE + 3.0, "the batch to die with its owner")
    assert alive(pids) == {}
    wait_until(lambda: load_state(tmp_path).supervisor.get("running") is False, timeout=2, message="final state")
    assert_batch_interrupted(tmp_path, "the process that owns the batch")


# --- 2. a state file is trusted only after it is checked -------------------------------------------


@pytest.fixture
def finished(tmp_path):
    """A real state file of a finished two-job batch; returns (path, jobs, snapshot dict, journal bytes)."""
    path = tmp_path / "state.json"
    jobs = [{"id": "a", "commandLine": "true"}, {"id": "b", "commandLine": ["sh", "-c", "exit 0"], "waiting": ["a"]}]
    manager = JobManager(stateFile=path, maxWorkers=2)
    manager.entry(jobs)
    manager.run(interval=0.05)
    return path, jobs, json.loads(path.read_text()), Path(str(path) + ".journal").read_bytes()


SNAPSHOT_DAMAGE = {  # name -> (change to the snapshot dict, words the error must hold)
    "exitCode false": (lambda d: d["jobs"]["a"].update(exitCode=False), ["job 'a'", "'exitCode'", "False"]),
    "exitCode a string": (lambda d: d["jobs"]["a"].update(exitCode="0"), ["job 'a'", "'exitCode'"]),
    "elapsedSeconds text": (lambda d: d["jobs"]["b"].update(elapsedSeconds="abc"), ["job 'b'", "'elapsedSeconds'"]),
    "pid a string": (lambda d: d["jobs"]["a"].update(runningStatus="Running", pid="123"), ["job 'a'", "'pid'"]),
    "pid negative": (lambda d: d["jobs"]["a"].update(runningStatus="Running", pid=-5), ["job 'a'", "'pid'", "-5"]),
    "startTimestamp text": (lambda d: d["jobs"]["a"].update(startTimestamp="now"), ["job 'a'", "'startTimestamp'"]),
    "unknown status": (lambda d: d["jobs"]["a"].update(runningStatus="Done"), ["job 'a'", "'runningStatus'"]),
    "schemaVersion 0": (lambda d: d.update(schemaVersion=0), ["schemaVersion 0"]),
    "schemaVersion true": (lambda d: d.update(schemaVersion=True), ["'schemaVersion'"]),
    "attempts negative": (lambda d: d["jobs"]["b"].update(attempts=-1), ["job 'b'", "'attempts'"]),
    "bad commandLine": (lambda d: d["jobs"]["b"].update(commandLine=42), ["job 'b'", "commandLine"]),
    "unknown wait": (lambda d: d["jobs"]["b"].update(waiting=["zz"]), ["job 'b'", "zz"]),
    "a cycle": (lambda d: d["jobs"]["a"].update(waiting=["b"]), ["circular"]),
    "unknown key": (lambda d: d["jobs"]["a"].update(exitcode=0), ["job 'a'", "'exitcode'"]),
    "supervisor pid": (lambda d: d["supervisor"].update(pid="1"), ["supervisor", "'pid'"]),
    "options maxWorkers": (lambda d: d["options"].update(maxWorkers=0), ["options", "'maxWorkers'"]),
}


def assert_refused_untouched(path: Path, jobs, suffix: str, words: list[str]) -> None:
    before = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    with pytest.raises(StateFileError) as refused:
        JobManager(stateFile=path).entry(jobs)
    message = str(refused.value)
    assert repr(str(path) + suffix) in message
    for word in words:
        assert word in message, message
    assert {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("damage", list(SNAPSHOT_DAMAGE))
def test_a_state_file_value_of_the_wrong_type_is_refused_naming_file_job_and_key(finished, damage):
    path, jobs, snapshot, _ = finished
    change, words = SNAPSHOT_DAMAGE[damage]
    change(snapshot)
    path.write_text(json.dumps(snapshot))
    assert_refused_untouched(path, jobs, "", words)


def journal_with(journal: bytes, line: bytes) -> bytes:
    return journal + line + b"\n"


JOURNAL_DAMAGE = {
    "unknown id": (b'{"id": "nobody", "runningStatus": "Completed"}', ["'nobody'"]),
    "a second header": (b'{"schemaVersion": 1, "generation": 9}', ["second header"]),
    "exitCode false": (b'{"id": "a", "exitCode": false}', ["job 'a'", "'exitCode'"]),
    "pid text": (b'{"id": "a", "pid": "123"}', ["job 'a'", "'pid'"]),
    "a definition change": (b'{"id": "a", "commandLine": "rm -rf /"}', ["job 'a'", "'commandLine'"]),
    "not an object": (b"[1, 2]", ["not an object"]),
}


@pytest.mark.parametrize("damage", list(JOURNAL_DAMAGE))
def test_a_journal_line_that_does_not_fit_is_refused_naming_its_offset(finished, damage):
    path, jobs, _, journal = finished
    line, words = JOURNAL_DAMAGE[damage]
    Path(str(path) + ".journal").write_bytes(journal_with(journal, line))
    assert_refused_untouched(path, jobs, ".journal", [f"at byte {len(journal)}", *words])


def test_a_state_file_with_exit_code_false_is_not_taken_for_success(finished):
    """The break this fixes: "exitCode": false counted as exit code 0, so the job was skipped on resume."""
    path, jobs, snapshot, _ = finished
    snapshot["jobs"]["a"]["exitCode"] = False
    path.write_text(json.dumps(snapshot))
    with pytest.raises(StateFileError):
        JobManager(stateFile=path).entry(jobs)


# --- 3. never kill a process that is not the job's ---------------------------------------------------


@pytest.mark.parametrize("recorded_start", [None, 1_000_000_000.0], ids=["no start time", "another start time"])
def test_a_pid_in_an_old_state_file_is_killed_only_if_it_is_the_same_process(finished, recorded_start):
    path, jobs, snapshot, _ = finished
    bystander = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        wait_until(lambda: psutil.Process(bystander.pid).children(), message="the bystander's child")
        child = psutil.Process(bystander.pid).children()[0]
        snapshot["jobs"]["b"].update(
            runningStatus="Running", pid=bystander.pid, startTimestamp=recorded_start, exitCode=None
        )
        path.write_text(json.dumps(snapshot))
        Path(str(path) + ".journal").unlink()
        manager = JobManager(stateFile=path)
        manager.entry(jobs)
        manager.run(interval=0.05)
        assert bystander.poll() is None and child.is_running()  # left alone
        state = json.loads(path.read_text())
        assert state["jobs"]["b"]["runningStatus"] == "Completed"  # the job itself ran again
    finally:
        bystander.kill()
        bystander.wait()
        child.kill()


def test_the_reason_says_an_old_pid_was_left_alone(finished):
    path, jobs, snapshot, _ = finished
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        snapshot["jobs"]["b"].update(runningStatus="Running", pid=bystander.pid, startTimestamp=None, exitCode=None)
        path.write_text(json.dumps(snapshot))
        Path(str(path) + ".journal").unlink()
        failing_a = [{**jobs[0], "commandLine": "false"}, jobs[1]]  # a runs again and fails: b never runs
        manager = JobManager(stateFile=path)
        manager.entry(failing_a)
        with pytest.raises(CalledJobError):
            manager.run(interval=0.05)
        assert bystander.poll() is None
        reason = json.loads(path.read_text())["jobs"]["b"]["reason"]
        assert f"pid {bystander.pid} was left alone" in reason
    finally:
        bystander.kill()
        bystander.wait()
