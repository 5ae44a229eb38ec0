"""What the node needs from any game's rules: a small Protocol other games can implement later.

A game module (such as ``games.battleline``) provides these functions. States are opaque to the
node; moves and views are JSON-safe dicts (str, small ints, lists, dicts; no int wider than
53 bits), so they can live in pycrdt documents and travel to clients unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

StateT = TypeVar("StateT")

Move = dict[str, Any]
View = dict[str, Any]


class IllegalMove(Exception):
    """A move the rules refused. ``code`` is stable for machines, ``message`` is for people.

    Codes: ``malformed`` (not a well-formed move), ``not_your_turn``, ``illegal_move`` (against
    the rules here), ``game_over``, ``paused``. ``ply`` is set by replays to the index of the
    refused move.
    """

    def __init__(self, code: str, message: str, ply: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if ply is None else f"ply {ply}: {code}: {message}")
        self.code = code
        self.message = message
        self.ply = ply


class GameRules(Protocol[StateT]):
    """The rules of one two-player game, as pure functions (no I/O, no clock, no hidden RNG)."""

    def game_name(self) -> str:
        """The name game records carry (``GameInfo.game``), e.g. ``"battleline"``."""
        ...

    def new_game(self, seed: int, first_player: int = 0) -> StateT:
        """A fresh game; all chance comes from ``seed``."""
        ...

    def replay(self, seed: int, moves: list[Move], first_player: int = 0) -> StateT:
        """The state after ``moves``; raises IllegalMove with ``ply`` at the first refused one."""
        ...

    def legal_moves(self, state: StateT) -> list[Move]:
        """The moves open to the player to move; [] when no one is to move."""
        ...

    def apply_move(self, state: StateT, player: int, move: object) -> StateT:
        """Validate and apply a move, returning a new state; raises IllegalMove."""
        ...

    def to_move(self, state: StateT) -> int | None:
        """The player to move, or None (game over or paused)."""
        ...

    def result(self, state: StateT) -> dict[str, Any] | None:
        """``{"winner": ..., "reason": ...}`` once the game is over, else None."""
        ...

    def player_view(self, state: StateT, player: int) -> View:
        """What one player may see."""
        ...

    def seat_views(self, state: StateT) -> list[View]:
        """Every player's view, by seat (cheaper than one ``player_view`` per seat)."""
        ...

    def spectator_view(self, state: StateT) -> View:
        """What a watcher may see."""
        ...

    def full_view(self, state: StateT) -> View:
        """Everything (for the server and for debugging)."""
        ...

    def replay_view(self, state: StateT) -> View:
        """What the replay of a finished game shows after a ply: both hands, no future (no deck
        order, no seed)."""
        ...

    def public_move(self, move: Move) -> Move:
        """A played move as anyone may see it (hidden cards left out)."""
        ...
