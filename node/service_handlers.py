"""The game service's message handlers: each calls its topic, then what follows in others.

Part of the facade (``node.service.GameService`` inherits them): a handler takes the typed
message (``node.protocol``) and returns the typed `Answer`; the calls that cross topics (an
accepted invitation starts a game and changes the picture; a hello greets in every topic) are
made here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meridian.crdt_models.game import GAME_PREFIX, SAVE, game_doc_id
from meridian.node import protocol as p
from meridian.node.delivery import Progress
from meridian.node.protocol import ErrorCode, Refused
from meridian.node.service_state import Answer, Conn, ServiceState
from meridian.node.topics.accounts import AccountsTopic
from meridian.node.topics.archive import ArchiveTopic
from meridian.node.topics.chat import ChatTopic
from meridian.node.topics.games import GamesTopic
from meridian.node.topics.limits import LimitsTopic
from meridian.node.topics.lobby import LobbyTopic
from meridian.node.topics.sessions import SessionsTopic

CLOCKS_MIN_PROTOCOL = 3  # the first peer protocol whose releases know time controls


class MessageHandlers:
    """The handlers of `GameService` (see module docstring)."""

    state: ServiceState
    accounts_topic: AccountsTopic
    sessions: SessionsTopic
    lobby: LobbyTopic
    games_topic: GamesTopic
    archive: ArchiveTopic
    chat: ChatTopic
    limits: LimitsTopic
    progress: Progress

    def _refresh_game(self, doc_id: str) -> None:
        raise NotImplementedError

    def _refresh_picture(self) -> None:
        raise NotImplementedError

    def handle(self, conn: Conn, message: p.AnyClientMessage, now: float) -> Answer:
        return _HANDLERS[type(message)](self, conn, message, now)

    def _hello(self, conn: Conn, message: p.Hello, now: float) -> Answer:
        account, resume, written, arrived = self.sessions.hello(conn, message)
        if not self.limits.admit_session(conn):
            raise Refused(ErrorCode.RATE_LIMITED, "too many connections for your account")
        tables = self.lobby.tables_of(account.uid)  # (its node may have been lost unseen)
        self.games_topic.placement.fetch_missing([*(message.seen or {}), *tables])
        self.games_topic.announce_unseen_rollbacks(conn, message.seen or {}, now)
        self.lobby.greet(conn)
        if account.must_rename:
            self.accounts_topic.notice_must_rename(conn)
        self.games_topic.push_live_games(conn)
        self.games_topic.resume_watching(conn)
        you = {
            "uid": account.uid,
            "name": account.name,
            "region": self.state.region,
            "home": account.home,
            "must_rename": account.must_rename,
        }
        live = self.games_topic.live_games_of(account.uid)
        # Durable here, not replicated: a player logs in and plays in a region cut off.
        body = {"you": you, "resume": resume, "games": live}
        catch_up = self._catch_up(live) if arrived else ()
        return Answer(body, self.state.presence_doc, written, replicated=False, caught_up=catch_up)

    def _catch_up(self, games: list[str]) -> tuple[str, ...]:
        """A player arriving from another node may have moved there just before it failed: the
        linked regions are asked for the player's live games, and the reply (with the pushes
        behind it) waits for their answers, so that the player is never shown a position
        without a move a region already held, and never moves on it (docs/architecture.md,
        *A failover waits for the catch-up*)."""
        asked = (game_doc_id(gid) for gid in games)
        return tuple(doc_id for doc_id in asked if self.state.docs.ask_peers(doc_id))

    def _invite(self, conn: Conn, message: p.Invite, now: float) -> Answer:
        oldest = self.progress.oldest_peer_protocol()
        if message.clock is not None and oldest is not None and oldest < CLOCKS_MIN_PROTOCOL:
            # A release before time controls ignores the clock and refuses time-out records:
            # its regions would play the game untimed and disagree on how it ended.
            raise Refused(
                ErrorCode.UNAVAILABLE,
                "time controls wait until every region runs this release (an upgrade is under "
                "way); invite without a clock",
            )
        target = self.accounts_topic.by_name(message.to)
        return self.lobby.invite(conn, target.uid, target.name, message.resume or "", message.clock)

    def _retract(self, conn: Conn, message: p.Retract, now: float) -> Answer:
        return self.lobby.retract(conn, message)

    def _decline(self, conn: Conn, message: p.Decline, now: float) -> Answer:
        return self.lobby.decline(conn, message)

    def _accept(self, conn: Conn, message: p.Accept, now: float) -> Answer:
        invite = self.lobby.accepted(conn, message)
        saved = None
        if invite.resume:
            saved = self.state.saved_between(invite.resume, invite.from_uid, invite.to_uid)
        answer = self.games_topic.create(invite, saved)
        if invite.resume:
            self.archive.resumed(invite.resume)
        self._refresh_game(answer.doc_id)
        self._refresh_picture()
        return answer

    def _move(self, conn: Conn, message: p.Move, now: float) -> Answer:
        answer = self.games_topic.play(conn, message.game, dict(message.move))
        self._refresh_game(answer.doc_id)
        return answer

    def _give_up(self, conn: Conn, message: p.GiveUp, now: float) -> Answer:
        answer = self.games_topic.play(conn, message.game, {"type": "give_up"})
        self._refresh_game(answer.doc_id)
        return answer

    def _save(self, conn: Conn, message: p.Save, now: float) -> Answer:
        tracker, _seat = self.games_topic.player_game(conn, message.game)
        self.archive.park(message.game, tracker, SAVE, conn.uid)
        self._refresh_game(GAME_PREFIX + message.game)
        return Answer()

    def _watch(self, conn: Conn, message: p.Watch, now: float) -> Answer:
        return self.games_topic.watch(conn, message)

    def _unwatch(self, conn: Conn, message: p.Unwatch, now: float) -> Answer:
        return self.games_topic.unwatch(conn, message)

    def _chat(self, conn: Conn, message: p.Chat, now: float) -> Answer:
        if message.game is not None:
            return self.chat.to_table(conn, message, message.game, now)
        self.chat.check_text(message)
        target = self.accounts_topic.by_name(message.to or "")
        return self.chat.to_player(conn, message, target.uid, target.name, now)

    def _saved(self, conn: Conn, message: p.Saved, now: float) -> Answer:
        return self.archive.saved(conn, message)

    def _rename(self, conn: Conn, message: p.Rename, now: float) -> Answer:
        return self.accounts_topic.rename(conn, message)

    def _ping(self, conn: Conn, message: p.Ping, now: float) -> Answer:
        return Answer()

    def _lobby_page(self, conn: Conn, message: p.LobbyPage, now: float) -> Answer:
        return Answer(self.lobby.page(message.after or ""))


Handler = Callable[[MessageHandlers, Conn, Any, float], Answer]
_HANDLERS: dict[type[p.AnyClientMessage], Handler] = {
    p.Hello: MessageHandlers._hello,
    p.Invite: MessageHandlers._invite,
    p.Retract: MessageHandlers._retract,
    p.Accept: MessageHandlers._accept,
    p.Decline: MessageHandlers._decline,
    p.Move: MessageHandlers._move,
    p.GiveUp: MessageHandlers._give_up,
    p.Save: MessageHandlers._save,
    p.Watch: MessageHandlers._watch,
    p.Unwatch: MessageHandlers._unwatch,
    p.Chat: MessageHandlers._chat,
    p.Saved: MessageHandlers._saved,
    p.Rename: MessageHandlers._rename,
    p.Ping: MessageHandlers._ping,
    p.LobbyPage: MessageHandlers._lobby_page,
}
