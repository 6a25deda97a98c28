"""The state file (issue 4, points 3-8): one owner at a time, no stale lock, an unreadable file
refused and left untouched, on disk (fsync) when run() returns, a snapshot a person can read that
is never more than about a second behind, transitions appended (not the whole file rewritten),
`simplejob status` while a batch runs and after, and the checked-in example files of each schema
version still load (and match the JSON Schema)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import read_state, wait_until
from simplejob import (
    CalledJobError,
    JobManager,
    JobRunningStatus,
    StateFileError,
    StateFileLocked,
    SupervisorDied,
    cli,
    resume,
)
from simplejob.model import env_matches
from simplejob.statefile import SCHEMA_VERSION, journal_path, load, lock_path
from simplejob.statewriter import COMPACT_MIN_INTERVAL

DATA = Path(__file__).parent / "data"
SCHEMA_PATH = Path(__file__).parent.parent / "simplejob" / "state-file.schema.json"
Completed = JobRunningStatus.Completed


def gated(tmp_path, gate_name: str = "gate") -> tuple[Path, str]:
    """A job command that runs until the gate file exists (readiness by files, no sleeps in tests)."""
    gate = tmp_path / gate_name
    return gate, f"sh -c 'while [ ! -e {gate} ]; do sleep 0.02; done'"


def files_of(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime, except the lock file (which a reader may create, empty)."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in directory.iterdir()
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.fixture
def running_batch(tmp_path):
    """A batch that runs until its gate file is touched: a job done, and one holding the batch open."""
    path = tmp_path / "state.json"
    gate, hold = gated(tmp_path)
    manager = JobManager(stateFile=str(path), maxWorkers=2)
    manager.entry([{"id": "quick", "commandLine": "true"}, {"id": "hold", "commandLine": hold}])
    manager.runAllReadyJobs()
    wait_until(
        lambda: (
            {r.id: r.runningStatus for r in load(str(path)).records.values()}
            == {
                "quick": Completed,
                "hold": JobRunningStatus.Running,
            }
        ),
        message="quick to complete and hold to run",
    )
    yield path, gate, manager
    gate.touch()
    try:
        manager.join()
    except SupervisorDied:
        pass


# --- one owner at a time --------------------------------------------------------------------------

SECOND_MANAGER = """
import json, sys
from simplejob import JobManager, StateFileLocked
manager = JobManager(stateFile=sys.argv[1])
try:
    manager.entry([{"id": "other", "commandLine": "true"}])
except StateFileLocked as error:
    print(json.dumps({"path": error.path, "pid": error.pid, "host": error.host, "message": str(error)}))
    sys.exit(3)
