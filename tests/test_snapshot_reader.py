"""snapshotreader.read, the plain case of reading a snapshot, against json.loads and the checks
it stands in for: the same fields and records whenever it reads a file, and None (json.loads
reads it) for anything it would judge differently."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest

from simplejob import snapshotreader, statecheck, statefile


@functools.cache
def snapshot() -> str:
    """The snapshot of a real batch (made once): attempts in each job's history, a failure, a retry, an env."""
    import tempfile

    from simplejob import CalledJobError, JobManager

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.json"
        manager = JobManager(stateFile=str(path), maxWorkers=2, keepGoing=True)
        manager.entry(
            [
                {"id": "a", "commandLine": "true", "env": {"K": "v"}},
                {"id": "b", "commandLine": "sh -c 'exit 3'", "waiting": ["a"], "retry": 1},
                {"id": "c", "commandLine": ["echo", "c d"], "waiting": ["a"]},
                {"id": "é", "commandLine": "true"},
            ]
        )
        with pytest.raises(CalledJobError):
            manager.run(interval=0.05)
        return path.read_text()


def by_json(text: str):
    """What statefile read before snapshotreader: json.loads, then check_entry for each job."""
    data = json.loads(text)
    records = {job_id: statecheck.check_entry(job_id, entry) for job_id, entry in data["jobs"].items()}
    return {**data, "jobs": {}}, records


def same(read, expected) -> bool:
    (top, records), (expected_top, expected_records) = read, expected
    return (
        top == expected_top
        and list(top) == list(expected_top)
        and list(records) == list(expected_records)
        and [r.to_json() for r in records.values()] == [r.to_json() for r in expected_records.values()]
    )


@pytest.mark.parametrize(
    "layout",
    [
        lambda data: snapshot(),  # as simplejob writes it: one job per line
        lambda data: json.dumps(data),
        lambda data: json.dumps(data, indent=4),
        lambda data: json.dumps(data, separators=(",", ":")),
        lambda data: " \n\t" + json.dumps(data, indent=2).replace(": ", " :\r\n ") + "\n\n",
        lambda data: json.dumps({"jobs": data["jobs"], **{k: v for k, v in data.items() if k != "jobs"}}),
        lambda data: json.dumps({**data, "jobs": {}}),
    ],
)
def test_a_snapshot_in_any_layout_is_read_as_json_reads_it(layout):
    text = layout(json.loads(snapshot()))
    read = snapshotreader.read(text, statecheck.check_entry)
    assert read is not None
    assert same(read, by_json(text))


def repeated_job(text: str) -> str:
    data = json.loads(text)
    first = next(iter(data["jobs"]))
    entry = json.dumps(data["jobs"][first])
    return text.replace('\n "jobs": {\n', f'\n "jobs": {{\n  {json.dumps(first)}: {entry},\n', 1)


NOT_PLAIN = {
    "a job given twice": repeated_job,
    '"jobs" given twice': lambda text: text.replace("{", '{"jobs": {}, ', 1),
    "text after the end": lambda text: text + "x",
    "a second value": lambda text: text + "{}",
    '"jobs" not an object': lambda text: text.replace('"jobs": {', '"jobs": [{', 1).rstrip().removesuffix("}") + "]}",
    "no jobs": lambda text: '{"schemaVersion": 1}',
    "an array": lambda text: "[" + text + "]",
    "empty": lambda text: "",
    "a byte order mark": lambda text: "\ufeff" + text,
    "a malformed entry": lambda text: text.replace('"runningStatus": "Completed"', '"runningStatus": "Done"', 1),
    "cut short": lambda text: text[: len(text) // 2],
    "a number as a key": lambda text: text.replace('"generation"', "7", 1),
}


@pytest.mark.parametrize("change", list(NOT_PLAIN))
def test_what_json_loads_would_judge_otherwise_is_left_to_it(change):
    assert snapshotreader.read(NOT_PLAIN[change](snapshot()), statecheck.check_entry) is None


def test_a_job_given_twice_keeps_its_last_entry_as_json_does(tmp_path):
    """The first entry is malformed, the last is not: json.loads keeps the last, and so does a load."""
    data = json.loads(snapshot())
    first = next(iter(data["jobs"]))
    bad = json.dumps({**data["jobs"][first], "runningStatus": "Done"})
    text = snapshot().replace('\n "jobs": {\n', f'\n "jobs": {{\n  {json.dumps(first)}: {bad},\n', 1)
    path = tmp_path / "state.json"
    path.write_text(text)
    loaded = statefile.load(str(path))
    assert loaded is not None
    assert [r.to_json() for r in loaded.records.values()] == [r.to_json() for r in by_json(snapshot())[1].values()]


def test_damaged_snapshots_are_read_the_same_or_left_to_json_loads():
    """Random edits (a character dropped, doubled or replaced by one that matters to JSON):
    whenever read() returns, json.loads and the checks give the same; when they refuse, read()
    returns None."""
    rng = random.Random(7)
    for _ in range(400):
        text = snapshot()
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            edit = rng.choice(["drop", "double", "replace"])
            if edit == "drop":
                text = text[:at] + text[at + 1 :]
            elif edit == "double":
                text = text[:at] + text[at] + text[at:]
            else:
                text = text[:at] + rng.choice('{}[]:,"\\ \n0-e.tn') + text[at + 1 :]
        read = snapshotreader.read(text, statecheck.check_entry)
        try:
            expected = by_json(text)
        except (ValueError, statecheck.Invalid, AttributeError, TypeError, KeyError):
            assert read is None, repr(text)
            continue
        assert read is None or same(read, expected), repr(text)


def test_the_managers_picture_checks_each_jobs_history_but_does_not_keep_it(tmp_path):
    """history=False (the JobManager's reads): half the memory of 100,000 records; what is wrong
    in a history is still refused."""
    path = tmp_path / "state.json"
    path.write_text(snapshot())
    full, light = statefile.load(str(path)), statefile.load(str(path), history=False)
    assert full is not None and light is not None
    assert any(r.history for r in full.records.values())
    assert all(r.history == [] for r in light.records.values())
    for record in full.records.values():
        record.history = []
    assert [r.to_json() for r in light.records.values()] == [r.to_json() for r in full.records.values()]

    data = json.loads(snapshot())
    job_id = next(j for j, e in data["jobs"].items() if e["history"])
    data["jobs"][job_id]["history"][0]["result"] = "vanished"
    path.write_text(json.dumps(data))
    with pytest.raises(statefile.StateFileError, match="history"):
        statefile.load(str(path), history=False)
