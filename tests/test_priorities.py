"""Priorities and resource limits on the local pool, end to end (the Scheduler's own rules are
in test_scheduler.py): the order jobs start in, what runs at the same time, what entry() refuses."""

from __future__ import annotations

import pytest

from conftest import py
from simplejob import JobManager

# Each job appends "start id" and "end id" lines to one file: the order and the overlaps.
RECORD = (
    "import sys, time; f = open(sys.argv[1], 'a'); f.write('start ' + sys.argv[2] + '\\n'); f.flush(); "
    "time.sleep(float(sys.argv[3])); f.write('end ' + sys.argv[2] + '\\n')"
)


def job(tmp_path, job_id, seconds=0.0, **keys):
    return {"id": job_id, "commandLine": [*py(RECORD), str(tmp_path / "trace"), job_id, str(seconds)], **keys}


def trace(tmp_path) -> list[str]:
    return (tmp_path / "trace").read_text().splitlines()


def test_among_ready_jobs_higher_priority_starts_first(tmp_path):
    manager = JobManager(stateFile=str(tmp_path / "state.json"), maxWorkers=1)
    manager.entry([
        job(tmp_path, "first"),
        job(tmp_path, "low", priority=-1),
        job(tmp_path, "plain"),
        job(tmp_path, "high", priority=10),
        job(tmp_path, "mid", priority=5),
    ])  # fmt: skip
    manager.run(interval=0.05)
    starts = [line.split()[1] for line in trace(tmp_path) if line.startswith("start")]
    assert starts == ["high", "mid", "first", "plain", "low"]  # equal priorities: in entry order


def test_resources_cap_what_runs_at_once_and_a_waiting_job_does_not_block_those_behind_it(tmp_path):
    manager = JobManager(stateFile=str(tmp_path / "state.json"), maxWorkers=3, resources={"db": 1})
    manager.entry([
        job(tmp_path, "db1", 0.4, resources={"db": 1}),
        job(tmp_path, "db2", 0.4, resources={"db": 1}),
        job(tmp_path, "free", 0.1),
    ])  # fmt: skip
    manager.run(interval=0.05)
    lines = trace(tmp_path)
    first, second = sorted(("db1", "db2"), key=lambda i: lines.index(f"start {i}"))
    assert lines.index(f"end {first}") < lines.index(f"start {second}")  # never both at once
    assert lines.index("start free") < lines.index(f"end {first}")  # not held behind db2


def test_entry_refuses_a_job_that_needs_more_than_the_pool_has_naming_it(tmp_path):
    manager = JobManager(stateFile=str(tmp_path / "state.json"), resources={"gpu": 1})
    with pytest.raises(ValueError, match=r"'big'.*gpu=2.*only 1") as error:
        manager.entry(
            [{"id": "big", "commandLine": "true", "resources": {"gpu": 2}}, {"id": "ok", "commandLine": "true"}]
        )
    assert "'ok'" not in str(error.value)
    with pytest.raises(ValueError, match=r"'tape'.*tape=1.*does not name it"):
        manager.entry([{"id": "tape", "commandLine": "true", "resources": {"tape": 1}}])


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"priority": 1.5}, "priority must be an integer"),
        ({"priority": True}, "priority must be an integer"),
        ({"resources": {"gpu": 0}}, "resources must map names to amounts > 0"),
        ({"resources": ["gpu"]}, "resources must map names to amounts > 0"),
        ({"resources": {"": 1}}, "resources must map names to amounts > 0"),
    ],
)
def test_bad_priorities_and_resources_are_refused(keys, words):
    with pytest.raises(ValueError, match=words):
        JobManager().entry([{"id": "a", "commandLine": "true", **keys}])


def test_bad_capacities_are_refused():
    with pytest.raises(ValueError, match="resources must map names to amounts >= 0"):
        JobManager(resources={"gpu": -1})
