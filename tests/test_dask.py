"""Batches on a real Dask cluster (issue 12): a distributed.LocalCluster(processes=True) on the
loopback address, shared by the module, and `dask scheduler` / `dask worker` started as separate
programs, as a user deploys them. Readiness by pid files and polling against deadlines; the
process-tree helpers are test_process_control.py's.
"""

from __future__ import annotations

import gc
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from multiprocessing import resource_tracker
from pathlib import Path

import distributed
import psutil
import pytest

from conftest import py, read_state, wait_until
from simplejob import BatchInterrupted, CalledJobError, JobManager, JobRunningStatus
from simplejob.errors import ClusterError, MissingExtra
from simplejob.workers.dask_executor import DaskExecutor
from test_cancel_chaos import run_with_cancels
from test_process_control import GRACE, alive, tree_job, wait_for_pids

Completed, Interrupted, Cancelled = JobRunningStatus.Completed, JobRunningStatus.Interrupted, JobRunningStatus.Cancelled
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each, on 127.0.0.1; closed (workers reaped) at the end."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as local:
        yield local.scheduler_address
    # The worker processes started multiprocessing's resource tracker in this process: it would
    # outlive the module (it ends with its parent), so it is stopped and reaped here.
    resource_tracker._resource_tracker._stop()


def manager(tmp_path: Path, address: str, **options) -> JobManager:
    return JobManager(
        logOutputDirectory=str(tmp_path / "logs"),
        stateFile=str(tmp_path / "state.json"),
        daskScheduler=address,
        **options,
    )


def statuses(jm: JobManager) -> dict[str, tuple[JobRunningStatus, int | None]]:
    return {job.id: (job.runningStatus, job.exitCode) for job in jm.jobs}


# --- the core semantics -------------------------------------------------------------------------


def test_a_diamond_runs_in_order_with_its_logs_cwd_env_and_shell(tmp_path, cluster):
    order = tmp_path / "order"
    step = "echo {} >> " + str(order)
    jm = manager(tmp_path, cluster, keepGoing=True)
    jm.entry([
        {"id": "a", "commandLine": step.format("a"), "shell": True},
        {"id": "b", "commandLine": step.format("b") + "; echo $GREETING from b", "shell": True, "waiting": ["a"],
         "env": {"GREETING": "hello"}},
        {"id": "c", "commandLine": ["pwd"], "cwd": str(tmp_path), "waiting": ["a"]},
        {"id": "d", "commandLine": step.format("d"), "shell": True, "waiting": ["b", "c"]},
        {"id": "missing", "commandLine": "no-such-program-here"},
    ])  # fmt: skip
    with pytest.raises(CalledJobError, match="missing"):
        jm.run(interval=0.05)
    assert statuses(jm) == {
        "a": (Completed, 0), "b": (Completed, 0), "c": (Completed, 0), "d": (Completed, 0), "missing": (Completed, 127),
    }  # fmt: skip
    assert order.read_text().split() == ["a", "b", "d"]
    assert "hello from b" in (tmp_path / "logs" / "b.log").read_text()
    assert str(tmp_path) in (tmp_path / "logs" / "c.log").read_text()
    assert "command not found: 'no-such-program-here'" in (tmp_path / "logs" / "missing.log").read_text()
    state = read_state(tmp_path / "state.json")
    assert state["options"]["dask"] == cluster and state["options"]["maxWorkers"] == 2  # the cluster's threads
    assert all(job["pid"] is None for job in state["jobs"].values())  # never a pid of another machine


