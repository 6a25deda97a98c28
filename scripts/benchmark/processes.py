"""Running one command for a measurement: wall-clock and CPU time, noise, a timeout, its output."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from typing import Any

from .machine import busy_cpu, children_cpu, own_cpu
from .rss import RssSampler


@dataclasses.dataclass
class Ran:
    seconds: float  # wall clock
    code: int | None  # None: it was killed after the timeout
    out: str
    err: str
    cpu: float  # user + system seconds of the process and every descendant it waited for
    noise: float | None  # share of the machine's CPUs that other processes used meanwhile (0..1)
    sampler: RssSampler | None = None


def run_process(argv: list[str], timeout: float, cwd: str | None = None, sample: bool = False) -> Ran:
    """Run argv in its own session; kill the session after timeout seconds. With sample, an
    RssSampler watches the process tree meanwhile. Its seconds run from just before the spawn to
    its exit and the end of its output (so also of every descendant that kept its stdout or
    stderr): the whole process, as a user sees it."""
    busy_before, own_before, cpu_before = busy_cpu(), own_cpu(), children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    sampler = RssSampler(proc.pid) if sample else None
    if sampler:
        sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        code = None
    seconds = time.perf_counter() - started
    if sampler:
        sampler.stop()
    busy_after, noise = busy_cpu(), None
    if busy_before is not None and busy_after is not None:
        others = (busy_after - busy_before) - (own_cpu() - own_before)
        noise = min(1.0, max(0.0, others / (seconds * (os.cpu_count() or 1))))
    return Ran(seconds, code, out, err, children_cpu() - cpu_before, noise, sampler)


def last_json(stdout: str) -> dict[str, Any] | None:
    """The last line of stdout that is a JSON object: a child's figures (measure.py)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