"""


def test_a_second_manager_in_another_process_fails_at_once_naming_file_pid_and_host(running_batch):
    path, _, _ = running_batch
    owner = load(str(path)).supervisor["pid"]
    assert "simplejob.supervisor" in " ".join(psutil.Process(owner).cmdline())
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-c", SECOND_MANAGER, str(path)], capture_output=True, text=True, timeout=30
    )
    took = time.monotonic() - started
    assert second.returncode == 3, second.stderr
    error = json.loads(second.stdout)
    assert (error["path"], error["pid"], error["host"]) == (str(path), owner, socket.gethostname())
    for part in (str(path), str(owner), socket.gethostname()):
        assert part in error["message"]
    assert took < 10  # it did not wait for the batch (which runs until the gate opens)
    assert load(str(path)).records["hold"].runningStatus == JobRunningStatus.Running  # the owner goes on


def test_a_manager_that_entered_first_is_refused_by_its_supervisor_if_another_owns_the_file(tmp_path):
    """entry() found the file free; by runAllReadyJobs() another batch owns it: the supervisor refuses."""
    path = tmp_path / "state.json"
    gate, hold = gated(tmp_path)
    late = JobManager(stateFile=str(path), maxWorkers=1)
    late.entry([{"id": "late", "commandLine": "true"}])
    owner = JobManager(stateFile=str(path), maxWorkers=1)
    owner.entry([{"id": "hold", "commandLine": hold}])
    owner.runAllReadyJobs()
    try:
        with pytest.raises(StateFileLocked) as refused:
            late.runAllReadyJobs()
        assert refused.value.pid == load(str(path)).supervisor["pid"]
        assert refused.value.host == socket.gethostname()
        assert str(path) in str(refused.value)
    finally:
        gate.touch()
        owner.join()
    assert list(read_state(path)["jobs"]) == ["hold"]  # the refused batch wrote nothing


def test_a_lock_left_by_a_sigkilled_supervisor_needs_no_clearing(running_batch):
    path, gate, manager = running_batch
    os.kill(load(str(path)).supervisor["pid"], signal.SIGKILL)
    with pytest.raises(SupervisorDied):
        manager.join()
    assert Path(lock_path(str(path))).exists()  # the lock file stays; the lock itself died with its owner
    assert load(str(path)).supervisor["running"] is True  # what a killed owner leaves behind
    gate.touch()
    again = JobManager(stateFile=str(path), maxWorkers=2)
    again.entry([{"id": "quick", "commandLine": "true"}, {"id": "hold", "commandLine": gated(path.parent)[1]}])
    again.run(interval=0.05)
    assert {job.id: (job.runningStatus, job.resumed) for job in again.jobs} == {
        "quick": (Completed, True),
        "hold": (Completed, False),
    }


# --- an unreadable state file is refused and left untouched ----------------------------------------


@pytest.fixture(scope="module")
def finished_files(tmp_path_factory):
    """The files of a finished batch, and a variant of its snapshot whose journal must be replayed."""
    directory = tmp_path_factory.mktemp("finished")
    path = directory / "state.json"
    manager = JobManager(stateFile=str(path), maxWorkers=2)
    jobs = [{"id": "a", "commandLine": "true"}, {"id": "b", "commandLine": ["echo", "b"], "waiting": ["a"]}]
    manager.entry(jobs)
    manager.run(interval=0.05)
    snapshot, journal = path.read_bytes(), Path(journal_path(str(path))).read_bytes()
    header = journal.split(b"\n", 1)[0] + b"\n"
    replay = json.loads(snapshot)
    replay["journalOffset"] = len(header)  # as if not compacted since the start: the journal says it all
    return {
        "jobs": jobs,
        "snapshot": snapshot,
        "journal": journal,
        "header": header,
        "replay": json.dumps(replay, indent=1).encode(),
    }


def damaged_snapshot(files, change):
    data = json.loads(files["snapshot"])
    change(data)
    return json.dumps(data).encode(), files["journal"]


DAMAGE = {  # name -> (files -> (snapshot bytes, journal bytes), which file is named, words of the problem)
    "truncated": (lambda f: (f["snapshot"][: len(f["snapshot"]) // 2], f["journal"]), "", "is not valid JSON"),
    "not JSON": (lambda f: (b"jobs: a, b\n", f["journal"]), "", "is not valid JSON"),
    "empty": (lambda f: (b"", f["journal"]), "", "is not valid JSON"),
    "newer schemaVersion": (
        lambda f: damaged_snapshot(f, lambda d: d.update(schemaVersion=2)),
        "",
        "has schemaVersion 2",
    ),
    "not a state file": (lambda f: (b'{"hello": "world"}', f["journal"]), "", 'no "jobs" object'),
    "a malformed job": (
        lambda f: damaged_snapshot(f, lambda d: d["jobs"]["b"].update(runningStatus="Finished")),
        "",
        "malformed entry for job 'b'",
    ),
    "a malformed journal line": (
        lambda f: (f["replay"], f["header"] + b'{"id": "a", "runningStatus": \n' + f["journal"][len(f["header"]) :]),
        ".journal",
        "malformed line at byte 38",  # just after the header line (38 bytes)
    ),
    "a newer journal": (
        lambda f: (f["replay"], f["journal"].replace(b'"schemaVersion": 1', b'"schemaVersion": 2', 1)),
        ".journal",
        "has schemaVersion 2",
    ),
    "a journal without a header": (lambda f: (f["replay"], b"\n" + f["journal"]), ".journal", "no valid header line"),
}


def test_the_replay_variant_is_a_valid_state(tmp_path, finished_files):
    """The damage below is done to files that are otherwise good: here, the replayed journal gives the
    same picture as the compacted snapshot."""
    (tmp_path / "state.json").write_bytes(finished_files["replay"])
    Path(journal_path(str(tmp_path / "state.json"))).write_bytes(finished_files["journal"])
    replayed = load(str(tmp_path / "state.json"))
    (tmp_path / "state.json").write_bytes(finished_files["snapshot"])
    compacted = load(str(tmp_path / "state.json"))
    assert [r.to_json() for r in replayed.records.values()] == [r.to_json() for r in compacted.records.values()]
    assert replayed.supervisor == compacted.supervisor


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_an_unreadable_state_file_is_refused_naming_file_and_problem_and_left_untouched(
    tmp_path, finished_files, damage, capsys
):
    make, suffix, problem = DAMAGE[damage]
    path = tmp_path / "state.json"
    snapshot, journal = make(finished_files)
    path.write_bytes(snapshot)
    Path(journal_path(str(path))).write_bytes(journal)
    before = files_of(tmp_path)

    manager = JobManager(stateFile=str(path), maxWorkers=1)
    with pytest.raises(StateFileError) as refused:
        manager.entry(finished_files["jobs"])
    assert refused.value.path == str(path) + suffix
    assert problem in refused.value.problem
    assert str(path) + suffix in str(refused.value) and problem in str(refused.value)
    assert files_of(tmp_path) == before  # byte for byte, not even rewritten with the same bytes

    assert cli.main(["status", str(path)]) == cli.EXIT_USAGE  # the CLI says the same, and writes nothing
    assert problem in capsys.readouterr().err
    assert files_of(tmp_path) == before


def test_a_state_file_damaged_after_entry_is_refused_by_the_supervisor_and_left_untouched(tmp_path, finished_files):
    path = tmp_path / "state.json"
    path.write_bytes(finished_files["snapshot"])
    Path(journal_path(str(path))).write_bytes(finished_files["journal"])
    manager = JobManager(stateFile=str(path), maxWorkers=1)
    manager.entry(finished_files["jobs"])
    path.write_bytes(finished_files["snapshot"][:100])
    before = files_of(tmp_path)
    with pytest.raises(StateFileError, match="is not valid JSON") as refused:
        manager.runAllReadyJobs()
    assert refused.value.path == str(path)
    assert files_of(tmp_path) == before


def test_move_aside_unreadable_state_is_an_explicit_option(tmp_path, finished_files):
    path = tmp_path / "state.json"
    damaged = finished_files["snapshot"][:-40]
    path.write_bytes(damaged)
    Path(journal_path(str(path))).write_bytes(finished_files["journal"])
    manager = JobManager(stateFile=str(path), maxWorkers=1, moveAsideUnreadableState=True)
    with pytest.warns(UserWarning, match=r"is not valid JSON.*moved it aside to .*state\.json\.unreadable-1"):
        manager.entry(finished_files["jobs"])
    backup = tmp_path / "state.json.unreadable-1"
    assert backup.read_bytes() == damaged  # kept whole, under a name that says what it is
    assert Path(journal_path(str(backup))).read_bytes() == finished_files["journal"]
    manager.run(interval=0.05)  # a fresh batch
    assert [(job.id, job.runningStatus, job.resumed) for job in manager.jobs] == [
        ("a", Completed, False),
        ("b", Completed, False),
    ]
    path.write_bytes(b"{")
    with pytest.warns(UserWarning, match="unreadable-2"):  # never over an earlier backup
        JobManager(stateFile=str(path), moveAsideUnreadableState=True).entry(finished_files["jobs"])
    assert backup.read_bytes() == damaged and (tmp_path / "state.json.unreadable-2").read_bytes() == b"{"


def test_move_aside_never_takes_a_file_a_batch_owns(running_batch):
    path, _, _ = running_batch
    with pytest.raises(StateFileLocked):
        JobManager(stateFile=str(path), moveAsideUnreadableState=True).entry([{"id": "x", "commandLine": "true"}])
    assert load(str(path)).records["hold"].runningStatus == JobRunningStatus.Running


# --- what is on disk, and when ---------------------------------------------------------------------

# Loaded by every Python process of a batch through PYTHONPATH: records each os.fsync and os.replace
# (after the real call) with the file's name and size, so that a test can see what reached the disk.
FS_SPY = """
import json, os
_log = os.environ.get("SIMPLEJOB_FS_SPY")
if _log:
    _fsync, _replace = os.fsync, os.replace
    def _note(event):
        fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(dict(event, pid=os.getpid())) + "\\n").encode())
        finally:
            os.close(fd)
    def fsync(fd):
        _fsync(fd)
        fd = fd if isinstance(fd, int) else fd.fileno()
        _note({"op": "fsync", "path": os.readlink(f"/proc/self/fd/{fd}"), "size": os.fstat(fd).st_size})
    def replace(src, dst, *args, **kwargs):
        _replace(src, dst, *args, **kwargs)
        _note({"op": "replace", "src": os.path.abspath(src), "dst": os.path.abspath(dst), "size": os.stat(dst).st_size})
    os.fsync, os.replace = fsync, replace
