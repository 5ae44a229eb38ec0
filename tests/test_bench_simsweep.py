"""bench/simsweep.py: it reads what `meridian sim run` really prints, and judges the budget."""

from __future__ import annotations

import pytest

from bench.simsweep import BASELINE_SETS, Sweep, baseline_s, sweep


@pytest.mark.integration  # a real `meridian sim run` process
def test_a_sweep_reads_the_summary_of_a_real_run() -> None:
    result = sweep("name-race", "1..2", 1)
    assert (result.seeds, result.passed) == (2, 2)
    assert result.wall_s > 0 and result.cpu_s > 0  # the run's worker CPU is counted
    assert "all pass" in result.line(60.0) and result.line(60.0).endswith("yes")


def test_a_failed_seed_or_a_run_over_the_budget_is_marked() -> None:
    over = Sweep("slow", wall_s=61.0, cpu_s=120.0, seeds=200, passed=200)
    assert over.line(60.0).endswith("NO") and "0.600 s" in over.line(60.0)
    failed = Sweep("broken", wall_s=10.0, cpu_s=20.0, seeds=200, passed=197)
    assert "3 FAILED" in failed.line(60.0)


def test_the_baseline_is_raw_pycrdt_work_that_takes_measurable_time() -> None:
    assert BASELINE_SETS >= 10_000
    assert 0 < baseline_s() < 10
