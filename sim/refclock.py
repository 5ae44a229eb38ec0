"""The time-control rule, re-implemented for the checkers from docs/architecture.md.

Nothing here comes from ``games.clock`` or ``crdt_models``: a game's ``info`` record may carry
``clock_ms`` (each player's time; 0 or absent: no clock) and ``increment_ms``. Stated as the docs
state it:

* the first mover's time starts running at the wall time of the game's ``created`` stamp;
* a record stops the running time at the wall time of its stamp; the player whose time ran is
  charged the time since the record before (never less than nothing), and if the record hands
  the turn to the other player, that player earns the increment;
* a record is in time if its wall time is at most the running player's deadline (the time the
  running began plus what they had left); past it only ``{"type": "timeout"}`` by the running
  player is taken, and it leaves that player with nothing; a timeout in time, for the other
  player, while nobody's time runs, or in a game without a clock is never taken;
* nobody's time runs while no one is to move; a game with a clock cannot be paused (a
  ``pause`` record is never taken).

`Timing` is one game's time state after some records; `admit` is the rule for the next record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meridian.games.base import IllegalMove

TIMEOUT_TYPE = "timeout"


@dataclass(frozen=True)
class Timing:
    increment: int
    left: tuple[int, int]
    owner: int | None  # whose time runs
    began: int  # wall ms at which it began to run

    def over_at(self, wall: int) -> bool:
        return self.owner is not None and wall - self.began > self.left[self.owner]

    def deadline(self) -> int | None:
        return None if self.owner is None else self.began + self.left[self.owner]


def timing_of(info: dict[str, Any], rules: Any, state: Any, created_wall: int) -> Timing | None:
    """The time state at the start of a game whose setup record is `info` (None: no clock)."""
    total = info.get("clock_ms") or 0
    if not isinstance(total, int) or total <= 0:
        return None
    increment = info.get("increment_ms") or 0
    return Timing(int(increment), (total, total), rules.to_move(state), created_wall)


def is_timeout(move: dict[str, Any]) -> bool:
    return move.get("type") == TIMEOUT_TYPE


def admit(
    rules: Any, state: Any, timing: Timing | None, player: int, move: dict[str, Any], wall: int
) -> tuple[Any, Timing | None]:
    """The state and time after a record, or IllegalMove when the rule does not take it."""
    if timing is None:
        if is_timeout(move):
            raise IllegalMove("illegal_move", "no clock in this game")
        return rules.apply_move(state, player, move), None
    owner = timing.owner
    if is_timeout(move):
        if owner is None or player != owner or not timing.over_at(wall):
            raise IllegalMove("illegal_move", "that time is not out")
        after = rules.apply_move(state, player, move)
        left = [0 if seat == owner else timing.left[seat] for seat in (0, 1)]
        return after, Timing(timing.increment, (left[0], left[1]), None, timing.began)
    if timing.over_at(wall):
        raise IllegalMove("time_out", "made after the running time was out")
    if move.get("type") == "pause":
        raise IllegalMove("illegal_move", "no pause with a clock")
    after = rules.apply_move(state, player, move)
    left = list(timing.left)
    following = rules.to_move(after)
    if owner is not None:
        left[owner] = left[owner] - max(0, wall - timing.began)
        if following is not None and following != owner:
            left[owner] = left[owner] + timing.increment
    began = wall if wall > timing.began else timing.began
    return after, Timing(timing.increment, (left[0], left[1]), following, began)
