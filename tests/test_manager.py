"""The documented JobManager API, run for real: polling loop, dependencies, failures, retries, reports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import pid_gone, py, read_state, wait_until
from simplejob import CalledJobError, JobManager, JobRunningStatus, SimpleJobManager
from simplejob.dates import DATE_FORMAT

ELAPSED = re.compile(r"^\d{2,}:\d{2}:\d{2}\.\d{6}$")


def statuses(manager):
    return {job.id: job.runningStatus for job in manager.jobs}


def test_the_documented_polling_loop_runs_the_batch(tmp_path):
    jobContexts = [
        {"id": "hoge", "commandLine": "sleep 0.1"},
        {"id": "piyo", "commandLine": "sleep 0.2", "waiting": ["hoge"]},
        {"id": "fuga", "commandLine": "sleep 0.1", "waiting": ["hoge"]},
        {"id": "moga", "commandLine": "sleep 0.1", "waiting": ["hoge", "fuga"]},
    ]
    jobManager = SimpleJobManager(logOutputDirectory=str(tmp_path / "logs"))
    jobManager.entry(jobContexts)
    while not jobManager.completed():
        jobManager.runAllReadyJobs()
        if jobManager.errorOccurred():
            pytest.fail("error occurred")
        time.sleep(0.05)
    jobManager.join()
    assert [(job.id, job.exitCode, job.runningStatus) for job in jobManager.jobs] == [
        ("hoge", 0, JobRunningStatus.Completed),
        ("piyo", 0, JobRunningStatus.Completed),
        ("fuga", 0, JobRunningStatus.Completed),
        ("moga", 0, JobRunningStatus.Completed),
    ]
    report = jobManager.report()["results"]
    start = {job_id: datetime.strptime(r[job_id]["startDateTime"], DATE_FORMAT) for r in report for job_id in r}
    finish = {job_id: datetime.strptime(r[job_id]["finishDateTime"], DATE_FORMAT) for r in report for job_id in r}
    assert start["piyo"] >= finish["hoge"] and start["fuga"] >= finish["hoge"]
    assert start["moga"] >= max(finish["hoge"], finish["fuga"])


def test_a_dependent_starts_as_soon_as_its_dependency_ends_however_slowly_the_caller_polls(tmp_path):
    stamp = tmp_path / "b-started"
    manager = JobManager(maxWorkers=2)
    manager.entry(
        [
            {"id": "a", "commandLine": "true"},
            {"id": "b", "commandLine": ["touch", str(stamp)], "waiting": ["a"]},
        ]
    )
    manager.runAllReadyJobs()  # called once; nobody polls
    wait_until(stamp.exists, message="b to start without further calls")
    manager.join()
    assert manager.completed() and not manager.errorOccurred()


def test_at_most_max_workers_jobs_run_at_once(tmp_path):
    code = (
        "import os, sys, time; d = sys.argv[1]; p = os.path.join(d, str(os.getpid())); open(p, 'w').close();"
        "n = len(os.listdir(d)); time.sleep(0.1); os.remove(p); open(d + '-' + str(os.getpid()), 'w').write(str(n))"
    )
    running = tmp_path / "running"
    running.mkdir()
    manager = JobManager(maxWorkers=2)
    manager.entry([{"id": f"j{i}", "commandLine": py(code) + [str(running)]} for i in range(6)])
    manager.run()
    seen = [int(p.read_text()) for p in tmp_path.glob("running-*")]
    assert len(seen) == 6 and max(seen) <= 2


def test_a_failure_stops_new_jobs_and_leaves_its_dependents_ready(tmp_path):
    gate = tmp_path / "gate"
    manager = JobManager(maxWorkers=2)
    manager.entry(
        [
            {"id": "fails", "commandLine": py("import sys; sys.exit(3)")},
            # running when the failure happens: it finishes (it waits for the failure to be recorded)
            {
                "id": "slow",
                "commandLine": py(f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.01)"),
            },
            {"id": "after", "commandLine": "true", "waiting": ["fails"]},
            {"id": "independent", "commandLine": "true", "waiting": ["slow"]},
        ]
    )
    manager.runAllReadyJobs()
    wait_until(manager.errorOccurred, message="the failure to be seen")
    gate.touch()
    manager.join()
    assert statuses(manager) == {
        "fails": JobRunningStatus.Completed,
        "slow": JobRunningStatus.Completed,
        "after": JobRunningStatus.Ready,
        "independent": JobRunningStatus.Ready,
    }
    assert manager.jobs[0].exitCode == 3
    assert not manager.completed()


def test_keep_going_runs_everything_that_does_not_depend_on_a_failure():
    manager = JobManager(maxWorkers=2, keepGoing=True)
    manager.entry(
        [
            {"id": "fails", "commandLine": "false"},
            {"id": "after", "commandLine": "true", "waiting": ["fails"]},
            {"id": "other", "commandLine": "true"},
            {"id": "then", "commandLine": "true", "waiting": ["other"]},
        ]
    )
    with pytest.raises(CalledJobError, match="fails") as error:
        manager.run(interval=0.05)
    assert error.value.failed == {"fails": "exit code 1"}
    assert statuses(manager) == {
        "fails": JobRunningStatus.Completed,
        "after": JobRunningStatus.Ready,
        "other": JobRunningStatus.Completed,
        "then": JobRunningStatus.Completed,
    }


@pytest.mark.parametrize(
    "command, mode, code, words",
    [
        ("no-such-command-simplejob-test", None, 127, "not found"),
        ("{tmp}/not-executable", 0o644, 126, "permission denied"),
        ("{tmp}/not-a-program", 0o755, 126, "format"),
    ],
)
def test_a_command_that_cannot_start_is_a_failed_job_not_a_hang(tmp_path, command, mode, code, words):
    command = command.format(tmp=tmp_path)
    if mode is not None:
        with open(command, "wb") as f:
            f.write(b"\x7fELF garbage")
        os.chmod(command, mode)
    manager = JobManager(logOutputDirectory=str(tmp_path), keepGoing=True)
    manager.entry([{"id": "bad", "commandLine": command}, {"id": "good", "commandLine": "true"}])
    with pytest.raises(CalledJobError):
        manager.run(interval=0.05)
    bad = manager.jobs[0]
    assert (bad.runningStatus, bad.exitCode) == (JobRunningStatus.Completed, code)
    assert words in bad.reason
    assert words in (tmp_path / "bad.log").read_text()
    assert read_state(manager.stateFile)["jobs"]["bad"]["reason"] == bad.reason
    assert manager.jobs[1].exitCode == 0


def test_a_bad_cwd_is_a_failed_job(tmp_path):
    manager = JobManager()
    manager.entry([{"id": "x", "commandLine": "true", "cwd": str(tmp_path / "missing")}])
    with pytest.raises(CalledJobError):
        manager.run(interval=0.05)
    assert manager.jobs[0].exitCode == 127 and "working directory" in manager.jobs[0].reason


def test_timeout_kills_the_tree_retries_with_backoff_and_ends_retry_out(tmp_path):
    pids = tmp_path / "pids"
    code = f"import os, time; open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n'); time.sleep(30)"
    manager = JobManager(logOutputDirectory=str(tmp_path))
    manager.entry(
        [
            {
                "id": "slow",
                "commandLine": py(code),
                "timeout": 0.2,
                "retry": 2,
                "delay": 0.1,
                "backoff": 3,
                "killGrace": 0.2,
            }
        ]
    )
    with pytest.raises(CalledJobError, match="RetryOut"):
        manager.run(interval=0.05)
    job = manager.jobs[0]
    assert (job.runningStatus, job.exitCode, job.retried) == (JobRunningStatus.RetryOut, None, 2)
    report = manager.report()["results"][0]["slow"]
    assert report["runnigStatus"] == "RetryOut" and report["exitCode"] is None and report["retried"] == 2
    log = (tmp_path / "slow.log").read_text()
    assert log.count("attempt") == 3 and log.count("timed out") == 3
    # waits before retries 1 and 2: delay * backoff**(k-1) = 0.1 s and 0.3 s, plus 3 x 0.2 s of timeouts
    assert job.elapsedSeconds >= 0.9
    started = [datetime.strptime(line[14:40], DATE_FORMAT) for line in log.splitlines() if "attempt" in line]
    ended = [datetime.strptime(line[14:40], DATE_FORMAT) for line in log.splitlines() if "timed out" in line]
    assert (started[1] - ended[0]).total_seconds() >= 0.1
    assert (started[2] - ended[1]).total_seconds() >= 0.3
    for pid in map(int, pids.read_text().split()):
        assert pid_gone(pid)


def test_a_retried_job_that_then_succeeds_is_completed_with_its_retry_count(tmp_path):
    counter = tmp_path / "count"
    code = (
        f"import os, time; p = {str(counter)!r}; n = int(open(p).read()) if os.path.exists(p) else 0;"
        "open(p, 'w').write(str(n + 1)); time.sleep(30 if n == 0 else 0)"
    )
    manager = JobManager()
    # 2 s: the second attempt, a fresh Python, must start and exit within it even on a loaded machine
    manager.entry([{"id": "flaky", "commandLine": py(code), "timeout": 2, "retry": 3, "killGrace": 0.1}])
    manager.run(interval=0.05)
    job = manager.jobs[0]
    assert (job.runningStatus, job.exitCode, job.retried) == (JobRunningStatus.Completed, 0, 1)


def test_retried_is_null_without_a_timeout():
    manager = JobManager()
    manager.entry([{"id": "a", "commandLine": "true", "retry": 3}])
    manager.run(interval=0.05)
    assert manager.report()["results"][0]["a"]["retried"] is None


def test_report_has_the_documented_shape_and_prints_as_indented_json(capsys):
    manager = JobManager(maxWorkers=1)
    manager.entry(
        [
            {"id": "hoge", "commandLine": "true"},
            {"id": "fuga", "commandLine": "false", "waiting": ["hoge"]},
            {"id": "moga", "commandLine": "true", "waiting": ["fuga"]},
        ]
    )
    with pytest.raises(CalledJobError):
        manager.run(interval=0.05)
    report = manager.report()
    assert [list(r) for r in report["results"]] == [["hoge"], ["fuga"], ["moga"]]
    hoge = report["results"][0]["hoge"]
    assert list(hoge) == ["runnigStatus", "retried", "exitCode", "startDateTime", "finishDateTime", "elapsedTime"]
    assert hoge["runnigStatus"] == "Completed" and hoge["exitCode"] == 0 and hoge["retried"] is None
    datetime.strptime(hoge["startDateTime"], DATE_FORMAT)
    datetime.strptime(hoge["finishDateTime"], DATE_FORMAT)
    assert ELAPSED.match(hoge["elapsedTime"])
    assert report["results"][1]["fuga"]["exitCode"] == 1
    assert report["results"][2]["moga"] == {
        "runnigStatus": "Ready",
        "retried": None,
        "exitCode": None,
        "startDateTime": None,
        "finishDateTime": None,
        "elapsedTime": None,
    }
    print(report)
    printed = capsys.readouterr().out
    assert json.loads(printed) == report
    assert '\n    "results": [' in printed


def test_elapsed_time_always_has_six_fraction_digits():
    from simplejob.dates import format_elapsed

    assert format_elapsed(0.15952) == "00:00:00.159520"
    assert format_elapsed(0.000001) == "00:00:00.000001"
    assert format_elapsed(3723.5) == "01:02:03.500000"
    assert format_elapsed(100 * 3600) == "100:00:00.000000"


def test_logs_stream_live_with_a_line_per_attempt(tmp_path):
    gate = tmp_path / "gate"
    code = (
        "import os, sys, time; print('first line', flush=True); print('to stderr', file=sys.stderr, flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\nprint('last line')"
    )
    manager = JobManager(logOutputDirectory=str(tmp_path / "new" / "logs"))
    manager.entry([{"id": "talker", "commandLine": py(code)}])
    manager.runAllReadyJobs()
    log = tmp_path / "new" / "logs" / "talker.log"
    wait_until(lambda: log.exists() and "to stderr" in log.read_text(), message="output while the job runs")
    wait_until(lambda: manager.jobs[0].runningStatus == JobRunningStatus.Running, message="the Running state")
    gate.touch()
    manager.join()
    lines = log.read_text().splitlines()
    assert "attempt 1/1" in lines[0]
    assert lines[1:] == ["first line", "to stderr", "last line"]


def test_command_line_forms_cwd_env_and_shell(tmp_path):
    out = tmp_path / "out"
    manager = JobManager(logOutputDirectory=str(out))
    manager.entry(
        [
            {"id": "split", "commandLine": "printf '%s|' 'a b' c"},
            {"id": "list", "commandLine": ["printf", "%s|", "a b", "c"]},
            {"id": "shell", "commandLine": "echo $((6 * 7)) | tr 4 X", "shell": True},
            {"id": "cwd", "commandLine": "pwd", "cwd": str(tmp_path)},
            {"id": "env", "commandLine": "sh -c 'echo $SIMPLEJOB_X'", "env": {"SIMPLEJOB_X": "from env"}},
            # a relative program is found in the job's directory; the next job is back in ours
            {"id": "relative", "commandLine": "./here.sh", "cwd": str(tmp_path / "bin"), "waiting": ["cwd"]},
            {"id": "after", "commandLine": "pwd", "waiting": ["relative"]},
        ]
    )
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "here.sh").write_text("#!/bin/sh\necho here in $(pwd)\n")
    (tmp_path / "bin" / "here.sh").chmod(0o755)
    manager.run(interval=0.05)

    def output(job_id):
        return (out / f"{job_id}.log").read_text().split("\n", 1)[1]

    assert output("split") == output("list") == "a b|c|"
    assert output("shell") == "X2\n"
    assert output("cwd") == f"{tmp_path}\n"
    assert output("env") == "from env\n"
    assert output("relative") == f"here in {tmp_path / 'bin'}\n"
    assert output("after") == f"{os.getcwd()}\n"


def test_run_rerun_and_get_running_status(tmp_path):
    flag = tmp_path / "fixed"
    counter = tmp_path / "runs"
    code = f"import os, sys; open({str(counter)!r}, 'a').write('x');sys.exit(0 if os.path.exists({str(flag)!r}) else 1)"
    manager = JobManager(maxWorkers=2)
    manager.entry(
        [
            {"id": "ok", "commandLine": ["sh", "-c", f"echo ok >> {tmp_path / 'ok-runs'}"]},
            {"id": "flaky", "commandLine": py(code)},
            {"id": "after", "commandLine": "true", "waiting": ["flaky", "ok"]},
        ]
    )
    with pytest.raises(CalledJobError, match="flaky"):
        manager.run(interval=0.05)
    assert manager.getRunningStatus() == {"Completed": 2, "Ready": 1}
    flag.touch()
    manager.rerun(interval=0.05)
    assert manager.getRunningStatus() == {"Completed": 3}
    assert (tmp_path / "ok-runs").read_text() == "ok\n"  # not run again
    assert counter.read_text() == "xx"
    assert manager.completed() and not manager.errorOccurred()


def test_entry_from_json(tmp_path):
    jobs = tmp_path / "jobs.json"
    jobs.write_text(
        json.dumps(
            {"jobContexts": [{"id": "a", "commandLine": "true"}, {"id": "b", "commandLine": "true", "waits": ["a"]}]}
        )
    )
    manager = JobManager()
    manager.entryFromJson(str(jobs))
    manager.run(interval=0.05)
    assert [job.exitCode for job in manager.jobs] == [0, 0]
    jobs.write_text("[1, 2]")
    with pytest.raises(ValueError, match="jobContexts"):
        manager.entryFromJson(jobs)
    with pytest.raises(ValueError, match="cannot read"):
        manager.entryFromJson(tmp_path / "missing.json")


def test_join_without_a_started_batch_returns_and_a_new_entry_waits_for_the_last(tmp_path):
    manager = JobManager()
    manager.join()  # nothing entered
    manager.entry([{"id": "a", "commandLine": "sleep 0.2"}])
    manager.join()  # entered, not started: nothing runs, nothing to wait for
    assert manager.jobs[0].runningStatus == JobRunningStatus.Ready
    manager.runAllReadyJobs()
    first_state = manager.stateFile
    manager.entry([{"id": "b", "commandLine": "true"}])  # waits for "a" first, as documented
    assert read_state(first_state)["jobs"]["a"]["runningStatus"] == "Completed"
    assert manager.stateFile != first_state  # no stateFile given: each batch gets a fresh one
    manager.run(interval=0.05)
    assert manager.jobs[0].id == "b" and manager.completed()


def test_the_state_file_is_readable_json_with_the_documented_keys(tmp_path):
    path = tmp_path / "state.json"
    manager = JobManager(stateFile=str(path))
    manager.entry([{"id": "a", "commandLine": "true"}, {"id": "b", "commandLine": "false", "waiting": ["a"]}])
    with pytest.raises(CalledJobError):
        manager.run(interval=0.05)
    state = read_state(path)
    assert state["schemaVersion"] == 1
    assert set(state["supervisor"]) >= {"pid", "host"}
    assert list(state["jobs"]) == ["a", "b"]
    b = state["jobs"]["b"]
    assert (b["commandLine"], b["waiting"], b["runningStatus"], b["exitCode"]) == ("false", ["a"], "Completed", 1)
    for key in ("retried", "startDateTime", "finishDateTime"):
        assert key in b


def test_a_failed_job_has_its_exit_code_as_reason():
    manager = JobManager()
    manager.entry([{"id": "three", "commandLine": ["sh", "-c", "exit 3"]}])
    with pytest.raises(CalledJobError):
        manager.run(interval=0.05)
    assert manager.jobs[0].reason == "exit code 3"


def test_targets_run_only_those_jobs_and_what_they_wait_on(tmp_path):
    ran = tmp_path / "ran"
    ran.mkdir()
    jobs = [
        {"id": name, "commandLine": ["touch", str(ran / name)], "waiting": waits}
        for name, waits in [("a", []), ("b", ["a"]), ("c", ["a"]), ("other", [])]
    ]
    manager = JobManager(stateFile=tmp_path / "state.json")
    manager.entry(jobs, targets=["b"])
    manager.run(interval=0.05)
    assert sorted(p.name for p in ran.iterdir()) == ["a", "b"]
    assert manager.completed()
    done, ready = JobRunningStatus.Completed, JobRunningStatus.Ready
    assert statuses(manager) == {"a": done, "b": done, "c": ready, "other": ready}
    with pytest.raises(ValueError, match="nope"):
        manager.entry(jobs, targets=["nope"])
    manager.entry(jobs)  # then the whole batch: a and b are kept, the rest runs
    manager.run(interval=0.05)
    assert [job.resumed for job in manager.jobs] == [True, True, False, False]


TEMPORARY_STATE_SCRIPT = """\
import sys
from simplejob import JobManager, CalledJobError
manager = JobManager()
manager.entry([{"id": "j", "commandLine": sys.argv[1:]}])
print(manager.stateFile, flush=True)
try:
    manager.run(interval=0.05)
except CalledJobError:
    pass
"""


@pytest.mark.parametrize("command, kept", [(["true"], False), (["false"], True)])
def test_the_temporary_state_directory_goes_at_exit_only_after_a_batch_where_every_job_succeeded(command, kept):
    done = subprocess.run(
        [sys.executable, "-c", TEMPORARY_STATE_SCRIPT, *command], capture_output=True, text=True, timeout=30
    )
    state_file = Path(done.stdout.strip())
    try:
        assert state_file.parent.exists() == kept, done.stderr
        if kept:
            assert f"kept the state of a batch that did not finish with every job completed in '{state_file}'" in (
                done.stderr
            )
        else:
            assert done.stderr == ""
    finally:
        shutil.rmtree(state_file.parent, ignore_errors=True)
