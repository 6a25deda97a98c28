"""entry() validation: bad job contexts raise ValueError naming the offending ids; nothing starts."""

from __future__ import annotations

import os

import psutil
import pytest

from simplejob import JobManager, JobRunningStatus


def entry(contexts, **kwargs):
    manager = JobManager(**kwargs)
    manager.entry(contexts)
    return manager


@pytest.mark.parametrize(
    "contexts, expected",
    [
        ([{"id": "a"}], ["'a'", "commandLine"]),
        ([{"id": "a", "commandLine": ""}], ["'a'", "commandLine"]),
        ([{"id": "a", "commandLine": "   "}], ["'a'", "empty"]),
        ([{"id": "a", "commandLine": []}], ["'a'", "commandLine"]),
        ([{"id": "a", "commandLine": 42}], ["'a'", "commandLine"]),
        ([{"id": "a", "commandLine": "echo 'unbalanced"}], ["'a'", "quoting"]),
        ([{"id": "a", "commandLine": "true"}, {"id": "a", "commandLine": "false"}], ["'a'", "2 jobs"]),
        ([{"commandLine": "sleep 1"}, {"commandLine": "sleep 2"}], ["'sleep'", "2 jobs"]),
        ([{"id": "a", "commandLine": "true", "waiting": ["nope"]}], ["'a'", "'nope'"]),
        ([{"id": "a", "commandLine": "true", "waits": ["ghost"]}], ["'a'", "'ghost'"]),
        ([{"id": "a", "commandLine": "true", "waiting": "b"}], ["'a'", "waiting"]),
        ([{"id": "a", "commandLine": "true", "waiting": [1]}], ["'a'", "waiting"]),
        ([{"id": "a", "commandLine": "true", "timeout": -1}], ["'a'", "timeout"]),
        ([{"id": "a", "commandLine": "true", "timeout": 0}], ["'a'", "timeout"]),
        ([{"id": "a", "commandLine": "true", "timeout": "5"}], ["'a'", "timeout"]),
        ([{"id": "a", "commandLine": "true", "retry": -1}], ["'a'", "retry"]),
        ([{"id": "a", "commandLine": "true", "retry": 1.5}], ["'a'", "retry"]),
        ([{"id": "a", "commandLine": "true", "retry": True}], ["'a'", "retry"]),
        ([{"id": "a", "commandLine": "true", "delay": -0.5}], ["'a'", "delay"]),
        ([{"id": "a", "commandLine": "true", "backoff": None}], ["'a'", "backoff"]),
        ([{"id": "a", "commandLine": "true", "killGrace": -1}], ["'a'", "killGrace"]),
        ([{"id": "a", "commandLine": "true", "shell": "yes"}], ["'a'", "shell"]),
        ([{"id": "a", "commandLine": "true", "env": {"X": 1}}], ["'a'", "env"]),
        ([{"id": "a", "commandLine": "true", "cwd": 3}], ["'a'", "cwd"]),
        ([{"id": "a", "commandLine": ["echo", "x"], "shell": True}], ["'a'", "shell"]),
        ([{"id": "a", "commandLine": "true", "waitng": ["b"]}], ["'a'", "waitng"]),
        ([{"id": "a", "commandLine": "true", "waiting": ["b"], "waits": ["c"]}], ["'a'", "waits"]),
        (["echo hi"], ["#0", "dict"]),
        ({"id": "a", "commandLine": "true"}, ["list"]),
    ],
)
def test_invalid_contexts_name_the_job_and_the_problem(contexts, expected):
    with pytest.raises(ValueError) as error:
        entry(contexts)
    for text in expected:
        assert text in str(error.value)


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "a\\b", "..", ".", "nul\x00byte", "tab\tid", "bell\x07", 7, ""])
def test_ids_that_could_name_a_file_outside_the_log_directory_are_rejected(bad_id):
    context = {"id": bad_id, "commandLine": "true"}
    if bad_id == "":
        context = {"id": "", "commandLine": "/"}  # the default id would be "" too
    with pytest.raises(ValueError, match="id"):
        entry([context], logOutputDirectory="logs")


def test_every_offending_id_is_named_at_once():
    contexts = [{"id": f"job{i}", "commandLine": "true", "retry": -1} for i in range(3)]
    with pytest.raises(ValueError) as error:
        entry(contexts)
    assert all(f"'job{i}'" in str(error.value) for i in range(3))


def test_a_cycle_names_the_ids_on_it():
    contexts = [
        {"id": "free", "commandLine": "true"},
        {"id": "a", "commandLine": "true", "waiting": ["c", "free"]},
        {"id": "b", "commandLine": "true", "waiting": ["a"]},
        {"id": "c", "commandLine": "true", "waiting": ["b"]},
    ]
    with pytest.raises(ValueError, match="circular") as error:
        entry(contexts)
    message = str(error.value)
    assert all(f"'{job}'" in message for job in "abc")
    assert "'free'" not in message


def test_a_job_waiting_on_itself_is_a_cycle():
    with pytest.raises(ValueError, match="circular.*'a'"):
        entry([{"id": "a", "commandLine": "true", "waiting": ["a"]}])


