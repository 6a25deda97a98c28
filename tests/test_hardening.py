"""Issue 11: nothing escapes a killed process group, no hostile or broken file crashes or hangs a
batch, secrets stay out of the state file. Each test reproduces a break found by an adversarial
test of the earlier code."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from conftest import wait_until
from simplejob import CalledJobError, JobManager, StateFileError, statefile, statewriter
from simplejob.model import JobRecord
from simplejob.statefile import load
from simplejob.validation import parse_contexts
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
    # found by the property test: entry() takes a null waiting for [], a state file holds []
    "waiting null": (lambda d: d["jobs"]["a"].update(waiting=None), ["job 'a'", "waiting", "None"]),
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


# --- 4. special files never hang or crash a batch -----------------------------------------------------


def make_special(path: Path, kind: str) -> None:
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "dangling symlink":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "symlink loop":
        path.symlink_to(path)


SPECIAL = ["FIFO", "directory", "device", "dangling symlink", "symlink loop"]


@pytest.mark.parametrize("kind", SPECIAL)
def test_a_state_file_that_is_a_special_file_is_refused_at_once_naming_it(tmp_path, kind):
    path = tmp_path / "state.json"
    make_special(path, kind)
    with pytest.raises(StateFileError) as refused:
        JobManager(stateFile=path).entry([{"id": "a", "commandLine": "true"}])
    assert repr(str(path)) in str(refused.value)


@pytest.mark.parametrize("kind", ["FIFO", "directory", "device"])
def test_a_journal_that_is_a_special_file_is_refused_at_once_naming_it(finished, kind):
    path, jobs, _, _ = finished
    journal = Path(str(path) + ".journal")
    journal.unlink()
    make_special(journal, kind)
    with pytest.raises(StateFileError) as refused:
        JobManager(stateFile=path).entry(jobs)
    assert repr(str(journal)) in str(refused.value)


@pytest.mark.parametrize("kind", ["FIFO", "directory", "device"])
def test_a_log_that_is_not_a_regular_file_fails_that_job_with_126_and_the_batch_goes_on(tmp_path, kind):
    logs = tmp_path / "logs"
    logs.mkdir()
    make_special(logs / "odd.log", kind)
    jobs = [
        {"id": "odd", "commandLine": "sleep 30", "timeout": 20},
        {"id": "next", "commandLine": "true", "waiting": []},
        {"id": "after", "commandLine": "true", "waiting": ["next"]},
    ]
    manager = JobManager(stateFile=tmp_path / "state.json", logOutputDirectory=logs, maxWorkers=1, keepGoing=True)
    manager.entry(jobs)
    started = time.monotonic()
    with pytest.raises(CalledJobError):
        manager.run(interval=0.05)
    assert time.monotonic() - started < 15  # it did not wait for the job's timeout: it never started
    odd = {job.id: job for job in manager.jobs}["odd"]
    assert odd.exitCode == 126 and str(logs / "odd.log") in odd.reason
    assert [job.exitCode for job in manager.jobs[1:]] == [0, 0]  # the same worker ran them


# --- 5. no symlink games --------------------------------------------------------------------------------


def test_a_symlink_planted_where_the_old_temporary_file_name_was_is_not_followed(tmp_path):
    path = tmp_path / "state.json"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / f"state.json.tmp.{os.getpid()}").symlink_to(victim)  # the predictable name of simplejob 0.1
    statewriter.replace_atomically(str(path), b"new content", durable=True)
    assert path.read_bytes() == b"new content" and victim.read_text() == "precious"
    assert not list(tmp_path.glob("state.json.tmp-*"))  # no temporary file left


def test_temporary_files_have_unpredictable_names_created_exclusively(tmp_path, monkeypatch):
    names = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (names.append(src), real_replace(src, dst)))
    for _ in range(2):
        statewriter.replace_atomically(str(tmp_path / "state.json"), b"x", durable=False)
    assert len(set(names)) == 2 and all(f"state.json{statewriter.TEMPORARY_INFIX}" in n for n in names)


def test_a_symlinked_lock_file_is_refused_and_its_target_left_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "state.json.lock").symlink_to(victim)
    with pytest.raises(StateFileError) as refused:
        JobManager(stateFile=tmp_path / "state.json").entry([{"id": "a", "commandLine": "true"}])
    assert repr(str(tmp_path / "state.json")) in str(refused.value) and "lock" in str(refused.value)
    assert victim.read_text() == "precious"


# --- 6. secrets ------------------------------------------------------------------------------------------


def test_the_state_journal_lock_logs_and_log_directory_are_readable_by_the_owner_only(tmp_path):
    logs = tmp_path / "logs"
    manager = JobManager(stateFile=tmp_path / "state.json", logOutputDirectory=logs)
    manager.entry([{"id": "a", "commandLine": "echo hello"}])
    manager.run(interval=0.05)
    for name in ("state.json", "state.json.journal", "state.json.lock", "logs/a.log"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700


SECRET = "hunter2-\u00e9-secret"


def test_env_values_never_reach_the_state_file_or_journal_but_a_change_still_reruns_the_job(tmp_path):
    marker = tmp_path / "runs"
    job = {"id": "uses-secret", "commandLine": f'echo "$TOKEN" >> {marker}', "shell": True}
    path = tmp_path / "state.json"

    def run(value: str) -> JobManager:
        manager = JobManager(stateFile=path)
        manager.entry([{**job, "env": {"TOKEN": value}}])
        manager.run(interval=0.05)
        for name in ("state.json", "state.json.journal"):
            assert value.encode() not in (tmp_path / name).read_bytes(), name
        return manager

    run(SECRET)
    state = json.loads(path.read_text())
    digest = state["jobs"]["uses-secret"]["env"]["TOKEN"]
    assert digest.startswith("blake2b:")
    run(SECRET)  # the same value: kept
    assert marker.read_text().splitlines() == [SECRET]
    run(SECRET + "!")  # a changed value: run again
    assert marker.read_text().splitlines() == [SECRET, SECRET + "!"]


def test_equal_env_values_in_two_batches_give_different_digests(tmp_path):
    digests = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.json"
        manager = JobManager(stateFile=path)
        manager.entry([{"id": "a", "commandLine": "true", "env": {"TOKEN": SECRET}}])
        manager.run(interval=0.05)
        digests.append(json.loads(path.read_text())["jobs"]["a"]["env"]["TOKEN"])
    assert digests[0] != digests[1]


def test_a_version_1_state_file_with_env_in_clear_still_resumes_and_is_rewritten_digested(finished):
    path, jobs, snapshot, _ = finished
    snapshot["jobs"]["a"]["env"] = {"TOKEN": SECRET}  # as simplejob 0.1 wrote it
    path.write_text(json.dumps(snapshot))
    Path(str(path) + ".journal").unlink()
    manager = JobManager(stateFile=path)
    manager.entry([{**jobs[0], "env": {"TOKEN": SECRET}}, jobs[1]])
    manager.run(interval=0.05)
    assert [job.resumed for job in manager.jobs] == [True, True]  # unchanged: kept
    assert SECRET.encode() not in path.read_bytes()


# --- 7. input that crashed the supervisor is refused by entry(), naming the job --------------------------

NOT_UTF8 = os.fsdecode(b"caf\xe9")  # a lone surrogate, as os.listdir gives for a Latin-1 file name


@pytest.mark.parametrize(
    "context, words",
    [
        ({"id": NOT_UTF8, "commandLine": "true"}, ["id", "not valid Unicode"]),
        ({"id": "a", "commandLine": ["cat", NOT_UTF8]}, ["'a'", "commandLine", "not valid Unicode"]),
        ({"id": "a", "commandLine": f"cat {NOT_UTF8}"}, ["'a'", "commandLine"]),
        ({"id": "a", "commandLine": "true", "env": {"X": NOT_UTF8}}, ["'a'", "env", "not valid Unicode"]),
        ({"id": "a", "commandLine": "true", "cwd": NOT_UTF8}, ["'a'", "cwd"]),
        ({"id": "a", "commandLine": "true", "timeout": 1e300}, ["'a'", "timeout", "at most"]),
        ({"id": "a", "commandLine": "true", "delay": 1e200, "retry": 1, "timeout": 1}, ["'a'", "delay"]),
        ({"id": "a", "commandLine": "true", "killGrace": 1e300}, ["'a'", "killGrace"]),
    ],
    ids=["id", "argument", "command string", "env", "cwd", "timeout", "delay", "killGrace"],
)
def test_input_that_crashed_the_supervisor_is_a_value_error_naming_the_job(tmp_path, context, words):
    with pytest.raises(ValueError) as refused:
        JobManager(stateFile=tmp_path / "state.json").entry([context])
    for word in words:
        assert word in str(refused.value)
    assert not (tmp_path / "state.json").exists()


def test_a_huge_backoff_is_capped_not_an_overflow(tmp_path):
    manager = JobManager(stateFile=tmp_path / "state.json")
    job = {"id": "slow", "commandLine": "sleep 5", "timeout": 0.1, "retry": 3, "delay": 0.05, "backoff": 1e200}
    manager.entry([job])
    manager.runAllReadyJobs()
    wait_until(lambda: "retry 2 in" in (manager.jobs[0].reason or ""), message="the second, capped, retry wait")
    assert "retry 2 in 1e+09 s" in manager.jobs[0].reason
    manager.cancel()
    manager.join()
    assert manager.jobs[0].runningStatus.name == "Cancelled"


def test_a_state_file_name_too_long_for_the_derived_names_is_refused(tmp_path):
    name = "s" * 240 + ".json"
    with pytest.raises(ValueError, match="stateFile") as refused:
        JobManager(stateFile=tmp_path / name).entry([{"id": "a", "commandLine": "true"}])
    assert "at most 223 bytes" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


# --- 8. a full disk or a file-size limit is reported, not guessed ----------------------------------------

FSIZE_OWNER = """\
import sys
from simplejob import JobManager, StateNotWritten
manager = JobManager(stateFile=sys.argv[1] + "/state.json", maxWorkers=2)
manager.entryFromJson(sys.argv[1] + "/jobs.json")
try:
    manager.run(interval=0.05)
