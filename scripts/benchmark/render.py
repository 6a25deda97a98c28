"""The Markdown report (one function per section) and the --json figures."""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
from typing import Any

from . import WORKERS
from .figures import fmt_ms, fmt_ratio, fmt_s, mb, median_data, percentile, ratio_to_make, summary, table
from .graphs import LARGE_BATCH_GRAPHS, Spec
from .machine import load_average
from .rounds import Measured
from .systems import REFERENCE_PACKAGE, TITLES, Outcome
from .targets import judge, targets


def report(options: argparse.Namespace, measured: Measured, header: list[str], command: str) -> str:
    """The whole Markdown report, its sections in order; header: machine.machine()'s lines."""
    delays = chain_delays_by_spec(options, measured)
    lines = run_section(options, measured, header, command)
    lines += main_table(options, measured)
    lines += details_table(options, measured, delays)
    lines += other_measurements(options, measured)
    lines += every_run(options, measured)
    lines += targets(options, measured, delays)
    lines += errors_section(measured.errors)
    return "\n".join(lines)


def json_figures(options: argparse.Namespace, measured: Measured, header: list[str], command: str) -> dict[str, Any]:
    """Every raw figure, for --json. A system's "seconds" is its whole process (start to exit);
    simplejob's data has its in-process times too (measure.TIMED_SIMPLEJOB), its check's figures
    (measure.child_check), per process kind its peak RSS and CPU seconds ("rss") and its CPU split
    by process, in seconds and µs per job ("cpuByProcess": caller, supervisor, workers, jobs,
    total); extras has "floor" (rounds.run_floor) when a fan was run; "targets" are issue 13's,
    as the report judges them."""
    delays = chain_delays_by_spec(options, measured)
    return {
        "command": command,
        "machine": header,
        "results": {
            spec.name: {s: [dataclasses.asdict(o) for o in outs] for s, outs in per.items()}
            for spec, per in measured.results.items()
        },
        "extras": {k: dataclasses.asdict(v) for k, v in measured.extras.items()},
        "targets": [dataclasses.asdict(t) for t in judge(options, measured, delays)],
        "errors": measured.errors,
    }


def run_section(options: argparse.Namespace, measured: Measured, header: list[str], command: str) -> list[str]:
    """The command, the machine, and how long and how quiet the run was."""
    lines = ["## Benchmark run", "", f"Command: `{command}`", "", *header]
    warm_up = (
        f"after an untimed warm-up run of make and simplejob{' (both versions)' if options.against else ''} "
        f"on {options.graphs[0].name}; "
        if options.warm_up and options.graphs
        else ""
    )
    lines.append(
        f"- {options.rounds} round(s) {warm_up}{WORKERS} workers; times are medians over the rounds, in seconds, of "
        "whole processes (from spawning a system's process to its exit) unless said otherwise; "
        f"the whole run took {measured.seconds:.0f} s; load average at the end: {load_average()}"
    )
    if measured.others is not None:
        share = measured.others / (measured.seconds * (os.cpu_count() or 1))
        lines.append(
            f"- CPU time used by other processes during the run (noise): {measured.others:.1f} s, "
            f"{share:.1%} of the machine"
        )
    lines.append("")
    return lines


def main_table(options: argparse.Namespace, measured: Measured) -> list[str]:
    """Every system's median time per graph (whole process), and its ratio to make."""
    head = ["graph", "jobs", "make -j2 (s)", "simplejob (s)", "× make", "in-process (s)"]
    head += ["simplejob jobs/s", "make jobs/s", "peak RSS MB: caller / supervisor / workers"]
    for system in measured.systems[2:]:
        head += [f"{TITLES[system]} (s)", "× make"]
    rows = [main_row(spec, measured.results[spec], measured.systems) for spec in options.graphs]
    lines = [table(head, rows), ""]
    lines.append(
        "simplejob (s) is the whole process, as a user sees it: the wall clock from spawning `python -c` "
        "(which imports simplejob, builds the job contexts, calls JobManager(), entry() and run(), prints "
        "its figures and exits) to its exit, as make's is from spawning make to its exit; the state file "
        "is checked afterwards, untimed. in-process: JobManager() to the return of run(), inside that "
        "process. × make: the median over rounds of the ratio to the same round's make time (whole "
        "processes). Peak RSS: the caller is the Python process that calls the API (it also holds the job "
        "contexts); the supervisor is its one child process; workers is the sum over the worker "
        "processes of each one's peak (job processes are not counted). Largest over the rounds."
    )
    if options.reference:
        lines.append(
            f"{REFERENCE_PACKAGE} is timed the same way (a whole `python -c` process), with its default run() "
            f"poll interval (1 s) and no parallelism limit; '> N s' means it was stopped after --timeout N "
            f"seconds and not run again on that graph."
        )
    lines.append("")
    return lines


