"""The Scheduler alone: readiness, retries with backoff, the fail-fast gate, cancel races, targets.

Pure bookkeeping with a fake clock: no processes, no files, no sleeping.
"""

from __future__ import annotations

import pytest

from fakes import FakeClock
from simplejob.scheduler import Scheduler, closure

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def make(waits=DIAMOND, **kwargs) -> tuple[Scheduler, FakeClock]:
    clock = FakeClock()
    return Scheduler(waits, clock=clock, **kwargs), clock


def test_jobs_are_released_in_dependency_order_and_entry_order():
    s, _ = make()
    assert s.take(10) == ["a"]
    assert s.take(10) == []  # a is in flight: nothing else is ready
    assert not s.done()
    assert s.finished("a", "ok") == ["b", "c"]
    assert s.take(1) == ["b"]  # limit respected
    assert s.take(1) == ["c"]
    assert s.finished("b", "ok") == []  # d still waits on c
    assert s.finished("c", "ok") == ["d"]
    assert s.take(10) == ["d"]
    s.finished("d", "ok")
    assert s.done()


def test_without_keep_going_a_failure_closes_the_gate_but_running_jobs_finish():
    s, _ = make({"a": [], "b": [], "c": [], "d": ["a"]})
    assert s.take(2) == ["a", "b"]
    assert s.finished("a", "failed") == []
    assert s.gate_closed
    assert s.take(10) == []  # c may not start
    assert not s.done()  # b still runs
    s.finished("b", "ok")
    assert s.done()


def test_with_keep_going_everything_not_downstream_of_the_failure_runs():
    s, _ = make({"a": [], "b": [], "c": ["a"], "d": ["b"]}, keep_going=True)
    assert s.take(10) == ["a", "b"]
    s.finished("a", "failed")
    assert s.finished("b", "ok") == ["d"]
    assert s.take(10) == ["d"]  # c waits on the failed a: never ready
    s.finished("d", "ok")
    assert s.done()


def test_a_retry_waits_out_its_delay_without_a_slot_then_goes_before_new_jobs():
    s, clock = make({"slow": [], "x": [], "y": []})
    assert s.take(1) == ["slow"]
    due = s.retry_after("slow", 2.0)
    assert due == clock.now + 2.0 and s.next_due() == due
    assert s.take(1) == ["x"]  # the retry holds no slot while it waits
    clock.advance(1.999)
    assert s.take(5) == ["y"]
    clock.advance(0.001)
    assert not s.done()
    assert s.take(5) == ["slow"]
    assert s.next_due() is None


def test_retries_come_back_in_due_order_with_backoff():
    s, clock = make({"a": [], "b": []})
    s.take(2)
    s.retry_after("a", 4.0)  # a later retry (backoff) ...
    s.retry_after("b", 1.0)
    clock.advance(5)
    assert s.take(5) == ["b", "a"]  # ... comes back after the earlier one


def test_retries_go_on_after_a_failure_closed_the_gate():
    s, clock = make({"a": [], "b": [], "c": []})
    s.take(2)
    s.retry_after("a", 1.0)
    s.finished("b", "failed")
    clock.advance(1)
    assert s.take(5) == ["a"]  # the job already running goes on; c does not start


def test_an_attempt_returned_unstarted_goes_first_in_line_again():
    s, _ = make({"a": [], "b": [], "c": []})
    assert s.take(2) == ["a", "b"]
    assert s.returned("b") is False
    assert s.take(1) == ["b"]


def test_a_returned_retry_is_due_at_once_and_not_held_by_the_gate():
    s, clock = make({"a": [], "b": []})
    s.take(2)
    s.retry_after("a", 1.0)
    clock.advance(1)
    assert s.take(1) == ["a"]
    s.finished("b", "failed")
    assert s.returned("a") is False
    assert s.take(1) == ["a"]


def test_a_returned_first_attempt_obeys_the_gate():
    s, _ = make({"a": [], "b": []})
    s.take(2)
    s.finished("a", "failed")
    s.returned("b")
    assert s.take(5) == []
    assert s.done()


def test_cancel_of_a_job_in_flight_asks_for_a_kill_and_a_return_then_means_cancelled():
    s, _ = make({"a": [], "b": ["a"]})
    s.take(1)
    assert s.cancel("a") == "kill"
    assert s.returned("a") is True  # it never started: it is cancelled now
    assert s.take(5) == []  # b waits on a, which did not succeed
    assert s.done()


def test_cancel_of_a_job_in_flight_that_finished_first_keeps_its_outcome():
    s, _ = make({"a": [], "b": ["a"]})
    s.take(1)
    assert s.cancel("a") == "kill"
    assert s.finished("a", "ok") == ["b"]  # the race was lost: it had already completed
    assert s.take(5) == ["b"]


def test_cancel_of_a_waiting_job_or_retry_drops_it_now():
    s, _ = make({"a": [], "b": [], "c": ["a"]})
    assert s.cancel("b") == "now"
    assert s.cancel("c") == "now"  # not ready yet: it will never be
    assert s.take(5) == ["a"]
    s.retry_after("a", 5.0)
    assert s.cancel("a") == "now"
    assert s.next_due() is None
    assert s.done()
    assert s.cancel("a") == "none"


