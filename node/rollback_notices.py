"""Rollback notices owed to clients that are not simply in a game's audience when it goes back.

A ``rollback`` names, for each client, the ply where the moves *that client* was shown leave the
game's chain (``GameTracker.branch_exit``; docs/protocol.md, *Who is told of a rollback*). The
games topic tells the game's players and watchers when a merge rolls its chain back; this module
remembers the others: the heads a client reported in hello's ``seen`` that this node cannot
place yet (a wait, then a bound, lowered when the rest of the branch arrives), a line a client
was told about only with a bound elsewhere (``seen``'s ``lost``, settled here when this node can
place it), and players who watched a game and no longer do here (they stopped watching, their
connection was replaced, or they watched it on another node: told if it goes back below the last
view they were shown, on any connection they still have here).
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
class LostLine:
    """One of hello's ``seen[gid].lost``: a line of moves a node told the client was not kept,
    naming only a bound (`told`, a ``rollback`` with ``settled`` false). The client reports it
    until a notice about it is settled, so whichever node can place the line tells it where it
    really left (a client may hold several: lines seen on both sides of a partition)."""

    ply: int
    head: str
    told: int


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
        # (gid, uid, head) -> ply: the last view of a game a player watched and no longer
        # watches here; they are still told if that game goes back below what they saw
        self.left_watchers: dict[tuple[str, str, str], int] = {}

    def announce_unseen(
        self,
        conn: Conn,
        seen: dict[str, tuple[int, str]],
        now: float,
        lost: dict[str, list[LostLine]] | None = None,
    ) -> None:
        """After hello: the player saw plies this node's chain does not hold (a fork was resolved
        against them, or the region that showed them was lost before they replicated) and may
        never have got the rollback notice: tell them now, before the game view. A branch part
        of which this node never received may still be in flight: that one waits
        (`recheck`), and one for a game not here yet waits for the game. A game the player only
        watched, whose view is on the chain here, is remembered as a left watcher's."""
        for gid, (ply, head) in seen.items():
            tracker = self.state.games.get(gid)
            if tracker is None:
                self._remember_unsettled(UnsettledHead(conn.uid, gid, ply, head, None))
                continue
            found = tracker.branch_exit(ply, head)
            if found is None:
                self._remember_watched(conn.uid, gid, tracker, ply, head)
            elif not found.exact:
                due = now + UNSEEN_HEAD_WAIT_S
                self.unseen_heads.append(UnseenHead(conn.conn_id, gid, ply, head, due))
            else:
                self._send(conn.conn_id, gid, found.ply, (ply, head), settled=True)
        for gid, lines in (lost or {}).items():
            for line in lines:
                self._announce_lost(conn, gid, line)

    def _announce_lost(self, conn: Conn, gid: str, line: LostLine) -> None:
        """A line another node could only bound: settled now if this node can place it, else
        remembered like a bound told here (`settle`); one on this node's chain is remembered
        like a watched view, told if the chain goes back below it."""
        tracker = self.state.games.get(gid)
        found = tracker.branch_exit(line.ply, line.head) if tracker is not None else None
        if tracker is not None and found is None:  # on the chain here, for now
            self._remember_watched(conn.uid, gid, tracker, line.ply, line.head)
        elif found is not None and found.exact:
            self._send(conn.conn_id, gid, found.ply, (line.ply, line.head), settled=True)
        else:
            unsettled = UnsettledHead(conn.uid, gid, line.ply, line.head, line.told)
            self._remember_unsettled(unsettled)

    def _remember_watched(
        self, uid: str, gid: str, tracker: GameTracker, ply: int, head: str
    ) -> None:
        """A view of `gid` that `uid` was shown, still on the chain here: told if that changes.
        (A player of the game is in its audience here: told with the others.)"""
        if uid in tracker.info.players:
            return
        key = (gid, uid, head)
        self.left_watchers.pop(key, None)
        self.left_watchers[key] = ply
        while len(self.left_watchers) > MAX_LEFT_WATCHERS:
            del self.left_watchers[next(iter(self.left_watchers))]

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
            if found is None:  # arrived, and on the chain
                self._remember_watched(conn.uid, unseen.gid, tracker, unseen.ply, unseen.head)
            else:
                line = (unseen.ply, unseen.head)
                self._send(unseen.conn_id, unseen.gid, found.ply, line, settled=found.exact)
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
        below what its player was told is told again, to the player's connections here, and
        one now fully known is told where it left (``settled``: the client stops reporting it
        as ``lost``) and forgotten; one on the chain after all is forgotten too."""
        if not self.unsettled:
            return
        for key, unsettled in [(k, u) for k, u in self.unsettled.items() if u.gid == gid]:
            found = tracker.branch_exit(unsettled.ply, unsettled.head)
            if found is None:
                del self.unsettled[key]
                self._remember_watched(unsettled.uid, gid, tracker, unsettled.ply, unsettled.head)
                continue
            lower = unsettled.told is None or found.ply < unsettled.told
            if found.exact:
                del self.unsettled[key]
            elif lower:
                self.unsettled[key] = replace(unsettled, told=found.ply)
            if lower or found.exact:
                line = (unsettled.ply, unsettled.head)
                for conn in self.state.conns_of(unsettled.uid):
                    self._send(conn.conn_id, gid, found.ply, line, settled=found.exact)
                    if conn.uid in tracker.info.players or conn.watching == gid:
                        self._push_view(conn.conn_id, gid, tracker, conn.uid)

    def note_left_watcher(self, conn: Conn, gid: str) -> None:
        """`conn` stops watching `gid` (unwatch, another game, or it closed): remember what it
        was last shown (the chain's tip) for its player."""
        tracker = self.state.games.get(gid)
        if tracker is None:
            return
        ply, head = tracker.base_ply + tracker.ply, tracker.chain.tip
        self._remember_watched(conn.uid, gid, tracker, ply, head)

    def watching_again(self, conn: Conn, gid: str) -> None:
        """`conn` watches `gid` (again): its views follow the game, with the audience's notices;
        what its player was shown before and is no longer on the chain is told now."""
        tracker = self.state.games.get(gid)
        for key in [k for k in self.left_watchers if k[:2] == (gid, conn.uid)]:
            ply = self.left_watchers.pop(key)
            found = tracker.branch_exit(ply, key[2]) if tracker is not None else None
            if found is not None:
                self._send(conn.conn_id, gid, found.ply, (ply, key[2]), settled=found.exact)

    def tell_left_watchers(self, gid: str, tracker: GameTracker) -> None:
        """`gid` went back: players with a connection here who watched it are told where it
        went back to for what they saw, once (one whose view is still on the chain waits for a
        later rollback; one with no connection left here is forgotten: a later hello's
        ``seen`` covers it)."""
        for key in [k for k in self.left_watchers if k[0] == gid]:
            _, uid, head = key
            ply = self.left_watchers[key]
            found = tracker.branch_exit(ply, head)
            conns = self.state.conns_of(uid)
            if not conns:
                del self.left_watchers[key]
            elif found is not None:
                del self.left_watchers[key]
                for conn in conns:
                    self._send(conn.conn_id, gid, found.ply, (ply, head), settled=found.exact)

    def held_back(self, gid: str) -> set[str]:
        """Connections whose views of `gid` wait for a head they reported (`recheck` pushes
        the view): a newer view would replace, in the client's ``seen``, the line the wait is
        about, and a client that moves on before the notice would forget that line."""
        if not self.unseen_heads:
            return set()
        return {u.conn_id for u in self.unseen_heads if u.gid == gid}

    def next_due(self) -> float | None:
        """When the earliest waiting head counts as lost (None: none waits)."""
        return min((u.due for u in self.unseen_heads), default=None)

    def _send(
        self, conn_id: str, gid: str, went_back: int, line: tuple[int, str], *, settled: bool
    ) -> None:
        """Tell a client that the line it was shown up to `line` (ply, head) left the chain at
        `went_back` (``settled`` false: a bound, the client reports the line as ``lost``)."""
        message = {
            "type": "rollback",
            "game": gid,
            "ply": went_back,
            "reason": ROLLBACK_UNSEEN,
            "settled": settled,
            "line": {"ply": line[0], "head": line[1]},
        }
        self.state.send(conn_id, message, self.state.gate(game_doc_id(gid)))