def test_a_failure_stops_new_starts_without_keep_going_and_not_with_it(tmp_path, cluster):
    jobs = [
        {"id": "bad", "commandLine": "sh -c 'exit 3'"},
        {"id": "after", "commandLine": py("import time; time.sleep(0.3)"), "waiting": ["bad"]},
        *({"id": f"other{i}", "commandLine": py("import time; time.sleep(0.2)"), "priority": -1} for i in range(6)),
    ]
    jm = manager(tmp_path / "fail-fast", cluster)
    jm.entry(jobs)
    with pytest.raises(CalledJobError, match=r"bad \(exit code 3\)"):
        jm.run(interval=0.05)
    ran = [job.id for job in jm.jobs if job.runningStatus == Completed]
    assert "bad" in ran and len(ran) < 4  # what had started finished; nothing new started
    assert all(job.runningStatus != JobRunningStatus.Running for job in jm.jobs)

    jm = manager(tmp_path / "keep-going", cluster, keepGoing=True)
    jm.entry(jobs)
    with pytest.raises(CalledJobError):
        jm.run(interval=0.05)
    assert statuses(jm)["after"] == (JobRunningStatus.Ready, None)  # waits on the failure
    assert all(statuses(jm)[f"other{i}"] == (Completed, 0) for i in range(6))


def test_a_timeout_kills_the_whole_tree_on_the_worker_and_a_retry_backs_off(tmp_path, cluster):
    body = 'sh -c "$S" "$D/pid-bg-$P" & sh -c "$S" "$D/pid-fg-$P"'
    jm = manager(tmp_path, cluster)
    jm.entry([
        {"id": "tree", "commandLine": tree_job(tmp_path / "pids", body), "timeout": 1.0, "retry": 2,
         "delay": 0.2, "backoff": 2, "killGrace": GRACE},
    ])  # fmt: skip
    jm.runAllReadyJobs()
    first = wait_for_pids(tmp_path / "pids", {"sh", "bg", "fg"})
    with pytest.raises(CalledJobError, match="RetryOut"):
        jm.run(interval=0.05)
    pids = wait_for_pids(tmp_path / "pids", {"sh", "bg", "fg"}, attempts=3)
    assert set(first) <= set(pids)
    wait_until(lambda: not alive(pids), timeout=GRACE + 2, message="every pid of the three attempts gone")
    [job] = jm.jobs
    assert job.runningStatus == JobRunningStatus.RetryOut and job.attempts == 3 and job.retried == 2
    log = (tmp_path / "logs" / "tree.log").read_text()
    assert log.count("timed out after 1.0 s; killed its process tree") == 3
    starts = [line for line in log.splitlines() if "attempt" in line and "job 'tree'" in line]
    assert [s.split("attempt ")[1].split(":")[0] for s in starts] == ["1/3", "2/3", "3/3"]


def test_cancel_kills_a_running_tree_on_the_worker(tmp_path, cluster):
    body = 'sh -c "$S" "$D/pid-bg-$P" & sh -c "$S" "$D/pid-fg-$P"'
    jm = manager(tmp_path, cluster)
    jm.entry([
        {"id": "long", "commandLine": tree_job(tmp_path / "pids", body), "killGrace": GRACE},
        {"id": "next", "commandLine": "true", "waiting": ["long"]},
    ])  # fmt: skip
    jm.runAllReadyJobs()
    pids = wait_for_pids(tmp_path / "pids", {"sh", "bg", "fg"})
    jm.cancel("long")
    jm.join()
    assert statuses(jm) == {"long": (Cancelled, None), "next": (JobRunningStatus.Ready, None)}
    wait_until(lambda: not alive(pids), timeout=GRACE + 2, message="the cancelled tree gone")
    # the worker notes the kill in the log once the tree is gone: it may come just after
    log = tmp_path / "logs" / "long.log"
    wait_until(lambda: "cancelled; killed its process tree" in log.read_text(), timeout=5, message="the note")


def test_a_log_directory_the_worker_cannot_open_fails_the_attempt_naming_the_path(tmp_path, cluster):
    jm = manager(tmp_path, cluster)
    jm.entry([{"id": "a", "commandLine": "true"}])
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").mkdir()  # what a worker without the shared filesystem would meet
    with pytest.raises(CalledJobError):
        jm.run(interval=0.05)
    [job] = jm.jobs
    assert job.exitCode == 126
    assert "cannot open its log file" in job.reason and str(tmp_path / "logs" / "a.log") in job.reason


