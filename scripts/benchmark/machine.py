"""The machine: its description for the report's header, and how busy other processes keep it.

The machine is shared, so every run records the share of the CPUs that other processes used
meanwhile (its noise): the whole machine's busy time from /proc/stat, less our own CPU time.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import subprocess
import sys
import time

from . import REPO, progress


def busy_cpu() -> float | None:
    """CPU seconds the whole machine spent busy since boot (/proc/stat), or None where unknown."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and every descendant it has waited for."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + children_cpu()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def settle(seconds: float) -> None:
    """Wait (up to `seconds`; 0: not at all) until other processes use under 10% of the CPUs."""
    if not seconds:
        return
    deadline, said = time.monotonic() + seconds, False
    while True:
        before, own_before = busy_cpu(), own_cpu()
        time.sleep(0.5)
        after = busy_cpu()
        if before is None or after is None:
            return
        share = ((after - before) - (own_cpu() - own_before)) / (0.5 * (os.cpu_count() or 1))
        if share < 0.10 or time.monotonic() >= deadline:
            return
        if not said:
            progress(f"waiting for other processes to quiet down ({share:.0%} of the CPUs busy)")
            said = True


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> list[str]:
    """The report's lines on the machine, the Python, make and the simplejob sources under test."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        make = subprocess.run(["make", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        make = "make: not found"
    package = os.path.join(REPO, "simplejob")
    return [
        f"- CPUs (nproc): {os.cpu_count()}; CPU: {cpu}",
        f"- Python {platform.python_version()} ({sys.executable}); kernel {platform.release()}; {make}",
        f"- simplejob under test: {package}, commit {source_commit()}, sources sha256 {sources_digest(package)[:12]}; "
        "timed as installed by `pip install .` (not editable) in a throw-away environment, as a user installs it",
        f"- load average at start: {load_average()}",
    ]


def sources_digest(package: str) -> str:
    """sha256 over the names and contents of the package's .py files, in a fixed order."""
    digest = hashlib.sha256()
    for root, dirs, names in os.walk(package):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as f:
                    digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()


def source_commit() -> str:
    """The checkout's commit, and whether simplejob/ has uncommitted changes."""
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "--no-optional-locks", "-C", REPO, "status", "--porcelain", "--", "simplejob"],
        capture_output=True,
        text=True,
    )
    source = commit.stdout.strip() or "not a git checkout"
    if dirty.stdout.strip():
        source += " + uncommitted changes"
    return source
