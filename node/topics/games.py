"""Games: the canonical chain of every game this node knows, moves, watching, and the game views
and rollback notices pushed to the players and watchers connected here (the time-outs of games
with a time control: ``node.topics.clocks``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from meridian.crdt_models.archive import ArchivedGame, games_to_park
from meridian.crdt_models.game import GAME_PREFIX, GameInfo, GameWriter, game_doc_id
from meridian.crdt_models.presence import IDLE, WATCHING, Invite
from meridian.games.base import IllegalMove
from meridian.games.clock import TIMEOUT
from meridian.node import protocol as p
from meridian.node.game_tracker import FINISHED, LIVE, GameTracker, load_tracker
from meridian.node.placement_hooks import PlacementTopic
from meridian.node.protocol import ErrorCode, NoticeCode, Refused, encode_message
from meridian.node.rollback_notices import LostLine, RollbackNotices, UnseenHead
from meridian.node.service_state import Answer, Conn, ServiceState

# A node that holds two games breaking "one live game per player" but hosts neither parks the
# later one itself after this long, if no host parked it first (`GamesTopic.to_park`).
PARK_FALLBACK_S = 3.0


@dataclass(frozen=True)
class GameRefresh:
    """What reading a game document changed: the ply a merge rolled back to (a new rollback is
    a merge to count), and whether the game is finished (to be logged)."""

    gid: str
    tracker: GameTracker
    rolled_back_to: int | None
    new_rollback: bool

    @property
    def finished(self) -> bool:
        return self.tracker.status == FINISHED


class GamesTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._known_rollbacks: set[tuple[str, int]] = set()
        self._parked_seen: set[str] = set()
        self._park_due: dict[str, float] = {}  # gid -> when this node parks it if still live
        self.live: set[str] = set()
        self.timed_live: set[str] = set()  # the live games with a time control (clocks run)
        self.live_changed = False
        self.rollbacks = RollbackNotices(state, self._push_player_view)
        state.on_watcher_gone = self.rollbacks.note_left_watcher
        self.placement = PlacementTopic(state)  # partial replication (replication.game_backups)

    # --- reading game documents ----------------------------------------------------------------

    def refresh(self, doc_id: str) -> GameRefresh | None:
        """Bring a game's chain up to date and push what changed to its audience here."""
        state = self.state
        doc = state.docs.get(doc_id)
        if doc is None:
            return None
        gid = doc_id[len(GAME_PREFIX) :]
        tracker = state.games.get(gid)
        if tracker is None:
            tracker = load_tracker(state.rules, doc)
            if tracker is None:
                return None
            state.games[gid] = tracker
            added, rolled = tracker.ply + 1, None  # a game new to this node is news
            arrived = True
        else:
            known = len(tracker.records)
            change = tracker.refresh(doc)
            added, rolled = change.added, change.rolled_back_to
            arrived = len(tracker.records) > known  # (records off the chain count too)
        self._note_live(gid, tracker)
        new_rollback = False
        if rolled is not None:
            new_rollback = self._announce_rollback(gid, tracker, tracker.base_ply + rolled)
            self.rollbacks.tell_left_watchers(gid, tracker)
        if arrived:
            self.rollbacks.settle(gid, tracker)
        if added or rolled is not None or tracker.status != LIVE:
            self.push(gid, tracker)
        return GameRefresh(gid, tracker, rolled, new_rollback)

    def _note_live(self, gid: str, tracker: GameTracker) -> None:
        live = tracker.status == LIVE
        if live != (gid in self.live):
            self.live_changed = True
            if live:
                self.live.add(gid)
            else:
                self.live.discard(gid)
        # The clocks topic looks at these on every pass: games without a clock cost it nothing.
        if live and tracker.info.time_control is not None:
            self.timed_live.add(gid)
        else:
            self.timed_live.discard(gid)

    def _announce_rollback(self, gid: str, tracker: GameTracker, ply: int) -> bool:
        if (gid, ply) in self._known_rollbacks:
            return False
        self._known_rollbacks.add((gid, ply))
        gate = self.state.gate(game_doc_id(gid))
        message = {
            "type": "rollback",
            "game": gid,
            "ply": ply,
            "reason": "two moves were made for the same turn while regions could not talk; "
            "the earlier one was kept",
            "settled": True,  # this node holds both lines: the ply is exact
        }
        for conn in self.state.game_audience(gid, tracker):
            self.state.send(conn.conn_id, message, gate)
        return True

    # --- views -----------------------------------------------------------------------------------

    def push(self, gid: str, tracker: GameTracker) -> None:
        by_seat: dict[int | None, tuple[dict[str, Any], str]] = {}  # watchers share one message
        seat_views: list[Any] | None = None  # the players' views, built together when needed
        gate = self.state.gate(game_doc_id(gid))  # a move shown is a move kept
        held = self.rollbacks.held_back(gid)
        for conn in self.state.game_audience(gid, tracker):
            if conn.conn_id in held:
                continue  # its view waits for the head it reported (`RollbackNotices.recheck`)
            viewer = conn.uid if conn.uid in tracker.info.players else None
            seat = tracker.info.seat_of(viewer) if viewer else None
            if seat not in by_seat:
                if seat is None:
                    message = self.view(gid, tracker, None)
                else:
                    if seat_views is None:
                        seat_views = self.state.rules.seat_views(tracker.chain.state)
                    message = self._message(gid, tracker, seat, seat_views[seat])
                by_seat[seat] = (message, encode_message(message))
            message, text = by_seat[seat]
            self.state.send(conn.conn_id, message, gate, text)

    def view(self, gid: str, tracker: GameTracker, uid: str | None) -> dict[str, Any]:
        rules = self.state.rules
        seat = tracker.info.seat_of(uid) if uid else None
        state = tracker.chain.state
        view = rules.player_view(state, seat) if seat is not None else rules.spectator_view(state)
        return self._message(gid, tracker, seat, view)

    def _message(
        self, gid: str, tracker: GameTracker, seat: int | None, view: Any
    ) -> dict[str, Any]:
        """The ``game`` push of `view`, the rules' view of the game for `seat` (None: watcher)."""
        rules = self.state.rules
        state = tracker.chain.state
        last = tracker.chain.moves[-1] if tracker.chain.moves else None
        shown_last = {"player": last.player, "move": last.move} if last else None
        # The rules' view says what of the last move this viewer may see (a Scout's returned
        # cards are the mover's secret); the chain's own record is the fallback.
        shown_last = view.get("last_move", shown_last) if isinstance(view, dict) else shown_last
        to_move = rules.to_move(state)
        clock = tracker.chain.clock
        legal: list[Any] = []
        if seat is not None and seat == to_move:
            # A player's view may list them already (Battleline's does): listed once per ply.
            listed = view.get("legal_moves") if isinstance(view, dict) else None
            legal = listed if isinstance(listed, list) else rules.legal_moves(state)
        return {
            "type": "game",
            "game": gid,
            "you": seat,
            "players": tracker.info.names,
            "view": view,
            "to_move": to_move,
            "legal": legal,
            "ply": tracker.base_ply + tracker.ply,
            "last_move": shown_last,
            "head": tracker.chain.tip,
            "result": rules.result(state),
            "status": tracker.status,
            "clock": clock.to_json(self.state.wall_ms()) if clock is not None else None,
        }

    def live_games_of(self, uid: str) -> list[str]:
        return [
            gid for gid, t in self.state.games.items() if t.status == LIVE and uid in t.info.players
        ]

    def announce_unseen_rollbacks(self, conn: Conn, seen: dict[str, p.Seen], now: float) -> None:
        """After hello: rollback notices for what `seen` says the client was shown, and for the
        lines it was told of only with a bound (`RollbackNotices.announce_unseen`)."""
        shown = {gid: (e.ply, e.head) for gid, e in seen.items() if e.ply > 0}
        lost = {
            gid: [LostLine(line.ply, line.head, line.told) for line in e.lost if line.ply > 0]
            for gid, e in seen.items()
            if e.lost
        }
        self.rollbacks.announce_unseen(conn, shown, now, lost)

    @property
    def unseen_heads(self) -> list[UnseenHead]:
        return self.rollbacks.unseen_heads

    def recheck_unseen_heads(self, now: float) -> None:
        self.rollbacks.recheck(now)

    def next_unseen_due(self) -> float | None:
        return self.rollbacks.next_due()

    def _push_player_view(self, conn_id: str, gid: str, tracker: GameTracker, uid: str) -> None:
        message = self.view(gid, tracker, uid)
        self.state.send(conn_id, message, self.state.gate(game_doc_id(gid)))

    def push_live_games(self, conn: Conn) -> None:
        """After hello: the views of the player's live games (a game waiting for a head the
        player saw gets its view once that is settled)."""
        waiting = {u.gid for u in self.unseen_heads if u.conn_id == conn.conn_id}
        for gid in self.live_games_of(conn.uid):
            if gid not in waiting:
                self._push_player_view(conn.conn_id, gid, self.state.games[gid], conn.uid)

    def resume_watching(self, conn: Conn) -> None:
        """After hello: a session that was watching a game (it moved here: a drain, a rebalance,
        a failover) goes on watching it on this connection, with the game's view now (unless a
        head the player saw waits to be settled, as in `push_live_games`)."""
        session = self.state.own_session(conn.sid)
        gid = session.game if session is not None and session.status == WATCHING else ""
        if not gid:
            return
        self.state.set_watching(conn, gid)
        self.rollbacks.watching_again(conn, gid)
        tracker = self.state.games.get(gid)
        waiting = any(u.gid == gid and u.conn_id == conn.conn_id for u in self.unseen_heads)
        if tracker is not None and not waiting:
            message = self.view(gid, tracker, None)
            self.state.send(conn.conn_id, message, self.state.gate(game_doc_id(gid)))

    # --- handlers ---------------------------------------------------------------------------------

    def create(self, invite: Invite, saved: ArchivedGame | None) -> Answer:
        """The game an accepted invitation starts (from a saved one if it resumes one)."""
        state = self.state
        gid = state.new_token()[:20]
        if saved is not None:
            info = GameInfo(
                gid,
                saved.game,
                saved.players,
                saved.names,
                saved.seed,
                saved.first,
                state.stamp(),
                state.node_id,
                saved.gid,
                saved.moves,
                invite.clock_ms,
                invite.increment_ms,
                self.placement.replicas(saved.players, invite),
            )
        else:
            seed = state.rng.randrange(2**53)
            players = [invite.from_uid, invite.to_uid]
            coin = state.rng.randrange(2)
            info = GameInfo(
                gid,
                state.rules.game_name(),
                players,
                [invite.from_name, invite.to_name],
                seed,
                self._swapped_first(players, coin),
                state.stamp(),
                state.node_id,
                clock_ms=invite.clock_ms,
                increment_ms=invite.increment_ms,
                replicas=self.placement.replicas(players, invite),
            )
        node = state.node_id
        event = state.write(game_doc_id(gid), lambda doc: GameWriter(doc, node).create(info))
        return Answer({"game": gid}, game_doc_id(gid), event)

    def _swapped_first(self, players: list[str], coin: int) -> int:
        """Who moves first in a new game of these two: whoever moved second in their latest
        finished game (a rematch swaps colours); the coin if they never finished one."""
        finished = [t.info for t in self.state.games.values() if t.status == FINISHED]
        latest = max(
            (info for info in finished if set(info.players) == set(players)),
            key=lambda info: (info.created, info.gid),
            default=None,
        )
        if latest is None:
            return coin
        return players.index(latest.players[1 - latest.first])

    def player_game(self, conn: Conn, gid: str) -> tuple[GameTracker, int]:
        """The live game `gid` and the caller's seat in it."""
        tracker = self.state.games.get(gid)
        if tracker is None:
            raise Refused(ErrorCode.NOT_FOUND, "no such game")
        seat = tracker.info.seat_of(conn.uid)
        if seat is None:
            raise Refused(ErrorCode.NOT_PLAYER, "you are not a player of that game")
        if tracker.status == FINISHED:
            raise Refused(ErrorCode.GAME_OVER, "the game has ended")
        if tracker.status != LIVE:
            raise Refused(ErrorCode.NOT_FOUND, "the game is not in play (saved)")
        return tracker, seat

    def play(self, conn: Conn, gid: str, move: dict[str, Any]) -> Answer:
        tracker, seat = self.player_game(conn, gid)
        if move.get("type") == TIMEOUT:
            raise Refused(ErrorCode.BAD_REQUEST, "a time-out is recorded by the nodes, not sent")
        ply, event = self._write_move(gid, tracker, seat, move)
        return Answer({"ply": tracker.base_ply + ply}, game_doc_id(gid), event)

    def _write_move(
        self, gid: str, tracker: GameTracker, seat: int, move: dict[str, Any]
    ) -> tuple[int, int]:
        """Write `move` by `seat` at the tip of the chain, or Refused (the rules or the clock
        refuse it); returns its ply and the document change that holds it."""
        state, ply = self.state, tracker.ply
        try:
            event = tracker.write_at_tip(
                seat,
                move,
                state.stamp(),
                state.node_id,
                lambda change: state.write(game_doc_id(gid), change),
            )
        except IllegalMove as error:
            raise Refused(p.move_refusal(error.code), error.message) from None
        return ply, event

    def watch(self, conn: Conn, message: p.Watch) -> Answer:
        state = self.state
        tracker = state.games.get(message.game)
        if tracker is None:
            self.placement.fetch_missing([message.game])  # (partial replication: for next time)
            raise Refused(ErrorCode.NOT_FOUND, "no such game")
        session = replace(state.conn_session(conn), status=WATCHING, game=message.game)
        if conn.watching and conn.watching != message.game:
            self.rollbacks.note_left_watcher(conn, conn.watching)
        self.rollbacks.watching_again(conn, message.game)
        state.set_watching(conn, message.game)
        event = state.put_session(session)
        view = self.view(message.game, tracker, None)
        return Answer({"game": view}, state.presence_doc, event)

    def unwatch(self, conn: Conn, message: p.Unwatch) -> Answer:
        state = self.state
        session = replace(state.conn_session(conn), status=IDLE, game="")
        if conn.watching:
            self.rollbacks.note_left_watcher(conn, conn.watching)
        state.set_watching(conn, "")
        event = state.put_session(session)
        return Answer({}, state.presence_doc, event)

    # --- the two-games merge ----------------------------------------------------------------------

    def to_park(self, now: float) -> list[str]:
        """Live games a partition let a player start next to an earlier one (each a merge),
        found since the last call. A node that hosts one parks it at once (`due_parks`). Under
        partial replication one that only holds both games parks it after PARK_FALLBACK_S if it
        is still live: the hosts may each hold only one of the two games (the earlier game's
        creating node lost), and without the fallback no node would park it. Under full
        replication a host holds both; a node hosting neither may lag behind the end of the
        earlier game (or see it through its own forged records), and a park is for good."""
        live = [self.state.games[gid].info for gid in sorted(self.live)]
        found = [gid for gid in games_to_park(live) if gid not in self._parked_seen]
        self._parked_seen.update(found)
        partial = self.placement.hooks is not None
        for gid in found:
            if self.hosts(self.state.games[gid]):
                self._park_due[gid] = now
            elif partial:
                self._park_due[gid] = now + PARK_FALLBACK_S
        return found

    def due_parks(self, now: float) -> list[str]:
        """Found games to park now that are still live (a host elsewhere may have parked one)."""
        due = sorted(gid for gid, at in self._park_due.items() if at <= now)
        for gid in due:
            del self._park_due[gid]
        return [gid for gid in due if gid in self.live]

    def hosts(self, tracker: GameTracker) -> bool:
        """This node created the game or hosts one of its players."""
        state = self.state
        return tracker.info.node == state.node_id or any(
            state.conns_of(uid) for uid in tracker.info.players
        )

    def notice_parked(self, gid: str) -> None:
        tracker = self.state.games[gid]
        message = {
            "type": "notice",
            "code": NoticeCode.GAME_PARKED,
            "message": f"two of your games started at once in different regions; game {gid}, "
            "the later one, was saved and can be resumed",
        }
        for conn in self.state.game_audience(gid, tracker):
            self.state.send(conn.conn_id, message)