def test_jobs_done_earlier_count_as_met_and_are_not_run():
    s, _ = make(succeeded={"a"})
    assert s.take(5) == ["b", "c"]


def test_targets_run_only_themselves_and_what_they_wait_on():
    waits = {"a": [], "b": ["a"], "c": ["a"], "d": ["b"], "e": []}
    s, _ = make(waits, targets=["d"])
    assert s.take(5) == ["a"]
    s.finished("a", "ok")
    assert s.take(5) == ["b"]  # c is downstream of a but not needed by d
    s.finished("b", "ok")
    assert s.take(5) == ["d"]
    s.finished("d", "ok")
    assert s.done()
    assert closure(waits, ["d", "e"]) == {"a", "b", "d", "e"}


def test_a_long_chain_is_released_one_by_one_without_recursion():
    n = 100_000
    waits = {str(i): [str(i - 1)] if i else [] for i in range(n)}
    s, _ = make(waits)
    for i in range(n):
        assert s.take(2) == [str(i)]
        s.finished(str(i), "ok")
    assert s.done()


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_what_waits_on_a_job_that_did_not_succeed_never_runs(outcome):
    s, _ = make({"a": [], "b": ["a"]}, keep_going=True)
    s.take(1)
    assert s.finished("a", outcome) == []
    assert s.take(5) == []
    assert s.done()


# --- priorities and resources ---------------------------------------------------------------------


def test_higher_priority_starts_first_then_the_order_jobs_became_ready():
    waits = {"low": [], "mid": [], "high": [], "zero": [], "later": ["zero"]}
    s, _ = make(waits, priorities={"low": -1, "mid": 1, "high": 5, "later": 9})
    assert s.take(2) == ["high", "mid"]
    assert s.take(1) == ["zero"]
    assert s.finished("zero", "ok") == ["later"]
    assert s.take(5) == ["later", "low"]  # released later, but of a higher priority


def test_a_returned_attempt_goes_first_again_among_its_priority():
    s, _ = make({"a": [], "b": [], "c": [], "d": []}, priorities={"a": 1, "b": 1, "c": 1})
    assert s.take(2) == ["a", "b"]
    s.returned("b")
    assert s.take(1) == ["b"]
    assert s.take(2) == ["c", "d"]


def test_attempts_given_back_together_keep_their_order_with_priorities():
    # a worker gives back what waited behind a long job in the order it got them: taking them
    # again must not reverse them (equal priorities start in entry order, however often returned)
    waits = dict.fromkeys(["first", "low", "plain", "high", "mid"], [])
    s, _ = make(waits, priorities={"low": -1, "high": 10, "mid": 5})
    assert s.take(3) == ["high", "mid", "first"]
    s.returned("mid")
    s.returned("first")
    assert s.take(3) == ["mid", "first", "plain"]
    s.returned("first")
    s.returned("plain")
    assert s.take(5) == ["first", "plain", "low"]


def test_attempts_given_back_together_keep_their_order_in_the_plain_fifo():
    s, _ = make(dict.fromkeys("abcdef", []))
    assert s.take(4) == ["a", "b", "c", "d"]
    s.returned("b")
    s.returned("c")
    s.returned("d")
    assert s.take(2) == ["b", "c"]
    s.returned("c")
    assert s.take(5) == ["c", "d", "e", "f"]
    assert not s.done()
    for job in "abcdef":
        s.finished(job, "ok")
    assert s.done()


def test_a_follow_on_is_not_handed_out_while_a_given_back_job_waits_in_line():
    s, _ = make({"a": [], "b": [], "c": ["a"]})
    assert s.take(2) == ["a", "b"]
    s.returned("b")
    assert s.follow("a", 4) == []  # b is ready and in line: c must not pass it
    assert s.take(1) == ["b"]
    assert s.follow("a", 4) == ["c"]


def test_resources_cap_what_runs_at_once_without_head_of_line_blocking():
    waits = {"gpu1": [], "gpu2": [], "cpu": [], "db": [], "gpu3": []}
    needs = {"gpu1": {"gpu": 1}, "gpu2": {"gpu": 1}, "gpu3": {"gpu": 1}, "db": {"db": 1, "gpu": 0.5}}
    s, _ = make(waits, needs=needs, capacities={"gpu": 1.5, "db": 2})
    assert s.take(10) == ["gpu1", "cpu", "db"]  # gpu2 and gpu3 wait; cpu and db behind them start
    assert not s.done()
    assert s.take(10) == []
    s.finished("db", "ok")  # 0.5 gpu back: not enough for a whole one
    assert s.take(10) == []
    s.finished("gpu1", "ok")
    assert s.take(10) == ["gpu2"]  # the parked ones keep their place in line
    s.finished("gpu2", "failed")  # with keepGoing off the gate closes: gpu3 never starts
    assert s.take(10) == []
    s.finished("cpu", "ok")
    assert s.done()


