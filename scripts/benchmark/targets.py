"""The report's section on issue 13's targets, each judged on this run's figures.

Issue 13: simplejob as fast as `make -j2` from process start to exit. Its targets:
    fan, layers and chain at 10,000 jobs: at most 1.2x make -j2, whole process, in every round
    fan and chain at 1,000 jobs: at most 1.3x make -j2, whole process, in every round
    entry() of 100,000 jobs under 1.5 s (--entry-size)
    peak RSS of the caller and of the supervisor at 100,000 jobs under 200 MB each (--rss-size)
    one completed()/errorOccurred() call under 5 ms during a running fan, whatever its size
    the dependency-to-start delay's median under 1 ms (over a chain)

A target is judged only where this run measured it at the target's size; else it is listed as
"not judged" with what was measured, if anything. Informational: a target not met is never an
error of the benchmark (nor its exit status).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from typing import Any

from .figures import fmt_ms, fmt_s, mb
from .graphs import LARGE_BATCH_GRAPHS, Spec
from .rounds import Measured
from .systems import Outcome

RATIO_TARGETS = ((10_000, ("fan", "layers", "chain"), 1.2), (1_000, ("fan", "chain"), 1.3))
ENTRY_TARGET = (100_000, 1.5)  # jobs, seconds
RSS_TARGET = (100_000, 200 * 2**20)  # jobs, bytes (MiB, as the report shows them)
CALL_LIMIT = 0.005  # seconds, one completed() / errorOccurred() call
DELAY_LIMIT = 0.001  # seconds, the median dependency-to-start delay

MET, NOT_MET, NOT_JUDGED = "met", "NOT met", "not judged"


@dataclasses.dataclass
class Target:
    target: str  # what issue 13 asks
    figure: str  # what this run measured (or why it is not judged)
    verdict: str  # MET, NOT_MET or NOT_JUDGED


def targets(options: argparse.Namespace, measured: Measured, delays: dict[Spec, list[float]]) -> list[str]:
    """The section's Markdown lines."""
    judged = judge(options, measured, delays)
    counted = [t for t in judged if t.verdict != NOT_JUDGED]
    lines = ["### Issue 13 targets in this run", ""]
    lines.append(
        f"{sum(t.verdict == MET for t in counted)} of the {len(counted)} targets judged in this run met; "
        "times are whole processes (start to exit) beside make -j2's, a ratio target judged on its worst round."
    )
    lines.append("")
    lines += [f"- {t.target}: {t.figure}, {t.verdict}" for t in judged]
    lines.append("")
    return lines


def judge(options: argparse.Namespace, measured: Measured, delays: dict[Spec, list[float]]) -> list[Target]:
    """Every target of issue 13, in the issue's order."""
    found = ratio_targets(measured)
    found += entry_targets(options, measured)
    found += [rss_target(options, graph, measured.extras.get(f"rss-{graph}")) for graph in LARGE_BATCH_GRAPHS]
    found += call_targets(options, measured)
    found += delay_targets(delays)
    return found


def verdict(ok: bool) -> str:
    return MET if ok else NOT_MET


def round_ratios(outcomes: list[Outcome], makes: list[Outcome]) -> list[float] | None:
    """simplejob's time over the same round's make time, for every round; None if a round has none."""
    if not outcomes or len(outcomes) != len(makes):
        return None
    ratios = [o.seconds / m.seconds for o, m in zip(outcomes, makes, strict=True) if o.seconds and m.seconds]
    return ratios if len(ratios) == len(outcomes) else None


def ratio_targets(measured: Measured) -> list[Target]:
    """At most 1.2x make at 10,000 jobs (fan, layers, chain) and 1.3x at 1,000 (fan, chain),
    whole process, in every round: judged on the worst round's ratio."""
    found = []
    for size, graphs, limit in RATIO_TARGETS:
        specs = [Spec(graph, size) for graph in graphs]
        if not any(spec in measured.results for spec in specs):
            names = ", ".join(graphs[:-1]) + " and " + graphs[-1]
            found.append(
                Target(f"{names} at {size:,} jobs: at most {limit}x make -j2, whole process", "not run", NOT_JUDGED)
            )
            continue
        for spec in specs:
            text = f"{spec.name}: at most {limit}x make -j2, whole process, in every round"
            if spec not in measured.results:
                found.append(Target(text, "not run", NOT_JUDGED))
                continue
            runs = measured.results[spec]
            ratios = round_ratios(runs["simplejob"], runs["make"])
            if ratios is None:
                found.append(Target(text, "a round has no time", NOT_JUDGED))
                continue
            worst = max(ratios)
            figure = f"worst round {worst:.2f}x, median {statistics.median(ratios):.2f}x over {len(ratios)} round(s)"
            found.append(Target(text, figure, verdict(worst <= limit)))
    return found


