"""The bounded runner: a step on a thread of its own, waited for at most its timeout."""

from __future__ import annotations

import threading

import pytest

from recovery._bounded import ThreadRunner, run_inline
from recovery.testing import FakeClock
from tests.helpers import eventually


def runner(clock: FakeClock | None = None) -> ThreadRunner:
    return ThreadRunner(clock if clock is not None else FakeClock(), lambda: None)


def test_a_step_that_returns_gives_its_value_and_leaves_nothing_behind() -> None:
    steps = runner()
    run = steps.run(lambda: 42, 5.0, "answer")
    assert (run.finished, run.value, run.error) == (True, 42, None)
    assert steps.running() == [] and steps.stuck() == []


def test_a_step_that_raises_is_reraised_by_the_bounded_runner() -> None:
    steps = runner()

    def fail() -> None:
        raise LookupError("gone")

    run = steps.run(fail, 5.0, "fail")
    assert run.finished and isinstance(run.error, LookupError)
    with pytest.raises(LookupError, match="gone"):
        steps.run_or_raise(fail, 5.0, "fail")

    def leave() -> None:
        raise SystemExit(3)

    with pytest.raises(RuntimeError, match="leave raised SystemExit"):
        steps.run_or_raise(leave, 5.0, "leave")


def test_a_step_past_its_timeout_is_abandoned_and_listed_as_stuck_until_it_returns() -> None:
    clock = FakeClock()
    steps = runner(clock)
    release, returned = threading.Event(), threading.Event()

    def hang() -> None:
        assert release.wait(10)

    def call() -> None:
        assert not steps.run_or_raise(hang, 5.0, "hang")
        returned.set()

    waiter = threading.Thread(target=call)
    waiter.start()
    assert clock.wait_for_waiters(1)
    assert [run.label for run in steps.running()] == ["hang"]
    clock.advance(5.0)
    assert returned.wait(10), "the caller was not let go at the deadline"
    waiter.join(10)
    (stuck,) = steps.stuck()
    assert stuck.label == "hang" and not stuck.finished
    assert steps.running() == []
    release.set()
    assert stuck.wake.wait(10)
    assert steps.stuck() == []


def test_interrupt_ends_every_wait_now_and_later_ones_until_resume() -> None:
    clock = FakeClock()
    steps = runner(clock)
    release = threading.Event()
    runs = []
    waiter = threading.Thread(target=lambda: runs.append(steps.run(release.wait, 1000.0, "a")))
    waiter.start()
    assert clock.wait_for_waiters(1)
    steps.interrupt()
    waiter.join(10)
    assert not waiter.is_alive() and not runs[0].finished
    later = steps.run(release.wait, 1000.0, "b")
    assert not later.finished  # not waited for at all
    assert {run.label for run in steps.stuck()} == {"a", "b"}
    steps.resume()
    release.set()
    eventually(lambda: steps.stuck() == [], message="the released steps were not unlisted")
    assert steps.run(lambda: "done", 1000.0, "c").value == "done"  # waited for again


def test_each_step_s_thread_is_announced_first() -> None:
    seen: list[threading.Thread] = []
    steps = ThreadRunner(FakeClock(), lambda: seen.append(threading.current_thread()))
    run = steps.run(threading.current_thread, 5.0, "who")
    assert seen == [run.value] and run.value is not threading.current_thread()


def test_run_inline_runs_the_step_on_the_caller_s_thread() -> None:
    threads: list[threading.Thread] = []
    assert run_inline(lambda: threads.append(threading.current_thread()), 0.0, "here")
    assert threads == [threading.current_thread()]