def test_priorities_order_the_starts_on_dask(tmp_path, cluster):
    trace = tmp_path / "trace"
    jobs = [{"id": f"j{i}", "commandLine": f"echo j{i} >> {trace}", "shell": True, "priority": i} for i in range(6)]
    jm = manager(tmp_path, cluster, maxWorkers=1)  # one at a time: the order is the priorities'
    jm.entry(jobs)
    jm.run(interval=0.05)
    assert trace.read_text().split() == [f"j{i}" for i in reversed(range(6))]


@pytest.mark.parametrize("seed", range(2))
def test_cancels_at_random_moments_on_dask_leave_a_batch_that_ends_by_the_rules(tmp_path, cluster, seed):
    """test_cancel_chaos.py's batches on the cluster: cancels race the tasks' own ends there."""
    run_with_cancels(manager(tmp_path, cluster, keepGoing=True), random.Random(seed))


def test_asking_for_dask_without_the_extra_names_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(MissingExtra, match=r"pip install 'simplejob\[dask\]'"):
        JobManager(daskScheduler="tcp://127.0.0.1:8786")


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path):
    jm = manager(tmp_path, "tcp://127.0.0.1:9")  # the discard port: nothing listens
    jm.entry([{"id": "a", "commandLine": "true"}])
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        jm.run(interval=0.05)


# --- the executor alone, in this process --------------------------------------------------------


def attempt(job_id: str, argv: list[str]) -> dict:
    return {"id": job_id, "attempt": 1, "attempts": 1, "argv": argv, "command_text": json.dumps(argv), "shell": False,
            "cwd": None, "env": None, "timeout": None, "killGrace": GRACE, "log": None, "priority": 0,
            "resources": None}  # fmt: skip


@pytest.fixture
def executor(cluster):
    """A DaskExecutor as the supervisor has one (maxWorkers not given: queued ahead)."""
    executor = DaskExecutor(selectors.DefaultSelector(), cluster, 0)
    try:
        yield executor
    finally:
        executor.shutdown()
        gc.unfreeze()  # shutdown() freezes what exists, for a supervisor's exit; this process goes on


def events_of(executor: DaskExecutor, count: int, timeout: float = 20.0) -> list:
    """What take_events() gives, the way the supervisor takes it (woken by the executor's pipe)."""
    events: list = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        for key, _ in executor.selector.select(0.05):
            key.data()
        events += executor.take_events()
    return events


def test_an_end_whose_event_does_not_come_is_gathered_from_the_task_result(executor, monkeypatch):
    executor.client.unsubscribe_topic(executor.topic)  # the tasks' events no longer reach this client
    gathered = []
    gather = executor.client.gather
    monkeypatch.setattr(executor.client, "gather", lambda futures: gathered.extend(futures) or gather(futures))
    executor.submit(attempt("a", ["true"]))
    executor.submit(attempt("b", ["sh", "-c", "exit 3"]))
    executor.flush()
    ends = {event.id: event for event in events_of(executor, 2)}
    assert {job_id: (e.kind, e.exit_code, e.pid) for job_id, e in ends.items()} == {
        "a": ("finished", 0, None), "b": ("finished", 3, None),
    }  # fmt: skip
    assert len(gathered) == 2
    assert executor.free_slots() == executor.limit and not executor.futures  # both taken and released


def test_queued_ahead_attempts_are_asked_for_when_half_the_queue_is_free_and_an_unsent_one_cancels_at_once(executor):
    assert executor.limit == 100  # 50 per thread of the 2
    assert executor.free_slots() == 100
    for i in range(51):
        executor.submit(attempt(f"j{i}", ["sleep", "30"]))  # submitted, not yet sent (flush() sends)
    assert executor.free_slots() == 0  # 49 free: fewer than half the queue
    executor.cancel("j50")
    assert executor.free_slots() == 0  # (its end is not taken yet)
    [event] = executor.take_events()
    assert (event.kind, event.id, event.cancelled, event.start_t) == ("finished", "j50", True, None)
    assert executor.free_slots() == 50
    executor.flush()
    assert len(executor.futures) == 50 and all(key in executor.futures for key in executor.job_of)  # j50 never sent
    # (the fixture's shutdown() cancels the 50 sent: their trees, if started, are killed on the workers)


