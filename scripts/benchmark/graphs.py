"""The generated job graphs, every job running `true`, and the files each system reads them from.

fan     JOBS independent jobs
layers  layers of 50 jobs; each job waits on 2 jobs of the previous layer
chain   JOBS jobs in sequence

The timed simplejob process (measure.TIMED_SIMPLEJOB) imports this module to build its job
contexts, so its imports stay light: nothing that simplejob does not load anyway.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

LAYER_WIDTH = 50
GRAPHS = ("fan", "layers", "chain")
# entry() and the peak RSS are measured at 100,000 jobs on these: no waits, and two per job
LARGE_BATCH_GRAPHS = ("fan", "layers")


def dependencies(graph: str, size: int) -> list[list[int]]:
    """For each job (by index), the indexes of the jobs it waits on."""
    if graph == "fan":
        return [[] for _ in range(size)]
    if graph == "chain":
        return [[i - 1] if i else [] for i in range(size)]
    if graph == "layers":
        deps = []
        for i in range(size):
            layer, k = divmod(i, LAYER_WIDTH)
            base = (layer - 1) * LAYER_WIDTH
            deps.append([] if layer == 0 else [base + k, base + (k + 1) % LAYER_WIDTH])
        return deps
    raise ValueError(f"unknown graph {graph!r}; use one of {', '.join(GRAPHS)}")


def job_id(index: int) -> str:
    return f"j{index}"


def job_contexts(graph: str, size: int, waits_key: str = "waiting") -> list[dict[str, Any]]:
    """simplejob's job contexts for a graph (0.0.6 calls the dependency key "waits")."""
    contexts = []
    for i, deps in enumerate(dependencies(graph, size)):
        context: dict[str, Any] = {"id": job_id(i), "commandLine": "true"}
        if deps:
            context[waits_key] = [job_id(d) for d in deps]
        contexts.append(context)
    return contexts


def write_makefile(path: str, graph: str, size: int) -> None:
    deps = dependencies(graph, size)
    ids = [job_id(i) for i in range(size)]
    lines = []
    for start in range(0, size, 1000):
        lines.append(".PHONY: " + " ".join(ids[start : start + 1000]))
    lines.append(".PHONY: all")
    lines.append("all: " + " ".join(ids))
    for i, waits in enumerate(deps):
        lines.append(f"{ids[i]}: " + " ".join(ids[d] for d in waits))
        lines.append("\t@true")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


DODO = """\
import json
import os

DOIT_CONFIG = {"verbosity": 0}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph.json")) as f:
    DEPS = json.load(f)


def task_jobs():
    for i, deps in enumerate(DEPS):
        yield {"basename": f"j{i}", "actions": [["true"]], "task_dep": [f"j{d}" for d in deps], "verbosity": 0}
"""


def write_dodo(directory: str, graph: str, size: int) -> None:
    with open(os.path.join(directory, "graph.json"), "w") as f:
        json.dump(dependencies(graph, size), f)
    with open(os.path.join(directory, "dodo.py"), "w") as f:
        f.write(DODO)


@dataclasses.dataclass(frozen=True)
class Spec:
    graph: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.graph}:{self.size}"


def parse_spec(text: str) -> Spec:
    """A GRAPH:JOBS argument (JOBS may have _ or , between digits)."""
    import argparse  # here: the timed simplejob process imports this module, and needs no argparse

    graph, _, size = text.partition(":")
    if graph not in GRAPHS or not size.replace("_", "").replace(",", "").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give GRAPH:JOBS with GRAPH one of {', '.join(GRAPHS)}")
    jobs = int(size.replace("_", "").replace(",", ""))
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: JOBS must be at least 1")
    return Spec(graph, jobs)
