"""Process control that nothing escapes (issue 3): whole-tree kills on timeout and cancel, leftovers
of jobs that exit, signals to the owner, death of the owner, the supervisor or a worker, huge
output, spawn failures.

Jobs here are small shell scripts whose every process writes its own pid to a file in tmp_path
(pid-<role>-<pid of the job's shell>), so a test knows each pid it must see die, including
those of processes that left the job's session or lost their parent. Readiness comes from those
files and every wait polls against a deadline (conftest.wait_until), never a fixed sleep.
The guard fixture kills and reaps whatever a failing test leaves, and conftest's session-end
check fails the run if any process started by the suite is still alive.

SIMPLEJOB_TEST_OUTPUT_MB sets the size of the huge-output test (default 64; 1024 for the 1 GB check).
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import pid_gone, py, wait_until
from simplejob import CalledJobError, JobManager, JobRunningStatus, SimplejobError, SupervisorDied, statefile
from simplejob.workers import proctree, proctree_posix, proctree_windows

GRACE = 0.2  # killGrace of most test jobs, seconds
TIMEOUT = 0.5  # timeout of the tree-shaped test jobs, seconds (they are ready in a few ms)
OWNER_GRACE = 0.3  # killGrace of the jobs of the owner scripts

# --- job scripts --------------------------------------------------------------------------------

# Run as: sh -c SCRIPT job DIR. $S is a command for `sh -c "$S" FILE`: write its pid to FILE
# (atomically: tmp + rename), then become `sleep 60` (exec: same pid). $P is the job's shell's pid.
PREAMBLE = r"""
D=$1; P=$$
S='echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 60'
put() { echo "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }
await() { while [ ! -e "$1" ]; do sleep 0.01; done; }
put "$D/pid-sh-$P" $$
"""

# The shapes of issue 3, point 1: the job's shell ("sh") plus what it starts. fg is the
# foreground `sleep 60` that keeps the job running until its timeout.
TIMEOUT_SHAPES = {
    "background child": ('sh -c "$S" "$D/pid-bg-$P" & sh -c "$S" "$D/pid-fg-$P"', {"sh", "bg", "fg"}),
    "setsid grandchild": ('setsid sh -c "$S" "$D/pid-ss-$P" & sh -c "$S" "$D/pid-fg-$P"', {"sh", "ss", "fg"}),
    "double-forked daemon": ('(setsid sh -c "$S" "$D/pid-dd-$P" &); sh -c "$S" "$D/pid-fg-$P"', {"sh", "dd", "fg"}),
    "child ignoring SIGTERM": ('trap "" TERM; sh -c "$S" "$D/pid-fg-$P"', {"sh", "fg"}),
}

# Point 2: the job's shell exits 0 at once, leaving one process behind (after its pid file exists).
LEFTOVER_SHAPES = {
    "background child": ('sh -c "$S" "$D/pid-bg-$P" &', "bg"),
    "setsid grandchild": ('setsid sh -c "$S" "$D/pid-ss-$P" &', "ss"),
    "double-forked daemon": ('(setsid sh -c "$S" "$D/pid-dd-$P" &)', "dd"),
    "child ignoring SIGTERM": ('trap "" TERM; sh -c "$S" "$D/pid-bg-$P" &', "bg"),
}

# Everything at once: a background child, a setsid'd grandchild and a double-forked daemon.
FULL_TREE = (
    'sh -c "$S" "$D/pid-bg-$P" & setsid sh -c "$S" "$D/pid-ss-$P" & (setsid sh -c "$S" "$D/pid-dd-$P" &); '
    'sh -c "$S" "$D/pid-fg-$P"'
)
FULL_ROLES = {"sh", "bg", "ss", "dd", "fg"}


def tree_job(directory: Path, body: str) -> list[str]:
    """The command line of a job running PREAMBLE then body, its pid files in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    return ["sh", "-c", PREAMBLE + body, "job", str(directory)]


def pid_files(directory: Path) -> dict[str, dict[str, int]]:
    """{job shell pid: {role: pid}} from the complete pid files in directory."""
    found: dict[str, dict[str, int]] = {}
    for path in directory.glob("pid-*"):
        if path.name.endswith(".tmp"):
            continue
        _, role, shell = path.name.split("-")
        found.setdefault(shell, {})[role] = int(path.read_text())
    return found


def wait_for_pids(directory: Path, roles: set[str], attempts: int = 1, timeout: float = 10.0) -> dict[str, int]:
    """Wait until `attempts` job shells have written every role's pid file; return {role-shell: pid}."""

    def complete():
        found = pid_files(directory)
        done = [pids for pids in found.values() if set(pids) >= roles]
        return found if len(done) >= attempts else None

    found = wait_until(complete, timeout=timeout, message=f"pid files {sorted(roles)} in {directory}")
    return {f"{role}-{shell}": pid for shell, pids in found.items() for role, pid in pids.items()}


def alive(pids: dict[str, int]) -> dict[str, int]:
    return {name: pid for name, pid in pids.items() if not pid_gone(pid)}


def assert_gone_by(pids: dict[str, int], deadline: float, what: str) -> None:
    """Every pid is gone (or a zombie) before the monotonic deadline."""
    wait_until(lambda: not alive(pids), timeout=max(0.0, deadline - time.monotonic()), message=what)


def log_text(directory: Path, job_id: str) -> str:
    return (directory / "logs" / f"{job_id}.log").read_text(errors="replace")


def load_state(directory: Path) -> statefile.State:
    state = statefile.load(str(directory / "state.json"))
    assert state is not None
    return state


def statuses(state: statefile.State) -> dict[str, str]:
    return {job_id: record.runningStatus.name for job_id, record in state.records.items()}


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


# --- fixtures -------------------------------------------------------------------------------------


class Guard:
    """What a test started, so that a failing test cleans up after itself."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.managers: list[JobManager] = []
        self.owners: list[subprocess.Popen] = []

    def manager(self, **options) -> JobManager:
        options.setdefault("logOutputDirectory", str(self.directory / "logs"))
        options.setdefault("stateFile", str(self.directory / "state.json"))
        jm = JobManager(**options)
        self.managers.append(jm)
        return jm

    def owner(self, argv: list[str]) -> subprocess.Popen:
        # Its own session, like a command started from a terminal: Ctrl-C is SIGINT to its group.
        proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.owners.append(proc)
        return proc

    def cleanup(self) -> None:
        """Kill and reap whatever the test left: bounded even when the feature under test is
        broken (so no join(), which a broken manager could never finish)."""
        marker = os.environ.get("SIMPLEJOB_TEST_SESSION")
        mine = []
        for path in [self.directory, *self.directory.rglob("*")]:
            if path.is_dir():
                mine += [pid for pids in pid_files(path).values() for pid in pids.values()]
        for state_file in self.directory.rglob("state.json"):
            try:
                mine.append(statefile.load(str(state_file)).supervisor["pid"])
            except Exception:  # noqa: BLE001 - whatever state it is in, clean up
                pass
        for proc in self.owners:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stderr.close()
        for jm in self.managers:
            jm.cancel()
        procs = []
        for pid in mine:
            try:
                proc = psutil.Process(pid)
                if proc.environ().get("SIMPLEJOB_TEST_SESSION") == marker:
                    procs.append(proc)
            except psutil.Error:
                pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)  # also reaps the supervisors (our children)


@pytest.fixture
def guard(tmp_path):
    guard = Guard(tmp_path)
    yield guard
    guard.cleanup()


# --- 1. timeout kills every descendant ----------------------------------------------------------------


@pytest.mark.parametrize("shape", TIMEOUT_SHAPES)
def test_timeout_kills_every_descendant_within_grace(guard, tmp_path, shape):
    body, roles = TIMEOUT_SHAPES[shape]
    jm = guard.manager()
    jm.entry([{"id": "tree", "commandLine": tree_job(tmp_path, body), "timeout": TIMEOUT, "killGrace": GRACE}])
    jm.runAllReadyJobs()
    pids = wait_for_pids(tmp_path, roles)
    seen = time.monotonic()  # the job started before this
    shell = next(pid for name, pid in pids.items() if name.startswith("sh-"))
    for name, pid in pids.items():  # the hard cases really are out of the job's session / parentless
        if name.startswith(("ss-", "dd-")):
            assert session_of(pid) not in (None, shell), f"{name} did not leave the job's session"
        if name.startswith("dd-"):

            def orphaned(pid=pid):
                return psutil.Process(pid).ppid() not in {shell, *(p.pid for p in proctree.descendants(shell))}

            wait_until(orphaned, timeout=2, message="the daemon's parent (a subshell) to exit")
    assert not pid_gone(shell)

    assert_gone_by(pids, seen + TIMEOUT + GRACE + 1.0, f"every process of the {shape} job to die after its timeout")
    jm.join()
    job = jm.jobs[0]
    assert (job.runningStatus, job.exitCode, job.retried) == (JobRunningStatus.RetryOut, None, 0)
    assert f"timed out after {TIMEOUT} s; killed its process tree" in log_text(tmp_path, "tree")
    assert load_state(tmp_path).records["tree"].runningStatus == JobRunningStatus.RetryOut


def test_timeout_sends_sigterm_first_and_sigkill_after_the_grace(guard, tmp_path):
    """A job that handles SIGTERM gets it first (it can clean up), and killGrace seconds before SIGKILL."""
    grace = 0.6
    stubborn = py(  # notes each SIGTERM (it may get several: to its group and to itself) and carries on
        "import os, signal, sys, time\n"
        "d = sys.argv[1]\n"
        "notes = os.open(d + '/term', os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
        "signal.signal(signal.SIGTERM, lambda *_: os.write(notes, b'%r\\n' % time.time()))\n"
        "open(d + '/pid.tmp', 'w').write(str(os.getpid())); os.rename(d + '/pid.tmp', d + '/pid')\n"
        "while True: time.sleep(0.01)\n"
    ) + [str(tmp_path)]
    jm = guard.manager()
    jm.entry([{"id": "stubborn", "commandLine": stubborn, "timeout": 0.3, "killGrace": grace}])
    jm.runAllReadyJobs()
    pid = int(wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), message="pid"))
    notes = tmp_path / "term"
    wait_until(lambda: b"\n" in notes.read_bytes(), timeout=5, message="SIGTERM to reach the job")
    term_at = float(notes.read_text().splitlines()[0])
    wait_until(lambda: pid_gone(pid), timeout=grace + 1.0, message="SIGKILL after the grace")
    lived = time.time() - term_at  # an upper bound of how long it survived SIGTERM
    assert lived >= grace - 0.05, f"killed {lived:.2f} s after SIGTERM: the {grace} s grace was not given"
    jm.join()
    assert jm.jobs[0].runningStatus == JobRunningStatus.RetryOut


def test_a_job_that_exits_on_sigterm_is_not_kept_for_the_whole_grace(guard, tmp_path):
    """killGrace is a maximum: a tree that dies on SIGTERM ends the attempt at once."""
    jm = guard.manager()
    jm.entry([{"id": "tree", "commandLine": tree_job(tmp_path, FULL_TREE), "timeout": TIMEOUT, "killGrace": 30}])
    jm.runAllReadyJobs()
    pids = wait_for_pids(tmp_path, FULL_ROLES)
    assert_gone_by(pids, time.monotonic() + TIMEOUT + 2.0, "the tree to die on SIGTERM, well before killGrace")
    wait_until(jm.completed, timeout=2.0, message="the job to be recorded RetryOut")
    assert jm.jobs[0].runningStatus == JobRunningStatus.RetryOut


def test_each_timed_out_attempt_is_killed_before_the_retry(guard, tmp_path):
    jm = guard.manager()
    jm.entry(
        [
            {
                "id": "tree",
                "commandLine": tree_job(tmp_path, FULL_TREE),
                "timeout": TIMEOUT,
                "killGrace": GRACE,
                "retry": 1,
                "delay": 0.05,
            }
        ]
    )
    jm.runAllReadyJobs()
    first = wait_for_pids(tmp_path, FULL_ROLES)
    assert_gone_by(first, time.monotonic() + TIMEOUT + GRACE + 1.0, "the first attempt's tree to die")
    both = wait_for_pids(tmp_path, FULL_ROLES, attempts=2)
    second = {name: pid for name, pid in both.items() if name not in first}
    assert_gone_by(second, time.monotonic() + TIMEOUT + GRACE + 1.0, "the second attempt's tree to die")
    jm.join()
    job = jm.jobs[0]
    assert (job.runningStatus, job.retried) == (JobRunningStatus.RetryOut, 1)
    assert log_text(tmp_path, "tree").count("killed its process tree") == 2


# --- 2. leftovers of a job that exits ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", LEFTOVER_SHAPES)
def test_processes_left_by_a_finished_job_are_killed_and_noted(guard, tmp_path, shape):
    body, role = LEFTOVER_SHAPES[shape]
    jm = guard.manager()
    script = f'{body}\nawait "$D/pid-{role}-$P"\nexit 0\n'
    jm.entry([{"id": "leaver", "commandLine": tree_job(tmp_path, script), "killGrace": GRACE}])
    jm.runAllReadyJobs()
    pids = wait_for_pids(tmp_path, {"sh", role})
    exited = time.monotonic()  # about when the job's shell exits
    leftover = {name: pid for name, pid in pids.items() if name.startswith(role)}
    assert_gone_by(leftover, exited + GRACE + 1.0, f"the {shape} left behind to be killed")
    jm.join()
    job = jm.jobs[0]
    assert (job.runningStatus, job.exitCode) == (JobRunningStatus.Completed, 0)  # the job's own exit code
    assert not jm.errorOccurred()
    [left_pid] = leftover.values()
    assert f"the job left 1 process(es) running [{left_pid}]; killed them" in log_text(tmp_path, "leaver")
    assert load_state(tmp_path).records["leaver"].reason == "left 1 process(es) running; they were killed"


# --- 3. Ctrl-C and SIGTERM to the process that owns the batch ---------------------------------------------

OWNER_SCRIPT = """\
import sys
from simplejob import JobManager
d = sys.argv[1]
jm = JobManager(logOutputDirectory=d + "/logs", stateFile=d + "/state.json", maxWorkers=2)
jm.entryFromJson(d + "/jobs.json")
jm.run(interval=0.1)
"""


def owner_batch(directory: Path) -> None:
    """Two tree jobs that run until killed, and one that waits on the first (it never starts)."""
    jobs = [
        {"id": "one", "commandLine": tree_job(directory / "one", FULL_TREE), "killGrace": OWNER_GRACE},
        {"id": "two", "commandLine": tree_job(directory / "two", FULL_TREE), "killGrace": OWNER_GRACE},
        {"id": "after", "commandLine": ["sh", "-c", f"touch {directory}/after-ran"], "waiting": ["one"]},
    ]
    (directory / "jobs.json").write_text(json.dumps({"jobContexts": jobs}))
    (directory / "owner.py").write_text(OWNER_SCRIPT)


def owner_command(kind: str, directory: Path) -> list[str]:
    if kind == "library":
        return [sys.executable, str(directory / "owner.py"), str(directory)]
    return [
        sys.executable,
        "-m",
        "simplejob",
        "run",
        str(directory / "jobs.json"),
        "--logOutputDirectory",
        str(directory / "logs"),
        "--stateFile",
        str(directory / "state.json"),
        "--loopInterval",
        "0.1",
        "-j",
        "2",
    ]


def start_owner(guard: Guard, directory: Path, kind: str) -> tuple[subprocess.Popen, dict[str, int]]:
    """Start an owner; once both jobs run, return it and every pid of the batch (supervisor, workers, trees)."""
    owner_batch(directory)
    owner = guard.owner(owner_command(kind, directory))
    pids = {}
    for job in ("one", "two"):
        pids.update({f"{job}:{name}": pid for name, pid in wait_for_pids(directory / job, FULL_ROLES).items()})
    supervisor = load_state(directory).supervisor["pid"]
    pids["supervisor"] = supervisor
    for worker in psutil.Process(supervisor).children():
        pids[f"worker {worker.pid}"] = worker.pid
    assert psutil.Process(supervisor).ppid() == owner.pid
    return owner, pids


def assert_batch_interrupted(directory: Path, reason: str) -> None:
    state = load_state(directory)
    assert statuses(state) == {"one": "Interrupted", "two": "Interrupted", "after": "Ready"}
    assert not (directory / "after-ran").exists()
    assert state.supervisor["running"] is False and state.supervisor["result"] == "interrupted"
    assert reason in state.records["one"].reason
    assert state.supervisor["reason"] == state.records["one"].reason


def assert_resumable(directory: Path) -> None:
    """The old supervisor released the state file: a new JobManager may take the batch over."""
    jm = JobManager(logOutputDirectory=str(directory / "logs"), stateFile=str(directory / "state.json"))
    jm.entryFromJson(directory / "jobs.json")  # raises StateFileLocked while the old supervisor holds it
    assert {job.id: job.runningStatus for job in jm.jobs}["one"] == JobRunningStatus.Ready


SIGNALS = {
    "Ctrl-C": (signal.SIGINT, True),  # a terminal sends SIGINT to the whole foreground process group
    "SIGINT": (signal.SIGINT, False),  # to the owner alone
    "SIGTERM": (signal.SIGTERM, False),
    "hangup": (signal.SIGHUP, True),  # the terminal closed (or ssh dropped): SIGHUP to the whole group
}


@pytest.mark.parametrize("how", SIGNALS)
@pytest.mark.parametrize("kind", ["library", "cli"])
def test_signal_to_the_owner_kills_the_trees_and_records_them_interrupted(guard, tmp_path, kind, how):
    sig, to_group = SIGNALS[how]
    owner, pids = start_owner(guard, tmp_path, kind)
    sent = time.monotonic()
    if to_group:
        os.killpg(owner.pid, sig)
    else:
        os.kill(owner.pid, sig)
    code = owner.wait(timeout=OWNER_GRACE + 5)
    took = time.monotonic() - sent
    assert took < OWNER_GRACE + 3.0, f"the owner took {took:.1f} s to exit"
    stderr = owner.stderr.read().decode(errors="replace")
    # Ctrl-C (and SIGTERM to the CLI) stop the batch in order: the owner waits for the supervisor.
    orderly = sig == signal.SIGINT or (kind == "cli" and sig == signal.SIGTERM)
    if kind == "cli" and orderly:
        assert code == 130, stderr
        assert "interrupted; the running jobs were stopped" in stderr
    else:
        assert code != 0
    if orderly:
        # By the time the owner exits, nothing is left and the state is final.
        assert alive(pids) == {}
        assert_batch_interrupted(tmp_path, "interrupted")
        assert_resumable(tmp_path)
    # Whatever the owner did, its batch does not outlive it (SIGTERM and SIGHUP kill a Python program
    # outright, and SIGHUP reaches the supervisor and the workers too).
    assert_gone_by(pids, sent + OWNER_GRACE + 3.0, "the batch's processes to die after the owner")
    wait_until(lambda: load_state(tmp_path).supervisor.get("running") is False, timeout=2, message="final state")
    assert_batch_interrupted(tmp_path, "interrupted")
    assert_resumable(tmp_path)


def test_jobs_start_with_the_default_signal_dispositions(guard, tmp_path):
    """simplejob's own processes leave Ctrl-C and hangups to the supervisor, but a job must not
    inherit that: ignored signals survive exec, and a job that relies on SIGINT would hang."""
    jm = guard.manager(keepGoing=True)
    jm.entry(
        [
            {
                "id": "interrupted",
                "commandLine": py("import os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(10)"),
                "timeout": 5,
                "killGrace": GRACE,
            },
            {"id": "hungup", "commandLine": ["sh", "-c", "kill -HUP $$; sleep 10"], "timeout": 5, "killGrace": GRACE},
        ]
    )
    with pytest.raises(CalledJobError):
        jm.run(interval=0.05)
    state = load_state(tmp_path)
    assert state.records["interrupted"].exitCode == -signal.SIGINT, state.records["interrupted"].reason
    assert state.records["hungup"].exitCode == -signal.SIGHUP, state.records["hungup"].reason
    assert state.records["hungup"].reason == "killed by signal 1 (SIGHUP)"


def test_jobs_start_with_no_signal_ignored(guard, tmp_path):
    """Python ignores SIGPIPE and SIGXFSZ; a job gets their default actions (`yes | head` ends)."""
    jm = guard.manager(logOutputDirectory=str(tmp_path / "logs"))
    jm.entry([{"id": "mask", "commandLine": ["grep", "^SigIgn:", "/proc/self/status"]}])
    jm.run(interval=0.05)
    line = (tmp_path / "logs" / "mask.log").read_text().splitlines()[-1]
    ignored = [signum for signum in range(1, 32) if int(line.split()[1], 16) >> (signum - 1) & 1]
    # (signals 32 and 33 are glibc's own, ignored by its posix_spawn until the program sets them up)
    assert ignored == [], f"standard signals ignored in a job: {ignored} ({line})"


# --- 4. death of the owner, the supervisor, a worker -------------------------------------------------------


def test_owner_killed_the_supervisor_kills_the_trees_records_them_and_exits(guard, tmp_path):
    owner, pids = start_owner(guard, tmp_path, "library")
    killed = time.monotonic()
    owner.kill()
    owner.wait()
    assert_gone_by(pids, killed + OWNER_GRACE + 3.0, "the supervisor to notice its owner's death and stop the batch")
    assert_batch_interrupted(tmp_path, "the process that owns the batch")
    assert_resumable(tmp_path)


def test_workers_hold_only_their_own_pipes_of_the_supervisors_descriptors(guard, tmp_path):
    """Workers are forked from the supervisor: none may keep its state file, lock, journal, the
    manager's pipe or another worker's stdin open (a lock or an end of file would outlive it)."""
    jm = guard.manager(maxWorkers=2)
    jm.entry([{"id": f"w{i}", "commandLine": ["sleep", "30"], "killGrace": GRACE} for i in range(2)])
    jm.runAllReadyJobs()
    supervisor = psutil.Process(load_state(tmp_path).supervisor["pid"])
    wait_until(lambda: len(supervisor.children()) == 2, timeout=10)
    inherited = {f"{os.readlink(f'/proc/{supervisor.pid}/fd/{fd}')}" for fd in os.listdir(f"/proc/{supervisor.pid}/fd")}
    for worker in supervisor.children():
        fds = {int(fd): os.readlink(f"/proc/{worker.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{worker.pid}/fd")}
        state_files = [f for f in fds.values() if f.startswith(str(tmp_path / "state.json"))]
        assert state_files == [], fds  # the state file, its journal, its lock (the job's log is the worker's)
        # pipes are told apart by their inode: the manager's pipe, the other workers' pipes
        shared = {fd: pipe for fd, pipe in fds.items() if fd > 2 and pipe.startswith("pipe:") and pipe in inherited}
        assert shared == {}, f"worker {worker.pid} shares the supervisor's descriptors {shared}"
    jm.cancel()
    jm.join()


def test_supervisor_killed_workers_kill_their_trees_and_the_manager_raises(guard, tmp_path):
    jm = guard.manager(maxWorkers=2)
    jm.entry(
        [
            {"id": "one", "commandLine": tree_job(tmp_path / "one", FULL_TREE), "killGrace": GRACE},
            {"id": "two", "commandLine": tree_job(tmp_path / "two", FULL_TREE), "killGrace": GRACE},
        ]
    )
    jm.runAllReadyJobs()
    pids = {**wait_for_pids(tmp_path / "one", FULL_ROLES), **wait_for_pids(tmp_path / "two", FULL_ROLES)}
    supervisor = load_state(tmp_path).supervisor["pid"]
    workers = {f"worker {p.pid}": p.pid for p in psutil.Process(supervisor).children()}
    assert len(workers) == 2
    killed = time.monotonic()
    os.kill(supervisor, signal.SIGKILL)

    # The documented polling loop must end, not spin forever on a batch nobody runs.
    with pytest.raises(SupervisorDied) as died:
        while not jm.completed():
            jm.runAllReadyJobs()
            assert time.monotonic() < killed + 5.0, "the polling loop did not notice the supervisor's death"
            time.sleep(0.02)
    assert died.value.pid == supervisor and f"pid {supervisor}" in str(died.value)
    assert isinstance(died.value, SimplejobError)
    assert jm.errorOccurred() and not jm.completed()
    for call in (jm.join, jm.run, jm.rerun, jm.runAllReadyJobs):
        with pytest.raises(SupervisorDied):
            call()
    assert_gone_by({**pids, **workers}, killed + GRACE + 3.0, "the workers to kill their trees and exit")


def test_worker_killed_its_job_is_failed_with_the_reason_and_the_batch_goes_on(guard, tmp_path):
    jm = guard.manager(maxWorkers=1, keepGoing=True)
    jm.entry(
        [
            {"id": "victim", "commandLine": tree_job(tmp_path, FULL_TREE), "killGrace": GRACE},
            {"id": "next", "commandLine": ["sh", "-c", f"touch {tmp_path}/next-ran"]},
            {"id": "dependent", "commandLine": ["sh", "-c", f"touch {tmp_path}/dependent-ran"], "waiting": ["victim"]},
        ]
    )
    jm.runAllReadyJobs()
    pids = wait_for_pids(tmp_path, FULL_ROLES)
    shell = next(pid for name, pid in pids.items() if name.startswith("sh-"))
    worker = psutil.Process(shell).ppid()
    assert psutil.Process(worker).ppid() == load_state(tmp_path).supervisor["pid"]  # a worker, forked by the supervisor
    killed = time.monotonic()
    os.kill(worker, signal.SIGKILL)
    assert_gone_by(pids, killed + GRACE + 3.0, "the dead worker's job tree (daemon included) to be killed")
    jm.join()  # the supervisor carried on and finished the batch
    state = load_state(tmp_path)
    assert statuses(state) == {"victim": "Interrupted", "next": "Completed", "dependent": "Ready"}
    assert state.records["next"].exitCode == 0 and (tmp_path / "next-ran").exists()
    assert not (tmp_path / "dependent-ran").exists()
    reason = state.records["victim"].reason
    assert f"its worker process (pid {worker}) died (signal 9)" in reason and "tree was killed" in reason
    assert state.supervisor["result"] == "finished"
    assert jm.errorOccurred()


# --- 5. huge output -----------------------------------------------------------------------------------------


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_huge_output_streams_to_the_log_without_memory_growth(guard, tmp_path):
    size = int(float(os.environ.get("SIMPLEJOB_TEST_OUTPUT_MB", "64")) * 2**20)
    # Waits for "go", writes size bytes to stdout, says "written", then waits for "gate": at that
    # point whoever buffered the output would hold all of it.
    script = f'await "$D/go"; head -c {size} /dev/zero; put "$D/written" x; await "$D/gate"; exit 0'
    jm = guard.manager(maxWorkers=1)
    jm.entry([{"id": "loud", "commandLine": tree_job(tmp_path, script), "killGrace": GRACE}])
    jm.runAllReadyJobs()
    shell = wait_for_pids(tmp_path, {"sh"}).popitem()[1]
    processes = {
        "manager": os.getpid(),
        "supervisor": load_state(tmp_path).supervisor["pid"],
        "worker": psutil.Process(shell).ppid(),
    }
    before = {name: rss(pid) for name, pid in processes.items()}
    peak = dict(before)
    (tmp_path / "go").touch()

    def sample():
        for name, pid in processes.items():
            peak[name] = max(peak[name], rss(pid))
        return (tmp_path / "written").exists()

    wait_until(sample, timeout=60 + size / 2**24, interval=0.005, message="the output to be written")
    sample()
    (tmp_path / "gate").touch()
    jm.join()
    assert jm.jobs[0].exitCode == 0
    growth = {name: (peak[name] - before[name]) / 2**20 for name in processes}
    assert all(mb < 16 for mb in growth.values()), f"memory grew (MB) while {size >> 20} MB were written: {growth}"
    log = tmp_path / "logs" / "loud.log"
    zeros = 0
    with open(log, "rb") as f:
        header = f.readline()
        while chunk := f.read(1 << 24):
            zeros += chunk.count(0)
    assert header.startswith(b"--- simplejob ") and zeros == size


def test_lots_of_output_without_a_log_directory_does_not_block(guard, tmp_path):
    """With nowhere to log, output is discarded; it must never fill a pipe nobody reads."""
    mb16 = 16 * 2**20
    jm = guard.manager(logOutputDirectory="", maxWorkers=1)
    jm.entry(
        [
            {
                "id": "loud",
                "commandLine": ["sh", "-c", f"head -c {mb16} /dev/zero; head -c {mb16} /dev/zero >&2"],
                "timeout": 10,
                "killGrace": GRACE,
            }
        ]
    )
    started = time.monotonic()
    jm.run(interval=0.05)
    assert time.monotonic() - started < 5
    assert (jm.jobs[0].runningStatus, jm.jobs[0].exitCode) == (JobRunningStatus.Completed, 0)


# --- 6. spawn failures -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("logs", [True, False], ids=["with logs", "without logs"])
def test_spawn_failures_are_failed_jobs_with_the_reason_in_log_and_state(guard, tmp_path, logs):
    not_executable = tmp_path / "not-executable.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    not_executable.chmod(0o644)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    expected = {  # id: (context, exit code, words of the reason)
        "not-found": (
            {"commandLine": "no-such-program-for-simplejob --flag"},
            127,
            "command not found: 'no-such-program-for-simplejob'",
        ),
        "missing-path": ({"commandLine": [str(tmp_path / "missing" / "program")]}, 127, "command not found"),
        "not-executable": ({"commandLine": [str(not_executable)]}, 126, "permission denied"),
        "a-directory": ({"commandLine": [str(tmp_path)]}, 126, "permission denied"),
        "bad-cwd": (
            {"commandLine": "true", "cwd": str(tmp_path / "nowhere")},
            127,
            f"working directory {str(tmp_path / 'nowhere')!r}: No such file or directory",
        ),
        "cwd-is-a-file": ({"commandLine": "true", "cwd": str(a_file)}, 127, "Not a directory"),
        "nul-in-argument": ({"commandLine": ["echo", "a\0b"]}, 126, "embedded null byte"),
    }
    jm = guard.manager(maxWorkers=1, keepGoing=True, logOutputDirectory=str(tmp_path / "logs") if logs else "")
    jm.entry(
        [{"id": job_id, **context} for job_id, (context, _, _) in expected.items()]
        + [{"id": "fine", "commandLine": ["sh", "-c", f"touch {tmp_path}/fine-ran"]}]
    )
    with pytest.raises(CalledJobError) as failed:
        jm.run(interval=0.05)
    assert set(failed.value.failed) == set(expected)
    state = load_state(tmp_path)
    for job_id, (_, code, words) in expected.items():
        record = state.records[job_id]
        assert (record.runningStatus, record.exitCode) == (JobRunningStatus.Completed, code), job_id
        assert record.reason.startswith("cannot start") and words in record.reason, (job_id, record.reason)
        if logs:
            assert record.reason in log_text(tmp_path, job_id)
    # the one worker survived every failure and ran the last job
    assert (state.records["fine"].exitCode, (tmp_path / "fine-ran").exists()) == (0, True)


# --- 7. cancel --------------------------------------------------------------------------------------------------


def test_cancel_one_job_kills_its_tree_and_keeps_a_queued_job_from_starting(guard, tmp_path):
    jm = guard.manager(maxWorkers=2)
    jm.entry(
        [
            {"id": "tree", "commandLine": tree_job(tmp_path / "tree", FULL_TREE), "killGrace": GRACE},
            {"id": "gated", "commandLine": tree_job(tmp_path / "gated", 'await "$D/gate"')},
            {"id": "queued", "commandLine": ["sh", "-c", f"touch {tmp_path}/queued-ran"]},
            {"id": "dependent", "commandLine": ["sh", "-c", f"touch {tmp_path}/dependent-ran"], "waiting": ["tree"]},
        ]
    )
    jm.runAllReadyJobs()
    pids = wait_for_pids(tmp_path / "tree", FULL_ROLES)
    wait_for_pids(tmp_path / "gated", {"sh"})
    cancelled = time.monotonic()
    jm.cancel("queued")  # waiting for a worker
    jm.cancel("tree")
    assert_gone_by(pids, cancelled + GRACE + 1.0, "the cancelled job's tree to die")
    wait_until(lambda: jm.getRunningStatus()["Cancelled"] == 2, timeout=2, message="two jobs cancelled")
    (tmp_path / "gated" / "gate").touch()
    jm.join()
    state = load_state(tmp_path)
    assert statuses(state) == {"tree": "Cancelled", "gated": "Completed", "queued": "Cancelled", "dependent": "Ready"}
    assert not (tmp_path / "queued-ran").exists() and not (tmp_path / "dependent-ran").exists()
    assert state.records["tree"].reason == "cancelled"
    assert "cancelled; killed its process tree" in log_text(tmp_path, "tree")
    assert [job["tree"]["runnigStatus"] for job in jm.report()["results"] if "tree" in job] == ["Cancelled"]


def test_cancel_all_kills_every_tree_and_starts_nothing_more(guard, tmp_path):
    jm = guard.manager(maxWorkers=2)
    jm.entry(
        [
            {"id": "one", "commandLine": tree_job(tmp_path / "one", FULL_TREE), "killGrace": GRACE},
            {"id": "two", "commandLine": tree_job(tmp_path / "two", FULL_TREE), "killGrace": GRACE},
            {"id": "queued", "commandLine": ["sh", "-c", f"touch {tmp_path}/queued-ran"]},
            {"id": "dependent", "commandLine": ["sh", "-c", f"touch {tmp_path}/dependent-ran"], "waiting": ["one"]},
        ]
    )
    jm.runAllReadyJobs()
    pids = {**wait_for_pids(tmp_path / "one", FULL_ROLES), **wait_for_pids(tmp_path / "two", FULL_ROLES)}
    cancelled = time.monotonic()
    jm.cancel()
    assert_gone_by(pids, cancelled + GRACE + 1.0, "every running tree to die")
    jm.join()
    assert time.monotonic() - cancelled < GRACE + 2.0
    assert statuses(load_state(tmp_path)) == dict.fromkeys(["one", "two", "queued", "dependent"], "Cancelled")
    assert jm.getRunningStatus() == {"Cancelled": 4} and jm.errorOccurred()
    assert not (tmp_path / "queued-ran").exists() and not (tmp_path / "dependent-ran").exists()


def test_cancel_before_the_batch_starts_keeps_the_job_from_ever_starting(guard, tmp_path):
    jm = guard.manager(maxWorkers=2)
    jm.entry(
        [
            {"id": "runs", "commandLine": ["sh", "-c", f"touch {tmp_path}/runs-ran"]},
            {"id": "never", "commandLine": ["sh", "-c", f"touch {tmp_path}/never-ran"]},
        ]
    )
    jm.cancel("never")
    jm.runAllReadyJobs()
    jm.join()
    assert statuses(load_state(tmp_path)) == {"runs": "Completed", "never": "Cancelled"}
    assert (tmp_path / "runs-ran").exists() and not (tmp_path / "never-ran").exists()
    assert not (tmp_path / "logs" / "never.log").exists()


# --- the platform modules, chosen once ----------------------------------------------------------------------

PLATFORM_INTERFACE = [name for name, value in vars(proctree._Platform).items() if callable(value) and name[0] != "_"]


def test_the_posix_module_is_chosen_here_and_the_windows_module_is_not_loaded():
    assert proctree._platform is proctree_posix
    for name in ["become_subreaper", "spawn", "descendants", "reap_zombies"]:
        assert getattr(proctree, name) is getattr(proctree_posix, name), name
    # In a fresh interpreter: importing proctree loads the POSIX module only; the Windows module
    # still imports here (WinDLL is only used inside its functions).
    code = (
        "import sys; import simplejob.workers.proctree; "
        "assert 'simplejob.workers.proctree_posix' in sys.modules; "
        "assert 'simplejob.workers.proctree_windows' not in sys.modules, 'both platform modules loaded'; "
        "import simplejob.workers.proctree_windows"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_both_platform_modules_have_the_whole_interface_with_the_same_signatures():
    assert {"signal_all", "job_group", "descendants"} <= set(PLATFORM_INTERFACE)
    for name in PLATFORM_INTERFACE:
        posix, windows = getattr(proctree_posix, name), getattr(proctree_windows, name)
        assert inspect.signature(posix) == inspect.signature(windows), name


# --- the Windows side (layout only: it cannot run here) -----------------------------------------------------


def test_windows_job_object_structures_have_the_documented_win64_layout():
    if sys.maxsize <= 2**32:
        pytest.skip("the documented sizes checked here are those of 64-bit Windows")
    import ctypes

    assert ctypes.sizeof(proctree_windows._JOBOBJECT_BASIC_LIMIT_INFORMATION) == 64
    assert ctypes.sizeof(proctree_windows._JOBOBJECT_EXTENDED_LIMIT_INFORMATION) == 144
    assert ctypes.sizeof(proctree_windows._process_id_list(2)) == 8 + 2 * 8
