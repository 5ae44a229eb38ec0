"""Bounds derived from the latency matrix: a node that stops relaying or repairing fails the run.

Before the bounds were derived, partial-partition passed with relay switched off (lag p99
doubled, convergence 0.2 s -> 10 s through periodic anti-entropy); now each put's trip is judged
against the latencies of the path it had, and convergence against the worst reconnection.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meridian.sim.bounds import convergence_bound, retransmission_s
from meridian.sim.history import Retransmission
from meridian.sim.scenario import SCENARIO_DIR, Scenario, load_scenario
from meridian.sim.world import Simulation


def context_model(scenario: Scenario) -> tuple[float, float]:
    from meridian.sim.checkers import CheckContext

    context = CheckContext(
        tuple(scenario.node_ids),
        scenario.paths,
        scenario.sync,
        scenario.connect_timeout_s,
        max(node.frame_s for node in scenario.nodes),
        scenario.faults,
        scenario.faulty_s,
    )
    model = context.model()
    return convergence_bound(model, scenario.faulty_s), model.reconnect_s()


def test_the_convergence_bounds_follow_from_the_latencies_and_the_faults() -> None:
    partial, reconnect = context_model(load_scenario(SCENARIO_DIR / "partial-partition.toml"))
    # nothing ends at the heal (the cut is permanent): one relayed trip, eu->ap->us at most
    assert 0.19 < partial < 0.4
    healed, _ = context_model(load_scenario(SCENARIO_DIR / "partition-heal.toml"))
    # the partition ends at the heal: a dialer may be silent for 7 s (SYNs at 0, 1, 3 s, the
    # 5 s connect timeout, then up to 5 s of backoff), then set-up and anti-entropy
    assert healed == pytest.approx(reconnect) and 7.5 < healed < 9.0


def test_partial_partition_without_relay_fails_the_lag_and_convergence_bounds(
    tmp_path: Path,
) -> None:
    text = (SCENARIO_DIR / "partial-partition.toml").read_text()
    path = tmp_path / "no-relay.toml"
    path.write_text(text.replace("[phases]", "[sync]\nrelay = false\n\n[phases]"))
    result = Simulation(load_scenario(path), 1).run()
    verdicts = {v.checker: v for v in result.verdicts}
    lag, converge = verdicts["replication-lag"], verdicts["convergence-time"]
    assert not lag.ok and "relayed puts arrived later than their bound" in lag.message
    assert "is relay working?" in lag.message
    assert not converge.ok and "over the bound" in converge.message
    healthy = Simulation(load_scenario(SCENARIO_DIR / "partial-partition.toml"), 1).run()
    assert healthy.ok, [v.message for v in healthy.verdicts if not v.ok]


def test_a_lost_segment_after_the_heal_moves_the_convergence_deadline_by_its_wait() -> None:
    heal, bound = 20.0, 0.277
    late = Retransmission(20.057, "ap", "us", 0.2, 20.340)
    early = Retransmission(19.5, "eu", "ap", 0.236, 19.85)  # arrived before the heal
    after = Retransmission(20.5, "eu", "ap", 0.6, 21.2)  # sent after the moved deadline
    assert retransmission_s([], heal, bound) == 0.0
    assert retransmission_s([early, after], heal, bound) == 0.0
    assert retransmission_s([early, late, after], heal, bound) == pytest.approx(0.2)
    # a wait that moves the deadline brings a batch sent later into it
    chained = Retransmission(20.45, "us", "ap", 0.4, 20.93)
    assert retransmission_s([late, chained], heal, bound) == pytest.approx(0.4)


# Seeds of partial-partition where a batch lost a TCP segment after the heal (seed 96 once
# converged 0.340 s after the heal against a 0.277 s bound that way; the seeds were found again
# when the scenario's writers went from 10 to 5 a second); the first that still
# does is used, so a change of the traffic moves the test to the next one instead of breaking it.
LOST_SEGMENT_SEEDS = (62, 97, 116, 185, 190, 202, 228)


def test_a_segment_lost_after_the_heal_widens_the_convergence_bound_by_its_wait() -> None:
    for seed in LOST_SEGMENT_SEEDS:
        result = Simulation(load_scenario(SCENARIO_DIR / "partial-partition.toml"), seed).run()
        verdict = {v.checker: v for v in result.verdicts}["convergence-time"]
        if "for a batch that lost a TCP segment" in verdict.message:
            break
    else:
        pytest.fail(f"no segment lost after the heal on seeds {LOST_SEGMENT_SEEDS}")
    assert verdict.ok, verdict.message
    lost = [r for r in result.history.retransmissions if r.arrival > result.history.heal_at]
    assert any(r.wait_s >= 0.2 for r in lost)
    assert verdict.figures["retransmission"] >= 0.2
    assert verdict.figures["bound"] >= verdict.figures["retransmission"] + 0.19