def test_the_cycle_check_agrees_with_graphlib_on_random_graphs():
    """find_cycle looks for a cycle with Kahn's algorithm and asks graphlib only to name one."""
    import graphlib
    import random

    from simplejob.model import JobDefinition
    from simplejob.validation import find_cycle

    rng = random.Random(13)
    for _ in range(300):
        size = rng.randint(1, 12)
        ids = [f"j{i}" for i in range(size)]
        jobs = [
            JobDefinition(id=job_id, commandLine="true", waiting=rng.sample(ids, rng.randint(0, min(3, size))))
            for job_id in ids
        ]
        try:
            graphlib.TopologicalSorter({job.id: job.waiting for job in jobs}).prepare()
            cyclic = False
        except graphlib.CycleError:
            cyclic = True
        if cyclic:
            with pytest.raises(ValueError, match="circular waits: "):
                find_cycle(jobs)
        else:
            find_cycle(jobs)


def test_a_100000_job_chain_validates_without_recursion():
    contexts = [{"id": f"j{i}", "commandLine": "true", "waiting": [f"j{i - 1}"] if i else []} for i in range(100_000)]
    manager = entry(contexts)
    assert len(manager.jobs) == 100_000
    contexts[0]["waiting"] = ["j99999"]  # now the whole chain is a cycle
    with pytest.raises(ValueError, match="circular"):
        entry(contexts)


def test_entry_accepts_the_documented_keys_and_defaults():
    manager = entry(
        [
            {"id": "hoge", "commandLine": "sleep 1"},
            {"commandLine": "/bin/echo hi", "waits": ["hoge"]},
            {
                "id": "list",
                "commandLine": ["printf", "%s\n", "a b"],
                "waiting": ["hoge", "echo"],
                "timeout": 0.5,
                "retry": 2,
                "delay": 0.1,
                "backoff": 2,
                "cwd": ".",
                "env": {"A": "1"},
                "killGrace": 0.2,
            },
            {"id": "piped", "commandLine": "echo a | cat", "shell": True},
        ]
    )
    ids = [job.id for job in manager.jobs]
    assert ids == ["hoge", "echo", "list", "piped"]  # the default id is the base name of argv[0]
    assert all(job.runningStatus == JobRunningStatus.Ready for job in manager.jobs)
    assert manager.jobs[1].definition.waiting == ["hoge"]


def test_entry_starts_nothing(tmp_path):
    marker = tmp_path / "ran"
    manager = entry([{"id": "a", "commandLine": ["touch", str(marker)]}])
    assert psutil.Process(os.getpid()).children() == []
    assert not marker.exists()
    assert manager.report()["results"][0]["a"]["runnigStatus"] == "Ready"


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2"])
def test_bad_max_workers_is_rejected(workers):
    with pytest.raises(ValueError, match="maxWorkers"):
        JobManager(maxWorkers=workers)


def test_max_workers_defaults_to_the_cpu_count():
    assert JobManager().maxWorkers == os.cpu_count()


# --- issue 9: fixes found while building the command line -------------------------------------


def test_a_missing_command_line_of_a_simple_job_is_a_value_error():
    from simplejob import SimpleJob

    with pytest.raises(ValueError, match="commandLine"):
        SimpleJob().entry(commandLine=None)


def test_an_explicit_empty_id_is_refused_even_when_the_command_would_give_one():
    with pytest.raises(ValueError, match="id must be a non-empty string"):
        entry([{"id": "", "commandLine": "true"}])


def test_a_duplicate_id_taken_from_the_command_says_so():
    with pytest.raises(ValueError) as error:
        entry([{"commandLine": "sleep 1"}, {"commandLine": "/bin/sleep 2"}])
    message = str(error.value)
    assert "'sleep'" in message and "2 jobs" in message and "taken from the command" in message
    with pytest.raises(ValueError) as error:
        entry([{"id": "a", "commandLine": "true"}, {"id": "a", "commandLine": "true"}])
    assert "taken from the command" not in str(error.value)


def test_a_very_long_id_is_shortened_in_messages():
    long_id = "x" * 5000
    with pytest.raises(ValueError) as error:
        entry([{"id": long_id, "commandLine": "true", "waiting": ["nope"]}])
    message = str(error.value)
    assert len(message) < 400 and "5000 characters" in message and "'nope'" in message


def test_every_problem_of_a_batch_is_reported_at_once():
    contexts = [
        {"id": "bad-command", "commandLine": 42},
        {"id": "bad-wait", "commandLine": "true", "waiting": ["ghost"]},
        {"id": "dup", "commandLine": "true"},
        {"id": "dup", "commandLine": "true", "waiting": ["bad-command"]},  # a wait on an invalid job is known
    ]
    with pytest.raises(ValueError) as error:
        entry(contexts)
    message = str(error.value)
    assert "'bad-command': commandLine" in message
    assert "'bad-wait': waits on unknown id(s) 'ghost'" in message
    assert "'dup': the id is used by 2 jobs" in message
    assert message.count("unknown") == 1
