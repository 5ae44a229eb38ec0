"""Rollback notices owed to clients that are not simply in a game's audience when it goes back.

A ``rollback`` names, for each client, the ply where the moves *that client* was shown leave the
game's chain (``GameTracker.branch_exit``; docs/protocol.md, *Who is told of a rollback*). The
games topic tells the game's players and watchers when a merge rolls its chain back; this module
remembers the others: the heads a client reported in hello's ``seen`` that this node cannot
place yet (a wait, then a bound, lowered when the rest of the branch arrives), and connections
that stopped watching a game (told if it goes back below the last view they were shown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from meridian.crdt_models.game import game_doc_id
from meridian.node.game_tracker import GameTracker
from meridian.node.service_state import Conn, ServiceState

# A head named in hello's "seen" that this node never received may still be on its way (the
# player moved here from a node that showed a move a third region made a moment ago, as in a
# drain): wait this long for it before telling the player the moves were not kept.
UNSEEN_HEAD_WAIT_S = 3.0
ROLLBACK_UNSEEN = "moves you saw were not kept (a region was lost or a merge undid them)"
# A seen branch part of which never reached this node is answered with a bound (the ply of its
# lowest missing record) and remembered: when the rest arrives (at a heal) and the branch left
# the chain lower down, the player is told again. At most this many are remembered (oldest
# dropped first), and as many connections that stopped watching a game (told of its rollbacks).
MAX_UNSETTLED_HEADS = 4096
MAX_LEFT_WATCHERS = 4096


@dataclass(frozen=True)
class UnseenHead:
    """A move a player reported seeing (hello's ``seen``) that this node has not received."""

    conn_id: str
    gid: str
    ply: int
    head: str
    due: float  # then it counts as lost and the player is told


@dataclass(frozen=True)
class UnsettledHead:
    """A seen head whose branch this node holds only in part: the player was told `told` (None:
    nothing yet, the game itself has not arrived), a bound that arriving records may lower."""

    uid: str
    gid: str
    ply: int
    head: str
    told: int | None


PushView = Callable[[str, str, GameTracker, str], None]  # conn_id, gid, tracker, uid


class RollbackNotices:
    def __init__(self, state: ServiceState, push_view: PushView) -> None:
        self.state = state
        self._push_view = push_view  # a game's view for one connection (the games topic's)
        self.unseen_heads: list[UnseenHead] = []  # hello's "seen" heads not received here yet
        # (uid, gid, head) -> a branch told with a bound, settled as its records arrive
        self.unsettled: dict[tuple[str, str, str], UnsettledHead] = {}
        # (gid, conn_id) -> (ply, head) of the last view of a game that connection stopped
        # watching: it is still told if that game goes back below what it saw
        self.left_watchers: dict[tuple[str, str], tuple[int, str]] = {}

    def announce_unseen(self, conn: Conn, seen: dict[str, tuple[int, str]], now: float) -> None:
        """After hello: the player saw plies this node's chain does not hold (a fork was resolved
        against them, or the region that showed them was lost before they replicated) and may
        never have got the rollback notice: tell them now, before the game view. A branch part
        of which this node never received may still be in flight: that one waits
        (`recheck`), and one for a game not here yet waits for the game."""
        for gid, (ply, head) in seen.items():
            tracker = self.state.games.get(gid)
            if tracker is None:
                self._remember_unsettled(UnsettledHead(conn.uid, gid, ply, head, None))
                continue
            found = tracker.branch_exit(ply, head)
            if found is None:
                continue
            if not found.exact:
                due = now + UNSEEN_HEAD_WAIT_S
                self.unseen_heads.append(UnseenHead(conn.conn_id, gid, ply, head, due))
                continue
            self._send(conn.conn_id, gid, found.ply)

    def recheck(self, now: float) -> None:
        """A waiting branch that reached the chain needs nothing but the game view; one that is
        still missing at its deadline (or arrived as a dropped branch) gets the rollback notice
        after all, then the view. (The view was held back: it would have replaced, in the
        client's ``seen``, the head this notice is about.) A notice that could only name a
        bound is remembered, to be lowered if the rest of the branch arrives (`settle`)."""
        state = self.state
        waiting = []
        for unseen in self.unseen_heads:
            conn, tracker = state.conns.get(unseen.conn_id), state.games.get(unseen.gid)
            if conn is None or tracker is None:
                continue
            found = tracker.branch_exit(unseen.ply, unseen.head)
            if found is not None and not found.exact and now < unseen.due:
                waiting.append(unseen)
                continue
            if found is not None:
                self._send(unseen.conn_id, unseen.gid, found.ply)
                if not found.exact:
                    told = UnsettledHead(conn.uid, unseen.gid, unseen.ply, unseen.head, found.ply)
                    self._remember_unsettled(told)
            if conn.uid in tracker.info.players or conn.watching == unseen.gid:
                # (a game it only watched elsewhere gets no view: nothing here would tell it
                # when what that view shows goes back)
                self._push_view(unseen.conn_id, unseen.gid, tracker, conn.uid)
        self.unseen_heads = waiting

    def _remember_unsettled(self, unsettled: UnsettledHead) -> None:
        key = (unsettled.uid, unsettled.gid, unsettled.head)
        self.unsettled.pop(key, None)
        self.unsettled[key] = unsettled
        while len(self.unsettled) > MAX_UNSETTLED_HEADS:
            del self.unsettled[next(iter(self.unsettled))]

    def settle(self, gid: str, tracker: GameTracker) -> None:
        """Records of `gid` arrived: a remembered branch that now proves to leave the chain
        below what its player was told is told again, to the player's connections here; one
        that is now fully known (or on the chain after all) is forgotten."""
        if not self.unsettled:
            return
        for key, unsettled in [(k, u) for k, u in self.unsettled.items() if u.gid == gid]:
            found = tracker.branch_exit(unsettled.ply, unsettled.head)
            lower = found is not None and (unsettled.told is None or found.ply < unsettled.told)
            if found is None or found.exact:
                del self.unsettled[key]
            elif lower:
                self.unsettled[key] = replace(unsettled, told=found.ply)
            if found is not None and lower:
                for conn in self.state.conns_of(unsettled.uid):
                    self._send(conn.conn_id, gid, found.ply)
                    if conn.uid in tracker.info.players or conn.watching == gid:
                        self._push_view(conn.conn_id, gid, tracker, conn.uid)

    def note_left_watcher(self, conn: Conn, gid: str) -> None:
        """`conn` stops watching `gid`: remember what it was last shown (the chain's tip)."""
        tracker = self.state.games.get(gid)
        if tracker is None:
            return
        key = (gid, conn.conn_id)
        self.left_watchers.pop(key, None)
        self.left_watchers[key] = (tracker.base_ply + tracker.ply, tracker.chain.tip)
        while len(self.left_watchers) > MAX_LEFT_WATCHERS:
            del self.left_watchers[next(iter(self.left_watchers))]

    def watching_again(self, conn: Conn, gid: str) -> None:
        """`conn` watches `gid` (again): its views follow the game, with the audience's notices."""
        self.left_watchers.pop((gid, conn.conn_id), None)

    def tell_left_watchers(self, gid: str, tracker: GameTracker) -> None:
        """`gid` went back: connections still here that stopped watching it are told where it
        went back to for what they saw, once (one whose view is still on the chain waits for a
        later rollback; one that closed is forgotten)."""
        for key in [k for k in self.left_watchers if k[0] == gid]:
            ply, head = self.left_watchers[key]
            found = tracker.branch_exit(ply, head)
            if key[1] not in self.state.conns:
                del self.left_watchers[key]
            elif found is not None:
                del self.left_watchers[key]
                self._send(key[1], gid, found.ply)

    def next_due(self) -> float | None:
        """When the earliest waiting head counts as lost (None: none waits)."""
        return min((u.due for u in self.unseen_heads), default=None)

    def _send(self, conn_id: str, gid: str, went_back: int) -> None:
        message = {"type": "rollback", "game": gid, "ply": went_back, "reason": ROLLBACK_UNSEEN}
        self.state.send(conn_id, message, self.state.gate(game_doc_id(gid)))
