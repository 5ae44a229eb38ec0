"""The game service of one node, sans-IO: player messages and `now` in, messages and closes out.

This module is the facade over the service's topics (``node.topics``: accounts, sessions,
lobby, games, archive, chat). The topics share ``node.service_state`` and the protocol
(``node.protocol``) and never call each other; every call that crosses topics is made here, in
`receive` (a message's handler), `process` (what changed in the documents) and `tick` (time).
Topics return typed results; this facade turns them into merge counts, archive writes and the
follow-up pushes.

It runs the same way under aiohttp (``node.player_api``) and in the simulator. It reads and
writes the shared documents through a `Documents` handle, stamps writes with the node's HLC,
and learns of every change (local or replicated) through `doc_changed`. What it says leaves
through ``node.delivery``: a reply or push that shows a change waits until the change is durable
(and replicated to ``ack_regions`` regions), so a move shown to anyone is a move kept.

The protocol it implements is docs/protocol.md.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from pycrdt import Doc

from meridian.crdt_models.accounts import ACCOUNTS_DOC, Account, AccountsIndex, ParsedRecords
from meridian.crdt_models.game import GAME_PREFIX, SUPERSEDED
from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.crdt_models.presence import PRESENCE_PREFIX, Session
from meridian.games.base import GameRules
from meridian.node import protocol as p
from meridian.node.delivery import Delivery, Outgoing, Progress, Send
from meridian.node.game_tracker import LIVE, GameTracker
from meridian.node.presence_view import picture_interval
from meridian.node.protocol import CloseCode, Frame, ProtocolViolation, Refused
from meridian.node.service_handlers import MessageHandlers
from meridian.node.service_limits import ServiceLimits
from meridian.node.service_meta import HandedOver, MetaServiceAccess, PlayerHere
from meridian.node.service_state import Conn, Documents, ServiceState, log, token_hash
from meridian.node.topics.accounts import AccountsTopic
from meridian.node.topics.archive import ArchiveTopic
from meridian.node.topics.chat import ChatTopic
from meridian.node.topics.clocks import ClocksTopic
from meridian.node.topics.games import GamesTopic
from meridian.node.topics.limits import LimitsTopic
from meridian.node.topics.lobby import LobbyTopic
from meridian.node.topics.sessions import SessionsTopic

__all__ = ["Conn", "Documents", "GameService", "HandedOver", "Merges", "PlayerHere", "token_hash"]


_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass
class Merges:
    """Counters of automatic merges, by kind (exported in /metrics)."""

    counts: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        log.warning("merge: %s: %s", kind, detail)


def _background(
    method: Callable[Concatenate[GameService, _P], _R],
) -> Callable[Concatenate[GameService, _P], _R]:
    """Work no request waits for: its writes to a quarantined document are skipped and logged
    (a heartbeat, a derived log entry), where a request's write is refused as "unavailable"
    (``ServiceState.write``)."""

    @wraps(method)
    def run(self: GameService, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        state = self.state
        outer, state.in_background = state.in_background, True
        try:
            return method(self, *args, **kwargs)
        finally:
            state.in_background = outer

    return run


class GameService(MessageHandlers, MetaServiceAccess):
    """See module docstring."""

    def __init__(
        self,
        *,
        node_id: str,
        region: str,
        documents: Documents,
        rules: GameRules[Any],
        hlc: HybridLogicalClock,
        wall_ms: Callable[[], int],
        new_token: Callable[[], str],
        rng: random.Random,
        progress: Progress,
        ack_regions: int = 0,
        picture_interval_s: float = 0.0,
        limits: ServiceLimits | None = None,
    ) -> None:
        self._parsed_accounts: ParsedRecords = {}  # the last accounts index's (`index_accounts`)
        self.state = state = ServiceState(
            node_id=node_id,
            region=region,
            documents=documents,
            rules=rules,
            hlc=hlc,
            wall_ms=wall_ms,
            new_token=new_token,
            rng=rng,
            index_accounts=self.index_accounts,
            limits=limits,
        )
        self.merges = Merges()
        self.progress = progress
        self.delivery = Delivery(ack_regions)
        self.accounts_topic = AccountsTopic(state)
        self.sessions = SessionsTopic(state)
        self.lobby = LobbyTopic(state)
        self.games_topic = GamesTopic(state)
        self.clocks = ClocksTopic(
            state, lambda: self.games_topic.timed_live, self.games_topic.hosts
        )
        self.archive = ArchiveTopic(state)
        self.chat = ChatTopic(state)
        self.limits = LimitsTopic(state)
        # Rebuilding the cluster-wide picture costs O(players) and pushes a lobby update to every
        # connection; a node with thousands of players does it at most this often (0: at once).
        self._picture_interval_s = picture_interval_s
        self._picture_dirty = False
        self._picture_next = 0.0
        self._load_existing()

    @_background
    def _load_existing(self) -> None:
        self.state.dirty.update(self.state.docs.ids())
        self.sessions.heartbeat()  # other nodes count this node's players online at once
        self.process(0.0)
        self.sessions.restore()

    # --- what other parts of the node read ------------------------------------------------------

    @property
    def rules(self) -> GameRules[Any]:
        return self.state.rules

    @property
    def hlc(self) -> HybridLogicalClock:
        return self.state.hlc

    @property
    def conns(self) -> dict[str, Conn]:
        return self.state.conns

    @property
    def games(self) -> dict[str, GameTracker]:
        return self.state.games

    @property
    def accounts(self) -> AccountsIndex:
        return self.state.accounts

    def index_accounts(self, doc: Doc[Any]) -> AccountsIndex:
        """How this node reads the accounts document (the simulator's tests break it here);
        records unchanged since the last index are not parsed again."""
        index = AccountsIndex(doc, self._parsed_accounts)
        self._parsed_accounts = index.parsed
        return index

    # --- documents -------------------------------------------------------------------------------

    def doc_changed(self, doc_id: str, event_no: int = 0) -> None:
        """A document changed (`event_no`: the engine's number for the change, for the gate)."""
        self.state.doc_changed(doc_id, event_no)

    # --- accounts and sessions (called by the HTTP adapters) ------------------------------------

    def register(self, name: str, password_hash: str, home: str | None) -> Account:
        return self.accounts_topic.register(name, password_hash, home)

    def login_candidates(self, name: str) -> list[Account]:
        return self.accounts_topic.login_candidates(name)

    def start_session(self, account: Account, now: float) -> str:
        return self.sessions.start(account, now)

    def session_by_token(self, token: str) -> Session | None:
        return self.sessions.by_token(token)

    def end_session(self, token: str) -> bool:
        return self.sessions.end(token)

    def update_account(self, uid: str, **changes: str) -> Account:
        return self.accounts_topic.update(uid, **changes)

    def disable_account(self, uid: str) -> Account:
        account = self.accounts_topic.update(uid, status="disabled")
        self.state.close_uid_conns(uid, CloseCode.DISABLED, "account disabled by an administrator")
        return account

    def all_sessions(self) -> list[Session]:
        return self.sessions.all()

    # --- connections and messages ----------------------------------------------------------------

    def connect(self, conn_id: str, now: float, address: str = "") -> None:
        """A websocket opened (`address`: the peer's, for the per-address limits)."""
        conn = self.sessions.connect(conn_id, now, address)
        self.limits.admit_connection(conn)

    @_background
    def disconnect(self, conn_id: str, now: float) -> None:
        self.state.drop_connection(conn_id, now)

    def receive(self, conn_id: str, text: str, now: float) -> None:
        """One websocket text frame: read its envelope, admit it, decode it, dispatch it."""
        state = self.state
        conn = state.conns.get(conn_id)
        if conn is None:
            return
        state.now_hint = now
        try:
            frame = p.read_frame(text)
        except ProtocolViolation as violation:
            state.close(conn_id, violation.code, violation.reason)
            return
        if not self.limits.admit(conn, frame.id, now):
            return
        if not conn.uid and frame.type != "hello":
            state.close(conn.conn_id, CloseCode.PROTOCOL, "the first message must be hello")
            return
        self._dispatch(conn, frame, now)

    def _dispatch(self, conn: Conn, frame: Frame, now: float) -> None:
        out = self.state.out
        pushes_from = len(out)
        try:
            message = p.decode_message(frame)
            answer = self.handle(conn, message, now)
            reply = {"re": frame.id, "ok": True, **answer.body}
            sent = Send(conn.conn_id, reply, answer.gate)
        except Refused as error:
            body = {"code": str(error.code), "message": error.message}
            sent = Send(conn.conn_id, {"re": frame.id, "ok": False, "error": body})
        except Exception:
            # A bug must not cost the player the connection: log it, answer, carry on.
            log.exception(
                "internal error handling %s from %s", frame.type, conn.name or conn.conn_id
            )
            body = {
                "code": "internal",
                "message": "internal error; the request was not carried out",
            }
            sent = Send(conn.conn_id, {"re": frame.id, "ok": False, "error": body})
        # The reply goes before the pushes the request caused (lobby after hello, game after move).
        out.insert(pushes_from, sent)

    def take_outgoing(self, now: float) -> list[Outgoing]:
        """What may be sent now: everything said so far whose gate is open (`node.delivery`).

        The adapters call this after every call into the service and whenever the store
        commits or a peer acknowledges, since either may open a gate."""
        state = self.state
        if state.out:
            self.delivery.put(state.out)
            state.out = []
        return self.delivery.release(now, self.progress)

    def holds_output(self) -> bool:
        """Whether anything said is not sent yet (engine progress can open a gate only then)."""
        return bool(self.state.out) or self.delivery.holds_any()

    # --- reacting to document changes -------------------------------------------------------------

    @_background
    def process(self, now: float) -> None:
        """Apply every document change since the last call and push what changed."""
        state = self.state
        state.now_hint = now
        self.sessions.write_logins(now)
        self.clocks.record_timeouts()  # (marks the games dirty: refreshed just below)
        dirty, state.dirty = state.dirty, set()
        if ACCOUNTS_DOC in dirty:
            state.accounts_changed()
            self._announce_name_merges()
        for doc_id in sorted(d for d in dirty if d.startswith(GAME_PREFIX)):
            self._refresh_game(doc_id)
        if self.games_topic.unseen_heads:
            self.games_topic.recheck_unseen_heads(now)
        presence_changed = False
        for doc_id in (d for d in dirty if d.startswith(PRESENCE_PREFIX)):
            doc = state.docs.get(doc_id)
            if doc is not None:
                node = doc_id[len(PRESENCE_PREFIX) :]
                state.read_presence(node)
                self.chat.deliver(doc)
                presence_changed |= state.presence_news(node)
        # A heartbeat alone changes nothing anyone is shown, unless a node came or went.
        presence_changed |= state.live_nodes_changed()
        # A move changes neither who is online nor who plays whom: only presence changes and
        # games starting or ending need the cluster-wide picture (and parking) recomputed.
        if presence_changed:
            self.sessions.check_double_spends()
            self.sessions.enforce_revocations()
        if presence_changed or self.games_topic.live_changed:
            self.games_topic.live_changed = False
            self._picture_dirty = True
        if self._picture_dirty and now >= self._picture_next:
            self._picture_dirty = False
            self._picture_next = now + picture_interval(self._picture_interval_s, len(state.conns))
            self._refresh_picture()
            self._park_double_games(now)
        self._park_due_games(now)
        owed = self.lobby.lobby_owed_at
        if owed is not None and now >= owed:
            self.lobby.tell_lobby(now)

    def next_deadline(self) -> float | None:
        """When `process` must run again even if no document changes (a pending refresh)."""
        # (a game a request here started or ended leaves no dirty document: see it in the picture)
        picture_due = self._picture_dirty or self.games_topic.live_changed
        picture = self._picture_next if picture_due else None
        delivery = self.delivery.next_deadline()
        unseen = self.games_topic.next_unseen_due()
        timeout = self.clocks.next_due_s(self.state.now_hint)
        logins, owed = self.sessions.logins_due, self.lobby.lobby_owed_at
        deadlines = [d for d in (picture, delivery, unseen, timeout, logins, owed) if d is not None]
        return min(deadlines) if deadlines else None

    def _announce_name_merges(self) -> None:
        for contest in self.accounts_topic.new_contests():
            self.merges.count("name", f"name {contest.name!r}: account {contest.uid} must rename")
            for conn in self.state.conns_of(contest.uid):
                self.accounts_topic.notice_must_rename(conn)

    @_background
    def _refresh_game(self, doc_id: str) -> None:
        # The refresh reads the document as it is now, this node's own write just made included:
        # the next `process` need not refresh it again for that write (a change that arrives
        # later marks it dirty again).
        self.state.dirty.discard(doc_id)
        refresh = self.games_topic.refresh(doc_id)
        if refresh is None:
            return
        if refresh.tracker.status != LIVE:
            self.games_topic.placement.release(doc_id)  # (partial replication: it is over)
        if refresh.new_rollback:
            ply = refresh.tracker.base_ply + (refresh.rolled_back_to or 0)
            self.merges.count("same_ply", f"game {refresh.gid} went back to ply {ply}")
        if refresh.rolled_back_to is not None:
            self.archive.relog_after_rollback(refresh.gid, refresh.tracker)
            self.archive.resave_after_rollback(refresh.gid, refresh.tracker)
        if refresh.finished:
            self.archive.log_finished(refresh.gid, refresh.tracker)

    def _refresh_picture(self) -> None:
        declined, uids = self.lobby.refresh()
        for replaced in self.sessions.close_replaced(uids):
            if not replaced.same:
                old, new = replaced.old, replaced.new
                self.merges.count(
                    "double_login", f"{old.name}: session on {old.node} replaced by {new.node}"
                )
        if self.games_topic.placement.hooks is not None:  # partial replication only
            self.lobby.record_tables(uids)
        self.lobby.clean_own_invites(declined)
        self.lobby.announce_opponents()

    def _park_double_games(self, now: float) -> None:
        for gid in self.games_topic.to_park(now):
            self.merges.count(
                "two_games", f"game {gid} parked: a player already had an earlier game"
            )
            self.games_topic.notice_parked(gid)

    def _park_due_games(self, now: float) -> None:
        for gid in self.games_topic.due_parks(now):
            self.archive.park(gid, self.state.games[gid], SUPERSEDED, "merge")
            self._refresh_game(GAME_PREFIX + gid)

    # --- time ------------------------------------------------------------------------------------

    @_background
    def tick(self, now: float) -> None:
        """Heartbeat, hello deadlines, end of grace periods, chat pruning."""
        self.state.now_hint = now
        self.sessions.tick(now)
        self.chat.prune(now)
        self.limits.prune(now)
        self.process(now)

    def shutdown(self) -> None:
        self.sessions.shutdown()
