"""The worker processes of a job: results, failures, a dead worker, and ending them at once."""

from __future__ import annotations

import operator
import os
import time

import pytest

from treeq.pipelines.workers import Inline, WorkerDied, Workers


def test_results_come_back_with_their_index():
    calls = [(float(i), 2.0) for i in range(7)]
    with Workers(operator.truediv, 2) as pool:
        got = dict(pool.map_unordered(calls))
    assert got == {i: i / 2 for i in range(7)}
    assert dict(Inline(operator.truediv).map_unordered(calls)) == got


def test_a_failing_call_raises_its_exception_in_the_parent():
    with Workers(operator.truediv, 2) as pool:
        with pytest.raises(ZeroDivisionError):
            list(pool.map_unordered([(1.0, 1.0), (1.0, 0.0), (2.0, 1.0)]))


def test_a_worker_that_dies_is_reported_not_waited_for():
    with Workers(os._exit, 2) as pool:
        with pytest.raises(WorkerDied, match="exit code 3") as info:
            list(pool.map_unordered([(3,)]))
    assert info.value.index == 0


def test_close_ends_busy_workers_at_once():
    """One worker in a 60 s call, the other's result not yet taken: close() ends both at once,
    and in_flight() names both calls with their workers (what the job must clean up after)."""
    pool = Workers(time.sleep, 2)
    procs = list(pool._procs)
    results = pool.map_unordered([(0.1,), (60,), (60,)])
    assert next(results)[0] == 0
    t0 = time.monotonic()
    pool.close()
    assert time.monotonic() - t0 < 5
    for p in procs:
        assert not p.is_alive()
    assert sorted(i for _, i in pool.in_flight()) == [0, 1]
    assert {pid for pid, _ in pool.in_flight()} == {p.pid for p in procs}
