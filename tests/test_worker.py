"""A worker process alone, fed its protocol (simplejob/protocol.py) by hand: what it starts, what it
gives back. An attempt waiting behind another may wait on it (Scheduler.follow), so a worker
starts it only after that one succeeded, and gives back whatever waited behind an attempt that
failed or was cancelled."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from typing import Any

import pytest

from simplejob.protocol import Event
from simplejob.workers.pool import start_worker

DEADLINE = 10.0  # seconds to wait for an event


def attempt(job_id: str, command: list[str], after: str | None = None) -> dict[str, Any]:
    return {
        "op": "run",
        "after": after,
        "id": job_id,
        "attempt": 1,
        "attempts": 1,
        "argv": command,
        "command_text": " ".join(command),
        "shell": False,
        "cwd": None,
        "env": None,
        "timeout": None,
        "killGrace": 1.0,
        "log": None,
        "priority": 0,
        "resources": None,
    }


class Worker:
    """A worker process, and its events read so far but not yet asked for."""

    def __init__(self) -> None:
        self.proc = start_worker()
        self.unread: list[Event] = []
        self.buffer = b""

    def send(self, *messages: dict[str, Any]) -> None:
        """One write (under PIPE_BUF bytes, so the worker reads it whole, in one go)."""
        data = "".join(json.dumps(m) + "\n" for m in messages).encode()
        assert len(data) < 4096
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    def events(self, count: int) -> list[Event]:
        """The next count events."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + DEADLINE
        while len(self.unread) < count:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no event within {DEADLINE} s; had {self.unread}"
            self.buffer += os.read(self.proc.stdout.fileno(), 65536)
            *lines, self.buffer = self.buffer.split(b"\n")
            self.unread += [Event.from_json(json.loads(line)) for line in lines]
        found, self.unread = self.unread[:count], self.unread[count:]
        return found

    def close(self) -> None:
        """End of its stdin: it kills what runs and exits (killed if it does not)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def worker():
    feed = Worker()
    yield feed
    feed.close()


def test_a_waiting_attempt_starts_only_after_the_one_before_it_succeeded(worker, tmp_path):
    worker.send(
        attempt("a", ["true"]),
        attempt("b", ["touch", str(tmp_path / "b")]),
        attempt("c", ["false"]),
        attempt("d", ["touch", str(tmp_path / "d")]),
        attempt("e", ["touch", str(tmp_path / "e")]),
    )
    got = worker.events(5)
    assert [(e.kind, e.id) for e in got] == [
        ("finished", "a"),
        ("finished", "b"),
        ("finished", "c"),
        ("returned", "d"),
        ("returned", "e"),
    ]
    assert [e.exit_code for e in got[:3]] == [0, 0, 1]
    assert (tmp_path / "b").exists()
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_a_cancelled_waiting_attempt_takes_back_what_waited_behind_it(worker, tmp_path):
    worker.send(
        attempt("a", ["sleep", "30"]),
        attempt("b", ["true"]),
        attempt("c", ["touch", str(tmp_path / "c")]),
        attempt("d", ["touch", str(tmp_path / "d")]),
        {"op": "cancel", "id": "c"},
    )
    got = worker.events(3)
    assert [(e.kind, e.id) for e in got] == [("finished", "c"), ("returned", "d"), ("started", "a")]
    assert got[0].cancelled
    assert got[2].returned == ["b"]  # a runs long: what still waited behind it goes back too
    worker.send({"op": "cancel", "id": "a"})
    assert [(e.kind, e.id) for e in worker.events(1)] == [("finished", "a")]
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_hold_gives_back_every_waiting_first_attempt_and_lets_the_running_one_and_retries_go_on(worker, tmp_path):
    """Once a job failed without keepGoing nothing new may start; a retry may (the fail-fast gate
    lets it through: given back, it would only be sent again)."""
    retry = {**attempt("r", ["touch", str(tmp_path / "r")]), "attempt": 2, "attempts": 2}
    worker.send(
        attempt("a", ["true"]),
        attempt("b", ["touch", str(tmp_path / "b")]),
        retry,
        attempt("c", ["touch", str(tmp_path / "c")]),
        {"op": "hold"},
    )
    got = worker.events(4)
    assert [(e.kind, e.id, e.exit_code) for e in got] == [
        ("returned", "b", None),
        ("returned", "c", None),
        ("finished", "a", 0),
        ("finished", "r", 0),
    ]
    assert (tmp_path / "r").exists()
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_an_attempt_sent_after_a_job_that_already_ended_here_starts_only_if_that_job_succeeded(worker, tmp_path):
    """The supervisor sends it behind the last job it gave this worker; that job may have ended
    before the message comes."""
    worker.send(attempt("a", ["true"]), attempt("b", ["false"]))
    assert [(e.kind, e.id, e.exit_code) for e in worker.events(2)] == [("finished", "a", 0), ("finished", "b", 1)]
    worker.send(attempt("c", ["touch", str(tmp_path / "c")], after="b"))  # b failed: c must not run
    assert [(e.kind, e.id) for e in worker.events(1)] == [("returned", "c")]
    worker.send(attempt("d", ["true"]), attempt("e", ["touch", str(tmp_path / "e")], after="d"))
    assert [(e.kind, e.id) for e in worker.events(2)] == [("finished", "d"), ("finished", "e")]
    worker.send(attempt("f", ["sleep", "30"]), {"op": "cancel", "id": "f"})
    assert [(e.kind, e.id) for e in worker.events(1)] == [("finished", "f")]
    worker.send(attempt("g", ["touch", str(tmp_path / "g")], after="f"))  # f was cancelled
    worker.send(attempt("h", ["touch", str(tmp_path / "h")], after="nothing-here"))
    assert [(e.kind, e.id) for e in worker.events(2)] == [("returned", "g"), ("returned", "h")]
    assert (tmp_path / "e").exists()
    assert not any((tmp_path / name).exists() for name in "cgh")
