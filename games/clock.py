"""Time controls: each player's remaining time, derived from the times the moves were made.

There is no running clock anywhere to keep in step between regions. A game with a time control
starts both players with ``initial_ms``; the clock of the player to move runs from the time of
the record before (the game's creation for the first move) to the time of the player's next
record, and a record that hands the turn to the opponent adds the Fischer ``increment_ms`` to
the mover's time. Times are milliseconds on one axis (the wall part of the records' HLC stamps,
``crdt_models.game``); this module only does the arithmetic, so every node that holds the same
records computes the same clocks.

* A record is in time when its time is at most the running player's deadline
  (``since_ms + remaining``): a move made exactly at the deadline counts.
* Past the deadline (strictly later) no move of anyone is taken any more; only a ``timeout``
  record for the running player is, and it ends the game (``TIMEOUT``).
* No clock runs while no one is to move, and handing the turn to nobody earns no increment. (A
  game with a time control cannot be paused: the chain refuses ``pause``, ``crdt_models.game``.)

No I/O, no clock of its own: times come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

TIMEOUT: Final = "timeout"  # the move type that records a player's time running out
PAUSE: Final = "pause"  # refused in a game with a time control: it would stop the clocks


@dataclass(frozen=True)
class TimeControl:
    """A game's time control: each player's time at the start and the Fischer increment."""

    initial_ms: int
    increment_ms: int = 0

    def __post_init__(self) -> None:
        if self.initial_ms <= 0 or self.increment_ms < 0:
            raise ValueError(f"no such time control: {self.initial_ms} ms + {self.increment_ms}")

    @property
    def label(self) -> str:
        """``"10+5"``: minutes (or seconds with an ``s``, below a minute) plus increment seconds."""
        seconds = self.initial_ms // 1000
        start = f"{seconds // 60}" if seconds % 60 == 0 else f"{seconds}s"
        return f"{start}+{self.increment_ms // 1000}"


@dataclass(frozen=True)
class Clock:
    """Both players' clocks after some records: remaining time, whose clock runs, and since when."""

    control: TimeControl
    remaining_ms: tuple[int, int]
    running: int | None  # the seat whose clock runs (None: nobody is to move)
    since_ms: int  # when the running clock last started

    @classmethod
    def start(cls, control: TimeControl, running: int | None, at_ms: int) -> Clock:
        initial = control.initial_ms
        return cls(control, (initial, initial), running, at_ms)

    @property
    def deadline_ms(self) -> int | None:
        """When the running player's time runs out (None: no clock runs)."""
        if self.running is None:
            return None
        return self.since_ms + self.remaining_ms[self.running]

    def is_late(self, at_ms: int) -> bool:
        """A record made at `at_ms` comes after the running player's time ran out."""
        deadline = self.deadline_ms
        return deadline is not None and at_ms > deadline

    def remaining_at(self, now_ms: int) -> tuple[int, int]:
        """Both players' time at `now_ms` (the running one counted down, never below 0)."""
        if self.running is None:
            return self.remaining_ms
        left = list(self.remaining_ms)
        left[self.running] = max(0, left[self.running] - max(0, now_ms - self.since_ms))
        return left[0], left[1]

    def after(self, at_ms: int, next_running: int | None) -> Clock:
        """The clocks after an in-time record made at `at_ms` after which `next_running` is to
        move. The running player is charged the time since `since_ms` (never negative: a record
        cannot be stamped before its parent by an honest node); handing the turn to the other
        player earns the increment."""
        left = list(self.remaining_ms)
        if self.running is not None:
            left[self.running] -= max(0, at_ms - self.since_ms)
            if next_running == 1 - self.running:
                left[self.running] += self.control.increment_ms
        return replace(
            self,
            remaining_ms=(left[0], left[1]),
            running=next_running,
            since_ms=max(self.since_ms, at_ms),
        )

    def timed_out(self) -> Clock:
        """The clocks once the running player's time ran out: at zero, and stopped."""
        left = list(self.remaining_ms)
        if self.running is not None:
            left[self.running] = 0
        return replace(self, remaining_ms=(left[0], left[1]), running=None)

    def to_json(self, now_ms: int) -> dict[str, object]:
        """What a game push shows: the control, both players' time now, whose clock runs."""
        return {
            "initial_ms": self.control.initial_ms,
            "increment_ms": self.control.increment_ms,
            "remaining_ms": list(self.remaining_at(now_ms)),
            "running": self.running,
        }
