"""`simplejob run` for daily use, through real subprocesses: where the batch lives, resuming by
running the same command again, plain lines and the summary, a failure's last lines, exit codes,
Ctrl-C and SIGTERM, --fresh, --report, the dry run and targets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import read_state, wait_until


def simplejob(*args, cwd=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "simplejob", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def start(*args, cwd=None):
    return subprocess.Popen(
        [sys.executable, "-m", "simplejob", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )


def write_jobs(path, contexts):
    path.write_text(json.dumps({"jobContexts": contexts}))
    return str(path)


def counting(marker, extra=""):
    """A shell command that appends a line to marker (how many times it ran), then does extra."""
    return f"echo ran >> {marker}; {extra}" if extra else f"echo ran >> {marker}"


def runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_the_batch_lives_beside_the_jobs_file_and_running_again_resumes(tmp_path):
    jobs = write_jobs(
        tmp_path / "build.json",
        [
            {"id": "a", "commandLine": counting(tmp_path / "a.runs", "echo out-of-a"), "shell": True},
            {
                "id": "b",
                "commandLine": counting(tmp_path / "b.runs", "echo err-of-b >&2; exit 3"),
                "shell": True,
                "waiting": ["a"],
            },
            {"id": "c", "commandLine": "true", "waiting": ["b"]},
        ],
    )
    first = simplejob("run", jobs, cwd=tmp_path)
    assert first.returncode == 1
    folder = tmp_path / ".simplejob" / "build"
    assert (folder / "state.json").exists() and (folder / "logs" / "a.log").read_text().endswith("out-of-a\n")
    assert "batch in .simplejob/build/" in first.stderr
    lines = first.stdout.splitlines()
    assert "[1/3] a: ok (" in lines[0] and "[2/3] b: failed (exit code 3) (" in lines[1]
    assert lines[-1].startswith("3 jobs in ") and lines[-1].endswith("1 ok, 1 failed, 1 blocked")
    assert "--- b: failed (exit code 3)" in first.stderr and "  | err-of-b" in first.stderr  # no log to open
    assert "run the same command again" in first.stderr and "Traceback" not in first.stderr

    # fixed: the same command resumes; a is not run again
    write_jobs(
        tmp_path / "build.json",
        [
            {"id": "a", "commandLine": counting(tmp_path / "a.runs", "echo out-of-a"), "shell": True},
            {"id": "b", "commandLine": counting(tmp_path / "b.runs"), "shell": True, "waiting": ["a"]},
            {"id": "c", "commandLine": "true", "waiting": ["b"]},
        ],
    )
    second = simplejob("run", jobs, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert runs(tmp_path / "a.runs") == 1 and runs(tmp_path / "b.runs") == 2
    assert "1 done earlier (kept)" in second.stderr
    assert second.stdout.splitlines()[-1].endswith("2 ok, 1 done earlier")


def test_the_state_file_explains_a_non_zero_exit(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "b", "commandLine": "exit 3", "shell": True}])
    assert simplejob("run", jobs, cwd=tmp_path).returncode == 1
    state = read_state(tmp_path / ".simplejob" / "jobs" / "state.json")
    assert state["jobs"]["b"]["reason"] == "exit code 3"  # contract (c), in the lead's supervisor


def test_state_file_and_log_directory_override_the_folder_and_report_prints_json(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "a", "commandLine": "echo hi"}])
    result = simplejob(
        "run",
        jobs,
        "--stateFile",
        str(tmp_path / "s.json"),
        "--logOutputDirectory",
        str(tmp_path / "out"),
        "--report",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["a"]["exitCode"] == 0  # stdout: the report only
    assert "[1/1] a: ok" in result.stderr and "1 jobs in " in result.stderr
    assert not (tmp_path / ".simplejob").exists()
    assert (tmp_path / "out" / "a.log").read_text().endswith("hi\n") and (tmp_path / "s.json").exists()


def test_fresh_moves_the_old_batch_aside_and_runs_everything(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.json", [{"id": "a", "commandLine": counting(tmp_path / "a.runs"), "shell": True}]
    )
    assert simplejob("run", jobs, cwd=tmp_path).returncode == 0
    result = simplejob("run", jobs, "--fresh", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert runs(tmp_path / "a.runs") == 2
    aside = tmp_path / ".simplejob" / "jobs.old-1"
    assert "jobs.old-1" in result.stderr and (aside / "state.json").exists() and (aside / "logs" / "a.log").exists()


@pytest.mark.parametrize(
    "signum, reason", [(signal.SIGINT, "interrupted by SIGINT"), (signal.SIGTERM, "interrupted by SIGTERM")]
)
def test_an_interrupted_run_exits_130_and_the_same_command_resumes_it(tmp_path, signum, reason):
    gate = tmp_path / "started"
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [
            {"id": "quick", "commandLine": counting(tmp_path / "quick.runs"), "shell": True},
            {
                "id": "slow",
                "commandLine": f"touch {gate}; exec sleep 60",
                "shell": True,
                "waiting": ["quick"],
                "killGrace": 0.5,
            },
        ],
    )
    proc = start("run", jobs, cwd=tmp_path)
    try:
        wait_until(gate.exists, timeout=20, message="the slow job to start")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "slow: interrupted" in out and "run the same command again" in err and reason in err
    state = read_state(tmp_path / ".simplejob" / "jobs" / "state.json")
    assert state["jobs"]["slow"]["runningStatus"] == "Interrupted"
    assert state["jobs"]["slow"]["reason"] == reason and state["supervisor"]["reason"] == reason  # contract (a)

    jobs = write_jobs(
        tmp_path / "jobs.json",
        [
            {"id": "quick", "commandLine": counting(tmp_path / "quick.runs"), "shell": True},
            {"id": "slow", "commandLine": "true", "waiting": ["quick"]},
        ],
    )
    again = simplejob("run", jobs, cwd=tmp_path)
    assert again.returncode == 0 and runs(tmp_path / "quick.runs") == 1


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    result = simplejob("run", "broken.json", cwd=tmp_path)
    assert result.returncode == 2 and "cannot read jobs file" in result.stderr
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "a", "commandLine": "true"}])
    result = simplejob("run", jobs, "nope", cwd=tmp_path)
    assert result.returncode == 2 and "no job 'nope'" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["broken.json", "jobs.json"]


def test_dry_run_explains_and_writes_nothing(tmp_path):
    contexts = [
        {"id": "fetch", "commandLine": "true"},
        {"id": "build", "commandLine": "true", "waiting": ["fetch"]},
        {"id": "test", "commandLine": "false", "waiting": ["build"]},
        {"id": "docs", "commandLine": "true"},
    ]
    jobs = write_jobs(tmp_path / "jobs.json", contexts)
    fresh = simplejob("run", jobs, "-n", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert not (tmp_path / ".simplejob").exists()
    assert [line.split()[:2] for line in fresh.stdout.splitlines()[1:]] == [
        ["run", "fetch"],
        ["run", "build"],
        ["run", "test"],
        ["run", "docs"],
    ]

    assert simplejob("run", jobs, cwd=tmp_path).returncode == 1
    state = tmp_path / ".simplejob" / "jobs" / "state.json"
    before = {p.name: p.read_bytes() for p in state.parent.iterdir() if p.is_file()}
    contexts[1]["commandLine"] = "echo changed"
    contexts.append({"id": "new", "commandLine": "true"})
    write_jobs(tmp_path / "jobs.json", contexts)
    plan = simplejob("run", jobs, "--dry-run", cwd=tmp_path)
    assert plan.returncode == 0
    rows = {line.split()[1]: line for line in plan.stdout.splitlines()[1:]}
    assert rows["fetch"].startswith("keep") and "changed definition (commandLine)" in rows["build"]
    assert "downstream of build" in rows["test"] and rows["docs"].startswith("keep") and "new" in rows["new"]
    assert "3 to run, 2 kept" in plan.stdout
    assert {p.name: p.read_bytes() for p in state.parent.iterdir() if p.is_file()} == before


def test_targets_run_only_what_they_need(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [
            {"id": "fetch", "commandLine": counting(tmp_path / "fetch.runs"), "shell": True},
            {"id": "build", "commandLine": counting(tmp_path / "build.runs"), "shell": True, "waiting": ["fetch"]},
            {"id": "docs", "commandLine": counting(tmp_path / "docs.runs"), "shell": True},
        ],
    )
    plan = simplejob("run", jobs, "build", "-n", cwd=tmp_path)
    assert [line.split()[1] for line in plan.stdout.splitlines()[1:]] == ["fetch", "build"]
    result = simplejob("run", jobs, "build", cwd=tmp_path)  # contract (b): JobManager.entry(targets=)
    assert result.returncode == 0, result.stderr
    assert runs(tmp_path / "fetch.runs") == 1 and runs(tmp_path / "build.runs") == 1
    assert runs(tmp_path / "docs.runs") == 0
    assert result.stdout.splitlines()[-1].startswith("2 jobs in ")


def test_resource_flags_cap_the_local_pool_and_bad_values_are_one_line(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [{"id": "a", "commandLine": "true", "resources": {"db": 1}}, {"id": "b", "commandLine": "true"}],
    )
    result = simplejob("run", jobs, "--resource", "db=1", "--resource", "gpu=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_state(tmp_path / ".simplejob" / "jobs" / "state.json")["options"]["resources"] == {"db": 1, "gpu": 2}
    for bad in ("db", "db=-1", "=1", "db=x"):
        result = simplejob("run", jobs, "--resource", bad, cwd=tmp_path)
        assert result.returncode == 2 and "NAME=AMOUNT" in result.stderr and len(result.stderr.splitlines()) == 1
    result = simplejob("run", jobs, "--fresh", cwd=tmp_path)  # without --resource db=1, the pool has no db
    assert result.returncode == 2 and "job 'a': needs db=1" in result.stderr
