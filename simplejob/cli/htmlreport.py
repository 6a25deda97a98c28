"""The HTML report: one self-contained page (report.html, filled in here) that opens from disk with
no network: a summary, a timeline of the run (one row per worker slot, or per job; one bar per
attempt), the dependency graph (drawn here into SVG by simplejob.graph) and a table of the jobs
with the last lines of each failed job's log.

Everything that comes from the state or the logs is escaped: the summary and the graph with
html.escape, the data the page's script draws from as JSON inside <script type="application/json">
with <, >, & and U+2028/2029 escaped (so no text can close the script element), and the script
puts text into the page only through textContent, never as HTML.

Large batches: the timeline's per-job rows are drawn only where they are in view, the table shows
500 rows at a time, logs are read for the first MAX_TAILS failed jobs only, and a graph of more
than MAX_GRAPH_NODES jobs is drawn as one box per layer with its counts.
"""

from __future__ import annotations

import heapq
import html
import json
import os
import re
import shlex
import socket
import time
from datetime import datetime
from importlib import resources
from typing import Any

from .. import graph
from ..dates import DATE_FORMAT
from ..model import JobRecord, JobRunningStatus
from ..statewriter import replace_atomically
from . import status
from .describe import CATEGORIES, category, counts, last_lines, log_path, seconds

MAX_GRAPH_NODES = 1500  # more jobs than this: the graph is summarised by layer
MAX_TAILS = 500  # failed jobs whose last log lines are embedded
TAIL_LINES = 20
TEMPLATE = "report.html"
_MARKER = re.compile(r"<!--@(\w+)@-->")
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
# the colour of a bar: how the attempt ended
_RESULTS = {"timedOut": "timedOut", "cancelled": "cancelled", "interrupted": "interrupted"}


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element: nothing in it can end the element or start a comment."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).translate(_SCRIPT_ESCAPES)


def _timestamp(text: str | None) -> float | None:
    try:
        return datetime.strptime(text, DATE_FORMAT).timestamp() if text else None
    except ValueError:
        return None


def _bars(records: dict[str, JobRecord], index: dict[str, int], now: float) -> list[list[Any]]:
    """[job, attempt, slot, start, end, outcome, exitCode, pid, reason] with absolute times: one per
    ended attempt (history), one for a running attempt, and one per job for files that have no
    history (written before it existed): from startTimestamp and elapsedSeconds."""
    bars: list[list[Any]] = []
    for record in records.values():
        if record.resumed:
            continue  # done in an earlier run: its times belong to that run's timeline
        job = index[record.id]
        for entry in record.history:
            outcome = _RESULTS.get(entry["result"], "ok" if entry["exitCode"] == 0 else "failed")
            start = entry["startTimestamp"]
            end = entry["finishTimestamp"]
            bars.append(
                [job, entry["attempt"], entry["slot"], end if start is None else start, end, outcome]
                + [entry["exitCode"], entry["pid"], entry["reason"]]
            )
        if record.runningStatus == JobRunningStatus.Running and record.pid is not None:
            start = record.attemptStartTimestamp if record.attempts > 1 else record.startTimestamp
            if start is not None:
                bars.append(
                    [job, record.attempts, record.slot, start, max(now, start), "running", None, record.pid, None]
                )
        elif not record.history and record.startTimestamp is not None and record.elapsedSeconds is not None:
            outcome = category(record, {})
            end = record.startTimestamp + record.elapsedSeconds
            bars.append([job, record.attempts, None, record.startTimestamp, end, outcome, record.exitCode, None, None])
    return bars


def _lanes(bars: list[list[Any]]) -> int:
    """Rows for the timeline: the worker slots when every bar has one; otherwise (old files, an
    executor without slots) lanes, each bar on the first lane free at its start."""
    if all(bar[2] is not None for bar in bars):
        return max((bar[2] for bar in bars), default=-1) + 1
    free: list[tuple[float, int]] = []  # (end, lane)
    lanes = 0
    for bar in sorted(bars, key=lambda b: b[3]):
        if free and free[0][0] <= bar[3]:
            _, lane = heapq.heappop(free)
        else:
            lane, lanes = lanes, lanes + 1
        bar[2] = lane
        heapq.heappush(free, (bar[4], lane))
    return lanes


def graph_nodes(view: status.View) -> list[graph.Node]:
    """The graph's nodes: outcome and elapsed time when the batch has a state."""
    if view.batch == "not started" and not view.supervisor:  # a jobs file that never ran
        return [graph.Node(r.id, r.definition.waiting) for r in view.records.values()]
    return [
        graph.Node(r.id, r.definition.waiting, category(r, view.blocked), seconds(r.elapsedSeconds))
        for r in view.records.values()
    ]


def _graph_picture(view: status.View) -> str:
    drawn = graph_nodes(view)
    if len(drawn) <= MAX_GRAPH_NODES:
        return f'<div class="frame graph-frame">{graph.to_svg(drawn)}</div>'
    return _layer_summary(drawn)


