"""The command line: simplejob run JOBS.json, the reference's own form, and the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def simplejob(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "simplejob", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def write_jobs(path, contexts):
    path.write_text(json.dumps({"jobContexts": contexts}))
    return str(path)


def test_run_with_report_prints_the_report_and_exits_0(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [{"id": "a", "commandLine": "echo hi"}, {"id": "b", "commandLine": "true", "waits": ["a"]}],
    )
    result = simplejob("run", jobs, "--logOutputDirectory", str(tmp_path / "logs"), "--report")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [list(r) for r in report["results"]] == [["a"], ["b"]]
    assert report["results"][1]["b"]["runnigStatus"] == "Completed"
    assert (tmp_path / "logs" / "a.log").read_text().endswith("hi\n")


def test_the_reference_form_and_a_failure_exit_1(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "bad", "commandLine": "false"}])
    result = simplejob(jobs, "--logOutputDirectory", str(tmp_path), "--loopInterval", "0.1")
    assert result.returncode == 1
    assert json.loads(result.stdout)["results"][0]["bad"]["exitCode"] == 1
    assert "bad (exit code 1)" in result.stderr


def test_invalid_jobs_are_a_usage_error_naming_the_job(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "a", "commandLine": "true", "waiting": ["zzz"]}])
    result = simplejob("run", jobs)
    assert result.returncode == 2
    assert "'zzz'" in result.stderr and "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["jobs.json"]  # nothing written


def test_the_demo_batch_runs(tmp_path):
    result = simplejob(
        "run",
        str(ROOT / "examples" / "demo.json"),
        "--logOutputDirectory",
        str(tmp_path / "logs"),
        "--report",
        "--stateFile",
        str(tmp_path / "demo-state.json"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    results = {job_id: r[job_id] for r in json.loads(result.stdout)["results"] for job_id in r}
    assert len(results) == 6 and all(r["exitCode"] == 0 for r in results.values())
    assert results["flaky"]["retried"] == 1  # its first attempt timed out, as the demo shows
    assert "timed out" in (tmp_path / "logs" / "flaky.log").read_text()


def test_the_console_script_is_installed(tmp_path):
    script = shutil.which("simplejob", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.fail("the simplejob console script is not installed beside this Python")
    jobs = write_jobs(tmp_path / "jobs.json", [{"id": "a", "commandLine": "true"}])
    result = subprocess.run(
        [script, "run", jobs, "--stateFile", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    status = subprocess.run([script, "status", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "Completed" in status.stdout
