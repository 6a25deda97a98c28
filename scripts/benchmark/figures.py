"""Formatting and medians shared by the report's sections (render.py, targets.py)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .systems import Outcome


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds:.3f}"
    return f"{seconds:.2f}" if seconds < 100 else f"{seconds:.0f}"


def fmt_ms(seconds: float | None) -> str:
    """Seconds shown in milliseconds."""
    if seconds is None:
        return "–"
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def mb(n: float) -> str:
    """Bytes shown in MiB."""
    return f"{n / 2**20:.1f}"


def fmt_ratio(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}x"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(outcomes: list[Outcome]) -> tuple[float | None, str]:
    """The median time and its cell, or the cell of the first round that has no time."""
    for outcome in outcomes:
        if outcome.seconds is None:
            return None, outcome.cell or "error"
    if not outcomes:
        return None, "–"
    median = statistics.median(o.seconds for o in outcomes if o.seconds is not None)
    return median, fmt_s(median)


def median_data(outcomes: list[Outcome], key: str) -> float | None:
    """The median over the runs that have a time of a figure their process reported (Outcome.data)."""
    values = [o.data[key] for o in outcomes if o.seconds is not None and o.data.get(key) is not None]
    return statistics.median(values) if values else None


def ratio_to_make(outcomes: list[Outcome], makes: list[Outcome]) -> float | None:
    """The median over rounds of (this round's time / the same round's make time): pairing runs
    that ran close together in time cancels slow changes in the machine's load."""
    # Not strict: 0.0.6 and doit have fewer rounds than make once given up on (then no ratio).
    ratios = [o.seconds / m.seconds for o, m in zip(outcomes, makes, strict=False) if o.seconds and m.seconds]
    if not ratios or len(ratios) < len(outcomes):
        return None
    return statistics.median(ratios)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
