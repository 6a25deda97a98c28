"""Issue 11: nothing escapes a killed process group, no hostile or broken file crashes or hangs a
batch, secrets stay out of the state file. Each test reproduces a break found by an adversarial
test of the earlier code."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import wait_until
from test_process_control import (
    OWNER_GRACE,
    Guard,
    alive,
    assert_batch_interrupted,
    assert_gone_by,
    load_state,
    start_owner,
)


@pytest.fixture
def guard(tmp_path):
    guard = Guard(tmp_path)
    yield guard
    guard.cleanup()


# --- 1. a killed process group leaves no job running ----------------------------------------------


@pytest.mark.parametrize(
    "kind, sig",
    [
        ("library", signal.SIGKILL),  # timeout -s KILL, kill -9 -PGID
        ("library", signal.SIGQUIT),  # Ctrl-\ from the terminal
        ("library", signal.SIGUSR1),  # any signal whose default action is to terminate
        ("cli", signal.SIGKILL),
    ],
    ids=["library-SIGKILL", "library-SIGQUIT", "library-SIGUSR1", "cli-SIGKILL"],
)
def test_whatever_kills_the_owners_process_group_the_batch_dies_with_the_owner(guard, tmp_path, kind, sig):
    owner, pids = start_owner(guard, tmp_path, kind)
    sent = time.monotonic()
    os.killpg(owner.pid, sig)
    owner.wait(timeout=10)
    # The supervisor (in a session of its own) saw its owner die: it kills every job tree,
    # records the jobs Interrupted and exits; its workers go with it.
    assert_gone_by(pids, sent + OWNER_GRACE + 3.0, "the batch to die with its owner")
    assert alive(pids) == {}
    wait_until(lambda: load_state(tmp_path).supervisor.get("running") is False, timeout=2, message="final state")
    assert_batch_interrupted(tmp_path, "the process that owns the batch")
