"""Rebalancing in the simulator (sim.meta runs the production observer and rebalancer on every
node): a load skew evens out with every move at a safe point, the checkers (sim.metacheck) fail
on what they exist to catch, and they import nothing of the production code they judge."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

from meridian.sim.history import History
from meridian.sim.metacheck import game_copies, games_continue, rebalanced, safe_moves
from meridian.sim.movecost import scenario_text
from meridian.sim.scenario import SCENARIO_DIR, load_scenario
from meridian.sim.world import Simulation

ROOT = Path(__file__).resolve().parents[1]
NODES = ("eu", "us", "ap")


def test_the_meta_checkers_import_no_production_code() -> None:
    tree = ast.parse((ROOT / "sim" / "metacheck.py").read_text())
    imported = [
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("meridian")
    ]
    assert imported and all(m.startswith("meridian.sim.") for m in imported), imported
    assert not {"meridian.sim.meta", "meridian.sim.node", "meridian.sim.world"} & set(imported)


def test_hot_spot_evens_out_at_safe_points() -> None:
    path = SCENARIO_DIR / "hot-spot.toml"
    bots = tomllib.loads(path.read_text())["workload"]["players"]
    result = Simulation(load_scenario(path), 1).run()
    assert result.ok, result.first_failure
    figures = {v.checker: v.figures for v in result.verdicts}
    players = figures["rebalanced"]["players"]
    # Everyone is still connected, and no node ends above the policy's start line (+1: whole).
    assert sum(players.values()) == bots, players
    assert max(players.values()) <= 1.25 * bots / len(players) + 1, players
    assert players["us"] > 0 and players["ap"] > 0
    assert figures["safe-moves"]["in_a_game"] > 0, "players in a game moved too"
    told = result.history.notes_of("rebalance")
    assert told and {n["node"] for n in told} == {"eu"}, "only the hot node sheds"


def history(*notes: dict[str, Any]) -> History:
    run = History("test", 1, list(NODES), heal_at=30.0, end_at=40.0)
    run.notes = [{"node": "eu", **note} for note in notes]
    return run


def end(node: str, count: int) -> list[dict[str, Any]]:
    return [{"t": 40.0, "kind": "end", "open": True, "node": node}] * count


def moved(t: float, **fields: Any) -> dict[str, Any]:
    base = {"t": t, "kind": "moved", "client": "c1", "uid": "u1", "to": "us", "live": []}
    return {**base, "mid_turn": [], "awaiting": [], **fields}


def test_rebalanced_fails_a_skew_a_missing_joiner_and_no_moves() -> None:
    check = rebalanced(NODES, 1.25, 1, 1, {})
    skewed = history(moved(4.0), *end("eu", 20), *end("us", 2), *end("ap", 2))
    verdict = check(skewed, {})
    assert not verdict.ok and "eu ends with 20 players" in verdict.message
    even = history(moved(4.0), *end("eu", 8), *end("us", 8), *end("ap", 8))
    assert check(even, {}).ok
    assert not rebalanced(NODES, 1.25, 1, 1, {"ap": 9})(even, {}).ok
    assert not rebalanced(NODES, 1.25, 1, 2, {})(even, {}).ok  # one move, two wanted


def test_safe_moves_fails_a_notice_on_the_players_turn_or_awaiting_a_reply() -> None:
    check = safe_moves(1)
    assert check(history(moved(4.0, live=["g1"])), {}).ok
    verdict = check(history(moved(4.0, live=["g1"], mid_turn=["g1"])), {})
    assert not verdict.ok and "it was to move in g1" in verdict.message
    assert not check(history(moved(4.0, awaiting=["move"])), {}).ok
    twice = history(moved(4.0), moved(9.0))
    assert not check(twice, {}).ok and safe_moves(2)(twice, {}).ok


def test_games_continue_fails_a_game_that_stalled_after_a_move() -> None:
    check = games_continue(5, 5)
    view = {"t": 40.0, "kind": "view", "games": {"g1": ["live", 3, "x"]}}
    before = {"t": 3.0, "kind": "move", "game": "g1"}
    played_on = {"t": 6.0, "kind": "move", "game": "g1"}
    assert check(history(before, moved(4.0, live=["g1"]), played_on, view), {}).ok
    verdict = check(history(before, moved(4.0, live=["g1"]), view), {})
    assert not verdict.ok and "game g1 made no move" in verdict.message
    assert check(history(moved(4.0, live=["g1"]), view), {}).ok  # stalled before: not judged
    late = {"t": 26.0, "kind": "move", "game": "g1"}
    assert check(history(late, moved(27.0, live=["g1"]), view), {}).ok  # within the grace


def test_the_move_cost_scenarios_load_for_three_to_nine_regions(tmp_path: Path) -> None:
    for regions in (3, 9):
        for games in (True, False):
            path = tmp_path / f"{regions}-{games}.toml"
            path.write_text(scenario_text(regions, games=games))
            assert len(load_scenario(path).nodes) == regions


def test_game_copies_fails_a_game_no_live_node_holds() -> None:
    acked = {"t": 5.0, "kind": "move", "game": "g1", "ply": 0, "seat": 0, "move": {}}
    verdict = game_copies(1)(history(acked), {"eu": {}, "us": {}})
    assert not verdict.ok and "game g1 (1 acknowledged moves) is held whole by 0" in verdict.message
    assert game_copies(1)(history(), {"eu": {}, "us": {}}).ok  # no game, nothing to hold