def test_resources_are_released_by_a_retry_and_a_return_and_taken_again_by_the_retry():
    waits = {"a": [], "b": [], "c": []}
    needs = {"a": {"r": 1}, "b": {"r": 1}, "c": {"r": 1}}
    s, clock = make(waits, needs=needs, capacities={"r": 1}, keep_going=True)
    assert s.take(5) == ["a"]
    s.retry_after("a", 1.0)  # waiting out its delay, a holds nothing
    assert s.take(5) == ["b"]
    clock.advance(1)
    assert s.next_due() is None  # due, but it does not fit: no busy wake-up
    assert s.take(5) == []
    s.returned("b")
    assert s.take(5) == ["a"]  # the due retry first
    s.finished("a", "ok")
    assert s.take(5) == ["b"]
    s.finished("b", "ok")
    assert s.take(5) == ["c"]
    s.finished("c", "ok")
    assert s.done()


def test_priorities_order_the_jobs_waiting_for_a_resource():
    waits = {"a": [], "b": [], "c": []}
    needs = {job: {"r": 1} for job in waits}
    s, _ = make(waits, needs=needs, capacities={"r": 1}, priorities={"c": 2})
    assert s.take(5) == ["c"]
    s.finished("c", "ok")
    assert s.take(5) == ["a"]


def test_a_cancelled_parked_job_does_not_keep_the_batch_from_being_done():
    s, _ = make({"a": [], "b": []}, needs={"a": {"r": 1}, "b": {"r": 1}}, capacities={"r": 1})
    assert s.take(5) == ["a"]
    assert s.cancel("b") == "now"
    s.finished("a", "ok")
    assert s.done()


def test_without_capacities_resources_are_left_to_the_executor():
    s, _ = make({"a": [], "b": []}, needs={"a": {"gpu": 1}, "b": {"gpu": 1}})
    assert s.take(5) == ["a", "b"]


# --- follow-ons: what may wait on a slot behind the job it waits on -------------------------------

CHAIN = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}


def test_a_chain_is_handed_out_behind_the_job_in_flight_up_to_the_limit():
    s, _ = make(CHAIN)
    assert s.take(10) == ["a"]
    assert s.follow("a", 2) == ["b", "c"]  # each waits on the one before and on nothing else
    assert s.take(10) == []  # they are in flight: not handed out again
    assert s.finished("a", "ok") == []  # b already runs (or waits on its slot): not released again
    assert s.finished("b", "ok") == []
    assert s.follow("c", 5) == ["d"]
    s.finished("c", "ok")
    s.finished("d", "ok")
    assert s.done()


def test_a_follow_on_given_back_after_its_job_failed_waits_and_runs_only_after_a_retry_succeeded():
    s, clock = make(CHAIN)
    assert s.take(10) == ["a"]
    assert s.follow("a", 1) == ["b"]
    s.retry_after("a", 1.0)  # a failed; its slot gives b back unstarted
    assert s.returned("b") is False
    assert s.take(10) == []  # b still waits on a: not ready
    clock.advance(1.0)
    assert s.take(10) == ["a"]  # the retry
    assert s.finished("a", "ok") == ["b"]
    assert s.take(10) == ["b"]


def test_a_follow_on_given_back_after_its_job_failed_for_good_never_runs():
    s, _ = make(CHAIN, keep_going=True)
    assert s.take(10) == ["a"]
    assert s.follow("a", 3) == ["b", "c", "d"]
    s.finished("a", "failed")
    for job in ("b", "c", "d"):
        assert s.returned(job) is False
    assert s.take(10) == []
    assert s.done()


def test_no_follow_on_for_a_job_with_another_unmet_wait_nor_past_a_ready_job_nor_with_the_gate_closed():
    s, _ = make(DIAMOND)
    assert s.take(1) == ["a"]
    assert s.follow("a", 5) == ["b"]  # b and c wait on a alone; one follows it (the other may start elsewhere)
    assert s.follow("b", 5) == []  # d also waits on c
    s, _ = make({"a": [], "x": [], "b": ["a"]})
    assert s.take(1) == ["a"]
    assert s.follow("a", 5) == []  # x is ready and waits in line: b must not pass it
    s, _ = make({"a": [], "x": [], "b": ["x"]})
    assert s.take(2) == ["a", "x"]
    s.finished("a", "failed")
    assert s.follow("x", 5) == []  # the gate is closed


def test_no_follow_on_with_priorities_or_resources():
    s, _ = make(CHAIN, priorities={"c": 1})
    assert s.take(10) == ["a"]
    assert s.follow("a", 5) == []
    s, _ = make(CHAIN, needs={"b": {"gpu": 1}}, capacities={"gpu": 1})
    assert s.take(10) == ["a"]
    assert s.follow("a", 5) == []


def test_cancel_of_a_follow_on_asks_for_a_kill_like_any_job_in_flight():
    s, _ = make(CHAIN)
    s.take(10)
    assert s.follow("a", 1) == ["b"]
    assert s.cancel("b") == "kill"
    assert s.returned("b") is True  # given back unstarted: cancelled
