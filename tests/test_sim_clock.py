"""Timed games in the simulator: the clock-games scenario passes with time-outs recorded and
beaten, and the time-controls checker fails on a time-out recorded while the player had time."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc

from meridian.crdt_models.game import GameInfo, GameWriter
from meridian.crdt_models.hlc import Stamp
from meridian.games.battleline import RandomBot, rules_module
from meridian.sim import reference
from meridian.sim.clockcheck import early_time_out
from meridian.sim.scenario import SCENARIO_DIR, load_scenario
from meridian.sim.world import Simulation

START_MS = 1_767_225_600_000


def test_clock_games_records_time_outs_that_moves_in_time_beat_and_all_checkers_pass() -> None:
    result = Simulation(load_scenario(SCENARIO_DIR / "clock-games.toml"), 1).run()
    failed = [f"{v.checker}: {v.message}" for v in result.verdicts if not v.ok]
    assert not failed, failed
    figures = next(v.figures for v in result.verdicts if v.checker == "time-controls")
    assert figures["clock_games"] >= 4 and figures["finished_on_time"] >= 2
    assert figures["time_outs_off_chain"] >= 1, "a time-out beaten by a move made in time"


def stamp(ms: int, node: str = "eu-1") -> str:
    return Stamp(START_MS + ms, 0, node).encode()


def game_document(timeout_at_ms: int) -> tuple[bytes, int]:
    """A 30 s game: one move at 10 s, then a time-out of the next player at `timeout_at_ms`;
    returns the document and that player's deadline by the rule (ms from the start)."""
    rules = rules_module()
    info = GameInfo(
        "g1", "battleline", ["a", "b"], ["alice", "bob"], 7, 0, stamp(0), "eu-1", clock_ms=30_000
    )
    state = rules.replay(info.seed, [], info.first)
    doc: Doc[Any] = Doc()
    writer = GameWriter(doc, "eu-1")
    with doc.transaction():
        writer.create(info)
        move = RandomBot(1).choose(state, 0)
        first = writer.add_move(0, "", 0, move, stamp(10_000))
        running = rules.to_move(rules.apply_move(state, 0, move))
        assert running is not None
        writer.add_move(1, first.key, running, {"type": "timeout"}, stamp(timeout_at_ms, "us-1"))
    # seat 0 used 10 s of its 30 if the turn stayed with it; seat 1 has all 30 from 10 s on
    return doc.get_update(), 30_000 if running == 0 else 40_000


def test_the_checker_names_a_time_out_recorded_at_or_before_the_deadline() -> None:
    _update, deadline = game_document(0)
    late = reference.game(game_document(deadline + 1)[0])
    assert late is not None and late.result is not None and late.result["reason"] == "time"
    assert early_time_out(late) is None
    for at in (deadline, deadline - 5000):
        early = reference.game(game_document(at)[0])
        assert early is not None and early.result is None, "the chain does not take it"
        problem = early_time_out(early)
        assert problem is not None and "recorded a time-out for seat" in problem
        assert f"deadline {START_MS + deadline}" in problem
