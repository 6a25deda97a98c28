"""How each system is run and timed, one run of one graph at a time, and what each run gives.

Every system is timed the same way, as a user sees it: the wall clock from spawning its process
to the end of that process (and of everything it started), and the CPU time of that process tree
(processes.run_process).

make        `make -r -s -j2` on a generated Makefile of .PHONY targets
simplejob   this checkout's simplejob, installed as a user installs it (install_simplejob): `python -c
            measure.TIMED_SIMPLEJOB` in the Python of that environment (import simplejob, build the
            job contexts, JobManager(), entry(), run(), exit), its process tree's peak RSS
            and CPU time per process sampled (rss.py); then, untimed, `bench.py --child check` on
            its state file
reference   simplejob 0.0.6 from PyPI: `python -c measure.TIMED_REFERENCE` in the Python of a
            throw-away environment
doit        `doit -n 2`, from the same throw-away environment
against     with --against REV: simplejob as of that revision of this repository (`git archive`),
            installed and timed as this checkout's is, its state file checked the same way

And once, after the rounds (rounds.run_extras): the floor, `python -c measure.FLOOR` (2 forked
Python processes, each posix_spawn + waitpid of its half of the jobs, `true`, one at a time).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from typing import Any

from . import BENCH_SCRIPT, REPO, SCRIPTS, WORKERS, progress
from .graphs import Spec, write_dodo, write_makefile
from .machine import sources_digest
from .measure import FLOOR, TIMED_REFERENCE, TIMED_SIMPLEJOB
from .processes import last_json, run_process, tail
from .rss import cpu_by_process

REFERENCE_PACKAGE = "simplejob==0.0.6"
SYSTEMS = ("make", "simplejob", "reference", "doit", "against")
TITLES = {
    "make": "make -j2",
    "simplejob": "simplejob",
    "reference": "simplejob 0.0.6",
    "doit": "doit -n 2",
    "against": "simplejob --against",  # named after its revision by Bench.install_against()
}


@dataclasses.dataclass
class Outcome:
    seconds: float | None = None  # wall clock (a system: its whole process tree); None: timed out or failed
    cell: str | None = None  # what the table shows instead of a time ("> 120 s", "RecursionError")
    cpu: float | None = None  # user + system seconds of every process it ran (that was waited for)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None  # a failure of the benchmark itself (exit status 1)
    noise: float | None = None  # share of the machine other processes used during the run (0..1)


class Bench:
    """The temporary workspace of one benchmark run, and a runner for each system."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.base = tempfile.mkdtemp(prefix="simplejob-bench-", dir=options.tmpdir)
        self.venv_python: str | None = None
        self.venv_bin: str | None = None
        self.installed_python: str | None = None  # install_simplejob()
        self.against_python: str | None = None  # install_against()
        self.files: dict[Spec, str] = {}  # spec -> directory with its Makefile, dodo.py

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def fresh_dir(self, label: str) -> str:
        return tempfile.mkdtemp(prefix=label + "-", dir=self.base)

    def keep(self, directory: str) -> str:
        """Copy a failed run's directory out of the workspace; the path of its state file."""
        kept = tempfile.mkdtemp(prefix="simplejob-bench-failed-", dir=self.options.tmpdir)
        shutil.copytree(directory, kept, dirs_exist_ok=True)
        return os.path.join(kept, "state.json")

    def runners(self) -> dict[str, Callable[[Spec], Outcome]]:
        return {
            "make": self.run_make,
            "simplejob": self.run_simplejob,
            "reference": self.run_reference,
            "doit": self.run_doit,
            "against": self.run_against,
        }

    def process(
        self, what: str, argv: list[str], timeout: float, cwd: str | None = None, sample: bool = False
    ) -> Outcome:
        """Run a process that prints its figures as a JSON line; seconds: the wall clock from
        spawning it to its end (and its tree's), cpu: its tree's CPU time."""
        ran = run_process(argv, timeout, cwd=cwd, sample=sample)
        if ran.code is None:
            return Outcome(cell=f"> {timeout:g} s", data={"timedOut": True}, noise=ran.noise)
        data = last_json(ran.out)
        if ran.code != 0 or data is None:
            return Outcome(cell="error", error=f"`{what}` process exited with {ran.code}:\n{tail(ran.err or ran.out)}")
        if ran.sampler:
            data["rss"] = ran.sampler.result()
        return Outcome(seconds=ran.seconds, cpu=ran.cpu, data=data, noise=ran.noise)

    def child(self, kind: str, args: dict[str, Any], timeout: float) -> Outcome:
        """Run `bench.py --child KIND JSON` (measure.py); seconds: what the child timed inside itself."""
        argv = [sys.executable, BENCH_SCRIPT, "--child", kind, json.dumps(args)]
        outcome = self.process(kind, argv, timeout)
        if outcome.error is None and not outcome.data.get("timedOut"):
            outcome.seconds = outcome.data.get("seconds")
        return outcome

    def spec_dir(self, spec: Spec) -> str:
        """The directory with the graph's Makefile (and dodo.py with --doit), written once."""
        if spec not in self.files:
            directory = self.fresh_dir(f"{spec.graph}-{spec.size}")
            write_makefile(os.path.join(directory, "Makefile"), spec.graph, spec.size)
            if self.options.doit:
                write_dodo(directory, spec.graph, spec.size)
            self.files[spec] = directory
        return self.files[spec]

    def run_make(self, spec: Spec) -> Outcome:
        directory = self.spec_dir(spec)
        limit = self.options.max_seconds
        ran = run_process(["make", "-r", "-s", f"-j{WORKERS}", "-f", "Makefile", "all"], limit, cwd=directory)
        if ran.code is None:
            return Outcome(
                cell=f"> {limit:g} s", noise=ran.noise, error=f"make did not finish {spec.name} within {limit:g} s"
            )
        if ran.code != 0:
            return Outcome(cell="error", error=f"make failed on {spec.name} ({ran.code}):\n{tail(ran.err)}")
        return Outcome(seconds=ran.seconds, cpu=ran.cpu, noise=ran.noise)

    def run_simplejob(self, spec: Spec, python: str | None = None) -> Outcome:
        """The timed whole process (measure.TIMED_SIMPLEJOB, RSS sampled), then the untimed check
        of its state file (measure.child_check); a failed run keeps its state file (outside the
        workspace). python: the environment simplejob is installed in (default: this checkout's)."""
        directory = self.fresh_dir("state")
        path = os.path.join(directory, "state.json")
        limit = self.options.max_seconds
        python = python or self.installed_python
        assert python is not None, "install_simplejob() first"
        argv = [python, "-c", TIMED_SIMPLEJOB, SCRIPTS, spec.graph, str(spec.size), path, str(WORKERS)]
        outcome = self.process("simplejob", argv, limit, cwd=directory, sample=True)
        if outcome.data.get("rss"):
            outcome.data["cpuByProcess"] = cpu_by_process(outcome.data["rss"], outcome.cpu, spec.size)
        if outcome.data.get("timedOut"):
            outcome.error = (
                f"simplejob did not finish {spec.name} within {limit:g} s (state file kept: {self.keep(directory)})"
            )
            return outcome
        if outcome.error:
            outcome.error += f"\n(state file kept: {self.keep(directory)})"
            return outcome
        check = self.child("check", {"graph": spec.graph, "size": spec.size, "path": path}, limit)
        if check.error or check.data.get("timedOut"):
            check.data["problems"] = [f"the check of the state file failed: {check.error or check.cell}"]
        outcome.data.update(check.data)
        if outcome.data.get("error") or outcome.data.get("problems"):
            found = [outcome.data["error"]] if outcome.data.get("error") else []
            outcome.error = (
                f"simplejob on {spec.name}: "
                + "; ".join(found + outcome.data.get("problems", []))
                + f" (state file kept: {self.keep(directory)})"
            )
            outcome.cell = "error"
            outcome.seconds = None
        else:
            shutil.rmtree(directory, ignore_errors=True)
        return outcome

    def run_against(self, spec: Spec) -> Outcome:
        assert self.against_python is not None, "install_against() first"
        return self.run_simplejob(spec, self.against_python)

    def run_floor(self, jobs: int) -> Outcome:
        """The floor (measure.FLOOR): `jobs` runs of `true`, started by 2 Python processes, each
        its half one at a time with posix_spawn + waitpid; timed as make is (whole process)."""
        true = shutil.which("true")
        if true is None:
            return Outcome(cell="no `true`", error="the floor needs the program `true` on PATH")
        limit = self.options.max_seconds
        python = self.installed_python or sys.executable  # the Python simplejob's processes run on
        outcome = self.process("floor", [python, "-c", FLOOR, true, str(jobs)], limit, cwd=self.base)
        if outcome.data.get("timedOut"):
            outcome.error = f"the floor did not finish {jobs} jobs within {limit:g} s"
        return outcome

    def run_reference(self, spec: Spec) -> Outcome:
        """0.0.6's whole process (measure.TIMED_REFERENCE), in a directory of its own."""
        assert self.venv_python is not None, "setup_venv() first"
        directory = self.fresh_dir("reference")
        argv = [self.venv_python, "-c", TIMED_REFERENCE, SCRIPTS, spec.graph, str(spec.size)]
        outcome = self.process("reference", argv, self.options.timeout, cwd=directory)
        shutil.rmtree(directory, ignore_errors=True)
        if outcome.data.get("error"):
            outcome.cell, outcome.seconds = outcome.data["error"], None
        if outcome.error:  # a crash of 0.0.6 is a figure of the table, not an error of ours
            outcome.cell, outcome.error = "crashed", None
        return outcome

    def run_doit(self, spec: Spec) -> Outcome:
        assert self.venv_bin is not None, "setup_venv() first"
        directory = self.spec_dir(spec)
        for leftover in os.listdir(directory):
            if leftover.startswith("doit.db"):
                os.remove(os.path.join(directory, leftover))
        doit = os.path.join(self.venv_bin, "doit")
        ran = run_process(
            [doit, "-n", str(WORKERS), "--db-file", "doit.db", "-f", "dodo.py"], self.options.timeout, cwd=directory
        )
        if ran.code is None:
            return Outcome(cell=f"> {self.options.timeout:g} s", noise=ran.noise)
        if ran.code != 0:
            return Outcome(cell=f"exit {ran.code}", data={"stderr": tail(ran.err, 5)})
        return Outcome(seconds=ran.seconds, cpu=ran.cpu, noise=ran.noise)

    def install_simplejob(self) -> None:
        """Install this checkout's simplejob (not editable) with its dependencies into a throw-away
        environment, as `pip install .` does for a user, and time it there: an editable install
        (the developers' .venv) adds an import hook that costs every Python process about 10 ms
        at start, the caller's and the supervisor's alike. Checks that the installed sources are
        this checkout's."""
        venv = os.path.join(self.base, "installed")
        progress(f"installing this checkout's simplejob into {venv}")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        python = os.path.join(venv, "bin", "python")
        pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--disable-pip-version-check", REPO]
        subprocess.run(pip, check=True, stdout=subprocess.DEVNULL)
        where = subprocess.run(
            [python, "-c", "import os, simplejob; print(os.path.dirname(simplejob.__file__))"],
            cwd=self.base,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if sources_digest(where) != sources_digest(os.path.join(REPO, "simplejob")):
            raise RuntimeError(f"the simplejob installed in {where} is not this checkout's")
        self.installed_python = python

    def install_against(self) -> str | None:
        """With --against REV: simplejob as of that revision, from `git archive`, installed as
        install_simplejob() installs this checkout's, into an environment of its own. Returns the
        report's line on it."""
        rev = self.options.against
        if not rev:
            return None
        named = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True
        )
        if named.returncode != 0:
            raise SystemExit(f"bench: --against {rev!r}: not a revision of this repository ({named.stderr.strip()})")
        commit = named.stdout.strip()
        source = os.path.join(self.base, f"source-{commit}")
        os.makedirs(source)
        progress(f"installing simplejob as of {rev} ({commit}) from git archive")
        archive = subprocess.run(["git", "-C", REPO, "archive", commit], capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(source, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        venv = os.path.join(self.base, f"against-{commit}")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        python = os.path.join(venv, "bin", "python")
        pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--disable-pip-version-check", source]
        subprocess.run(pip, check=True, stdout=subprocess.DEVNULL)
        TITLES["against"] = f"simplejob {commit}" if commit.startswith(rev) else f"simplejob {rev} ({commit})"
        self.against_python = python
        return (
            f"- also timed (--against {rev}): simplejob as of commit {commit}, installed the same way, "
            "in the same rounds (its state files checked the same way)"
        )

    def setup_venv(self) -> None:
        """With --reference / --doit: a virtual environment with simplejob 0.0.6 and doit, reused
        from --venv where it already has them."""
        packages = ([REFERENCE_PACKAGE] if self.options.reference else []) + (["doit"] if self.options.doit else [])
        if not packages:
            return
        venv = self.options.venv or os.path.join(self.base, "venv")
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            progress(f"creating a virtual environment in {venv} for {', '.join(packages)}")
            subprocess.run([sys.executable, "-m", "venv", venv], check=True, stdout=subprocess.DEVNULL)
        probe = "import simplejob.simplejob" if self.options.reference else "pass"
        have_doit = not self.options.doit or os.path.exists(os.path.join(venv, "bin", "doit"))
        if subprocess.run([python, "-c", probe], capture_output=True).returncode != 0 or not have_doit:
            subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
        self.venv_python, self.venv_bin = python, os.path.join(venv, "bin")
