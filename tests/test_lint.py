"""Types and lint are checked, not hoped for: mypy --strict on the package, ruff's rules and
format on the package, the tests and the scripts (settings and the rule set: pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_mypy_strict_passes_on_the_package():
    done = run("mypy", "--strict", "simplejob")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("command", [("check",), ("format", "--check")], ids=["check", "format"])
def test_ruff_passes(command):
    done = run("ruff", *command, "simplejob", "tests", "scripts")
    assert done.returncode == 0, done.stdout + done.stderr