"""


@pytest.fixture
def fs_spy(tmp_path, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/fd")
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir()
    (spy_dir / "sitecustomize.py").write_text(FS_SPY)
    log = tmp_path / "fs.log"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(spy_dir), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SIMPLEJOB_FS_SPY", str(log))

    def events(pid: int) -> list[dict]:
        return [e for e in map(json.loads, log.read_text().splitlines()) if e["pid"] == pid]

    return events


def test_the_state_names_the_command_line_and_directory_of_the_process_that_ran_the_batch(tmp_path):
    """As that process was started (the manager sends its own; the supervisor does not look it up)."""
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    code = "import sys; from simplejob import JobManager; m = JobManager(stateFile=sys.argv[1]); "
    code += "m.entry([{'id': 'a', 'commandLine': 'true'}]); m.run()"
    path = tmp_path / "state.json"
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=workdir, check=True, timeout=60)
    supervisor = read_state(path)["supervisor"]
    assert supervisor["ownerCommandLine"] == [sys.executable, "-c", code, str(path)]
    assert supervisor["ownerCwd"] == str(workdir)


def test_the_state_is_on_disk_when_run_returns(tmp_path, fs_spy):
    path = tmp_path / "state.json"
    manager = JobManager(stateFile=str(path), maxWorkers=2)
    manager.entry([{"id": f"j{i}", "commandLine": "true"} for i in range(20)])
    manager.run(interval=0.05)
    events = fs_spy(read_state(path)["supervisor"]["pid"])
    assert events, "the spy saw nothing"
    size, journal_size = path.stat().st_size, os.path.getsize(journal_path(str(path)))

    # the snapshot: written to a temporary file, fsync'd whole, renamed, then its directory fsync'd
    last_replace = max(i for i, e in enumerate(events) if e["op"] == "replace" and e["dst"] == str(path))
    written = events[last_replace]
    assert written["size"] == size
    assert any(e["op"] == "fsync" and e["path"] == written["src"] and e["size"] == size for e in events[:last_replace])
    assert any(e["op"] == "fsync" and e["path"] == str(tmp_path) for e in events[last_replace + 1 :])
    # the journal: fsync'd at its final size
    assert [e["size"] for e in events if e["op"] == "fsync" and e["path"] == journal_path(str(path))][
        -1
    ] == journal_size
    # and the snapshot alone is the whole truth: nothing in the journal past journalOffset
    assert read_state(path)["journalOffset"] == journal_size


def test_transitions_are_appended_to_the_journal_not_rewritten_into_the_snapshot(tmp_path, fs_spy):
    """Linear cost: the snapshot is rewritten about once a second, not once per transition."""
    path = tmp_path / "state.json"
    jobs = 300
    manager = JobManager(stateFile=str(path), maxWorkers=2)
    manager.entry([{"id": f"j{i}", "commandLine": "true"} for i in range(jobs)])
    started = time.monotonic()
    manager.run(interval=0.05)
    took = time.monotonic() - started
    events = fs_spy(read_state(path)["supervisor"]["pid"])
    rewrites = sum(1 for e in events if e["op"] == "replace" and e["dst"] == str(path))
    # the first snapshot, the last, and one per COMPACT_MIN_INTERVAL in between
    assert 2 <= rewrites <= 3 + took / COMPACT_MIN_INTERVAL, (rewrites, took)
    lines = Path(journal_path(str(path))).read_text().splitlines()
    assert len([line for line in lines if '"runningStatus": "Completed"' in line]) == jobs


def test_the_snapshot_alone_is_whole_and_about_a_second_behind_at_most(running_batch):
    """A person with `cat` (or json.load) sees a current picture while the batch runs."""
    path, gate, manager = running_batch
    # "quick" completed: the journal says so at once; the snapshot after the next compaction
    wait_until(
        lambda: read_state(path)["jobs"]["quick"]["runningStatus"] == "Completed",
        timeout=COMPACT_MIN_INTERVAL + 5,
        message="the snapshot to show quick Completed",
    )
    snapshot = read_state(path)
    assert snapshot["supervisor"]["running"] is True
    assert snapshot["jobs"]["hold"]["runningStatus"] == "Running"
    text = path.read_text().splitlines()
    job_lines = text[text.index(' "jobs": {') + 1 : -2]
    assert [json.loads(line.rstrip(",").partition(": ")[0]) for line in job_lines] == ["quick", "hold"]
    assert [json.loads(line.rstrip(",").partition(": ")[2])["runningStatus"] for line in job_lines] == [
        "Completed",
        "Running",
    ]  # one line per job: grep finds a job and all it has
    gate.touch()
    manager.join()
    snapshot = read_state(path)
    assert snapshot["supervisor"]["running"] is False and snapshot["supervisor"]["result"] == "finished"
    assert [job["runningStatus"] for job in snapshot["jobs"].values()] == ["Completed", "Completed"]


def test_leftover_temporary_files_of_a_killed_writer_are_removed(tmp_path):
    path = tmp_path / "state.json"
    for leftover in ("state.json.tmp.99999", "state.json.journal.tmp.99999"):
        (tmp_path / leftover).write_text('{"half": ')
    manager = JobManager(stateFile=str(path), maxWorkers=1)
    manager.entry([{"id": "a", "commandLine": "true"}])
    manager.run(interval=0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.journal", "state.json.lock"]


# --- simplejob status ----------------------------------------------------------------------------------

STATUS_COLUMNS = ["ID", "STATUS", "EXIT", "ATTEMPTS", "START", "ELAPSED", "NOTE"]


def status(path) -> tuple[int, str, dict[str, dict]]:
    """Run `python -m simplejob status PATH` in its own process: exit code, output, rows by id
    (cells cut at the header's column positions)."""
    done = subprocess.run(
        [sys.executable, "-m", "simplejob", "status", str(path)], capture_output=True, text=True, timeout=30
    )
    lines = done.stdout.splitlines()
    rows = {}
    if lines:
        assert lines[0].split() == STATUS_COLUMNS
        starts = [lines[0].index(column) for column in STATUS_COLUMNS] + [None]
        for line in lines[1:]:
            if not line:
                break
            cells = [line[start:end].strip() for start, end in zip(starts, starts[1:], strict=False)]
            rows[cells[0]] = dict(zip([column.lower() for column in STATUS_COLUMNS], cells, strict=True))
    return done.returncode, done.stdout + done.stderr, rows


def test_status_prints_the_table_while_the_batch_runs_and_after(running_batch):
    path, gate, manager = running_batch
    owner = load(str(path)).supervisor["pid"]
    code, output, rows = status(path)
    assert code == 3, output  # issue 9: 3 while the batch runs (not finished yet)
    assert rows["quick"]["status"] == "Completed" and rows["quick"]["exit"] == "0" and rows["quick"]["elapsed"]
    assert rows["hold"]["status"] == "Running" and rows["hold"]["exit"] == "" and rows["hold"]["attempts"] == "1"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6}", rows["hold"]["start"])
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6}", rows["hold"]["elapsed"])  # how long it has run so far
    assert f"batch running: supervisor pid {owner} on {socket.gethostname()}" in output
    assert "2 jobs: 1 Running, 1 Completed" in output
    # it took no lock: the owner still holds it
    with pytest.raises(StateFileLocked):
        JobManager(stateFile=str(path)).entry([{"id": "x", "commandLine": "true"}])

    gate.touch()
    manager.join()
    code, output, rows = status(path)
    assert code == 0, output
    assert {job_id: (row["status"], row["exit"]) for job_id, row in rows.items()} == {
        "quick": ("Completed", "0"),
        "hold": ("Completed", "0"),
    }
    assert re.search(r"batch finished at \d{4}/", output)


