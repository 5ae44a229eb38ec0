"""Clocks: recording the time-outs of games with a time control (the rule that decides one is
the canonical chain's, ``crdt_models.game``; the arithmetic is ``games.clock``).

Who records a time-out (the ``timeout`` record): the node serving the player whose clock runs,
as soon as its own clock passes that player's deadline; any other node that hosts the game (it
created it, or serves the opponent) only once its clock is past the deadline by
``TIMEOUT_GRACE_MS``, so a player whose node died or is cut off still loses on time. The grace
only spares needless rollbacks: whoever writes it, a time-out counts only if its stamp is past
the deadline the move stamps give, and a move stamped in time beats it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.game import game_doc_id
from meridian.games.base import IllegalMove
from meridian.games.clock import TIMEOUT
from meridian.node.game_tracker import LIVE, GameTracker
from meridian.node.service_state import ServiceState

# A node that does not serve the player whose clock runs waits this long past the deadline
# before it records the time-out itself: more than the clock skew and replication delay seen
# between healthy regions, so the serving node's in-time move (or its own time-out) arrives
# first. The serving node records a time-out at the deadline.
TIMEOUT_GRACE_MS = 10_000


class ClocksTopic:
    def __init__(
        self,
        state: ServiceState,
        live: Callable[[], set[str]],
        hosts: Callable[[GameTracker], bool],
    ) -> None:
        self.state = state
        self._live = live  # the gids of the live games with a clock (the games topic keeps them)
        self._hosts = hosts  # this node created the game or serves one of its players

    def due_ms(self, tracker: GameTracker) -> int | None:
        """When this node records the time-out of `tracker`'s game if no move comes (None: it
        never does: no clock runs, or this node is no authority for it; module docstring)."""
        clock = tracker.chain.clock
        if clock is None or clock.running is None or tracker.status != LIVE:
            return None
        deadline = clock.deadline_ms
        if deadline is None:
            return None
        if self.state.conns_of(tracker.info.players[clock.running]):
            return deadline
        return deadline + TIMEOUT_GRACE_MS if self._hosts(tracker) else None

    def record_timeouts(self) -> list[str]:
        """Record every time-out due by this node's clock; returns the games it ended."""
        state, ended = self.state, []
        now_ms = state.wall_ms()
        for gid in sorted(self._live()):
            tracker = state.games[gid]
            due, clock = self.due_ms(tracker), tracker.chain.clock
            if due is None or now_ms <= due or clock is None or clock.running is None:
                continue
            try:
                tracker.write_at_tip(
                    clock.running,
                    {"type": TIMEOUT},
                    state.stamp(),
                    state.node_id,
                    self._writer(gid),
                )
            except IllegalMove:
                continue  # its stamp is not past the deadline after all: the chain refuses it
            ended.append(gid)
        return ended

    def _writer(self, gid: str) -> Callable[[Callable[[Doc[Any]], Any]], int]:
        """Runs a change on game `gid`'s document (`GameTracker.write_at_tip`'s `write`)."""
        return lambda change: self.state.write(game_doc_id(gid), change)

    def next_due_s(self, now: float) -> float | None:
        """When (on the service's `now` axis) the next time-out of this node falls due."""
        dues = [d for d in (self.due_ms(self.state.games[g]) for g in self._live()) if d]
        if not dues:
            return None
        return now + max(0, min(dues) + 1 - self.state.wall_ms()) / 1000