def _layer_summary(drawn: list[graph.Node]) -> str:
    """One bar per layer (its jobs, coloured by outcome), for graphs too large to draw job by job."""
    rows = graph.layers(drawn)
    outcome = {node.id: node.outcome or "waiting" for node in drawn}
    widest = max(len(row) for row in rows)
    parts = [
        f'<p class="note">{len(drawn):,} jobs are too many to draw one by one (the limit is {MAX_GRAPH_NODES:,}): '
        f"each row is one layer of the graph (a job lies in a layer below every job it waits on), its bar "
        f"the layer's jobs by outcome. <code>simplejob graph TARGET | dot -Tsvg</code> draws every job.</p>",
        '<div class="frame" style="max-height:420px">'
        f'<svg xmlns="http://www.w3.org/2000/svg" class="layers" width="820" height="{len(rows) * 18 + 6}">',
    ]
    for r, row in enumerate(rows):
        counted = {key: 0 for key in graph.STYLES}
        for job in row:
            counted[outcome[job]] = counted.get(outcome[job], 0) + 1
        x, y = 110.0, r * 18 + 3
        parts.append(f'<text x="4" y="{y + 12}">layer {r + 1}: {len(row):,}</text>')
        for key, number in counted.items():
            if number:
                fill, border, words = graph.STYLES[key]
                w = 700 * number / widest
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="14" fill="{fill}" stroke="{border}">'
                    f"<title>layer {r + 1}: {number:,} {html.escape(words)}</title></rect>"
                )
                x += w
    parts.append("</svg></div>")
    return "\n".join(parts)


def _summary(view: status.View, counted: dict[str, int], wall: float | None) -> str:
    sup = view.supervisor
    command = sup.get("ownerCommandLine")
    cwd = sup.get("ownerCwd")
    host = sup.get("host") or socket.gethostname()
    rows = [
        ("batch", status.batch_line(view).removeprefix("batch ")),
        ("wall time", seconds(wall) if wall is not None else "not run"),
        ("command line", (shlex.join(command) if command else "not recorded") + (f"   (in {cwd})" if cwd else "")),
        ("host", host + (f", supervisor pid {sup['pid']}" if sup.get("pid") else "")),
        ("workers", str(view.options.get("maxWorkers", ""))),
        ("state file", view.path),
        ("logs", f"{view.log_dir}{os.sep}<id>.log" if view.log_dir else "not kept"),
    ]
    chips = "".join(
        f'<span class="chip" style="background:{graph.STYLES[key][0]};border-color:{graph.STYLES[key][1]}">'
        f"{counted[key]:,} {html.escape(graph.STYLES[key][2])}</span>"
        for key in CATEGORIES
        if counted.get(key)
    )
    items = "".join(f"<dt>{name}</dt><dd>{html.escape(value)}</dd>" for name, value in rows)
    name = os.path.basename(os.path.dirname(view.path))
    return (
        f"<h1>simplejob report: {html.escape(name)}, {len(view.records):,} jobs</h1>"
        f'<div class="chips">{chips}</div><dl class="summary">{items}</dl>'
    )


def build(view: status.View, *, now: float | None = None) -> str:
    """The page for a view of a batch (now: the time a running attempt's bar ends at)."""
    now = time.time() if now is None else now
    records = view.records
    index = {job_id: n for n, job_id in enumerate(records)}
    counted = counts(records, view.blocked)
    bars = _bars(records, index, now)
    slots = all(bar[2] is not None for bar in bars)
    rows = _lanes(bars)
    t0 = min((bar[3] for bar in bars), default=now)
    span = max((bar[4] for bar in bars), default=t0) - t0
    for bar in bars:
        bar[3], bar[4] = round(bar[3] - t0, 4), round(bar[4] - t0, 4)
    started = _timestamp(view.supervisor.get("startDateTime"))
    finished = _timestamp(view.supervisor.get("finishDateTime")) or (now if view.batch == "running" else None)
    wall = finished - started if started is not None and finished is not None else (span if bars else None)
    tails: list[list[str]] = []
    jobs = []
    for record in records.values():
        outcome = category(record, view.blocked)
        tail = None
        if outcome in ("failed", "timedOut", "interrupted") and len(tails) < MAX_TAILS:
            tail = len(tails)
            tails.append(last_lines(log_path(view.log_dir, record.id), TAIL_LINES))
        what = record.definition.commandLine
        jobs.append(
            [
                record.id,
                what if isinstance(what, str) else shlex.join(what),
                outcome,
                record.exitCode,
                record.attempts,
                record.elapsedSeconds,
                record.reason,
                record.startDateTime,
                view.blocked.get(record.id, []),
                log_path(view.log_dir, record.id),
                tail,
            ]
        )
    kept = counted.get("kept", 0)
    notes = []
    if kept:
        notes.append(f"{kept:,} job(s) done in an earlier run are not drawn")
    if any(r.history == [] and r.startTimestamp is not None and not r.resumed for r in records.values()):
        notes.append("this state file has no history of attempts: one bar per job")
    data = {
        "styles": {key: list(value) for key, value in graph.STYLES.items()},
        "jobs": jobs,
        "bars": bars,
        "rows": max(rows, 1),
        "rowName": "worker slot" if slots else "lane",
        "t0": t0,
        "span": span,
        "tails": tails,
        "legend": [key for key in CATEGORIES if key not in ("kept", "blocked", "waiting")],
        "timelineNote": "; ".join(notes),
    }
    pieces = {
        "title": html.escape(f"simplejob report: {os.path.basename(os.path.dirname(view.path)) or view.path}"),
        "summary": _summary(view, counted, wall),
        "graph": _graph_picture(view),
        "data": script_json(data),
    }
    template = resources.files("simplejob.cli").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return _MARKER.sub(lambda m: pieces[m.group(1)], template)


def write(view: status.View, output: str) -> None:
    """Write the page to output (atomically: a reader never sees half of it)."""
    page = build(view).encode()
    replace_atomically(output, page, durable=False)