def main_row(spec: Spec, runs: dict[str, list[Outcome]], systems: list[str]) -> list[str]:
    make_s, make_cell = summary(runs["make"])
    own_s, own_cell = summary(runs["simplejob"])
    rss = [o.data["rss"] for o in runs["simplejob"] if o.data.get("rss")]
    caller, supervisor = peak_mb(rss, "caller", "maxBytes"), peak_mb(rss, "supervisor", "maxBytes")
    row = [
        spec.graph,
        f"{spec.size:,}",
        make_cell,
        own_cell,
        fmt_ratio(ratio_to_make(runs["simplejob"], runs["make"])),
        fmt_s(median_data(runs["simplejob"], "inProcessSeconds")) if own_s else "–",
        f"{spec.size / own_s:,.0f}" if own_s else "–",
        f"{spec.size / make_s:,.0f}" if make_s else "–",
        f"{caller} / {supervisor} / {peak_mb(rss, 'worker', 'sumBytes')}",
    ]
    for system in systems[2:]:
        _, cell = summary(runs[system])
        row += [cell, fmt_ratio(ratio_to_make(runs[system], runs["make"]))]
    return row


def peak_mb(rss: list[dict[str, Any]], kind: str, key: str) -> str:
    """The largest figure over the rounds of one process kind (rss.RssSampler.result())."""
    values = [r[kind][key] for r in rss if kind in r]
    return mb(max(values)) if values else "–"


def simplejob_runs(options: argparse.Namespace, measured: Measured) -> dict[Spec, list[Outcome]]:
    """simplejob's runs of each graph, and of the chain run for the delay alone (if it was)."""
    runs = {spec: measured.results[spec]["simplejob"] for spec in options.graphs}
    if "delayRun" in measured.extras:
        runs[Spec("chain", options.delay_size)] = [measured.extras["delayRun"]]
    return runs


def chain_delays_by_spec(options: argparse.Namespace, measured: Measured) -> dict[Spec, list[float]]:
    """Every dependency-to-start delay (seconds) of the timed runs, all rounds, per graph."""
    return {
        spec: [d for o in runs if o.seconds is not None for d in o.data.get("delays", [])]
        for spec, runs in simplejob_runs(options, measured).items()
    }


DETAIL_COLUMNS = (  # (column, key in Outcome.data): where the whole process's time goes
    ("import simplejob (s)", "importSeconds"),
    ("job contexts (s)", "contextsSeconds"),
    ("entry() (s)", "entrySeconds"),
    ("run() (s)", "runSeconds"),
)


