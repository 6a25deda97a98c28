"""The live view of `simplejob run` on a terminal, read through a pseudo-terminal: a bar and a
running job's id while the job runs, failures as they happen, and the final summary."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from conftest import wait_until
from test_cli_run import write_jobs

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


class Terminal:
    """A process whose stdout and stderr are a pseudo-terminal; what it drew, without escapes."""

    def __init__(self, args, cwd):
        master, slave = pty.openpty()
        self.master = master
        env = {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=env)
        os.close(slave)
        self.raw = b""

    def read(self) -> str:
        while select.select([self.master], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            self.raw += chunk
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def close(self) -> int:
        deadline = time.monotonic() + 30
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read()
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self.read()
        return code


def test_the_live_view_shows_a_bar_the_running_job_and_the_summary(tmp_path):
    gate, release = tmp_path / "started", tmp_path / "release"
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [
            {"id": "quick-one", "commandLine": "true"},
            {"id": "broken", "commandLine": "echo why-it-broke; exit 4", "shell": True},
            {
                "id": "long-runner",
                "commandLine": f"touch {gate}; while [ ! -e {release} ]; do sleep 0.05; done",
                "shell": True,
            },
        ],
    )
    terminal = Terminal([sys.executable, "-m", "simplejob", "run", jobs, "-k"], cwd=tmp_path)
    try:
        wait_until(gate.exists, timeout=20, message="the long job to start")
        screen = wait_until(
            lambda: (lambda s: s if "2/3" in s and "long-runner" in s else "")(terminal.read()),
            timeout=10,
            message="the bar at 2/3 and the running job on the terminal",
        )
        assert "━" in screen and "running" in screen and "ETA" in screen
        assert "✗ broken: failed (exit code 4)" in screen  # as it happened, above the view
        release.touch()
    finally:
        code = terminal.close()
        os.close(terminal.master)
    screen = ANSI.sub("", terminal.raw.decode("utf-8", "replace"))
    assert code == 1
    assert "3/3" in screen and "3 jobs in " in screen and "2 ok, 1 failed" in screen
    assert "--- broken: failed (exit code 4)" in screen and "| why-it-broke" in screen
