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


@pytest.fixture
def worker():
    proc = start_worker()
    yield proc
    proc.kill()
    proc.wait(timeout=DEADLINE)


def send(proc: subprocess.Popen[bytes], *messages: dict[str, Any]) -> None:
    """One write (under PIPE_BUF bytes, so the worker reads it whole, in one go)."""
    data = "".join(json.dumps(m) + "\n" for m in messages).encode()
    assert len(data) < 4096
    assert proc.stdin is not None
    proc.stdin.write(data)


def events(proc: subprocess.Popen[bytes], count: int) -> list[Event]:
    """The next count events."""
    assert proc.stdout is not None
    found: list[Event] = []
    buffer = b""
    deadline = time.monotonic() + DEADLINE
    while len(found) < count:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no event within {DEADLINE} s; had {found}"
        buffer += os.read(proc.stdout.fileno(), 65536)
        *lines, buffer = buffer.split(b"\n")
        found += [Event.from_json(json.loads(line)) for line in lines]
    return found


def test_a_waiting_attempt_starts_only_after_the_one_before_it_succeeded(worker, tmp_path):
    send(
        worker,
        attempt("a", ["true"]),
        attempt("b", ["touch", str(tmp_path / "b")]),
        attempt("c", ["false"]),
        attempt("d", ["touch", str(tmp_path / "d")]),
        attempt("e", ["touch", str(tmp_path / "e")]),
    )
    got = events(worker, 5)
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
    send(
        worker,
        attempt("a", ["sleep", "30"]),
        attempt("b", ["true"]),
        attempt("c", ["touch", str(tmp_path / "c")]),
        attempt("d", ["touch", str(tmp_path / "d")]),
        {"op": "cancel", "id": "c"},
    )
    got = events(worker, 3)
    assert [(e.kind, e.id) for e in got] == [("finished", "c"), ("returned", "d"), ("started", "a")]
    assert got[0].cancelled
    assert got[2].returned == ["b"]  # a runs long: what still waited behind it goes back too
    send(worker, {"op": "cancel", "id": "a"})
    assert [(e.kind, e.id) for e in events(worker, 1)] == [("finished", "a")]
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_hold_gives_back_every_waiting_first_attempt_and_lets_the_running_one_and_retries_go_on(worker, tmp_path):
    """Once a job failed without keepGoing nothing new may start; a retry may (the fail-fast gate
    lets it through: given back, it would only be sent again)."""
    retry = {**attempt("r", ["touch", str(tmp_path / "r")]), "attempt": 2, "attempts": 2}
    send(
        worker,
        attempt("a", ["true"]),
        attempt("b", ["touch", str(tmp_path / "b")]),
        retry,
        attempt("c", ["touch", str(tmp_path / "c")]),
        {"op": "hold"},
    )
    got = events(worker, 4)
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
    send(worker, attempt("a", ["true"]), attempt("b", ["false"]))
    assert [(e.kind, e.id, e.exit_code) for e in events(worker, 2)] == [("finished", "a", 0), ("finished", "b", 1)]
    send(worker, attempt("c", ["touch", str(tmp_path / "c")], after="b"))  # b failed: c must not run
    assert [(e.kind, e.id) for e in events(worker, 1)] == [("returned", "c")]
    send(worker, attempt("d", ["true"]), attempt("e", ["touch", str(tmp_path / "e")], after="d"))
    assert [(e.kind, e.id) for e in events(worker, 2)] == [("finished", "d"), ("finished", "e")]
    send(worker, attempt("f", ["sleep", "30"]), {"op": "cancel", "id": "f"})
    assert [(e.kind, e.id) for e in events(worker, 1)] == [("finished", "f")]
    send(worker, attempt("g", ["touch", str(tmp_path / "g")], after="f"))  # f was cancelled
    send(worker, attempt("h", ["touch", str(tmp_path / "h")], after="nothing-here"))
    assert [(e.kind, e.id) for e in events(worker, 2)] == [("returned", "g"), ("returned", "h")]
    assert (tmp_path / "e").exists()
    assert not any((tmp_path / name).exists() for name in "cgh")
