"""Keeps scripts/bench.py working: a tiny run (a few hundred jobs, 1 round) must exit 0 and print
its tables. No timing is asserted: times belong in docs/benchmarks.md, not in pass/fail."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


def bench_module(name: str) -> types.ModuleType:
    """A module of scripts/benchmark/, the package bench.py is made of."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        return importlib.import_module(f"benchmark.{name}")
    finally:
        sys.path.remove(str(BENCH.parent))


@pytest.mark.skipif(shutil.which("make") is None, reason="the benchmark's baseline is make")
@pytest.mark.timeout(300)
def test_quick_benchmark_runs_and_prints_its_tables(tmp_path):
    raw = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "fan:300",
            "layers:300",
            "chain:200",
            "--rounds",
            "1",
            "--entry-size",
            "1000",
            "--poll-size",
            "300",
            "--poll-seconds",
            "0.2",
            "--tmpdir",
            str(tmp_path),
            "--json",
            str(raw),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for column in (
        "| graph | jobs | make -j2 (s) | simplejob (s) | × make | in-process (s) | simplejob jobs/s | make jobs/s |",
        "peak RSS MB: caller / supervisor / workers",
        "simplejob (s) is the whole process, as a user sees it",
        "µs per job",
        "| start + exit (s) | import simplejob (s) | job contexts (s) | entry() (s) | run() (s) |",
        "report() (s)",
        "state file MB: snapshot + journal",
        "dependency → start delay ms: median / p99 / max",
    ):
        assert column in out
    for row in ("| fan | 300 |", "| layers | 300 |", "| chain | 200 |"):
        assert row in out
    assert "entry() of 1,000 jobs (fan" in out
    assert "completed() polled every 10 ms" in out
    assert "### Errors" not in out

    data = json.loads(raw.read_text())
    assert data["errors"] == []
    for graph in ("fan:300", "layers:300", "chain:200"):
        (own,) = data["results"][graph]["simplejob"]
        assert own["seconds"] is not None and own["data"]["problems"] == []
        assert set(own["data"]["rss"]) >= {"caller", "supervisor", "worker"}
        # The headline is the whole process: spawn to exit holds Python's start, the import of
        # simplejob and everything from JobManager() to the return of run() (timed inside it).
        figures = own["data"]
        inside = figures["importSeconds"] + figures["contextsSeconds"] + figures["inProcessSeconds"]
        assert figures["inProcessSeconds"] > 0 and figures["importSeconds"] > 0
        assert own["seconds"] > figures["codeSeconds"] > inside - 1e-9  # the sum rounds differently
        assert figures["reportSeconds"] is not None and figures["snapshotBytes"] > 0
    assert len(data["results"]["chain:200"]["simplejob"][0]["data"]["delays"]) == 199
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("simplejob-bench-")], "temporary files left"


def test_graphs_have_the_documented_shape():
    graphs = bench_module("graphs")
    assert graphs.dependencies("fan", 3) == [[], [], []]
    assert graphs.dependencies("chain", 3) == [[], [0], [1]]
    layers = graphs.dependencies("layers", 120)
    assert layers[:50] == [[]] * 50
    assert layers[50] == [0, 1] and layers[99] == [49, 0] and layers[100] == [50, 51]
    contexts = graphs.job_contexts("chain", 2, waits_key="waits")
    assert contexts == [{"id": "j0", "commandLine": "true"}, {"id": "j1", "commandLine": "true", "waits": ["j0"]}]


def test_the_state_file_check_finds_what_went_wrong():
    graphs, checks = bench_module("graphs"), bench_module("checks")

    def job(start, elapsed, status="Completed", code=0):
        return {"runningStatus": status, "exitCode": code, "startTimestamp": start, "elapsedSeconds": elapsed}

    chain = graphs.dependencies("chain", 3)
    assert checks.check_run({"j0": job(0, 1), "j1": job(1, 1), "j2": job(2.5, 1)}, chain, 2) == []
    assert checks.chain_delays({"j0": job(0, 1), "j1": job(1, 1), "j2": job(2.5, 1)}, 3) == [0, 0.5]
    early = checks.check_run({"j0": job(0, 1), "j1": job(0.5, 1), "j2": job(2, 1, "Completed", 1)}, chain, 2)
    assert any("j1 started" in p for p in early) and any("j2 ended Completed with exit code 1" in p for p in early)
    crowded = checks.check_run(
        {"j0": job(0, 1), "j1": job(0.1, 1), "j2": job(0.2, 1)}, graphs.dependencies("fan", 3), 2
    )
    assert crowded == ["3 jobs ran at once with maxWorkers=2"]
