"""A real worker process fed random sequences of its protocol (hypothesis): runs (some waiting on
an earlier attempt), cancels and holds, in bursts with pauses between them, then the end of its
stdin. Whatever the interleaving, its answers must keep the protocol's promises:

- every attempt sent gets exactly one end: "finished", or "returned" (alone, or in a "started"
  that gives back what waited behind a long job); nothing is reported for an id never sent;
- an attempt is reported "started" at most once, and never after its end;
- an attempt that waits on another ran only if that one succeeded (exit 0, not cancelled, not
  timed out) and its end was reported first;
- a cancelled attempt that had not started never runs (given back or finished "cancelled"); one
  cancelled in the write that sent it, while it surely still runs (0.1 s or more), ends cancelled;
- the exit codes are the commands' own;
- once every attempt ended, the worker exits soon after its stdin ends, saying nothing more.

Which attempt ran is told by the files the commands touch, not only by the events.
"""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simplejob.protocol import Event
from test_worker import Worker, attempt

SCALE = int(os.environ.get("SIMPLEJOB_PROPERTY_SCALE", "1"))
FIXED = SCALE == 1  # the suite runs the same examples every time (see test_properties.py)

# what an attempt does: (argv before the marker file, timeout)
COMMANDS = {
    "ok": (["touch"], None),
    "fail": (["sh", "-c", 'touch "$0"; exit 3'], None),
    "short": (["sh", "-c", 'touch "$0"; sleep 0.03'], None),
    "long": (["sh", "-c", 'touch "$0"; sleep 0.15'], None),  # past the announce delay: gives back
    "timeout": (["sh", "-c", 'touch "$0"; exec sleep 5'], 0.1),
}
MESSAGE = st.one_of(
    st.tuples(st.just("run"), st.sampled_from(sorted(COMMANDS)), st.integers(0, 6)),  # after: earlier id, or none
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("hold")),
)
BURSTS = st.lists(
    st.tuples(st.lists(MESSAGE, min_size=1, max_size=5), st.sampled_from([0.0, 0.0, 0.02, 0.08])),
    min_size=1,
    max_size=5,
)


def ended(event: Event) -> list[str]:
    """The attempts an event ends: its own, or those a "started" gives back."""
    return list(event.returned or ()) if event.kind == "started" else [event.id]


@settings(max_examples=12 * SCALE, deadline=None, derandomize=FIXED, suppress_health_check=list(HealthCheck))
@given(BURSTS)
# (("run", what, 0): waiting on the attempt sent just before; 6: on none)
@example([([("run", "ok", 6), ("run", "fail", 6), ("run", "ok", 0), ("run", "ok", 0), ("run", "ok", 6)], 0.0)])
@example([([("run", "long", 6), ("run", "ok", 0), ("run", "ok", 6), ("cancel", 0)], 0.0)])
@example([([("run", "timeout", 6), ("run", "ok", 0), ("run", "short", 6)], 0.0)])
@example([([("run", "long", 6), ("run", "ok", 6), ("run", "ok", 0)], 0.0), ([("hold",), ("run", "ok", 6)], 0.2)])
@example([([("run", "fail", 6)], 0.08), ([("run", "ok", 0), ("run", "ok", 6)], 0.08), ([("run", "ok", 1)], 0.0)])
def test_a_worker_keeps_its_protocol_whatever_it_is_sent(tmp_path_factory, bursts):
    directory = tmp_path_factory.mktemp("worker")
    worker = Worker()
    sent: list[str] = []  # attempt ids, in the order sent
    after_of: dict[str, str | None] = {}
    cancelled: set[str] = set()  # ids a cancel was sent for
    cancelled_at_once: set[str] = set()  # ... in the same write as the attempt itself (one read)
    kinds: dict[str, str] = {}
    try:
        for messages, pause in bursts:
            batch = []
            this_burst: set[str] = set()
            for message in messages:
                if message[0] == "run":
                    job_id = f"a{len(sent)}"
                    kind = message[1]
                    argv, timeout = COMMANDS[kind]
                    after = sent[-1 - message[2]] if message[2] < 3 and len(sent) > message[2] else None
                    spec = attempt(job_id, [*argv, str(directory / job_id)], after=after)
                    spec["timeout"] = timeout
                    spec["killGrace"] = 0.2
                    batch.append(spec)
                    sent.append(job_id)
                    this_burst.add(job_id)
                    after_of[job_id] = after
                    kinds[job_id] = kind
                elif message[0] == "cancel" and sent:
                    job_id = sent[message[1] % len(sent)]
                    cancelled.add(job_id)
                    if job_id in this_burst:
                        cancelled_at_once.add(job_id)
                    batch.append({"op": "cancel", "id": job_id})
                elif message[0] == "hold":
                    batch.append({"op": "hold"})
            if batch:
                worker.send(*batch)
            time.sleep(pause)
        events: list[Event] = []
        open_ids = set(sent)
        while open_ids:  # every attempt ends by itself (the longest runs 0.15 s, or times out)
            events += worker.events(1)
            open_ids.difference_update(ended(events[-1]))
        assert worker.proc.stdin is not None and worker.proc.stdout is not None
        worker.proc.stdin.close()  # the supervisor is gone: nothing runs, so it just exits
        assert worker.proc.wait(timeout=10) == 0
        assert worker.proc.stdout.read() == b"" and not worker.unread
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()

    ends: dict[str, Event] = {}
    started: set[str] = set()
    order: list[str] = []
    for event in events:
        assert event.id in after_of, f"an event for {event.id!r}, never sent"
        assert event.id not in ends, f"{event.id} reported again after its end: {event}"
        if event.kind == "started":
            assert event.id not in started, f"{event.id} started twice"
            started.add(event.id)
            for job_id in event.returned or ():
                assert job_id in after_of and job_id not in ends, f"{job_id} given back twice or unknown"
                ends[job_id] = Event("returned", job_id, event.t)
                order.append(job_id)
        else:
            ends[event.id] = event
            order.append(event.id)
    assert set(ends) == set(sent), f"no end for {sorted(set(sent) - set(ends))}"

    for job_id in sent:
        end = ends[job_id]
        ran = (directory / job_id).exists()  # its command started (each touches its file first)
        if end.kind == "returned":
            assert not ran, f"{job_id} was given back, yet its command ran"
        after = after_of[job_id]
        if ran and after is not None:
            before = ends[after]
            succeeded = before.kind == "finished" and before.exit_code == 0 and not before.cancelled
            assert succeeded and not before.timed_out, f"{job_id} ran though {after} did not succeed: {before}"
            assert order.index(after) < order.index(job_id), f"{job_id}'s end was reported before {after}'s"
        if job_id in cancelled and not ran:
            assert end.kind == "returned" or end.cancelled, f"{job_id}, cancelled before it ran: {end}"
        if job_id in cancelled_at_once and kinds[job_id] in ("long", "timeout"):
            assert end.kind == "returned" or end.cancelled, f"{job_id}, cancelled while it ran: {end}"
        if ran and end.kind == "finished" and not end.cancelled and end.exit_code is not None:
            expected = {"ok": 0, "fail": 3, "short": 0, "long": 0}.get(kinds[job_id])
            assert expected is None or end.exit_code == expected, (job_id, kinds[job_id], end)
