"""SimpleJob (alias Job): the documented single-job API."""

from __future__ import annotations

import pytest

from conftest import py
from simplejob import Job, JobRunningStatus, SimpleJob


def test_the_documented_snippet_join_without_start_runs_the_job():
    job = SimpleJob()
    job.entry(commandLine="sleep 0.1")
    job.join()
    assert job.exitCode == 0
    assert job.runningStatus == JobRunningStatus.Completed
    assert job.id == "sleep"


def test_start_then_join_with_a_log_and_a_report(tmp_path):
    job = Job()
    job.entry(commandLine=py("import sys; print('hi'); sys.exit(4)"), id="four", logOutputDirectory=str(tmp_path))
    job.start()
    job.join()
    assert job.exitCode == 4
    report = job.report()
    assert list(report) == ["runnigStatus", "retried", "exitCode", "startDateTime", "finishDateTime", "elapsedTime"]
    assert report["runnigStatus"] == "Completed" and report["exitCode"] == 4
    assert "hi\n" in (tmp_path / "four.log").read_text()
    assert '"runnigStatus": "Completed"' in str(report)


def test_timeout_and_retry_end_in_retry_out():
    job = SimpleJob()
    job.entry(commandLine="sleep 30", timeout=0.1, retry=1, delay=0.05, killGrace=0.2)
    job.join()
    assert job.runningStatus == JobRunningStatus.RetryOut
    assert job.exitCode is None
    assert job.report()["retried"] == 1


def test_a_simple_job_cannot_wait_on_others():
    with pytest.raises(ValueError, match="wait"):
        SimpleJob().entry(commandLine="true", waits=["other"])


def test_using_a_job_before_entry_says_what_to_do():
    with pytest.raises(RuntimeError, match="entry"):
        SimpleJob().join()
