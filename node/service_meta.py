"""What the meta-services (the drain, the rebalancer) may read of and do to the game service.

Part of the facade (``node.service.GameService`` inherits it), kept apart so that the game
topics know nothing of it: `players_here` reads who is connected here and who is at a safe
point to move (read-only); `hand_over` gives a session a fresh resume token for another
process, `take_back` undoes that when the player was not told, and `notify` pushes the notice.
Where players go and when is ``node.drain``'s and ``node.rebalancer``'s business. The load
observer writes its entry into this node's presence document through `write_own_presence`, so
that the entry carries the presence heartbeat too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from pycrdt import Doc

from meridian.node.service_state import ServiceState, token_hash
from meridian.node.topics.games import GamesTopic


class HandedOver(NamedTuple):
    """A session handed over (`MetaServiceAccess.hand_over`): its new resume token, the
    presence change recording it, and the hash of the token it replaced."""

    resume: str
    event_no: int
    previous_hash: str


@dataclass(frozen=True)
class PlayerHere:
    """A player connected here, as the meta-services see them (`players_here`).

    `safe`: at a safe point to move to another process, that is between moves: in no live game,
    or in none where it is their turn, and in no open invitation of this node (it would end
    with their connection here). `in_game`: in a live game. `connected_since`: when the oldest
    of their connections here opened (the service's clock)."""

    uid: str
    sessions: dict[str, list[str]]  # session id -> its connections here
    connected_since: float
    in_game: bool
    safe: bool


class MetaServiceAccess:
    """The meta-services' part of `GameService` (see module docstring)."""

    state: ServiceState
    games_topic: GamesTopic

    def write_own_presence(self, change: Callable[[Doc[Any]], Any]) -> int:
        """A meta-service's write of this node's presence document (the load entry), through
        `ServiceState.write`: it carries the heartbeat, so a node whose load observer publishes
        more often than HEARTBEAT_S writes no heartbeat of its own. 0 when the document is held
        read-only after store damage (logged there)."""
        state = self.state
        was, state.in_background = state.in_background, True
        try:
            return state.write(state.presence_doc, change)
        finally:
            state.in_background = was

    def players_here(self, uids: Collection[str] | None = None) -> list[PlayerHere]:
        """Each player with a session connected here (only those of `uids` if given), and
        whether they are at a safe point to move, by uid."""
        state = self.state
        turns = self._turns()
        inviting = {uid for i in state.own_presence().invites for uid in (i.from_uid, i.to_uid)}
        players: dict[str, PlayerHere] = {}
        for sid, conn_ids in state.by_sid.items():
            conns = [state.conns[c] for c in sorted(conn_ids) if c in state.conns]
            if not conns or (uids is not None and conns[0].uid not in uids):
                continue
            uid = conns[0].uid
            known = players.get(uid)
            opened = [c.opened for c in conns] + ([known.connected_since] if known else [])
            games = turns.get(uid, [])
            players[uid] = PlayerHere(
                uid=uid,
                sessions={**(known.sessions if known else {}), sid: [c.conn_id for c in conns]},
                connected_since=min(opened),
                in_game=bool(games),
                safe=not any(games) and uid not in inviting,
            )
        return sorted(players.values(), key=lambda p: p.uid)

    def _turns(self) -> dict[str, list[bool]]:
        """uid -> for each of their live games, whether it is their turn."""
        state = self.state
        turns: dict[str, list[bool]] = {}
        for gid in self.games_topic.live:
            tracker = state.games[gid]
            to_move = state.rules.to_move(tracker.chain.state)
            for seat, uid in enumerate(tracker.info.players):
                turns.setdefault(uid, []).append(seat == to_move)
        return turns

    def hand_over(self, sid: str) -> HandedOver | None:
        """A fresh resume token for session `sid` hosted here, the number of the presence
        change that records it, and the token hash it replaced (None: no such session here)."""
        state = self.state
        session = state.own_session(sid)
        if session is None:
            return None
        resume = state.new_token()
        event = state.put_session(replace(session, resume_hash=token_hash(resume)))
        state.handed_over.add(sid)
        return HandedOver(resume, event, session.resume_hash)

    def take_back(self, sid: str, handed: HandedOver) -> bool:
        """Undo a `hand_over` whose notice was never sent: the session's resume token is again
        the one its client holds. False if the session is gone or was resumed meanwhile."""
        state = self.state
        session = state.own_session(sid)
        if session is None or session.resume_hash != token_hash(handed.resume):
            return False
        state.put_session(replace(session, resume_hash=handed.previous_hash))
        state.handed_over.discard(sid)
        return True

    def notify(self, conn_id: str, message: dict[str, Any]) -> None:
        """Push `message` to one connection, after everything already said to it."""
        if conn_id in self.state.conns:
            self.state.send(conn_id, message)
