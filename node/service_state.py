"""The state every topic of the game service shares, and the few operations on it they all need.

The game service (``node.service``, the facade) is split by topic (``node.topics``: accounts,
sessions, lobby, games, archive, chat, limits). The topics never import each other: they share
this `ServiceState` (the node's identity, the document handle, the connections here, the game
trackers, the presence read models and the cluster-wide picture, and the list of what is to be
said) and the protocol (``node.protocol``). What one topic's result means for another is the
facade's business.

Writes go through `ServiceState.write`, which numbers them for the push gate
(``node.delivery``); everything said goes through `send` and `close`.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pycrdt import Doc

from meridian.crdt_models.accounts import ACCOUNTS_DOC, AccountsIndex
from meridian.crdt_models.archive import SAVED_DOC, ArchivedGame, read_archive
from meridian.crdt_models.hlc import HybridLogicalClock
from meridian.crdt_models.kinds import DECLINES, REVOKED, SPENT
from meridian.crdt_models.presence import (
    Presence,
    PresenceReader,
    PresenceWriter,
    Session,
    presence_doc_id,
    with_heartbeat,
)
from meridian.crdt_models.records import root_map
from meridian.games.base import GameRules
from meridian.node.conn_index import add_member, discard_member, remove_member
from meridian.node.delivery import Close, Gate, Outgoing, Send
from meridian.node.game_tracker import GameTracker
from meridian.node.presence_view import LivePicture, LobbyEntry, Picture, valid_invites
from meridian.node.protocol import CloseCode, ErrorCode, Refused
from meridian.node.service_limits import ServiceLimits
from meridian.sync.replicator import DocumentQuarantined

log = logging.getLogger("meridian.service")

RATE_BURST = 40.0


class Documents(Protocol):
    """This node's replicas of the shared documents (``write`` raises ``DocumentQuarantined``
    for a document held read-only after store damage)."""

    def get(self, doc_id: str) -> Doc[Any] | None: ...

    def ids(self) -> Iterable[str]: ...

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int: ...

    def ask_peers(self, doc_id: str) -> bool:
        """Ask the linked regions for what this node lacks of it; whether any was asked."""


@dataclass(slots=True)
class Conn:
    """One player websocket on this node."""

    conn_id: str
    opened: float
    address: str = ""
    uid: str = ""
    sid: str = ""
    name: str = ""
    tokens: float = RATE_BURST
    refilled: float = 0.0
    second: int = -1  # messages in this whole second and in the one before (topics.limits)
    in_second: int = 0
    in_previous: int = 0
    lobby_told: dict[str, LobbyEntry] | None = None  # the public list it was last told
    lobby_told_at: float = 0.0
    last_invites: str = ""
    watching: str = ""


@dataclass(frozen=True)
class Answer:
    """What a handler returns: the reply's fields, and the change the reply must wait for."""

    body: dict[str, Any] = field(default_factory=dict)
    doc_id: str = ""
    event: int = 0  # this node's change to `doc_id` the reply acknowledges (0: none)
    replicated: bool = True  # False: it waits for the change to be durable here only
    caught_up: tuple[str, ...] = ()  # documents the linked regions must answer for first

    @property
    def gate(self) -> Gate | None:
        replicated = self.event if self.replicated else 0
        wanted = self.event or self.caught_up
        return Gate(self.doc_id, self.event, replicated, self.caught_up) if wanted else None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ServiceState:
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
        index_accounts: Callable[[Doc[Any]], AccountsIndex] = AccountsIndex,
        limits: ServiceLimits | None = None,
    ) -> None:
        self.node_id = node_id
        self.limits = limits or ServiceLimits()
        self.region = region
        self.docs = documents
        self.rules = rules
        self.hlc = hlc
        self.wall_ms = wall_ms
        self.new_token = new_token
        self.rng = rng
        self.presence_doc = presence_doc_id(node_id)
        self.conns: dict[str, Conn] = {}
        self.by_uid: dict[str, tuple[str, ...]] = {}  # uid -> its connections here
        self.by_sid: dict[str, tuple[str, ...]] = {}  # sid -> its connections here
        self.awaiting_hello: dict[str, None] = {}  # connections not yet bound, oldest first
        self.watchers: dict[str, set[str]] = {}  # gid -> connections watching it
        # A watching connection went (closed, replaced): the games topic remembers its last view
        self.on_watcher_gone: Callable[[Conn, str], None] | None = None
        self.games: dict[str, GameTracker] = {}
        self.presence: dict[str, Presence] = {}
        self.picture = Picture({}, [], {}, {})
        self.live_picture = LivePicture()  # what `picture` is made of, kept up to date
        self.dropped_at: dict[str, float] = {}  # sid -> when its connection dropped
        self.handed_over: set[str] = set()  # sessions whose player was told to move (drain)
        self.out: list[Outgoing] = []
        self.dirty: set[str] = set()
        self.now_hint = 0.0
        self.heartbeat_at: float | None = None  # the last write of this node's presence (`write`)
        self.in_background = False  # while the facade runs work no request waits for
        self._last_event: dict[str, int] = {}  # doc -> its latest change here (local or not)
        self._last_local_event: dict[str, int] = {}  # doc -> this node's latest write to it
        self._presence_readers: dict[str, PresenceReader] = {}
        self._presence_seen: dict[str, int] = {}  # node -> its reader's version last processed
        self._presence_maps: dict[str, tuple[Any, list[tuple[str, dict[str, Any]]]]] = {}
        self._live_nodes: frozenset[str] = frozenset()
        self._accounts: AccountsIndex | None = None
        self._index_accounts = index_accounts

    # --- documents -------------------------------------------------------------------------

    def doc_changed(self, doc_id: str, event_no: int) -> None:
        self.dirty.add(doc_id)
        if event_no > self._last_event.get(doc_id, 0):
            self._last_event[doc_id] = event_no

    def gate(self, doc_id: str) -> Gate | None:
        """What a message showing `doc_id` as it is now must wait for (None: nothing)."""
        durable = self._last_event.get(doc_id, 0)
        local = self._last_local_event.get(doc_id, 0)
        if not durable and not local:
            return None
        return Gate(doc_id, max(durable, local), local)

    def stamp(self) -> str:
        return self.hlc.now().encode()

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        """Write through the document handle. A write to a quarantined document is refused as
        ``unavailable`` for a request; from background work (a heartbeat, a derived log entry)
        it is skipped and logged (0: no change). A write of this node's presence refreshes its
        heartbeat too (one goes alone only when none did for a while: ``topics.sessions``)."""
        own_presence_doc = doc_id == self.presence_doc
        if own_presence_doc:
            change = with_heartbeat(change, self.hlc.now().wall_ms)
        try:
            event_no = self.docs.write(doc_id, change)
        except DocumentQuarantined as refused:
            if not self.in_background:
                raise Refused(ErrorCode.UNAVAILABLE, str(refused)) from None
            log.warning("write skipped: %s", refused)
            return 0
        self.dirty.add(doc_id)
        if event_no:
            self._last_local_event[doc_id] = event_no
            self._last_event[doc_id] = max(event_no, self._last_event.get(doc_id, 0))
        if doc_id == ACCOUNTS_DOC:
            self._accounts = None
        if own_presence_doc:
            self.heartbeat_at = self.now_hint
            self.read_presence(self.node_id)  # what this node just wrote counts at once
        return event_no

    def read_presence(self, node: str) -> None:
        reader = self._presence_readers.get(node)
        if reader is None:
            doc = self.docs.get(presence_doc_id(node))
            if doc is None:
                return
            reader = PresenceReader(node, doc, also=(DECLINES, SPENT, REVOKED))
            self._presence_readers[node] = reader
        self.presence[node] = reader.read()

    def settle_picture(
        self, playing: dict[str, tuple[str, str]], declined: set[str]
    ) -> tuple[set[str], set[str]]:
        """Apply what changed in presences and tables since the last call to the picture
        (``presence_view.LivePicture``: O(changes), not O(players)) and make it current; returns
        (uids whose sessions or table changed, names whose public entry changed or went)."""
        live_picture = self.live_picture
        readers = self._presence_readers
        for node, reader in readers.items():
            for sid, before in reader.take_changes().items():
                live_picture.session_changed(node, sid, before, reader.sessions.get(sid))
        now_ms = self.wall_ms()
        live = [p for node, p in self.presence.items() if node == self.node_id or p.live(now_ms)]
        live_picture.set_live({p.node for p in live}, lambda node: readers[node].sessions.values())
        live_picture.set_playing(playing, self.games)
        changed = live_picture.settle()
        sessions, tables = live_picture.sessions, live_picture.tables
        invites = valid_invites(live, sessions, tables, declined)
        self.picture = Picture(sessions, invites, live_picture.lobby, tables)
        return changed

    def presence_maps(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(node, its presence's map `name`: declines, spent tokens or revocations) for every
        presence read here; read again only once one of those maps changed (rarely)."""
        version = tuple((n, r.also_version) for n, r in self._presence_readers.items())
        cached = self._presence_maps.get(name)
        if cached is None or cached[0] != version:
            maps = [(n, dict(root_map(r.doc, name))) for n, r in self._presence_readers.items()]
            cached = self._presence_maps[name] = (version, maps)
        return cached[1]

    def presence_news(self, node: str) -> bool:
        """Whether `node`'s presence changed otherwise than by its heartbeat since last asked."""
        reader = self._presence_readers.get(node)
        version = reader.version if reader is not None else -1
        if self._presence_seen.get(node) == version:
            return False
        self._presence_seen[node] = version
        return True

    def live_nodes_changed(self) -> bool:
        """Whether the nodes whose presence counts (this one, those with a fresh heartbeat)
        changed since last asked."""
        now_ms = self.wall_ms()
        live = frozenset(
            node for node, p in self.presence.items() if node == self.node_id or p.live(now_ms)
        )
        changed, self._live_nodes = live != self._live_nodes, live
        return changed

    @property
    def accounts(self) -> AccountsIndex:
        if self._accounts is None:
            doc = self.docs.get(ACCOUNTS_DOC)
            self._accounts = self._index_accounts(doc if doc is not None else Doc())
        return self._accounts

    def accounts_changed(self) -> None:
        self._accounts = None

    def saved_between(self, gid: str, a: str, b: str) -> ArchivedGame:
        """The saved game `gid` if it is one between players `a` and `b`."""
        doc = self.docs.get(SAVED_DOC)
        saved = read_archive(doc).get(gid) if doc is not None else None
        if saved is None or set(saved.players) != {a, b}:
            raise Refused(ErrorCode.NOT_FOUND, "no saved game between you two with that id")
        return saved

    # --- presence ----------------------------------------------------------------------------

    def own_presence(self) -> Presence:
        return self.presence.get(self.node_id) or Presence(self.node_id, 0, [], [])

    def own_session(self, sid: str) -> Session | None:
        return self.own_presence().session(sid)

    def conn_session(self, conn: Conn) -> Session:
        session = self.own_session(conn.sid)
        if session is None:
            raise Refused(ErrorCode.UNAUTHENTICATED, "session expired")
        return session

    def put_session(self, *sessions: Session) -> int:
        """Write `sessions` into this node's presence, in one transaction."""

        def change(doc: Doc[Any]) -> None:
            writer = PresenceWriter(doc)
            for session in sessions:
                writer.put_session(session)

        return self.write(self.presence_doc, change)

    def remove_own_sessions(self, *sids: str) -> None:
        self.write(self.presence_doc, lambda doc: PresenceWriter(doc).remove_sessions(*sids))

    def find_session(self, match: Callable[[Session], bool]) -> Session | None:
        found = [s for p in self.presence.values() for s in p.sessions if match(s)]
        return max(found, key=lambda s: (s.started, s.sid)) if found else None

    def session_by_token(self, wanted: str) -> Session | None:
        """`find_session` for a token hash, through each presence's index (a login's hello)."""
        found = [s for p in self.presence.values() for s in p.with_token(wanted)]
        return max(found, key=lambda s: (s.started, s.sid)) if found else None

    # --- connections ---------------------------------------------------------------------------

    def conns_of(self, uid: str) -> list[Conn]:
        return [self.conns[c] for c in self.by_uid.get(uid, ()) if c in self.conns]

    def conns_of_session(self, sid: str) -> list[Conn]:
        return [self.conns[c] for c in sorted(self.by_sid.get(sid, ())) if c in self.conns]

    def bind(self, conn: Conn, uid: str, sid: str, name: str) -> None:
        """The connection said hello for session `sid` of account `uid`."""
        conn.uid, conn.sid, conn.name = uid, sid, name
        self.awaiting_hello.pop(conn.conn_id, None)
        add_member(self.by_uid, uid, conn.conn_id)
        add_member(self.by_sid, sid, conn.conn_id)

    def game_audience(self, gid: str, tracker: GameTracker) -> list[Conn]:
        """The connections here of a game's players and watchers."""
        ids = {c for uid in tracker.info.players for c in self.by_uid.get(uid, ())}
        ids.update(self.watchers.get(gid, ()))
        return [self.conns[c] for c in sorted(ids) if c in self.conns]

    def forget_conn(self, conn_id: str) -> Conn | None:
        conn = self.conns.pop(conn_id, None)
        self.awaiting_hello.pop(conn_id, None)
        if conn is not None:
            remove_member(self.by_uid, conn.uid, conn_id)
            remove_member(self.by_sid, conn.sid, conn_id)
            discard_member(self.watchers, conn.watching, conn_id)
            if conn.watching and self.on_watcher_gone is not None:
                self.on_watcher_gone(conn, conn.watching)
        return conn

    def set_watching(self, conn: Conn, gid: str) -> None:
        self.watchers.get(conn.watching, set()).discard(conn.conn_id)
        conn.watching = gid
        if gid:
            self.watchers.setdefault(gid, set()).add(conn.conn_id)

    def drop_connection(self, conn_id: str, now: float) -> Conn | None:
        """Forget a connection; the last one of a session marks it dropped (its grace period
        starts) and ends the invitations its player sent or received here, unless the player
        was handed over to another node: it is on its way there, and they still count."""
        conn = self.forget_conn(conn_id)
        if conn is None or not conn.sid:
            return conn
        if self.by_sid.get(conn.sid):
            return conn
        session = self.own_session(conn.sid)
        if session is not None:
            self.dropped_at[conn.sid] = now
            dropped = replace(session, connected=False)
            moving = conn.sid in self.handed_over
            self.handed_over.discard(conn.sid)
            invites = [
                i.iid for i in self.own_presence().invites if session.uid in (i.from_uid, i.to_uid)
            ]

            def change(doc: Doc[Any]) -> None:
                writer = PresenceWriter(doc)
                writer.put_session(dropped)
                writer.remove_invites(*([] if moving else invites))

            self.write(self.presence_doc, change)
        return conn

    # --- what is said ----------------------------------------------------------------------------

    def send(
        self, conn_id: str, message: dict[str, Any], gate: Gate | None = None, text: str = ""
    ) -> None:
        self.out.append(Send(conn_id, message, gate, text))

    def close(self, conn_id: str, code: CloseCode, reason: str) -> None:
        """Close a connection (the close leaves after what was said to it before)."""
        self.out.append(Close(conn_id, code, reason))
        if conn_id in self.conns:
            self.drop_connection(conn_id, self.now_hint)

    def close_uid_conns(self, uid: str, code: CloseCode, reason: str) -> None:
        for conn in self.conns_of(uid):
            self.close(conn.conn_id, code, reason)