def test_status_of_a_batch_whose_supervisor_was_killed_and_of_a_resumed_one(running_batch):
    path, gate, manager = running_batch
    owner = load(str(path)).supervisor["pid"]
    os.kill(owner, signal.SIGKILL)
    with pytest.raises(SupervisorDied):
        manager.join()
    code, output, rows = status(path)
    assert code == 1  # issue 9: a batch whose supervisor is gone did not finish its jobs
    assert f"its supervisor (pid {owner} on {socket.gethostname()}) is gone" in output
    assert rows["hold"]["status"] == "Running" and "runs again on resume" in output

    gate.touch()
    again = JobManager(stateFile=str(path), maxWorkers=2)
    again.entry([{"id": "quick", "commandLine": "true"}, {"id": "hold", "commandLine": gated(path.parent)[1]}])
    again.run(interval=0.05)
    code, output, rows = status(path)
    assert rows["quick"]["status"] == "Completed" and "resumed (done earlier)" in output


def test_status_of_a_missing_state_file(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path / "none.json")]) == cli.EXIT_USAGE
    assert "no state file" in capsys.readouterr().err


# --- the format: checked-in examples of each schema version, and the JSON Schema ----------------------


def schema_validator(definition: str | None = None):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    if definition:
        schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_is_of_this_version_and_ships_inside_the_package():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["properties"]["schemaVersion"]["const"] == SCHEMA_VERSION
    import configparser

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).parent.parent / "setup.cfg")
    assert "state-file.schema.json" in setup["options.package_data"]["simplejob"]


