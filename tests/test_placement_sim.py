"""Partial replication in the simulator: players who come to a region that is no replica of
their game (a travel: a new connection elsewhere, hello with what they were shown) still get
the game and play it there, and every region keeps only its games plus what it fetched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.game import read_info
from meridian.sim.scenario import load_scenario
from meridian.sim.world import RunResult, Simulation

TRAVEL = """description = "5 regions, k = 0, players travel between regions"
[cluster]
regions = ["eu", "us", "ap", "sa", "af"]
[network]
jitter_ms = 2
[network.latency_ms]
eu.us = 70
eu.ap = 40
eu.sa = 80
eu.af = 120
us.ap = 25
us.sa = 30
us.af = 105
ap.sa = 35
ap.af = 75
sa.af = 110
[replication]
ack_regions = 1
game_backups = 0
[phases]
faulty_s = 20
quiet_s = 8
[workload]
kind = "game-bots"
players = 12
think_s = [0.3, 1.0]
travel_per_min = 6
double_login_per_min = 0
invite_per_s = 1
give_up = 0
save = 0
[checkers.game-copies]
k = 0
[checkers.acknowledged-moves]
[checkers.converged]
[checkers.legal-chains]
[checkers.one-game]
[checkers.convergence-time]
"""


def _run(tmp_path: Path, text: str, seed: int = 1) -> RunResult:
    path = tmp_path / "placed.toml"
    path.write_text(text)
    return Simulation(load_scenario(path), seed).run()


def _replicas(result: RunResult) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for states in result.final.values():
        for doc_id, state in states.items():
            if doc_id.startswith("game:") and doc_id[5:] not in found:
                doc: Doc[Any] = Doc()
                doc.apply_update(state.update)
                info = read_info(doc)
                if info is not None:
                    found[doc_id[5:]] = info.replicas
    return found


def test_players_resuming_on_a_region_that_is_no_replica_still_get_and_play_their_game(
    tmp_path: Path,
) -> None:
    result = _run(tmp_path, TRAVEL)
    failed = [v for v in result.verdicts if not v.ok]
    assert not failed, failed[0].message
    replicas = _replicas(result)
    assert replicas and all(len(r) >= 2 for r in replicas.values())  # k + 2 at least
    moves = result.history.notes_of("move")
    # node ids are region names here: a move acknowledged off the placement was played by a
    # player who came to a region that fetched the game when it said hello
    elsewhere = [m for m in moves if m["node"] not in replicas[m["game"]]]
    assert len(elsewhere) >= 5, f"{len(elsewhere)} of {len(moves)} moves off the placement"


def test_without_travel_each_region_holds_only_the_games_placed_on_it(tmp_path: Path) -> None:
    # No watchers either: a region shows who plays whom in the games it lacks (from the
    # players' sessions), and a watcher there fetches the game it asks for.
    no_travel = TRAVEL.replace("travel_per_min = 6", "travel_per_min = 0\nwatch = 0")
    result = _run(tmp_path, no_travel)
    assert all(v.ok for v in result.verdicts), [v.message for v in result.verdicts if not v.ok]
    replicas = _replicas(result)
    for node, states in result.final.items():
        held = {d[5:] for d in states if d.startswith("game:")}
        assert held == {gid for gid, regions in replicas.items() if node in regions}