def entry_targets(options: argparse.Namespace, measured: Measured) -> list[Target]:
    """entry() of 100,000 jobs under 1.5 s (fan and layers)."""
    size, limit = ENTRY_TARGET
    found = []
    for graph in LARGE_BATCH_GRAPHS:
        text = f"entry() of {size:,} jobs ({graph}) under {limit:g} s"
        outcome = measured.extras.get(f"entry-{graph}")
        seconds = outcome.seconds if outcome is not None else None
        if seconds is None:
            found.append(Target(text, "no figure", NOT_JUDGED))
        elif options.entry_size != size:
            found.append(Target(text, f"{fmt_s(seconds)} s at {options.entry_size:,} jobs (--entry-size)", NOT_JUDGED))
        else:
            found.append(Target(text, f"{fmt_s(seconds)} s", verdict(seconds < limit)))
    return found


def rss_target(options: argparse.Namespace, graph: str, run: Outcome | None) -> Target:
    """Peak RSS of the caller and of the supervisor at 100,000 jobs under 200 MB each (--rss-size)."""
    size, limit = RSS_TARGET
    text = f"peak RSS of the caller and of the supervisor at {size:,} jobs ({graph}) under {limit // 2**20} MB each"
    if run is None:
        return Target(text, f"not measured (--rss-size {size} measures it)", NOT_JUDGED)
    rss: dict[str, Any] = run.data.get("rss") or {}
    if run.seconds is None or "caller" not in rss or "supervisor" not in rss:
        return Target(text, "no figure (the run failed)", NOT_JUDGED)
    caller, supervisor = rss["caller"]["maxBytes"], rss["supervisor"]["maxBytes"]
    figure = f"caller {mb(caller)} MB, supervisor {mb(supervisor)} MB"
    if options.rss_size != size:
        return Target(text, f"{figure} at {options.rss_size:,} jobs (--rss-size)", NOT_JUDGED)
    return Target(text, figure, verdict(max(caller, supervisor) < limit))


def call_targets(options: argparse.Namespace, measured: Measured) -> list[Target]:
    """One completed()/errorOccurred() call under 5 ms, polled every 10 ms and every 1 s (the max)."""
    poll = measured.extras.get("poll")
    phases = (poll.data.get("phases") if poll is not None else None) or {}
    found = []
    for interval, label in (("0.01", "every 10 ms"), ("1", "every 1 s")):
        text = f"one completed()/errorOccurred() call under {CALL_LIMIT * 1000:g} ms, polled {label}"
        values = [v for name in ("completed", "errorOccurred") for v in phases.get(interval, {}).get(name, [])]
        if not values:
            found.append(Target(text, "no calls", NOT_JUDGED))
            continue
        figure = (
            f"at {options.poll_size:,} jobs: max {fmt_ms(max(values))} ms (judged), "
            f"median {fmt_ms(statistics.median(values))} ms"
        )
        found.append(Target(text, figure, verdict(max(values) < CALL_LIMIT)))
    return found


def delay_targets(delays: dict[Spec, list[float]]) -> list[Target]:
    """The dependency-to-start delay's median under 1 ms, per chain."""
    found = []
    for spec, values in delays.items():
        if spec.graph != "chain":
            continue
        text = f"dependency-to-start delay median under {DELAY_LIMIT * 1000:g} ms ({spec.name})"
        if not values:
            found.append(Target(text, "no figure", NOT_JUDGED))
            continue
        median = statistics.median(values)
        found.append(Target(text, f"{fmt_ms(median)} ms", verdict(median < DELAY_LIMIT)))
    return found