def test_the_v1_example_of_a_finished_batch_still_loads():
    state = load(str(DATA / "v1-finished" / "state.json"))
    assert state.schemaVersion == 1 and state.generation == 2
    assert state.supervisor["running"] is False and state.supervisor["result"] == "interrupted"
    records = state.records
    assert list(records) == ["done-earlier", "ok", "fails", "blocked", "retryout", "cancelled", "interrupted"]
    assert {r.id: (r.runningStatus.name, r.exitCode, r.resumed) for r in records.values()} == {
        "done-earlier": ("Completed", 0, True),
        "ok": ("Completed", 0, False),
        "fails": ("Completed", 3, False),
        "blocked": ("Ready", None, False),
        "retryout": ("RetryOut", None, False),
        "cancelled": ("Cancelled", None, False),
        "interrupted": ("Interrupted", None, False),
    }
    ok = records["ok"].definition
    assert (ok.commandLine, ok.shell, ok.cwd) == ("echo $GREETING", True, "/")
    # env was written in clear by simplejob 0.1: it is held (and will be written) as a digest of "hello"
    assert list(ok.env) == ["GREETING"] and env_matches(ok.env["GREETING"], "hello")
    retryout = records["retryout"]
    assert (retryout.attempts, retryout.retried, retryout.definition.timeout, retryout.definition.retry) == (
        2,
        1,
        0.1,
        1,
    )
    assert retryout.attemptStartTimestamp > retryout.startTimestamp
    assert records["blocked"].definition.waiting == ["fails"]
    assert records["ok"].report()["elapsedTime"] == "00:00:00.005315"
    # resuming it: only what Completed with exit code 0 is kept
    definitions = [record.definition for record in records.values()]
    assert resume.plan(definitions, state).kept == {"done-earlier", "ok"}


