"""Bot-against-bot games, as pure functions (the CLI and the bench add the clock and printing).

Game ``i`` of a series started from ``seed`` uses game seed ``seed + i``; bot A sits at player
``i % 2`` so both bots move first equally often. Bots get their own seeds derived from the game
seed, so a series is reproducible from its seed alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from meridian.games.battleline.bots import HeuristicBot, RandomBot
from meridian.games.battleline.engine import apply_move, new_game, to_move
from meridian.games.battleline.state import GameState

Move = dict[str, Any]


class Bot(Protocol):
    """Anything that picks a move for a player."""

    def choose(self, state: GameState, player: int) -> Move: ...


BOTS: dict[str, Callable[[int], Bot]] = {"random": RandomBot, "heuristic": HeuristicBot}
DEFAULT_MAX_PLIES = 1000


@dataclass(frozen=True)
class GameOutcome:
    """How one game went: which bot (0 = A, 1 = B) won, why, and in how many moves."""

    seed: int
    seat_of_a: int
    winner_bot: int | None
    reason: str
    plies: int
    moves: tuple[Move, ...]


def play_game(
    seed: int,
    bot_names: tuple[str, str],
    seat_of_a: int = 0,
    max_plies: int = DEFAULT_MAX_PLIES,
    on_move: Callable[[GameState, int, Move], None] | None = None,
) -> GameOutcome:
    """Play one game between bots A and B; ``on_move`` sees each state before its move."""
    for name in bot_names:
        if name not in BOTS:
            raise ValueError(f"unknown bot {name!r}; choose from {', '.join(BOTS)}")
    bots: list[Bot] = [BOTS[bot_names[0]](2 * seed), BOTS[bot_names[1]](2 * seed + 1)]
    by_player = [bots[0], bots[1]] if seat_of_a == 0 else [bots[1], bots[0]]
    state = new_game(seed)
    moves: list[Move] = []
    while state.result is None and len(moves) < max_plies:
        player = to_move(state)
        assert player is not None
        move = by_player[player].choose(state, player)
        if on_move is not None:
            on_move(state, player, move)
        state = apply_move(state, player, move)
        moves.append({"player": player, **move})
    if state.result is None:
        return GameOutcome(seed, seat_of_a, None, "ply_limit", len(moves), tuple(moves))
    winner = state.result["winner"]
    winner_bot = None if winner is None else (0 if winner == seat_of_a else 1)
    return GameOutcome(
        seed, seat_of_a, winner_bot, state.result["reason"], len(moves), tuple(moves)
    )


def series_seeds(seed: int, games: int) -> list[tuple[int, int]]:
    """(game seed, seat of bot A) for each game of a series."""
    if games < 0 or seed < 0 or seed + games >= 2**53:
        raise ValueError("seed and games must be non-negative with seed + games < 2**53")
    return [(seed + i, i % 2) for i in range(games)]


def summarize(outcomes: list[GameOutcome], bot_names: tuple[str, str]) -> dict[str, Any]:
    """Wins per bot, results by reason, and the mean game length."""
    reasons: dict[str, int] = {}
    wins = [0, 0]
    for outcome in outcomes:
        reasons[outcome.reason] = reasons.get(outcome.reason, 0) + 1
        if outcome.winner_bot is not None:
            wins[outcome.winner_bot] += 1
    games = len(outcomes)
    return {
        "games": games,
        "bots": list(bot_names),
        "wins": wins,
        "win_rate_a": wins[0] / games if games else 0.0,
        "undecided": games - wins[0] - wins[1],
        "reasons": dict(sorted(reasons.items())),
        "mean_plies": sum(o.plies for o in outcomes) / games if games else 0.0,
    }
