"""Write the example state files of this schema version (checked in; tests/test_state_file.py loads them).

    python tests/data/make_state_examples.py

makes tests/data/v<schemaVersion>-finished/ and tests/data/v<schemaVersion>-killed/, each holding a
state.json and its state.json.journal, by running real batches:

finished  a batch resumed once and then stopped by SIGTERM: every status but Running appears
          (Completed with exit codes 0 and 3, Ready, RetryOut after a retry, Cancelled, Interrupted)
          and a job kept from the first run ("resumed": true). The journal is fully compacted.
killed    a batch whose supervisor was SIGKILLed less than a second after it started, before its
          first compaction: the snapshot still shows every job Ready, and the journal past
          journalOffset holds the transitions (two jobs Completed, one Running with its pid).

Run it again only for a new schema version (keep the old directories: they must keep loading).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time

from simplejob import BatchInterrupted, JobManager, SupervisorDied
from simplejob.statefile import SCHEMA_VERSION, journal_path, load

HERE = os.path.dirname(os.path.abspath(__file__))


def wait_until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.01)


def statuses(manager) -> dict[str, str]:
    return {job.id: job.runningStatus.name for job in manager.jobs}


def finished(directory: str) -> None:
    path = os.path.join(directory, "state.json")
    earlier = {"id": "done-earlier", "commandLine": ["echo", "kept from the first run"]}
    first = JobManager(stateFile=path, maxWorkers=1)
    first.entry([earlier])
    first.run(interval=0.05)
    jobs = [
        earlier,
        {"id": "ok", "commandLine": "echo $GREETING", "shell": True, "env": {"GREETING": "hello"}, "cwd": "/"},
        {"id": "fails", "commandLine": "sh -c 'exit 3'"},
        {"id": "blocked", "commandLine": "true", "waiting": ["fails"]},
        {
            "id": "retryout",
            "commandLine": "sleep 5",
            "timeout": 0.1,
            "retry": 1,
            "delay": 0.05,
            "backoff": 2,
            "killGrace": 0.5,
        },
        {"id": "cancelled", "commandLine": "sleep 30", "killGrace": 0.5},
        {"id": "interrupted", "commandLine": "sleep 30", "killGrace": 0.5, "waiting": ["done-earlier"]},
    ]
    second = JobManager(stateFile=path, maxWorkers=len(jobs), keepGoing=True)
    second.entry(jobs)
    second.runAllReadyJobs()
    wait_until(lambda: statuses(second)["cancelled"] == "Running")
    second.cancel("cancelled")
    wait_until(
        lambda: (
            statuses(second)
            == {
                "done-earlier": "Completed",
                "ok": "Completed",
                "fails": "Completed",
                "blocked": "Ready",
                "retryout": "RetryOut",
                "cancelled": "Cancelled",
                "interrupted": "Running",
            }
        )
    )
    os.kill(load(path).supervisor["pid"], signal.SIGTERM)
    try:
        second.join()
    except BatchInterrupted:
        pass


def killed(directory: str) -> None:
    path = os.path.join(directory, "state.json")
    jobs = [
        {"id": "first", "commandLine": "true"},
        {"id": "second", "commandLine": ["echo", "second"], "waiting": ["first"]},
        {"id": "long", "commandLine": "sleep 30", "killGrace": 0.5},
    ]
    manager = JobManager(stateFile=path, maxWorkers=2)
    manager.entry(jobs)
    started = time.monotonic()
    manager.runAllReadyJobs()

    def ready() -> bool:
        records = load(path).records
        return records["second"].runningStatus.name == "Completed" and records["long"].pid is not None

    wait_until(ready)
    if time.monotonic() - started > 0.8:
        raise SystemExit("too slow: the first compaction may have happened; run again")
    os.kill(load(path).supervisor["pid"], signal.SIGKILL)
    try:
        manager.join()
    except SupervisorDied:
        pass


def main() -> None:
    for name, make in (("finished", finished), ("killed", killed)):
        work = tempfile.mkdtemp(prefix="simplejob-example-")
        make(work)
        target = os.path.join(HERE, f"v{SCHEMA_VERSION}-{name}")
        os.makedirs(target, exist_ok=True)
        for source in ("state.json", journal_path("state.json")):
            shutil.copyfile(os.path.join(work, source), os.path.join(target, source))
        shutil.rmtree(work)
        print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