def test_the_v1_example_of_a_killed_batch_still_loads_with_its_journal():
    path = DATA / "v1-killed" / "state.json"
    snapshot = read_state(path)
    assert {job["runningStatus"] for job in snapshot["jobs"].values()} == {"Ready"}  # not compacted yet
    state = load(str(path))
    assert state.supervisor["running"] is True
    records = state.records
    assert {r.id: (r.runningStatus.name, r.exitCode) for r in records.values()} == {
        "first": ("Completed", 0),
        "second": ("Completed", 0),
        "long": ("Running", None),
    }
    assert records["long"].pid == 4941 and records["second"].definition.commandLine == ["echo", "second"]
    plan = resume.plan([record.definition for record in records.values()], state)
    assert plan.kept == {"first", "second"}
    assert plan.orphans == [("long", 4941, records["long"].startTimestamp, 0.5)]  # to be killed (not here: a plan)


@pytest.mark.parametrize("example", ["v1-finished", "v1-killed"])
def test_the_examples_match_the_json_schema(example):
    path = DATA / example / "state.json"
    schema_validator().validate(read_state(path))
    header, *lines = Path(journal_path(str(path))).read_text().splitlines()
    schema_validator("journalHeader").validate(json.loads(header))
    for line in lines:
        schema_validator("journalLine").validate(json.loads(line))