def details_table(options: argparse.Namespace, measured: Measured, delays: dict[Spec, list[float]]) -> list[str]:
    """simplejob's own figures: per job, where the whole process's time goes, report(), state file,
    CPU, delays."""
    head = ["graph", "jobs", "µs per job", "start + exit (s)", *(column for column, _ in DETAIL_COLUMNS)]
    head += ["report() (s)", "state file MB: snapshot + journal"]
    head += ["CPU s: make / simplejob", f"CPU s by process: {' / '.join(CPU_PARTS)}"]
    head += ["dependency → start delay ms: median / p99 / max"]
    rows = []
    for spec, runs in simplejob_runs(options, measured).items():
        own = [o for o in runs if o.seconds is not None]
        makes = [o for o in measured.results.get(spec, {}).get("make", []) if o.cpu is not None]
        empty = [spec.graph, f"{spec.size:,}"] + ["–"] * (len(head) - 2)
        rows.append(details_row(spec, own, makes, delays[spec]) if own else empty)
    lines = ["### simplejob details", "", table(head, rows), ""]
    lines.append(
        "µs per job: the whole process's time over the jobs. The whole process is start + exit (spawning "
        "the process, Python's start-up, and after run() returned: printing the figures, Python's exit and "
        "the end of the process tree) + import simplejob + job contexts (building them, graphs.py) + entry() "
        "(JobManager() and entry()) + run(), each a median over the rounds. report() runs afterwards, "
        "untimed by the headline, in a second process: JobManager() and entry() of the same batch on the "
        "finished state file, then report(). CPU is user + system time of every process the system ran "
        "(its jobs included). CPU s by process splits simplejob's: the caller's, the supervisor's and the "
        "workers' (summed) own CPU time, utime + stime from /proc/PID/stat, read every 50 ms and the last "
        "value kept, so at most each process's last 50 ms before its exit is missing from it (and counted "
        "under jobs instead); jobs is the rest of the whole tree's CPU time (not below 0): the job processes "
        "and what the samples missed. Each a median over the rounds (so the four need not add up to the "
        "median total); --json has them per job in µs too (cpuByProcess). The delay runs from a job's "
        "dependency finishing (startTimestamp + elapsedSeconds in the state file) to the job's "
        "startTimestamp, over every link of the chain in every round."
    )
    lines.append("")
    return lines


def details_row(spec: Spec, own: list[Outcome], makes: list[Outcome], delays: list[float]) -> list[str]:
    median_s = statistics.median(o.seconds for o in own if o.seconds is not None)
    code = [o.seconds - o.data["codeSeconds"] for o in own if o.seconds is not None and "codeSeconds" in o.data]
    make_cpu = f"{statistics.median(o.cpu for o in makes if o.cpu is not None):.2f}" if makes else "–"
    simplejob_cpu = statistics.median(o.cpu or 0.0 for o in own)
    delay = "–"
    if delays:
        delay = f"{fmt_ms(statistics.median(delays))} / {fmt_ms(percentile(delays, 99))} / {fmt_ms(max(delays))}"
    return [
        spec.graph,
        f"{spec.size:,}",
        f"{median_s / spec.size * 1e6:,.0f}",
        fmt_s(statistics.median(code) if code else None),
        *(fmt_s(median_data(own, key)) for _, key in DETAIL_COLUMNS),
        fmt_s(median_data(own, "reportSeconds")),
        f"{mb(own[-1].data['snapshotBytes'])} + {mb(own[-1].data['journalBytes'])}",
        f"{make_cpu} / {simplejob_cpu:.2f}",
        cpu_parts(own),
        delay,
    ]


CPU_PARTS = ("caller", "supervisor", "workers", "jobs")  # rss.cpu_by_process()'s, as the report shows them


def cpu_parts(own: list[Outcome]) -> str:
    """The median over the runs of each part of simplejob's CPU seconds (rss.cpu_by_process())."""
    splits = [o.data["cpuByProcess"]["seconds"] for o in own if o.data.get("cpuByProcess")]
    if not splits:
        return "–"
    return " / ".join(f"{statistics.median(split[part] for split in splits):.2f}" for part in CPU_PARTS)


def other_measurements(options: argparse.Namespace, measured: Measured) -> list[str]:
    """The floor, the --rss-size runs, entry() of a large batch, and the polling calls during a running fan."""
    lines = ["### Other measurements", ""]
    if "floor" in measured.extras:
        lines.append(floor_line(measured.extras["floor"]))
    lines += [
        rss_line(options, graph, measured.extras[f"rss-{graph}"])
        for graph in LARGE_BATCH_GRAPHS
        if f"rss-{graph}" in measured.extras
    ]
    for graph in LARGE_BATCH_GRAPHS:
        outcome = measured.extras[f"entry-{graph}"]
        lines.append(
            f"- entry() of {options.entry_size:,} jobs ({graph}, validation included, "
            f"JobManager() to return): {fmt_s(outcome.seconds) + ' s' if outcome.seconds else outcome.cell}"
            + (f" (others used {outcome.noise:.0%} of the CPUs)" if outcome.noise is not None else "")
        )
    lines += poll_lines(options, measured.extras["poll"])
    lines.append("")
    return lines


