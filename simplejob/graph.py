"""A batch's dependency graph as text for other tools (Graphviz DOT, Mermaid), and laid out in
layers for an SVG picture drawn here (the HTML report needs no Graphviz).

Every job is a node; every wait is an edge from the job waited on to the job that waits, so
arrows follow the order things run in. A node may carry an outcome (a key of STYLES: how it is
coloured) and a label (e.g. its elapsed time). Everything is iterative and linear or n log n in
the size of the graph: 10,000 jobs take a fraction of a second.

This module knows nothing of state files: the command line (cli/pictures.py) turns records into
Nodes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass

# outcome -> (fill, border, words): the categories of cli/describe.py, coloured alike everywhere
STYLES: dict[str, tuple[str, str, str]] = {
    "ok": ("#c8e6c9", "#2e7d32", "completed"),
    "kept": ("#e8f5e9", "#81c784", "done earlier"),
    "failed": ("#ffcdd2", "#c62828", "failed"),
    "timedOut": ("#ffe0b2", "#e65100", "timed out"),
    "cancelled": ("#e1bee7", "#6a1b9a", "cancelled"),
    "interrupted": ("#fff9c4", "#f9a825", "interrupted"),
    "running": ("#bbdefb", "#1565c0", "running"),
    "blocked": ("#f5f5f5", "#c62828", "blocked"),
    "waiting": ("#ffffff", "#9e9e9e", "not run"),
}
NO_OUTCOME = ("#ffffff", "#455a64", "")  # a jobs file that never ran: no colours to give


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    waiting: list[str]
    outcome: str | None = None  # a key of STYLES, or None (a jobs file that never ran)
    label: str = ""  # a second line under the id, e.g. "1.01 s"


def edges(nodes: Iterable[Node]) -> list[tuple[str, str]]:
    """(waited on, waiting) pairs, in entry order; waits on ids outside the graph are left out."""
    nodes = list(nodes)
    known = {node.id for node in nodes}
    return [(w, node.id) for node in nodes for w in node.waiting if w in known]


# --- DOT ------------------------------------------------------------------------------------------


def dot_quote(text: str) -> str:
    """A DOT quoted string: only a double quote needs escaping inside one (a backslash too, in a
    label, where it starts an escape; ids cannot hold one, but an edited state file might)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(nodes: list[Node], *, name: str = "simplejob") -> str:
    """Graphviz DOT (`dot -Tsvg`), left to right; every id is quoted, so any id is accepted."""
    out = [
        f"digraph {dot_quote(name)} {{",
        '  graph [rankdir=LR, charset="UTF-8"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#455a64", fontname="Helvetica"];',
    ]
    if any(node.outcome for node in nodes):
        legend = ", ".join(f"{words}: {fill}" for fill, _, words in STYLES.values())
        out.append(f"  // colours: {legend}")
    for node in nodes:
        attributes = []
        if node.label:
            attributes.append(f"label={dot_quote(node.id + chr(10) + node.label)}".replace("\n", "\\n"))
        if node.outcome:
            fill, border, words = STYLES.get(node.outcome, NO_OUTCOME)
            attributes.append(f'fillcolor="{fill}", color="{border}", tooltip={dot_quote(words)}')
            if node.outcome == "blocked":
                attributes.append('style="rounded,filled,dashed"')
        out.append(f"  {dot_quote(node.id)}" + (f" [{', '.join(attributes)}]" if attributes else "") + ";")
    for source, target in edges(nodes):
        out.append(f"  {dot_quote(source)} -> {dot_quote(target)};")
    out.append("}")
    return "\n".join(out) + "\n"


# --- Mermaid --------------------------------------------------------------------------------------

_MERMAID_SPECIAL = re.compile(r'["#<>&`\\|{}\[\]()]')


def mermaid_text(text: str) -> str:
    """Text for inside a Mermaid ["..."] label: characters Mermaid would read as syntax (or HTML)
    become its entity codes (#34; and so on); everything else, non-ASCII too, stays as it is."""
    return _MERMAID_SPECIAL.sub(lambda m: f"#{ord(m.group())};", text)


def to_mermaid(nodes: list[Node]) -> str:
    """A Mermaid flowchart (for a Markdown page). Mermaid ids are n0, n1, ... (a job id with
    spaces, dashes or quotes is no Mermaid id); the job id is the node's quoted label."""
    number = {node.id: f"n{i}" for i, node in enumerate(nodes)}
    out = ["flowchart LR"]
    classes: dict[str, list[str]] = {}
    for node in nodes:
        text = mermaid_text(node.id) + (f"<br/>{mermaid_text(node.label)}" if node.label else "")
        out.append(f'  {number[node.id]}["{text}"]')
        if node.outcome:
            classes.setdefault(node.outcome, []).append(number[node.id])
    for source, target in edges(nodes):
        out.append(f"  {number[source]} --> {number[target]}")
    for outcome, members in classes.items():
        fill, border, _ = STYLES.get(outcome, NO_OUTCOME)
        dashed = ",stroke-dasharray:4 3" if outcome == "blocked" else ""
        out.append(f"  classDef {outcome} fill:{fill},stroke:{border},color:#000{dashed}")
        out.append(f"  class {','.join(members)} {outcome}")
    return "\n".join(out) + "\n"