def test_a_fresh_state_file_matches_the_json_schema_and_the_schema_rejects_damage(tmp_path):
    validator = schema_validator()
    path = tmp_path / "state.json"
    manager = JobManager(stateFile=str(path), maxWorkers=2, keepGoing=True)
    manager.entry(
        [
            {"id": "a", "commandLine": ["true"], "env": {"X": "1"}, "cwd": str(tmp_path)},
            {"id": "b", "commandLine": "sh -c 'exit 2'", "timeout": 5, "retry": 2, "delay": 0.1, "backoff": 2},
            {"id": "c", "commandLine": "echo $X", "shell": True, "waiting": ["a", "b"]},
        ]
    )
    with pytest.raises(CalledJobError):  # b exits 2, and c waits on it
        manager.run(interval=0.05)
    state = read_state(path)
    validator.validate(state)
    header, *lines = Path(journal_path(str(path))).read_text().splitlines()
    schema_validator("journalHeader").validate(json.loads(header))
    for line in lines:
        schema_validator("journalLine").validate(json.loads(line))
    for damage in (
        lambda s: s["jobs"]["a"].update(runningStatus="Finished"),
        lambda s: s["jobs"]["a"].update(surprise=1),
        lambda s: s["jobs"]["a"].pop("commandLine"),
        lambda s: s.update(schemaVersion=2),
        lambda s: s["supervisor"].pop("pid"),
    ):
        broken = json.loads(json.dumps(state))
        damage(broken)
        assert not validator.is_valid(broken)