def rss_line(options: argparse.Namespace, graph: str, run: Outcome) -> str:
    """A run of --rss-size jobs: its whole process's time and its processes' peak RSS."""
    line = f"- {graph} of {options.rss_size:,} jobs (--rss-size), whole process: "
    if run.seconds is None:
        return line + (run.cell or "error")
    rss = [run.data["rss"]] if run.data.get("rss") else []
    return (
        line
        + f"{fmt_s(run.seconds)} s (in-process {fmt_s(run.data.get('inProcessSeconds'))} s"
        + (f"; others used {run.noise:.0%} of the CPUs" if run.noise is not None else "")
        + f"); peak RSS MB: caller {peak_mb(rss, 'caller', 'maxBytes')}, supervisor "
        + f"{peak_mb(rss, 'supervisor', 'maxBytes')}, workers {peak_mb(rss, 'worker', 'sumBytes')} "
        + f"(the sum of {rss[0].get('worker', {}).get('count', 0) if rss else 0} processes' peaks); "
        + f"CPU s by process: {' / '.join(CPU_PARTS)}: {cpu_parts([run])}"
    )


def floor_line(floor: Outcome) -> str:
    """The floor (rounds.run_floor): its whole process's time beside make's on the same fan."""
    line = f"- floor: 2 Python processes each posix_spawn + waitpid half of {floor.data['jobs']:,} `true`: "
    if floor.seconds is None:
        return line + (floor.cell or "error")
    ratio = floor.data.get("ratioToMake")
    beside = f" ({fmt_ratio(ratio)} make -j2's median on {floor.data['graph']} in this run)" if ratio else ""
    return (
        line
        + f"{fmt_s(floor.seconds)} s{beside}, CPU {fmt_s(floor.cpu)} s"
        + (f" (others used {floor.noise:.0%} of the CPUs)" if floor.noise is not None else "")
        + ". One fresh `python -c` process forks the 2 and waits for both; each starts its jobs one at a "
        "time in a session of their own, stdin/stdout/stderr on /dev/null, and waits for each: no "
        "scheduling, no state; timed as make is, from spawning it to its exit."
    )


def poll_lines(options: argparse.Namespace, poll: Outcome) -> list[str]:
    if not poll.data.get("phases"):
        return [f"- completed()/errorOccurred(): {poll.cell or 'error'}"]
    lines = []
    for interval, label in (("0.01", "every 10 ms"), ("1", "every 1 s")):
        calls = poll.data["phases"].get(interval, {})
        for name in ("completed", "errorOccurred"):
            values = calls.get(name) or []
            if values:
                lines.append(
                    f"- {name}() polled {label} during a running {options.poll_size:,}-job fan: "
                    f"median {fmt_ms(statistics.median(values))} ms, p99 {fmt_ms(percentile(values, 99))} "
                    f"ms, max {fmt_ms(max(values))} ms over {len(values)} calls"
                )
    lines.append(
        f"- runAllReadyJobs() (starts the supervisor, first read of the state) for that fan: "
        f"{fmt_s(poll.data['runAllReadyJobsSeconds'])} s; {poll.data['completedJobs']:,} jobs had "
        "completed when polling stopped"
        + (" (the batch finished during polling)" if poll.data["finishedEarly"] else "")
    )
    return lines


def every_run(options: argparse.Namespace, measured: Measured) -> list[str]:
    """Each run's time and noise, in run order, and the noisier attempts that were not kept."""
    lines = ["### Every run", ""]
    lines += [
        "Seconds, in run order; in brackets, the share of the CPUs that other processes used during that run (noise).",
        "",
    ]
    for spec in options.graphs:
        for system in measured.systems:
            cells = [
                (fmt_s(o.seconds) if o.seconds is not None else o.cell or "error")
                + (f" ({o.noise:.0%})" if o.noise is not None else "")
                for o in measured.results[spec][system]
            ]
            dropped = [f"{fmt_s(o.seconds)} ({o.noise:.0%})" for o in measured.discarded[(spec, system)]]
            lines.append(
                f"- {spec.name} {TITLES[system]}: "
                + ", ".join(cells)
                + (f"; not kept (noisier): {', '.join(dropped)}" if dropped else "")
            )
    lines.append("")
    return lines


def errors_section(errors: list[str]) -> list[str]:
    if not errors:
        return []
    return ["### Errors", "", "```"] + [e for error in errors for e in (error, "")] + ["```", ""]
