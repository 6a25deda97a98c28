"""Property-based tests (hypothesis): whatever a job list or a state file holds, simplejob either
accepts it and runs correctly, or refuses it with the documented error; never another exception,
never a crashed supervisor.

- Random job lists (ids, waits, types, numbers, unicode): entry() gives a valid batch or raises
  ValueError/TypeError; a valid batch of harmless commands runs to its end.
More examples: SIMPLEJOB_PROPERTY_SCALE=N multiplies them (the figures in docs/state-file.md).
- Random damage to a real state file and journal (truncation, byte flips, deleted fields, values of
  another type): entry() raises StateFileError, or the resume is correct (the batch completes and a
  job recorded Completed in a file that loaded is not run again).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simplejob import CalledJobError, JobManager, StateFileError
from simplejob.statefile import load
from simplejob.validation import CONTEXT_KEYS

# More examples for a long run: SIMPLEJOB_PROPERTY_SCALE=20 (the defaults keep the suite fast).
SCALE = int(os.environ.get("SIMPLEJOB_PROPERTY_SCALE", "1"))
# The suite runs the same examples every time (a test must not fail by luck in CI); a long run
# (SCALE > 1) draws new ones to explore. A bug one of those finds gets its own test.
FIXED = SCALE == 1

# --- random job lists ------------------------------------------------------------------------------

IDS = st.sampled_from(["a", "b", "c", "d", "", ".", "x/y", "é", "\udce9", "a" * 300, "\x00", "tab\t"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
KEYS = [*CONTEXT_KEYS, "bogus"]


@st.composite
def job_context(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 9)) == 0:
        return draw(VALUES)  # not even a dict
    context: dict[str, object] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6, unique=True)):
        if key == "id":
            context[key] = draw(IDS | VALUES)
        elif key in ("waiting", "waits"):
            context[key] = draw(st.lists(IDS, max_size=3) | VALUES)
        elif key == "commandLine":
            context[key] = draw(st.sampled_from(["true", ["true"], "", [], "sh -c 'exit 0'", "'unbalanced"]) | VALUES)
        else:
            context[key] = draw(VALUES)
    if draw(st.booleans()):
        context.setdefault("commandLine", "true")
    return context


@settings(max_examples=300 * SCALE, deadline=None, derandomize=FIXED, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(job_context(), max_size=5) | VALUES)
def test_entry_accepts_a_valid_batch_or_raises_value_or_type_error(contexts):
    manager = JobManager()
    try:
        manager.entry(contexts)
    except (ValueError, TypeError):
        return
    assert len(manager.jobs) == len(contexts)


SAFE_COMMANDS = st.sampled_from(["true", ["true"], "sh -c 'exit 3'", ["sh", "-c", "exit 0"], "no-such-program-xyz"])


@st.composite
def runnable_batch(draw: st.DrawFn) -> list[dict[str, object]]:
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "é", "j 1", "-x"]), min_size=1, max_size=4, unique=True))
    batch = []
    for index, job_id in enumerate(ids):
        context: dict[str, object] = {"id": job_id, "commandLine": draw(SAFE_COMMANDS)}
        context["waiting"] = draw(st.lists(st.sampled_from(ids[:index]), unique=True)) if index else []
        if draw(st.booleans()):
            context["timeout"] = draw(st.sampled_from([0.5, 5, 1e9]))
            context["retry"] = draw(st.integers(0, 2))
            context["delay"] = draw(st.sampled_from([0, 0.01]))
            context["backoff"] = draw(st.sampled_from([1, 2, 1e200]))
        if draw(st.booleans()):
            context["env"] = {
                draw(st.sampled_from(["X", "Y_1"])): draw(st.text(max_size=5).filter(lambda t: "\x00" not in t))
            }
        batch.append(context)
    return batch


@settings(
    max_examples=12,
    deadline=None,
    derandomize=FIXED,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=runnable_batch())
def test_a_valid_random_batch_runs_to_its_end_without_crashing_the_supervisor(tmp_path, batch):
    try:
        manager = JobManager(stateFile=tmp_path / "state.json", keepGoing=True)
        manager.entry(batch)
    except ValueError:
        return  # e.g. text that is not valid Unicode: refused, fine
    try:
        manager.run(interval=0.05)
    except CalledJobError:
        pass  # a failing command: the batch still ran to its end
    assert load(str(tmp_path / "state.json")).supervisor["result"] == "finished"
    for name in list(tmp_path.iterdir()):
        if name.is_dir():
            shutil.rmtree(name)
        else:
            name.unlink()


# --- random damage to a real state file --------------------------------------------------------------

JOBS = [
    {"id": "a", "commandLine": "true"},
    {"id": "b", "commandLine": ["sh", "-c", "exit 0"], "waiting": ["a"], "env": {"TOKEN": "s3cret"}},
    {"id": "c", "commandLine": "sh -c 'exit 4'", "timeout": 5},
]


@pytest.fixture(scope="module")
def real_files(tmp_path_factory) -> tuple[bytes, bytes]:
    """A real snapshot and journal (a finished batch with a failure), the journal holding transitions."""
    directory = tmp_path_factory.mktemp("real")
    manager = JobManager(stateFile=directory / "state.json", keepGoing=True)
    manager.entry(JOBS)
    with pytest.raises(CalledJobError):
        manager.run(interval=0.05)
    snapshot = json.loads((directory / "state.json").read_text())
    journal = (directory / "state.json.journal").read_bytes()
    header = journal.split(b"\n", 1)[0] + b"\n"
    # replay form: the snapshot as first written (every job Ready), the journal holds the rest
    first = {**snapshot, "journalOffset": len(header), "jobs": {}}
    for job_id, entry in snapshot["jobs"].items():
        fresh = {k: v for k, v in entry.items() if k not in ("runningStatus", "exitCode", "attempts", "pid")}
        fresh.update(runningStatus="Ready", exitCode=None, attempts=0, pid=None, startDateTime=None,
                     finishDateTime=None, elapsedSeconds=None, startTimestamp=None, reason=None)  # fmt: skip
        fresh.pop("attemptStartTimestamp", None)
        first["jobs"][job_id] = fresh
    return json.dumps(first, indent=1).encode(), journal


OTHER_TYPES = st.sampled_from([None, True, False, 0, -5, 1.5, "abc", "", [], {}, [1], {"x": 1}, 10**30])


@st.composite
def damage(draw: st.DrawFn, files: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    snapshot, journal = files
    kind = draw(
        st.sampled_from(["truncate", "flip", "delete", "swap", "journal-truncate", "journal-flip", "journal-swap"])
    )
    if kind == "truncate":
        return snapshot[: draw(st.integers(0, len(snapshot)))], journal
    if kind == "journal-truncate":
        return snapshot, journal[: draw(st.integers(0, len(journal)))]
    if kind in ("flip", "journal-flip"):
        data = bytearray(snapshot if kind == "flip" else journal)
        for _ in range(draw(st.integers(1, 3))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return (bytes(data), journal) if kind == "flip" else (snapshot, bytes(data))
    if kind == "journal-swap":
        lines = journal.split(b"\n")
        index = draw(st.integers(1, max(1, len(lines) - 2)))
        line = json.loads(lines[index]) if lines[index] else {}
        if line:
            key = draw(st.sampled_from(sorted(line)))
            line[key] = draw(OTHER_TYPES)
            lines[index] = json.dumps(line).encode()
        return snapshot, b"\n".join(lines)
    data = json.loads(snapshot)
    objects = [data, data["supervisor"], data["options"], *data["jobs"].values()]
    target = draw(st.sampled_from(objects))
    assume(target)
    key = draw(st.sampled_from(sorted(target)))
    if kind == "delete":
        del target[key]
    else:
        target[key] = draw(OTHER_TYPES)
    return json.dumps(data).encode(), journal


@settings(
    max_examples=40,
    deadline=None,
    derandomize=FIXED,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_damaged_state_file_is_refused_or_resumed_correctly(tmp_path, real_files, data):
    snapshot, journal = data.draw(damage(real_files))
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    path = directory / "state.json"
    path.write_bytes(snapshot)
    Path(str(path) + ".journal").write_bytes(journal)
    try:
        loaded = load(str(path))
    except StateFileError:
        loaded = None
    manager = JobManager(stateFile=path, keepGoing=True)
    try:
        manager.entry(JOBS)
    except StateFileError:
        assert path.read_bytes() == snapshot  # refused: left untouched
        return
    assert loaded is not None
    done_before = {job_id for job_id, r in loaded.records.items() if r.succeeded()}
    with pytest.raises(CalledJobError):  # c exits 4
        manager.run(interval=0.05)
    jobs = {job.id: job for job in manager.jobs}
    assert {job_id for job_id, job in jobs.items() if job.resumed} <= done_before
    assert jobs["a"].succeeded() and jobs["b"].succeeded() and jobs["c"].exitCode == 4