def test_every_key_and_status_of_the_state_file_is_documented():
    doc = (Path(__file__).parent.parent / "docs" / "state-file.md").read_text()
    schema = json.loads(SCHEMA_PATH.read_text())
    defs = schema["$defs"]
    keys = {
        *schema["properties"],
        *schema["properties"]["options"]["properties"],
        *defs["supervisor"]["properties"],
        *defs["definition"]["properties"],
        *defs["stateFields"]["properties"],
        *defs["runningStatus"]["enum"],
    }
    assert {status.name for status in JobRunningStatus} <= keys
    assert sorted(key for key in keys if f"`{key}`" not in doc) == []


# --- the record's written-out forms stay in step with the field lists -------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {
            "waiting": ["a"],
            "timeout": 1.5,
            "retry": 2,
            "delay": 0.5,
            "backoff": 2,
            "cwd": "/tmp",
            "env": {"X": "1"},
            "shell": True,
            "killGrace": 1.0,
            "priority": 3,
            "resources": {"db": 1},
        },
    ],
    ids=["defaults", "every-field-set"],
)
def test_to_json_has_every_field_in_order_and_to_spec_round_trips(fields):
    from simplejob.model import DEFINITION_FIELDS, JobDefinition, JobRecord

    definition = JobDefinition(id="j", commandLine="true", **{"waiting": [], **fields})
    assert JobDefinition.from_spec("j", definition.to_spec()) == definition
    assert set(definition.to_spec()) == {"commandLine", *fields}  # defaults are left out
    record = JobRecord(definition)
    assert list(record.to_json()) == [
        *DEFINITION_FIELDS,
        *(f for f in JobRecord.STATE_FIELDS if f != "attemptStartTimestamp"),
    ]
    record.attemptStartTimestamp = 1.0
    assert list(record.to_json()) == [*DEFINITION_FIELDS, *JobRecord.STATE_FIELDS]
    assert JobRecord.from_json("j", json.loads(json.dumps(record.to_json()))).to_json() == record.to_json()


def test_not_run_agrees_with_the_state_of_a_new_record_for_every_field():
    """JobRecord.not_run() is the state writer's cheap test for "the state of a job that has not
    run": it must say False as soon as any field of the state differs from a new record's."""
    import dataclasses

    from simplejob.model import AttemptRecord, JobDefinition, JobRecord, JobRunningStatus

    new = JobRecord(JobDefinition(id="j", commandLine="true", waiting=[]))
    assert new.not_run()
    changed = {
        "runningStatus": JobRunningStatus.Running,
        "history": [
            AttemptRecord(
                attempt=1,
                startTimestamp=1.0,
                finishTimestamp=2.0,
                slot=0,
                pid=5,
                exitCode=0,
                result="exited",
                reason=None,
            )
        ],
        "resumed": True,
        "attempts": 1,
    }
    fields = [f.name for f in dataclasses.fields(JobRecord) if f.name != "definition"]
    for name in fields:
        record = dataclasses.replace(new, **{name: changed.get(name, 7)})
        assert record.state_json() != new.state_json(), name  # (the change is one of the state)
        assert not record.not_run(), name


def test_jsonline_writes_and_reads_what_json_does():
    """jsonline (the journal's and the pipes' codec) is json without its per-call cost: the same
    text out, the same values back, the same errors."""
    from simplejob import jsonline

    values = [
        {"id": "j1", "t": 1796431863.4097464, "n": None, "ok": True, "list": [1, -0.0, 1e300, "é ☃ \u2028"]},
        "plain",
        [],
        {},
        12,
    ]
    journal = jsonline.encoder(ensure_ascii=False, separators=(", ", ": "))
    for value in values:
        assert jsonline.encode(value) == json.dumps(value)
        assert journal(value) == json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        assert jsonline.decode(jsonline.encode(value).encode()) == value
        assert jsonline.decode(" " + journal(value) + " \n") == value
    for bad in [b'{"a": 1} x', b'{"a": ', b"", b"nul", b"\xff"]:
        with pytest.raises(ValueError):
            jsonline.decode(bad)
    with pytest.raises(TypeError):
        jsonline.encode({"a": object()})
