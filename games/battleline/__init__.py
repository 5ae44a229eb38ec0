"""Battleline: the complete rules engine, its views, bots and go-battleline compatibility.

Pure code: no I/O, no clock, no unseeded randomness. Nodes, bots and the simulator all run these
same rules, and a game is fully described by its seed and its move list.

Public API (all values JSON-safe: str, small ints, lists, dicts; seeds are ints < 2**53):

``new_game(seed, first_player=0) -> GameState``
    A dealt game; the decks are shuffled from ``seed`` (SplitMix64 + Fisher-Yates, see
    ``state``), so every node deals the same cards.
``replay(seed, moves, first_player=0) -> GameState``
    Play a move list from the deal. A move may carry ``"player"``; without it, it is the player
    to move's. Raises ``IllegalMove`` with ``.ply`` = index of the first refused move.
``legal_moves(state) -> list[dict]``
    Every legal move for the player to move; ``[]`` when the game is over or paused.
    ``give_up``, ``pause`` and ``resume`` are always open to both players and not listed.
``apply_move(state, player, move) -> GameState``
    Validates the move in full and returns a NEW state; ``state`` itself is never changed
    (``state.copy()`` is cheap if you need one). Raises ``IllegalMove(code, message)`` with
    ``code`` one of ``malformed``, ``not_your_turn``, ``illegal_move``, ``game_over``, ``paused``.
``player_view(state, player)``, ``spectator_view(state)``, ``full_view(state)`` -> dict
    What each party may see (hidden cards never appear in a view that may not see them).
``replay_view(state)``, ``public_move(move)`` -> dict
    A finished game's position for its replay; a move as anyone may see it.
``game_name()`` -> ``"battleline"``, the name game records carry.
``to_move(state) -> int | None``, ``result(state) -> dict | None``
    ``result`` is ``{"winner": 0 | 1, "reason": "flags" | "breakthrough" | "give_up"}``
    (``{"winner": None, "reason": "stalemate"}`` once the game can no longer change).
``RandomBot(seed)``, ``HeuristicBot(seed)``
    Each with ``choose(state, player) -> dict``, a move from ``legal_moves(state)``.

Moves (flags 1-9, cards 1-70 numbered as in go-battleline; see ``moves`` and
docs/battleline.md)::

    {"type": "claim", "flags": [2, 5]}          {"type": "play", "card": 17, "flag": 3}
    {"type": "pass"}                            {"type": "draw", "deck": "troop"}
    {"type": "traitor", "card": 58, "to_flag": 4}
    {"type": "deserter", "card": 51}            {"type": "redeploy", "card": 42, "to_flag": null}
    {"type": "scout", "deck": "tactic"}         {"type": "scout_return", "cards": [35, 43]}
    {"type": "give_up"}  {"type": "pause"}  {"type": "resume"}

Also: ``replay_record`` / ``check_record`` for whole-game records, ``import_history``,
``legal_moves_go``, ``position_to_state``, ``state_to_position`` and ``move_to_go`` for the
go-battleline encoding.
"""

from meridian.games.base import GameRules
from meridian.games.battleline.bots import HeuristicBot, RandomBot
from meridian.games.battleline.engine import (
    apply_move,
    new_game,
    new_game_from_decks,
    replay,
    result,
    to_move,
)
from meridian.games.battleline.gocompat import (
    GoFormatError,
    import_history,
    legal_moves_go,
    move_to_go,
    position_to_state,
    state_to_position,
)
from meridian.games.battleline.moves import IllegalMove
from meridian.games.battleline.records import RecordError, check_record, make_record, replay_record
from meridian.games.battleline.rules import legal_moves
from meridian.games.battleline.state import GameState
from meridian.games.battleline.views import (
    full_view,
    player_view,
    public_move,
    replay_view,
    seat_views,
    spectator_view,
)

GAME_NAME = "battleline"


def game_name() -> str:
    """The name Battleline's game records carry."""
    return GAME_NAME


__all__ = [
    "GameState",
    "GoFormatError",
    "HeuristicBot",
    "IllegalMove",
    "RandomBot",
    "RecordError",
    "apply_move",
    "check_record",
    "full_view",
    "game_name",
    "import_history",
    "legal_moves",
    "legal_moves_go",
    "make_record",
    "move_to_go",
    "new_game",
    "new_game_from_decks",
    "player_view",
    "position_to_state",
    "public_move",
    "replay",
    "replay_record",
    "replay_view",
    "result",
    "rules_module",
    "seat_views",
    "spectator_view",
    "state_to_position",
    "to_move",
]


def rules_module() -> GameRules[GameState]:
    """This package as the node's ``GameRules`` (mypy checks that it conforms)."""
    import meridian.games.battleline

    return meridian.games.battleline