# --- failures of the cluster, and of the batch's owner ------------------------------------------------


def _dask_worker_of(pid: int) -> psutil.Process:
    """The Dask worker process that runs a job: the job's parent is the simplejob worker process."""
    return psutil.Process(pid).parent().parent()


def test_a_dask_worker_killed_mid_attempt_interrupts_the_job_naming_the_worker_and_it_does_not_run_twice(
    tmp_path, cluster
):
    runs = tmp_path / "runs"
    body = f'echo run >> {runs}; sh -c "$S" "$D/pid-fg-$P"'
    jm = manager(tmp_path, cluster)
    jm.entry([{"id": "victim", "commandLine": tree_job(tmp_path / "pids", body), "killGrace": GRACE}])
    jm.runAllReadyJobs()
    pids = wait_for_pids(tmp_path / "pids", {"sh", "fg"})
    _dask_worker_of(pids[next(k for k in pids if k.startswith("sh-"))]).kill()
    with pytest.raises(CalledJobError):
        jm.run(interval=0.05)
    [job] = jm.jobs
    assert job.runningStatus == Interrupted
    assert "its Dask worker tcp://127.0.0.1:" in job.reason and "died" in job.reason
    wait_until(lambda: not alive(pids), timeout=GRACE + 3, message="the dead worker's job tree gone")
    time.sleep(0.5)  # Dask would have started it again on the other worker by now
    assert runs.read_text().split() == ["run"]
    # the cluster recovers (the nanny restarts the worker): a resume runs it again, on purpose
    wait_until(lambda: len(distributed.Client(cluster, timeout=5).scheduler_info()["workers"]) == 2, timeout=20,
               interval=0.2, message="the restarted worker")  # fmt: skip
    jm = manager(tmp_path, cluster)
    jm.entry([{"id": "victim", "commandLine": "true"}])
    jm.run(interval=0.05)
    assert statuses(jm) == {"victim": (Completed, 0)}


OWNER = """
import sys
from simplejob import JobManager
work = sys.argv[2]
jm = JobManager(logOutputDirectory=work + "/logs", stateFile=work + "/state.json", daskScheduler=sys.argv[1])
jm.entry([{"id": "tree", "commandLine": sys.argv[3:], "killGrace": 0.2}])
jm.run(interval=0.05)
"""


def test_the_owner_sigkilled_leaves_nothing_running_on_the_workers(tmp_path, cluster):
    body = 'sh -c "$S" "$D/pid-bg-$P" & sh -c "$S" "$D/pid-fg-$P"'
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, cluster, str(tmp_path), *tree_job(tmp_path / "pids", body)],
        stderr=subprocess.DEVNULL,
    )
    try:
        pids = wait_for_pids(tmp_path / "pids", {"sh", "bg", "fg"}, timeout=20)
        owner.kill()
        owner.wait()
        wait_until(lambda: not alive(pids), timeout=GRACE + 5, message="the tree on the worker gone")
        wait_until(lambda: not read_state(tmp_path / "state.json")["supervisor"]["running"], timeout=10,
                   message="the supervisor's end")  # fmt: skip
        state = read_state(tmp_path / "state.json")
        assert state["jobs"]["tree"]["runningStatus"] == "Interrupted"
    finally:
        owner.kill()
        owner.wait()


# --- `dask scheduler` and `dask worker` as separate programs ------------------------------------


