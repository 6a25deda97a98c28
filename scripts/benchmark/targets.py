"""The report's section on issue 5's targets that this run's figures bear on.

Informational: a target not met is never an error of the benchmark (nor its exit status).
"""

from __future__ import annotations

import argparse
import statistics

from .figures import fmt_ms, fmt_s, mb, ratio_to_make, summary
from .graphs import Spec
from .rounds import Measured


def targets(options: argparse.Namespace, measured: Measured, delays: dict[Spec, list[float]]) -> list[str]:
    lines = ["### Issue 5 targets in this run", ""]
    lines += make_and_rss_targets(options, measured)
    lines += scaling_targets(options, measured)
    for spec, values in delays.items():
        if values:
            median = statistics.median(values)
            lines.append(
                f"- {spec.name}: dependency-to-start delay under 2 ms median: {fmt_ms(median)} ms, "
                f"{verdict(median < 0.002)}"
            )
    lines += call_targets(options, measured)
    lines.append("")
    return lines


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def make_and_rss_targets(options: argparse.Namespace, measured: Measured) -> list[str]:
    """At most 1.3x make (1.5x on a chain); the supervisor under 300 MB at 100,000 jobs."""
    lines = []
    for spec in options.graphs:
        runs = measured.results[spec]
        ratio = ratio_to_make(runs["simplejob"], runs["make"])
        limit = 1.5 if spec.graph == "chain" else 1.3
        if ratio is not None:
            lines.append(f"- {spec.name}: at most {limit}x make: {ratio:.2f}x, {verdict(ratio <= limit)}")
        if spec.size >= 100_000:
            rss = [o.data["rss"] for o in runs["simplejob"] if "supervisor" in o.data.get("rss", {})]
            sup = [r["supervisor"]["maxBytes"] for r in rss]
            if sup:
                lines.append(
                    f"- {spec.name}: supervisor peak RSS under 300 MB: {mb(max(sup))} MB, "
                    f"{verdict(max(sup) < 300 * 2**20)}"
                )
    return lines


def scaling_targets(options: argparse.Namespace, measured: Measured) -> list[str]:
    """Time per job at the largest size of a graph within 1.2x of the smallest."""
    by_graph: dict[str, list[tuple[int, float]]] = {}
    for spec in options.graphs:
        own_s, _ = summary(measured.results[spec]["simplejob"])
        if own_s:
            by_graph.setdefault(spec.graph, []).append((spec.size, own_s / spec.size))
    lines = []
    for graph, points in by_graph.items():
        if len(points) > 1:
            (small, small_per), (large, large_per) = min(points), max(points)
            if large > small:
                ratio = large_per / small_per
                lines.append(
                    f"- {graph}: time per job at {large:,} within 1.2x of {small:,}: {ratio:.2f}x, "
                    f"{verdict(ratio <= 1.2)}"
                )
    return lines


def call_targets(options: argparse.Namespace, measured: Measured) -> list[str]:
    """entry() of a large batch under 2 s; one completed()/errorOccurred() call under 5 ms."""
    lines = []
    for graph in ("fan", "layers"):
        seconds = measured.extras[f"entry-{graph}"].seconds
        if seconds is not None:
            lines.append(
                f"- entry() of {options.entry_size:,} jobs ({graph}) under 2 s: {fmt_s(seconds)} s, "
                f"{verdict(seconds < 2)}"
            )
    phases = measured.extras["poll"].data.get("phases") or {}
    for interval, label in (("0.01", "every 10 ms"), ("1", "every 1 s")):
        values = [v for name in ("completed", "errorOccurred") for v in phases.get(interval, {}).get(name, [])]
        if values:
            lines.append(
                f"- one completed()/errorOccurred() call at {options.poll_size:,} jobs under 5 ms, polled "
                f"{label}: median {fmt_ms(statistics.median(values))} ms, max {fmt_ms(max(values))} ms, "
                f"{verdict(max(values) < 0.005)} (judged on the max)"
            )
    return lines
