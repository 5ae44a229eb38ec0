"""The bots: always legal, reproducible, blind to hidden cards; the heuristic beats random."""

from __future__ import annotations

import random

from meridian.games.battleline import (
    HeuristicBot,
    RandomBot,
    apply_move,
    legal_moves,
    new_game,
    rules,
    to_move,
)
from meridian.games.battleline.selfplay import play_game, series_seeds, summarize
from meridian.games.battleline.state import GameState
from tests.test_battleline_properties import _swap_hidden, random_game


def test_heuristic_bot_beats_random_in_at_least_80_percent_of_games() -> None:
    # Seats alternate; the full 200-game measurement is in bench/battleline.py and the report.
    outcomes = [
        play_game(seed, ("heuristic", "random"), seat) for seed, seat in series_seeds(100, 40)
    ]
    summary = summarize(outcomes, ("heuristic", "random"))
    assert summary["win_rate_a"] >= 0.8, summary


def test_bots_only_make_legal_moves_and_finish_games() -> None:
    for name in ("random", "heuristic"):
        outcome = play_game(7, (name, name))
        assert outcome.reason in ("flags", "breakthrough") and outcome.winner_bot in (0, 1)


def test_bots_are_reproducible_from_their_seed() -> None:
    assert play_game(11, ("heuristic", "random")) == play_game(11, ("heuristic", "random"))


def _claim_states(seed: int) -> list[GameState]:
    states, _ = random_game(seed, plies=400)
    return [s for s in states if s.result is None and s.phase == "claim"]


def test_heuristic_bot_claims_exactly_the_flags_it_can_prove() -> None:
    checked = 0
    for seed in range(5):
        for state in _claim_states(seed):
            move = HeuristicBot(0).choose(state, state.mover)
            provable = [
                f + 1
                for f in range(9)
                if rules.has_formation(state, state.mover, f)
                and rules.prove(state, state.mover, f).proved
            ]
            assert move == {"type": "claim", "flags": provable}
            checked += 1
    assert checked > 0


def test_heuristic_bot_decides_from_what_its_player_can_see() -> None:
    states, _ = random_game(3, plies=200)
    for state in states[::7]:
        if state.result is not None:
            continue
        player = state.mover
        twin = _swap_hidden(state, player, random.Random(1))
        assert HeuristicBot(5).choose(twin, player) == HeuristicBot(5).choose(state, player)


def test_heuristic_bot_keeps_tactics_when_a_troop_does_as_well() -> None:
    state = new_game(21)
    hand = state.places[21]
    assert all(m["type"] == "play" for m in legal_moves(state))
    move = HeuristicBot(1).choose(state, 0)
    assert move["card"] in hand and move["card"] <= 60


def test_random_bot_plays_any_legal_move() -> None:
    state = new_game(2)
    seen = {repr(RandomBot(seed).choose(state, 0)) for seed in range(40)}
    assert seen <= {repr(m) for m in legal_moves(state)} and len(seen) > 10
    assert to_move(apply_move(state, 0, RandomBot(0).choose(state, 0))) == 0