# --- layout ---------------------------------------------------------------------------------------


def layers(nodes: list[Node]) -> list[list[str]]:
    """Layers: a job is at least one layer right of everything it waits on (longest path), then moved
    right up to one layer left of the first job that waits on it; each layer ordered by barycentre
    sweeps so that edges cross less. Nodes on a cycle (a damaged file) go last."""
    ids = [node.id for node in nodes]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for source, target in edges(nodes):
        preds[target].append(source)
        succs[source].append(target)
    unmet = {i: len(preds[i]) for i in ids}
    level = dict.fromkeys(ids, 0)
    queue = [i for i in ids if unmet[i] == 0]
    head = 0
    while head < len(queue):
        job = queue[head]
        head += 1
        for successor in succs[job]:
            level[successor] = max(level[successor], level[job] + 1)
            unmet[successor] -= 1
            if unmet[successor] == 0:
                queue.append(successor)
    for job in reversed(queue):  # then right, next to what waits on it: a long edge only where needed
        if succs[job]:
            level[job] = min(level[s] for s in succs[job]) - 1
    depth = max(level.values(), default=-1) + 1
    for job in ids:
        if unmet[job]:
            level[job] = depth  # on a cycle
    rows: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for job in ids:
        rows[level[job]].append(job)
    place: dict[str, float] = {}

    def number(row: list[str]) -> None:
        size = max(1, len(row) - 1)
        for index, job in enumerate(row):
            place[job] = index / size

    for row in rows:
        number(row)
    for downward in (True, False, True, False):
        order = range(1, len(rows)) if downward else range(len(rows) - 2, -1, -1)
        for r in order:
            row = rows[r]
            neighbours = preds if downward else succs
            key = {}
            for job in row:
                near = neighbours[job]
                key[job] = sum(place[n] for n in near) / len(near) if near else place[job]
            row.sort(key=key.__getitem__)
            number(row)
    return rows


# --- SVG ------------------------------------------------------------------------------------------

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 150, 34, 50, 10, 10
MAX_LABEL = 22  # characters of an id shown in its box (the whole id is in its tooltip)


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026"


def to_svg(nodes: list[Node]) -> str:
    """The graph drawn as inline SVG, laid out by layers(): columns left to right. Every text
    is escaped. Each node is a <g class="node"> with a <title> (id, outcome, label)."""
    rows = layers(nodes)
    by_id = {node.id: node for node in nodes}
    tallest = max((len(row) for row in rows), default=0)
    height = 2 * MARGIN + tallest * (BOX_H + GAP_Y) - GAP_Y
    width = 2 * MARGIN + len(rows) * (BOX_W + GAP_X) - GAP_X
    at: dict[str, tuple[int, int]] = {}
    for column, row in enumerate(rows):
        top = MARGIN + (tallest - len(row)) * (BOX_H + GAP_Y) // 2
        for index, job in enumerate(row):
            at[job] = (MARGIN + column * (BOX_W + GAP_X), top + index * (BOX_H + GAP_Y))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{max(width, 0)}" '
        f'height="{max(height, 0)}" viewBox="0 0 {max(width, 0)} {max(height, 0)}">',
        '<g class="edges" fill="none" stroke="#90a4ae" stroke-width="1">',
    ]
    for source, target in edges(nodes):
        (x1, y1), (x2, y2) = at[source], at[target]
        x1, y1, y2 = x1 + BOX_W, y1 + BOX_H // 2, y2 + BOX_H // 2
        bend = max(20, (x2 - x1) // 2)
        out.append(f'<path d="M{x1} {y1}C{x1 + bend} {y1} {x2 - bend} {y2} {x2} {y2}"/>')
    out.append("</g>")
    for job in (job for row in rows for job in row):
        node = by_id[job]
        x, y = at[job]
        fill, border, words = STYLES.get(node.outcome or "", NO_OUTCOME)
        dashed = ' stroke-dasharray="4 3"' if node.outcome == "blocked" else ""
        title = " \u2014 ".join(part for part in (node.id, words, node.label) if part)
        sub = words + ("  " + node.label if node.label else "")
        out.append(
            f'<g class="node {node.outcome or ""}" data-id="{html.escape(job)}"><title>{html.escape(title)}</title>'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{fill}" stroke="{border}"'
            f' stroke-width="1.5"{dashed}/>'
            f'<text x="{x + 6}" y="{y + 14}">{html.escape(_short(job))}</text>'
            f'<text x="{x + 6}" y="{y + 28}" class="sub">{html.escape(sub)}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)
