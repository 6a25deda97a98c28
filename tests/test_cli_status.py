"""`simplejob status`, `logs` and `forget`, and the small things (--version, unknown commands,
nonsense flags, help examples, a closed pipe), through real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import read_state, wait_until
from test_cli_run import counting, runs, simplejob, start, write_jobs


@pytest.fixture
def failed_batch(tmp_path):
    """A finished batch: a ok, b failed (exit code 3), c blocked by b, d ok."""
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [
            {"id": "a", "commandLine": counting(tmp_path / "a.runs"), "shell": True},
            {"id": "b", "commandLine": "echo b-says >&2; exit 3", "shell": True, "waiting": ["a"]},
            {"id": "c", "commandLine": "true", "waiting": ["b"]},
            {"id": "d", "commandLine": "echo d-out"},
        ],
    )
    assert simplejob("run", jobs, "-k", cwd=tmp_path).returncode == 1
    return tmp_path, jobs


def test_status_shows_failures_and_blocked_jobs_and_exits_1(failed_batch):
    tmp_path, jobs = failed_batch
    result = simplejob("status", jobs, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:5]}
    assert "FAILED (exit code 3); log: " in rows["b"] and "log: .simplejob/jobs/logs/b.log" in rows["b"]
    assert rows["c"].split()[1] == "Blocked" and "blocked by b (failed)" in rows["c"]
    assert rows["d"].split()[1:3] == ["Completed", "0"]
    assert "4 jobs: 3 Completed, 1 Blocked" in result.stdout and "outcome: 2 ok, 1 failed, 1 blocked" in result.stdout
    by_state_file = simplejob("status", str(tmp_path / ".simplejob" / "jobs" / "state.json"), cwd=tmp_path)
    assert by_state_file.returncode == 1 and by_state_file.stdout.splitlines()[1:5] == result.stdout.splitlines()[1:5]


def test_status_json_for_scripts(failed_batch):
    tmp_path, jobs = failed_batch
    result = simplejob("status", jobs, "--json", cwd=tmp_path)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["finished"] is True and data["batch"] == "finished"
    assert data["counts"] == {
        "total": 4,
        "ok": 2,
        "kept": 0,
        "failed": 1,
        "timedOut": 0,
        "cancelled": 0,
        "interrupted": 0,
        "running": 0,
        "blocked": 1,
        "waiting": 0,
    }
    b, c = data["jobs"]["b"], data["jobs"]["c"]
    assert (b["runningStatus"], b["exitCode"], b["outcome"]) == ("Completed", 3, "failed")
    assert b["log"] == str(tmp_path / ".simplejob" / "jobs" / "logs" / "b.log")
    assert (c["runningStatus"], c["blockedBy"], c["log"]) == ("Ready", ["b"], None)
    assert {"reason", "attempts", "startDateTime", "elapsedSeconds"} <= set(b)


def test_status_exit_codes_0_3_and_2(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "a", "commandLine": "true"}])
    never = simplejob("status", jobs, "--json", cwd=tmp_path)
    assert never.returncode == 3 and json.loads(never.stdout)["finished"] is False
    assert not (tmp_path / ".simplejob").exists()
    assert simplejob("run", jobs, cwd=tmp_path).returncode == 0
    assert simplejob("status", jobs, cwd=tmp_path).returncode == 0
    (tmp_path / "garbage.json").write_text("{")
    unreadable = simplejob("status", str(tmp_path / "garbage.json"))
    assert unreadable.returncode == 2 and "Traceback" not in unreadable.stderr
    missing = simplejob("status", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json" in missing.stderr


def test_while_running_status_exits_3_logs_follow_streams_and_forget_is_refused(tmp_path):
    gate, release = tmp_path / "started", tmp_path / "release"
    script = f"echo first-line; touch {gate}; while [ ! -e {release} ]; do sleep 0.05; done; echo last-line"
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "w", "commandLine": script, "shell": True}])
    run = start("run", jobs, cwd=tmp_path)
    follower = watcher = None
    try:
        wait_until(gate.exists, timeout=20, message="the job to start")
        status = simplejob("status", jobs, "--json", cwd=tmp_path)
        assert status.returncode == 3 and json.loads(status.stdout)["jobs"]["w"]["runningStatus"] == "Running"
        refused = simplejob("forget", jobs, "w", cwd=tmp_path)
        assert refused.returncode == 2 and "in use by pid" in refused.stderr
        follower = start("logs", jobs, "w", "--follow", cwd=tmp_path)
        watcher = start("status", jobs, "--watch", "--interval", "0.1", cwd=tmp_path)
        release.touch()
        out, err = follower.communicate(timeout=20)
        assert follower.returncode == 0, err
        assert out.index("first-line") < out.index("last-line")
        watched, _ = watcher.communicate(timeout=20)
        assert watcher.returncode == 0 and "batch finished" in watched
        assert run.wait(timeout=20) == 0
    finally:
        for proc in (run, follower, watcher):
            if proc is not None:
                proc.kill()
                proc.communicate()


def test_logs_prints_a_log_and_names_unknown_jobs(failed_batch):
    tmp_path, jobs = failed_batch
    result = simplejob("logs", jobs, "b", cwd=tmp_path)
    assert result.returncode == 0 and "b-says" in result.stdout
    unknown = simplejob("logs", jobs, "zz", cwd=tmp_path)
    assert unknown.returncode == 2 and "no job 'zz'" in unknown.stderr


def test_forget_makes_a_job_and_what_waits_on_it_run_again(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [
            {"id": "a", "commandLine": counting(tmp_path / "a.runs"), "shell": True},
            {"id": "b", "commandLine": counting(tmp_path / "b.runs"), "shell": True, "waiting": ["a"]},
            {"id": "other", "commandLine": counting(tmp_path / "other.runs"), "shell": True},
        ],
    )
    assert simplejob("run", jobs, cwd=tmp_path).returncode == 0
    result = simplejob("forget", jobs, "a", cwd=tmp_path)
    assert result.returncode == 0 and "forgot 2 job(s): a, b" in result.stdout
    state = read_state(tmp_path / ".simplejob" / "jobs" / "state.json")
    assert [state["jobs"][i]["runningStatus"] for i in ("a", "b", "other")] == ["Ready", "Ready", "Completed"]
    assert simplejob("run", jobs, cwd=tmp_path).returncode == 0
    assert (runs(tmp_path / "a.runs"), runs(tmp_path / "b.runs"), runs(tmp_path / "other.runs")) == (2, 2, 1)
    assert simplejob("forget", jobs, "--all", cwd=tmp_path).returncode == 0
    assert simplejob("run", jobs, cwd=tmp_path).returncode == 0 and runs(tmp_path / "other.runs") == 2
    unknown = simplejob("forget", jobs, "zz", cwd=tmp_path)
    assert unknown.returncode == 2 and "no job 'zz'" in unknown.stderr


def test_version_unknown_commands_and_nonsense_flags(tmp_path):
    version = simplejob("--version")
    assert version.returncode == 0 and version.stdout.startswith("simplejob 0.")
    typo = simplejob("stauts", "x")
    assert typo.returncode == 2 and "unknown command 'stauts'" in typo.stderr and "'status'" in typo.stderr
    assert "unrecognized arguments" not in typo.stderr
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "a", "commandLine": "true"}])
    for flag, value in [
        ("--loopInterval", "-1"),
        ("--loopInterval", "0"),
        ("--maxWorkers", "0"),
        ("--maxWorkers", "two"),
    ]:
        result = simplejob("run", jobs, flag, value, cwd=tmp_path)
        assert result.returncode == 2, flag
        assert len(result.stderr.strip().splitlines()) == 1 and flag in result.stderr and value in result.stderr
    assert not (tmp_path / ".simplejob").exists()
    for command in ("run", "status", "logs", "forget"):
        assert "examples:" in simplejob(command, "--help").stdout


def test_a_closed_pipe_is_not_a_traceback(failed_batch):
    tmp_path, jobs = failed_batch
    shell = f"{sys.executable} -m simplejob status {jobs} | head -1"
    result = subprocess.run(
        shell, shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=60, env={**os.environ, "COLUMNS": "80"}
    )
    assert result.stdout.startswith("ID") and result.stderr == ""
