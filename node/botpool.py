"""The pool of bots waiting for people: how many to start, which to let go (no I/O).

The demo promises that ``for_people`` bots are always idle, so a newcomer can invite one at
once. A bot of the pool that plays a person (or is accepting a person's invitation) is not
idle, so while it is busy the run starts a standby bot (a new one, or an old standby's account
logged in again) to keep ``wanted`` bots ready; once people's games end there are more idle
bots than wanted, and a standby idle for ``linger_s`` (time for its last opponent to ask for a
rematch) leaves. The first ``wanted`` bots (bot1, bot2, ... in the demo) never leave, so the
names a newcomer is told about stay in the lobby; at most ``max_standby`` standbys run at once
(a crowd of people cannot make the run start bots without end).

`plan_pool` decides from what each bot of the pool is doing (`Seat`); `node.bots` gathers the
seats from the bots' machines and carries the decision out (it is the asyncio adapter).
"""

from __future__ import annotations

from dataclasses import dataclass

COMING, IDLE, BUSY = "coming", "idle", "busy"  # a seat's state


@dataclass(frozen=True)
class Seat:
    """One bot of the pool as the pool sees it."""

    name: str
    standby: bool  # started to stand in for a busy bot: it may be let go
    state: str  # COMING (signing in or reconnecting), IDLE (waiting for people), BUSY
    idle_since: float  # when it last became idle (meaningful when IDLE)


@dataclass(frozen=True)
class PoolMoves:
    """What the run does next: start this many standbys, let these bots go."""

    start: int
    leave: tuple[str, ...]


def plan_pool(
    seats: list[Seat], wanted: int, now: float, linger_s: float, max_standby: int
) -> PoolMoves:
    """Start standbys until `wanted` bots are idle or on their way, within `max_standby`;
    let surplus standbys idle for `linger_s` go, the longest idle first (see module
    docstring)."""
    ready = sum(1 for s in seats if s.state in (COMING, IDLE))
    standbys = sum(1 for s in seats if s.standby)
    if ready < wanted:
        return PoolMoves(max(0, min(wanted - ready, max_standby - standbys)), ())
    lingered = sorted(
        (s for s in seats if s.standby and s.state == IDLE and now - s.idle_since >= linger_s),
        key=lambda s: s.idle_since,
    )
    return PoolMoves(0, tuple(s.name for s in lingered[: ready - wanted]))