@pytest.fixture
def programs(tmp_path):
    """`dask scheduler` and two `dask worker`s (one with the resource gpu=1), as a user starts them."""
    scheduler_file = tmp_path / "scheduler.json"
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([str(BIN / "dask"), *argv], stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(proc)
        return proc

    scheduler = start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                      "--scheduler-file", str(scheduler_file))  # fmt: skip
    wait_until(scheduler_file.exists, timeout=30, interval=0.05, message="the scheduler file")
    address = json.loads(scheduler_file.read_text())["address"]
    common = ("--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--no-nanny")
    start("worker", address, *common, "--resources", "gpu=1", "--name", "with-gpu")
    start("worker", address, *common, "--name", "plain")
    with distributed.Client(address, timeout=10) as client:
        client.wait_for_workers(2, timeout=30)
    try:
        yield address, scheduler
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_separate_programs_resources_then_the_scheduler_killed_mid_batch_then_a_resume_elsewhere(
    tmp_path, programs, cluster
):
    address, scheduler = programs
    # Resources: only the worker with gpu=1 runs the gpu jobs, one at a time; the others run beside.
    trace = tmp_path / "trace"
    step = "echo start {0} >> " + str(trace) + "; sleep 0.3; echo end {0} >> " + str(trace)
    jobs = [
        *({"id": f"gpu{i}", "commandLine": step.format(f"gpu{i}"), "shell": True, "resources": {"gpu": 1}}
          for i in range(2)),
        {"id": "free", "commandLine": step.format("free"), "shell": True},
    ]  # fmt: skip
    jm = manager(tmp_path / "resources", address)
    jm.entry(jobs)
    jm.run(interval=0.05)
    lines = trace.read_text().splitlines()
    first, second = sorted(("gpu0", "gpu1"), key=lambda i: lines.index(f"start {i}"))
    assert lines.index(f"end {first}") < lines.index(f"start {second}")
    assert lines.index("start free") < lines.index(f"end {first}")
    jm = manager(tmp_path / "too-much", address)
    jm.entry([{"id": "greedy", "commandLine": "true", "resources": {"gpu": 2}}])
    with pytest.raises(ValueError, match=r"'greedy': needs gpu=2; no Dask worker"):
        jm.run(interval=0.05)

    # The scheduler killed while a job runs: the batch stops, naming the scheduler; the tree dies.
    body = 'sh -c "$S" "$D/pid-fg-$P"'
    work = tmp_path / "lost"
    definitions = [
        {"id": "running", "commandLine": tree_job(work / "pids", body), "killGrace": GRACE},
        {"id": "later", "commandLine": "true", "waiting": ["running"]},
    ]
    jm = manager(work, address)
    jm.entry(definitions)
    jm.runAllReadyJobs()
    pids = wait_for_pids(work / "pids", {"sh", "fg"})
    os.killpg(scheduler.pid, signal.SIGKILL)
    with pytest.raises(BatchInterrupted, match=f"lost the Dask scheduler at {address}"):
        jm.run(interval=0.05)
    assert statuses(jm) == {"running": (Interrupted, None), "later": (JobRunningStatus.Ready, None)}
    wait_until(lambda: not alive(pids), timeout=GRACE + 10, message="the tree of the scheduler-less worker gone")

    # A resume with the same state file, on another cluster: where attempts run is not a definition.
    definitions[0]["commandLine"] = tree_job(work / "pids", body)  # unchanged: the same command line
    definitions[0]["timeout"] = 0.5  # (changed: it would run again anyway, being Interrupted)
    jm = manager(work, cluster)
    jm.entry(definitions)
    with pytest.raises(CalledJobError, match="RetryOut"):
        jm.run(interval=0.05)
    assert statuses(jm)["later"] == (JobRunningStatus.Ready, None)
    assert [job.attempts for job in jm.jobs] == [1, 0]


def test_the_command_line_runs_a_batch_on_dask(tmp_path, cluster):
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"jobContexts": [{"id": "a", "commandLine": "echo on dask"}]}))
    result = subprocess.run(
        [sys.executable, "-m", "simplejob", "run", str(jobs), "--dask", cluster],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "on dask" in (tmp_path / ".simplejob" / "jobs" / "logs" / "a.log").read_text()
    state = read_state(tmp_path / ".simplejob" / "jobs" / "state.json")
    assert state["options"]["dask"] == cluster