except StateNotWritten as error:
    print(error, file=sys.stderr)
    sys.exit(7)
"""


def fsize_jobs(directory: Path) -> list[dict]:
    """400 short jobs, each adding its number to the file runs."""
    return [
        {"id": f"job-{i:04d}", "commandLine": ["sh", "-c", f"echo {i} >> {directory}/runs; sleep 0.01"]}
        for i in range(400)
    ]


def first_snapshot_size(directory: Path) -> int:
    """The size of the snapshot the batch starts with (every job Ready), written here without processes."""
    records = {
        d.id: JobRecord(d)
        for d in parse_contexts(
            [
                {"id": f"job-{i:04d}", "commandLine": ["sh", "-c", f"echo {i} >> {directory}/runs; sleep 0.01"]}
                for i in range(400)
            ]
        )
    }
    path = directory / "probe" / "state.json"
    path.parent.mkdir()
    supervisor = {"pid": 99999, "host": "h" * 40, "running": True, "result": None, "startDateTime": "x" * 26}
    options = {"maxWorkers": 2, "keepGoing": False, "logOutputDirectory": None}
    state = statefile.State(str(path), 0, supervisor, options, records)
    statewriter.StateWriter(str(path), state).start()
    return path.stat().st_size


def test_a_file_size_limit_on_the_state_stops_the_batch_naming_the_file_and_a_resume_loses_nothing(tmp_path):
    # Room for the first snapshot, not for one of finished jobs (their entries are longer).
    limit = int(first_snapshot_size(tmp_path) * 1.1)
    (tmp_path / "jobs.json").write_text(json.dumps({"jobContexts": fsize_jobs(tmp_path)}))

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    owner = subprocess.run(
        [sys.executable, "-c", FSIZE_OWNER, str(tmp_path)], preexec_fn=limited, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert owner.returncode == 7, owner.stderr
    assert "cannot write the state file" in owner.stderr and "File too large" in owner.stderr
    assert str(tmp_path / "state.json") in owner.stderr
    state = load(str(tmp_path / "state.json"))  # the last good snapshot and journal still load
    completed = {job_id for job_id, r in state.records.items() if r.succeeded()}
    assert 0 < len(completed) < 400
    assert not list(tmp_path.glob("state.json.tmp-*"))
    runs_before = Counter((tmp_path / "runs").read_text().split())

    manager = JobManager(stateFile=tmp_path / "state.json", maxWorkers=2)  # no limit now: resume
    manager.entry(
        [
            {"id": f"job-{i:04d}", "commandLine": ["sh", "-c", f"echo {i} >> {tmp_path}/runs; sleep 0.01"]}
            for i in range(400)
        ]
    )
    manager.run(interval=0.05)
    runs = Counter((tmp_path / "runs").read_text().split())
    assert set(runs) == {str(i) for i in range(400)}
    rerun_after_completion = [j for j in completed if runs[str(int(j[4:]))] != runs_before[str(int(j[4:]))]]
    assert rerun_after_completion == []


def test_the_command_line_names_the_file_and_the_os_error_when_the_state_cannot_be_written(tmp_path):
    limit = int(first_snapshot_size(tmp_path) * 1.1)
    (tmp_path / "jobs.json").write_text(json.dumps({"jobContexts": fsize_jobs(tmp_path)}))
    state = tmp_path / "cli-state.json"

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "simplejob", "run", str(tmp_path / "jobs.json"), "--stateFile", str(state), "-j", "2"],
        preexec_fn=limited, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot write the state file '{state}'" in done.stderr and "File too large" in done.stderr
    assert "Traceback" not in done.stderr
    assert load(str(state)) is not None  # the last good state still loads


DEEP = "[" * 100_000 + "]" * 100_000  # deeper than json's decoder follows: a RecursionError, not a JSONDecodeError


def test_json_nested_deeper_than_the_decoder_follows_is_refused_with_words_not_a_traceback(finished, tmp_path):
    path, jobs, _, journal = finished
    text = path.read_text()
    path.write_text(text.replace('"reason": null', f'"reason": {DEEP}', 1))
    assert_refused_untouched(path, jobs, "", ["is not valid JSON", "recursion"])

    path.write_text(text)
    Path(str(path) + ".journal").write_bytes(journal_with(journal, f'{{"id": "a", "reason": {DEEP}}}'.encode()))
    assert_refused_untouched(path, jobs, ".journal", [f"at byte {len(journal)}", "recursion"])

    jobs_file = tmp_path / "deep.json"
    jobs_file.write_text('{"jobContexts": ' + DEEP + "}")
    with pytest.raises(ValueError, match="cannot read jobs file"):
        JobManager().entryFromJson(jobs_file)
    result = subprocess.run(
        [sys.executable, "-m", "simplejob", "run", str(jobs_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "cannot read jobs file" in result.stderr and "Traceback" not in result.stderr
