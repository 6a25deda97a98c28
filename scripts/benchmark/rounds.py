"""The order of the runs: rounds of every system on every graph, then the extra measurements.

Before the rounds, make and simplejob each run the first graph once, untimed (unless
--no-warm-up): on this machine kind the first heavy runs after a quiet spell are slower, for both
alike (make's fan of 10,000 four times in a row: 3.62, 3.51, 3.47, 3.40 s), and without it the
first system of round 1 paid for that. Each round runs every system once on every graph, one
thing at a time, in an order that rotates between rounds. A run during which other processes
used more than --max-noise of the CPUs is run again (up to --noisy-retries times) and the
quietest attempt kept. simplejob 0.0.6 or doit that
timed out or failed on a graph is not run on it again. After the rounds, one at a time: when a
fan was run, the floor at the largest fan's size (2 Python processes that each posix_spawn +
waitpid half of the `true` jobs, timed as make is, beside make's median on that fan); a chain
for the dependency-to-start delay (when no chain graph was run), with --rss-size N one fan of N
jobs for the peak RSS (a whole-process simplejob run, as in the rounds), entry() of --entry-size
jobs, and completed()/errorOccurred() during a running fan.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

from . import progress
from .figures import fmt_s
from .graphs import LARGE_BATCH_GRAPHS, Spec
from .machine import busy_cpu, own_cpu, settle
from .systems import SYSTEMS, TITLES, Bench, Outcome


@dataclasses.dataclass
class Measured:
    """Everything a benchmark run measured: what the report and --json show."""

    systems: list[str]  # make, simplejob, then those asked for
    results: dict[Spec, dict[str, list[Outcome]]]  # the kept run of each round
    discarded: dict[tuple[Spec, str], list[Outcome]]  # the noisier attempts that were not kept
    # floor (make's kind of run); delayRun, rss-fan, rss-layers (simplejob runs, as in the rounds);
    # entry-fan, entry-layers, poll (measured inside a child)
    extras: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)  # failures of the benchmark (exit status 1)
    seconds: float = 0.0  # the whole run, wall clock
    others: float | None = None  # CPU seconds other processes used meanwhile; None where unknown

    def record(self, outcome: Outcome) -> None:
        if outcome.error:
            self.errors.append(outcome.error)

    def add_extra(self, key: str, outcome: Outcome) -> None:
        self.record(outcome)
        self.extras[key] = outcome


def measure(bench: Bench, options: argparse.Namespace) -> Measured:
    """The rounds, then the extra measurements, with the CPU time others used meanwhile."""
    systems = list(SYSTEMS[:2]) + [s for s in SYSTEMS[2:] if getattr(options, s)]
    measured = Measured(
        systems,
        results={spec: {s: [] for s in systems} for spec in options.graphs},
        discarded={(spec, s): [] for spec in options.graphs for s in systems},
    )
    wall_started = time.perf_counter()
    busy_started, own_started = busy_cpu(), own_cpu()
    run_rounds(bench, options, measured)
    run_extras(bench, options, measured)
    measured.seconds = time.perf_counter() - wall_started
    busy_ended = busy_cpu()
    if busy_started is not None and busy_ended is not None:
        measured.others = max(0.0, (busy_ended - busy_started) - (own_cpu() - own_started))
    return measured


def run_rounds(bench: Bench, options: argparse.Namespace, measured: Measured) -> None:
    runners = bench.runners()
    systems = measured.systems
    given_up: set[tuple[Spec, str]] = set()  # 0.0.6 or doit timed out or failed: not run again on that graph
    if options.warm_up and options.graphs:
        for system in [s for s in systems if s in ("make", "simplejob", "against")]:
            outcome = runners[system](options.graphs[0])
            progress(f"warm-up {options.graphs[0].name} {TITLES[system]}: {fmt_s(outcome.seconds)} s (not counted)")
    for round_number in range(options.rounds):
        order = systems[round_number % len(systems) :] + systems[: round_number % len(systems)]
        for spec in options.graphs:
            for system in order:
                if (spec, system) in given_up:
                    continue
                label = f"round {round_number + 1}/{options.rounds} {spec.name:<14} {TITLES[system]:<16}"
                outcome, noisier = run_quietly(runners[system], spec, options, label)
                measured.discarded[(spec, system)].extend(noisier)
                measured.results[spec][system].append(outcome)
                measured.record(outcome)
                if outcome.seconds is None and system in ("reference", "doit"):
                    given_up.add((spec, system))


def run_quietly(
    runner: Callable[[Spec], Outcome], spec: Spec, options: argparse.Namespace, label: str
) -> tuple[Outcome, list[Outcome]]:
    """One run, again while it was noisy (with --max-noise): the kept outcome and the others."""
    attempts: list[Outcome] = []
    for _ in range(options.noisy_retries + 1):
        settle(options.settle)
        outcome = runner(spec)
        attempts.append(outcome)
        shown = fmt_s(outcome.seconds) + " s" if outcome.seconds is not None else outcome.cell
        progress(f"{label} {shown}" + (f"  (others used {outcome.noise:.0%} of the CPUs)" if outcome.noise else ""))
        noisy = (
            options.max_noise is not None
            and outcome.noise is not None
            and outcome.noise > options.max_noise
            and outcome.seconds is not None
            and not outcome.error
        )
        if not noisy:
            break
        progress(f"  noisy: other processes used more than {options.max_noise:.0%} of the CPUs")
    # Keep the quietest attempt (the last one that failed or timed out, if any did).
    if outcome.seconds is not None and not outcome.error:
        outcome = min(attempts, key=lambda o: o.noise or 0.0)
    return outcome, [o for o in attempts if o is not outcome]


def run_extras(bench: Bench, options: argparse.Namespace, measured: Measured) -> None:
    """The measurements after the rounds, one at a time (measure.py: FLOOR, entry, poll)."""
    fans = [spec for spec in options.graphs if spec.graph == "fan"]
    if fans:
        run_floor(bench, options, measured, max(fans, key=lambda spec: spec.size))
    if not any(spec.graph == "chain" for spec in options.graphs):
        progress(f"chain:{options.delay_size} for the dependency-to-start delay")
        settle(options.settle)
        measured.add_extra("delayRun", bench.run_simplejob(Spec("chain", options.delay_size)))
    for graph in LARGE_BATCH_GRAPHS if options.rss_size else ():
        label = f"{graph}:{options.rss_size} for the peak RSS, whole process"
        progress(label)
        settle(options.settle)
        outcome = bench.run_simplejob(Spec(graph, options.rss_size))
        progress(f"{label}: " + (fmt_s(outcome.seconds) + " s" if outcome.seconds is not None else str(outcome.cell)))
        measured.add_extra(f"rss-{graph}", outcome)
    for graph in LARGE_BATCH_GRAPHS:
        progress(f"entry() of {options.entry_size} jobs ({graph})")
        settle(options.settle)
        args = {"graph": graph, "size": options.entry_size, "dir": bench.fresh_dir("entry")}
        measured.add_extra(f"entry-{graph}", bench.child("entry", args, options.max_seconds))
    progress(f"completed()/errorOccurred() during a {options.poll_size}-job fan")
    settle(options.settle)
    args = {"size": options.poll_size, "dir": bench.fresh_dir("poll"), "pollSeconds": options.poll_seconds}
    measured.add_extra("poll", bench.child("poll", args, options.max_seconds))


def run_floor(bench: Bench, options: argparse.Namespace, measured: Measured, fan: Spec) -> None:
    """The floor at the fan's size, and make's median on that fan in the rounds beside it."""
    label = f"floor: 2 Python processes, posix_spawn + waitpid of {fan.size} `true`"
    progress(label)
    settle(options.settle)
    outcome = bench.run_floor(fan.size)
    progress(f"{label}: " + (fmt_s(outcome.seconds) + " s" if outcome.seconds is not None else str(outcome.cell)))
    makes = [o.seconds for o in measured.results[fan]["make"] if o.seconds is not None]
    make = statistics.median(makes) if makes else None
    outcome.data.update(
        graph=fan.name,
        jobs=fan.size,
        makeMedianSeconds=make,
        ratioToMake=outcome.seconds / make if outcome.seconds is not None and make else None,
    )
    measured.add_extra("floor", outcome)
