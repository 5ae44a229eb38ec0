"""A move shown is a move kept, in the simulator: the production push gate under crashes.

``crash-mid-move`` kills two slow-disk nodes in turn while quick bots play. The shown-plies
checker (sim.shown) must pass on the real code, on fixed seeds and the run's random seed, and
must fail once a bug is planted that releases game pushes before their commit.
"""

from __future__ import annotations

from typing import Any

import pytest

from meridian.node import delivery
from meridian.sim.scenario import SCENARIO_DIR, load_scenario
from meridian.sim.world import RunResult, Simulation
from tests.conftest import SIM_RANDOM_SEED

SCENARIO = SCENARIO_DIR / "crash-mid-move.toml"
FIXED_SEEDS = [1, 2, 3]
PLANTED_SEEDS = range(1, 31)  # as the mutation suite: up to 30 seeds, stopping at a catch


def shown_verdict(result: RunResult) -> tuple[bool, str]:
    found = next(v for v in result.verdicts if v.checker == "shown-plies")
    return found.ok, found.message


@pytest.mark.parametrize("seed", [*FIXED_SEEDS, SIM_RANDOM_SEED])
def test_no_ply_shown_to_a_player_vanishes_when_nodes_crash_mid_play(seed: int) -> None:
    result = Simulation(load_scenario(SCENARIO), seed).run()
    ok, message = shown_verdict(result)
    assert ok, f"seed {seed}: {message}"
    assert result.ok, "\n".join(f"{v.checker}: {v.message}" for v in result.verdicts)
    assert len(result.history.notes_of("shown")) > 20


def test_pushes_released_before_the_commit_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    honest = delivery.Delivery._ready

    def early(self: delivery.Delivery, queue: Any, item: Any, now: float, progress: Any) -> Any:
        if isinstance(item, delivery.Send) and "ok" not in item.message:
            return item  # the planted bug: a push leaves before its change is durable
        return honest(self, queue, item, now, progress)

    monkeypatch.setattr(delivery.Delivery, "_ready", early)
    failures = []
    for seed in PLANTED_SEEDS:
        ok, message = shown_verdict(Simulation(load_scenario(SCENARIO), seed).run())
        if not ok:
            failures.append(message)
            break
    assert failures, f"the early-push bug survived seeds {list(PLANTED_SEEDS)}"
    assert "shown to" in failures[0]
