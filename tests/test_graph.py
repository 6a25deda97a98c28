"""`simplejob graph`: DOT and Mermaid hold every node and every edge, quote any id so that the tools
accept it (Graphviz's `dot -Tsvg` is run on it where it is installed), colour by outcome, and stay
fast at 10,000 jobs; the layered layout behind the HTML report's picture."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import time

import pytest

from simplejob import graph
from test_cli_run import simplejob, write_jobs

# Ids that need quoting in DOT or that Mermaid would read as syntax.
TRICKY = [
    "plain",
    "with space",
    "dash-ed",
    'quo"te',
    "it's",
    "ünï-cødé 日本",
    "a#b",
    "<script>x</script>",
    "brace{}[]()|",
    "edge",  # a DOT keyword, as an id
    "end",  # a Mermaid keyword, as an id
    "->",
]


def tricky_nodes() -> list[graph.Node]:
    nodes = [graph.Node(TRICKY[0], [])]
    for i, job_id in enumerate(TRICKY[1:], start=1):
        nodes.append(graph.Node(job_id, [TRICKY[i - 1], TRICKY[0]] if i > 1 else [TRICKY[0]], "ok", f"{i}.00 s"))
    nodes.append(graph.Node("lonely", [], "blocked"))
    return nodes


def expected_edges(nodes):
    return {(w, n.id) for n in nodes for w in n.waiting}


DOT_NODE = re.compile(r'^  ("(?:[^"\\]|\\.)*")(?: \[(.*)\])?;$')
DOT_EDGE = re.compile(r'^  ("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*");$')


def dot_unquote(text: str) -> str:
    assert text[0] == text[-1] == '"'
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def parse_dot(text: str) -> tuple[list[str], set[tuple[str, str]], dict[str, str]]:
    nodes, edges, attributes = [], set(), {}
    for line in text.splitlines():
        if match := DOT_EDGE.match(line):
            edges.add((dot_unquote(match[1]), dot_unquote(match[2])))
        elif match := DOT_NODE.match(line):
            nodes.append(dot_unquote(match[1]))
            attributes[nodes[-1]] = match[2] or ""
    return nodes, edges, attributes


def test_dot_has_every_node_and_edge_once_with_quoted_ids():
    nodes = tricky_nodes()
    text = graph.to_dot(nodes)
    assert text.startswith('digraph "simplejob" {') and text.rstrip().endswith("}")
    ids, edges, attributes = parse_dot(text)
    assert ids == [n.id for n in nodes]
    assert edges == expected_edges(nodes)
    assert len([line for line in text.splitlines() if " -> " in line and line.endswith(";")]) == len(edges)
    assert 'fillcolor="#c8e6c9"' in attributes["dash-ed"] and "dashed" in attributes["lonely"]
    assert 'label="dash-ed\\n2.00 s"' in attributes["dash-ed"]


def test_mermaid_has_every_node_and_edge_with_escaped_labels():
    nodes = tricky_nodes()
    text = graph.to_mermaid(nodes)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    declared = {}
    for line in lines[1:]:
        if match := re.fullmatch(r'  (n\d+)\["([^"]*)"\]', line):
            label = match[2].split("<br/>")[0]
            assert not re.search(r'["<>`]', label), label  # what Mermaid would read as syntax or HTML
            declared[match[1]] = re.sub(r"#(\d+);", lambda m: chr(int(m[1])), label)
    assert list(declared.values()) == [n.id for n in nodes]
    by_name = {v: k for k, v in declared.items()}
    edges = {tuple(line.split()[::2]) for line in lines if re.fullmatch(r"  n\d+ --> n\d+", line)}
    assert edges == {(by_name[a], by_name[b]) for a, b in expected_edges(nodes)}
    assert any(line.startswith("  classDef ok fill:#c8e6c9") for line in lines)
    classes = dict(line.split()[1:3][::-1] for line in lines if line.startswith("  class "))
    assert set(classes["ok"].split(",")) == {by_name[n.id] for n in nodes if n.outcome == "ok"}
    assert classes["blocked"] == by_name["lonely"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")
def test_graphviz_accepts_the_dot_output():
    nodes = tricky_nodes()
    done = subprocess.run(["dot", "-Tsvg"], input=graph.to_dot(nodes), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    svg = done.stdout
    assert svg.count('class="node"') == len(nodes) and svg.count('class="edge"') == len(expected_edges(nodes))
    titles = [html.unescape(t) for t in re.findall(r'<g id="node\d+" class="node">\s*<title>(.*?)</title>', svg)]
    assert titles == [n.id for n in nodes] and "<script>" not in svg


def test_the_graph_command_of_a_jobs_file_and_of_its_batch(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.json",
        [
            {"id": "fetch", "commandLine": "true"},
            {"id": "build it", "commandLine": "sh -c 'exit 2'", "waiting": ["fetch"]},
            {"id": "ship", "commandLine": "true", "waiting": ["build it"]},
        ],
    )
    before = simplejob("graph", jobs, cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    ids, edges, attributes = parse_dot(before.stdout)
    assert ids == ["fetch", "build it", "ship"] and edges == {("fetch", "build it"), ("build it", "ship")}
    assert "fillcolor" not in "".join(attributes.values())  # never ran: no outcome to show
    assert simplejob("run", jobs, cwd=tmp_path).returncode == 1
    after = simplejob("graph", jobs, "--format", "mermaid", "-o", str(tmp_path / "g.mmd"), cwd=tmp_path)
    assert after.returncode == 0 and after.stdout == ""
    text = (tmp_path / "g.mmd").read_text()
    assert 'n1["build it<br/>' in text and "class n1 failed" in text and "class n2 blocked" in text
    assert "class n0 ok" in text
    dot = simplejob("graph", str(tmp_path / ".simplejob" / "jobs"), cwd=tmp_path).stdout
    assert 'fillcolor="#ffcdd2"' in parse_dot(dot)[2]["build it"]


def big_graph(count: int) -> list[graph.Node]:
    """Layers of 50 jobs, each waiting on 2 jobs of the previous layer (the benchmark's shape)."""
    nodes = []
    for i in range(count):
        waits = [] if i < 50 else [f"job-{i - 50}", f"job-{i - 50 - (i % 50 > 0)}"]
        nodes.append(graph.Node(f"job-{i}", list(dict.fromkeys(waits)), "ok", "0.01 s"))
    return nodes


def test_ten_thousand_jobs_in_well_under_a_second():
    nodes = big_graph(10_000)
    for draw in (graph.to_dot, graph.to_mermaid):
        started = time.perf_counter()
        text = draw(nodes)
        took = time.perf_counter() - started
        assert took < 1.0, f"{draw.__name__}: {took:.2f} s"
        assert text.count(" -> " if draw is graph.to_dot else " --> ") == len(expected_edges(nodes))


def test_layers_respect_every_wait_and_a_long_chain_needs_no_recursion():
    nodes = big_graph(2_000)
    rows = graph.layers(nodes)
    level = {job: r for r, row in enumerate(rows) for job in row}
    assert len(level) == 2_000 and len(rows) == 40
    assert all(level[w] < level[n.id] for n in nodes for w in n.waiting)
    chain = [graph.Node(f"c{i}", [f"c{i - 1}"] if i else []) for i in range(50_000)]
    started = time.perf_counter()
    assert len(graph.layers(chain)) == 50_000
    assert time.perf_counter() - started < 5


def test_barycentre_ordering_uncrosses_a_crossed_pair():
    # a1 -> b2 and a2 -> b1 cross in entry order; the sweeps put b2 above b1
    nodes = [graph.Node("a1", []), graph.Node("a2", []), graph.Node("b1", ["a2"]), graph.Node("b2", ["a1"])]
    assert graph.layers(nodes) == [["a1", "a2"], ["b2", "b1"]]


def test_the_svg_picture_escapes_ids_and_has_a_node_per_job():
    nodes = tricky_nodes()
    svg = graph.to_svg(nodes)
    assert svg.count('<g class="node') == len(nodes) and svg.count("<path ") == len(expected_edges(nodes))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
