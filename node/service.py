"""The game service of one node, sans-IO: player messages and `now` in, messages and closes out.

It runs the same way under aiohttp (``node.player_api``) and in the simulator. It reads and
writes the shared documents through a `Documents` handle, stamps writes with the node's HLC,
and learns of every change (local or replicated) through `doc_changed`, after which `process`
pushes what changed to the players connected here: the public list, invitations, game views,
chat, and the notices of merges. What it says leaves through `node.delivery`: a reply or push
that shows a change waits until the change is durable (and replicated to ``ack_regions``
regions), so a move shown to anyone is a move kept.

The protocol it implements is docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import wraps
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from pycrdt import Doc

from meridian.crdt_models.accounts import (
    ACCOUNTS_DOC,
    Account,
    AccountsIndex,
    AccountsWriter,
    NotHomeError,
    check_name,
)
from meridian.crdt_models.archive import (
    SAVED_DOC,
    ArchivedGame,
    archive_has,
    games_to_park,
    log_doc_id,
    put_archived,
    read_archive,
    remove_archived,
)
from meridian.crdt_models.game import (
    SAVE,
    SUPERSEDED,
    GameInfo,
    GameWriter,
    MoveRecord,
    game_doc_id,
)
from meridian.crdt_models.hlc import HybridLogicalClock, Stamp
from meridian.crdt_models.presence import (
    IDLE,
    PRESENCE_PREFIX,
    PRESENCE_TTL_MS,
    WATCHING,
    Invite,
    Presence,
    PresenceReader,
    PresenceWriter,
    Session,
    presence_doc_id,
)
from meridian.crdt_models.records import decode_record, encode_record, map_items, root_map
from meridian.games.base import GameRules, IllegalMove
from meridian.node.delivery import Close, Delivery, Gate, Outgoing, Progress, Send
from meridian.node.game_tracker import FINISHED, LIVE, GameTracker, load_tracker
from meridian.node.presence_view import Picture, build_picture, lobby_diff, superseded_sessions
from meridian.sync.replicator import DocumentQuarantined

log = logging.getLogger("meridian.service")

MAX_MESSAGE_BYTES = 16 * 1024
MAX_CHAT_CHARS = 500
MAX_REQUEST_ID_CHARS = 64
GRACE_S = 60.0
HELLO_DEADLINE_S = 10.0
HEARTBEAT_S = 3.0
CHAT_KEEP_S = 30.0
RATE_PER_S = 20.0
RATE_BURST = 40.0
FLOOD_PER_S = 200
MIN_PASSWORD_CHARS = 8
MAX_SEEN_GAMES = 16  # hello's "seen": games a client may report, the rest is ignored
MAX_SEEN_PLY = 10_000
# A head named in hello's "seen" that this node never received may still be on its way (the
# player moved here from a node that showed a move a third region made a moment ago, as in a
# drain): wait this long for it before telling the player the moves were not kept.
UNSEEN_HEAD_WAIT_S = 3.0
DECLINES = "declines"
CHATS = "chats"

# close codes: 40xx may reconnect, 41xx must not (docs/protocol.md)
CLOSE_SHUTDOWN, CLOSE_IDLE, CLOSE_FLOOD, CLOSE_TOO_LARGE = 4000, 4001, 4002, 4003
CLOSE_ELSEWHERE, CLOSE_BAD_TOKEN, CLOSE_DISABLED, CLOSE_PROTOCOL, CLOSE_MOVED = (
    4100,
    4101,
    4102,
    4103,
    4104,
)


@dataclass(frozen=True)
class UnseenHead:
    """A move a player reported seeing (hello's ``seen``) that this node has not received."""

    conn_id: str
    gid: str
    ply: int
    head: str
    due: float  # then it counts as lost and the player is told


class ServiceError(Exception):
    """A refused request; `code` is one of docs/protocol.md's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Documents(Protocol):
    """Access to this node's replicas of the shared documents.

    ``write`` raises ``DocumentQuarantined`` for a document held read-only after store damage.
    """

    def get(self, doc_id: str) -> Doc[Any] | None: ...

    def ids(self) -> Iterable[str]: ...

    def write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int: ...


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _background(
    method: Callable[Concatenate[GameService, _P], _R],
) -> Callable[Concatenate[GameService, _P], _R]:
    """Work no request waits for: its writes to a quarantined document are skipped and logged
    (a heartbeat, a derived log entry), where a request's write is refused as "unavailable"."""

    @wraps(method)
    def run(self: GameService, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        outer, self._in_background = self._in_background, True
        try:
            return method(self, *args, **kwargs)
        finally:
            self._in_background = outer

    return run


@dataclass
class Conn:
    conn_id: str
    opened: float
    uid: str = ""
    sid: str = ""
    name: str = ""
    tokens: float = RATE_BURST
    refilled: float = 0.0
    second: int = -1
    in_second: int = 0
    sent_lobby: bool = False
    last_invites: str = ""
    watching: str = ""


@dataclass
class Merges:
    """Counters of automatic merges, by kind (exported in /metrics)."""

    counts: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        log.warning("merge: %s: %s", kind, detail)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class GameService:
    """See module docstring."""

    _in_background = False  # set by @_background

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
    ) -> None:
        self.node_id = node_id
        self.region = region
        self.docs = documents
        self.rules = rules
        self.hlc = hlc
        self.wall_ms = wall_ms
        self.new_token = new_token
        self.rng = rng
        self.conns: dict[str, Conn] = {}
        self.games: dict[str, GameTracker] = {}
        self.merges = Merges()
        self._out: list[Outgoing] = []
        self.progress = progress
        self.delivery = Delivery(ack_regions)
        self._last_event: dict[str, int] = {}  # doc -> its latest change here (local or not)
        self._last_local_event: dict[str, int] = {}  # doc -> this node's latest write to it
        self._dirty: set[str] = set()
        self._accounts: AccountsIndex | None = None
        self._presence: dict[str, Presence] = {}
        self._picture = Picture({}, [], {}, {})
        self._dropped_at: dict[str, float] = {}  # sid -> when its connection dropped
        self._chat_seen: set[str] = set()
        self._chat_sent_at: dict[str, float] = {}
        self._next_heartbeat = 0.0
        self._known_contests: set[tuple[str, str]] = set()
        self._known_rollbacks: set[tuple[str, int]] = set()
        self._logged: dict[str, str] = {}  # gid -> log document this node wrote it to
        self._parked_seen: set[str] = set()
        self._seen_online: dict[str, bool] = {}
        self._live_games: set[str] = set()
        self._live_changed = False
        # Rebuilding the cluster-wide picture costs O(players) and pushes a lobby update to every
        # connection; a node with thousands of players does it at most this often (0: at once).
        self._picture_interval_s = picture_interval_s
        self._picture_dirty = False
        self._picture_next = 0.0
        self._by_uid: dict[str, set[str]] = {}  # uid -> its connections here
        self._watchers: dict[str, set[str]] = {}  # gid -> connections watching it
        self._presence_readers: dict[str, PresenceReader] = {}
        self._presence_doc = presence_doc_id(node_id)
        self._now_hint = 0.0
        self._restored: set[str] = set()  # sessions from before a restart; grace starts at tick
        self._unseen_heads: list[UnseenHead] = []  # hello's "seen" heads not received here yet
        self._load_existing()

    # --- start-up -------------------------------------------------------------------------

    @_background
    def _load_existing(self) -> None:
        self._dirty.update(self.docs.ids())
        self._heartbeat(0.0)  # other nodes count this node's players online from the start
        self.process(0.0)
        # After a restart no connection survives: this node's sessions wait out the grace period
        # (their players may resume them, here or elsewhere) and are then removed.
        for session in self._own_presence().sessions:
            self._restored.add(session.sid)
            if session.connected:
                self._put_session(replace(session, connected=False))

    # --- documents -----------------------------------------------------------------------

    def doc_changed(self, doc_id: str, event_no: int = 0) -> None:
        """A document changed (`event_no`: the engine's number for the change, for the gate)."""
        self._dirty.add(doc_id)
        if event_no > self._last_event.get(doc_id, 0):
            self._last_event[doc_id] = event_no

    def _gate(self, doc_id: str) -> Gate | None:
        """What a message showing `doc_id` as it is now must wait for (None: nothing)."""
        durable = self._last_event.get(doc_id, 0)
        local = self._last_local_event.get(doc_id, 0)
        if not durable and not local:
            return None
        return Gate(doc_id, max(durable, local), local)

    def _stamp(self) -> str:
        return self.hlc.now().encode()

    def _write(self, doc_id: str, change: Callable[[Doc[Any]], Any]) -> int:
        try:
            event_no = self.docs.write(doc_id, change)
        except DocumentQuarantined as refused:
            if not self._in_background:
                raise ServiceError("unavailable", str(refused)) from None
            log.warning("write skipped: %s", refused)
            return 0
        self._dirty.add(doc_id)
        if event_no:
            self._last_local_event[doc_id] = event_no
            self._last_event[doc_id] = max(event_no, self._last_event.get(doc_id, 0))
        if doc_id == self._presence_doc:
            self._read_presence(self.node_id)  # what this node just wrote counts at once
        return event_no

    def _read_presence(self, node: str) -> None:
        reader = self._presence_readers.get(node)
        if reader is None:
            doc = self.docs.get(presence_doc_id(node))
            if doc is None:
                return
            reader = self._presence_readers[node] = PresenceReader(node, doc)
        self._presence[node] = reader.read()

    @property
    def accounts(self) -> AccountsIndex:
        if self._accounts is None:
            doc = self.docs.get(ACCOUNTS_DOC)
            self._accounts = AccountsIndex(doc) if doc is not None else AccountsIndex(Doc())
        return self._accounts

    # --- accounts (called by the HTTP adapter) -------------------------------------------

    def register(self, name: str, password_hash: str, home: str | None) -> Account:
        try:
            check_name(name)
        except ValueError as exc:
            raise ServiceError("bad_request", str(exc)) from None
        if self.accounts.claimants(name) or self.accounts.name_owner(name):
            raise ServiceError("name_taken", f"the name {name!r} is registered already")
        uid = self.new_token()[:22]
        stamp = self._stamp()
        self._write(
            ACCOUNTS_DOC,
            lambda doc: AccountsWriter(doc, self.region).register(
                uid, name, password_hash, home or self.region, stamp
            ),
        )
        self._accounts = None
        account = self.accounts.account(uid)
        assert account is not None
        return account

    def login_candidates(self, name: str) -> list[Account]:
        """Accounts that may be logging in with this name (owner first, then merge losers)."""
        return [a for a in self.accounts.claimants(name) if a.status == "active"]

    def start_session(self, account: Account, now: float) -> str:
        """A session token for the account (after the password checked out)."""
        token = self.new_token()
        session = Session(
            sid=self.new_token()[:16],
            uid=account.uid,
            name=account.name,
            node=self.node_id,
            region=self.region,
            status=IDLE,
            game="",
            opponent="",
            started=self._stamp(),
            token_hash=token_hash(token),
            resume_hash="",
            connected=False,
        )
        self._write(self._presence_doc, lambda doc: PresenceWriter(doc).put_session(session))
        self._dropped_at[session.sid] = now  # a login never used on a websocket expires like a drop
        return token

    def session_by_token(self, token: str) -> Session | None:
        wanted = token_hash(token)
        return self._find_session(lambda s: s.token_hash == wanted)

    def end_session(self, token: str) -> bool:
        session = self.session_by_token(token)
        if session is None:
            return False
        self._close_uid_conns(session.uid, CLOSE_BAD_TOKEN, "logged out")
        if session.node == self.node_id:
            self._write(
                self._presence_doc, lambda doc: PresenceWriter(doc).remove_sessions(session.sid)
            )
        return True

    def update_account(self, uid: str, **changes: str) -> Account:
        current = self.accounts.version(uid)
        if current is None:
            raise ServiceError("unknown_user", "no such account")
        stamp = self._stamp()
        try:
            self._write(
                ACCOUNTS_DOC,
                lambda doc: AccountsWriter(doc, self.region).update(current, stamp, **changes),
            )
        except NotHomeError as refused:  # password and home change only in the home region
            raise ServiceError("not_home", str(refused)) from None
        self._accounts = None
        account = self.accounts.account(uid)
        assert account is not None
        return account

    def disable_account(self, uid: str) -> Account:
        account = self.update_account(uid, status="disabled")
        self._close_uid_conns(uid, CLOSE_DISABLED, "account disabled by an administrator")
        return account

    def all_sessions(self) -> list[Session]:
        """The session that counts for every account online in any live region."""
        return sorted(self._picture.sessions.values(), key=lambda s: (s.name.lower(), s.sid))

    def _find_session(self, match: Callable[[Session], bool]) -> Session | None:
        found = [s for p in self._presence.values() for s in p.sessions if match(s)]
        return max(found, key=lambda s: (s.started, s.sid)) if found else None

    # --- connections ---------------------------------------------------------------------

    def connect(self, conn_id: str, now: float) -> None:
        self.conns[conn_id] = Conn(conn_id, now, refilled=now)

    @_background
    def disconnect(self, conn_id: str, now: float) -> None:
        conn = self._forget_conn(conn_id)
        if conn is None or not conn.sid:
            return
        if any(c.sid == conn.sid for c in self.conns.values()):
            return
        session = self._own_session(conn.sid)
        if session is not None:
            self._dropped_at[conn.sid] = now
            dropped = replace(session, connected=False)
            self._write(self._presence_doc, lambda doc: self._drop_session(doc, dropped))

    def _drop_session(self, doc: Doc[Any], session: Session) -> None:
        writer = PresenceWriter(doc)
        writer.put_session(session)
        for (
            invite
        ) in self._own_presence().invites:  # a player's invitations end with their connection
            if session.uid in (invite.from_uid, invite.to_uid):
                writer.remove_invites(invite.iid)

    def receive(self, conn_id: str, text: str, now: float) -> None:
        conn = self.conns.get(conn_id)
        if conn is None:
            return
        self._now_hint = now
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            self._close(conn_id, CLOSE_TOO_LARGE, f"message larger than {MAX_MESSAGE_BYTES} bytes")
            return
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            self._close(conn_id, CLOSE_PROTOCOL, "message is not JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._close(conn_id, CLOSE_PROTOCOL, "message is not an object with a type")
            return
        if not self._admit(conn, message.get("id"), now):
            return
        self._dispatch(conn, message, now)

    def _admit(self, conn: Conn, request_id: Any, now: float) -> bool:
        """Token bucket per connection; a flood closes the connection."""
        second = int(now)
        conn.in_second = conn.in_second + 1 if second == conn.second else 1
        conn.second = second
        if conn.in_second > FLOOD_PER_S:
            self._close(conn.conn_id, CLOSE_FLOOD, f"more than {FLOOD_PER_S} messages in a second")
            return False
        conn.tokens = min(RATE_BURST, conn.tokens + (now - conn.refilled) * RATE_PER_S)
        conn.refilled = now
        if conn.tokens < 1:
            error = {"code": "rate_limited", "message": f"more than {RATE_PER_S:g} messages/s"}
            echo = request_id if isinstance(request_id, str) and len(request_id) <= 64 else None
            self._send(conn.conn_id, {"re": echo, "ok": False, "error": error})
            return False
        conn.tokens -= 1
        return True

    def _dispatch(self, conn: Conn, message: dict[str, Any], now: float) -> None:
        request_id = message.get("id")
        if request_id is not None and (
            not isinstance(request_id, str) or len(request_id) > MAX_REQUEST_ID_CHARS
        ):
            self._close(
                conn.conn_id, CLOSE_PROTOCOL, "id must be a string of at most 64 characters"
            )
            return
        kind = message["type"]
        if not conn.uid and kind != "hello":
            self._close(conn.conn_id, CLOSE_PROTOCOL, "the first message must be hello")
            return
        handler = _HANDLERS.get(kind)
        pushes_from = len(self._out)
        try:
            if handler is None:
                raise ServiceError("unknown_type", f"no message type {kind!r}")
            reply, after, doc_id = handler(self, conn, message, now)
            gate = Gate(doc_id, after, after) if after else None
            answer = Send(conn.conn_id, {"re": request_id, "ok": True, **reply}, gate)
        except ServiceError as error:
            body = {"code": error.code, "message": error.message}
            answer = Send(conn.conn_id, {"re": request_id, "ok": False, "error": body})
        except Exception:
            # A bug must not cost the player the connection: log it, answer, carry on.
            log.exception("internal error handling %s from %s", kind, conn.name or conn.conn_id)
            body = {
                "code": "internal",
                "message": "internal error; the request was not carried out",
            }
            answer = Send(conn.conn_id, {"re": request_id, "ok": False, "error": body})
        # The reply goes before the pushes the request caused (lobby after hello, game after move).
        self._out.insert(pushes_from, answer)

    def _send(self, conn_id: str, message: dict[str, Any]) -> None:
        self._out.append(Send(conn_id, message))

    def _close(self, conn_id: str, code: int, reason: str) -> None:
        self._out.append(Close(conn_id, code, reason))
        conn = self.conns.get(conn_id)
        if conn is not None:
            self.disconnect(conn_id, self._now_hint)

    def _close_uid_conns(self, uid: str, code: int, reason: str) -> None:
        for conn in self._conns_of(uid):
            self._close(conn.conn_id, code, reason)

    def take_outgoing(self, now: float) -> list[Outgoing]:
        """What may be sent now: everything said so far whose gate is open (`node.delivery`).

        The adapters call this after every call into the service and whenever the store
        commits or a peer acknowledges, since either may open a gate."""
        if self._out:
            self.delivery.put(self._out)
            self._out = []
        return self.delivery.release(now, self.progress)

    # --- presence helpers ----------------------------------------------------------------

    def _own_presence(self) -> Presence:
        return self._presence.get(self.node_id) or Presence(self.node_id, 0, [], [])

    def _own_session(self, sid: str) -> Session | None:
        return next((s for s in self._own_presence().sessions if s.sid == sid), None)

    def _remove_own_sessions(self, *sids: str) -> None:
        self._write(self._presence_doc, lambda doc: PresenceWriter(doc).remove_sessions(*sids))

    def _put_session(self, session: Session) -> int:
        return self._write(self._presence_doc, lambda doc: PresenceWriter(doc).put_session(session))

    def _conn_session(self, conn: Conn) -> Session:
        session = self._own_session(conn.sid)
        if session is None:
            raise ServiceError("unauthenticated", "session expired")
        return session

    def _require_uid_by_name(self, name: Any) -> Account:
        if not isinstance(name, str):
            raise ServiceError("bad_request", "a player name is required")
        uid = self.accounts.name_owner(name)
        account = self.accounts.account(uid) if uid else None
        if account is None:
            raise ServiceError("unknown_user", f"no player named {name!r}")
        return account

    # --- handlers ------------------------------------------------------------------------

    def _hello(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        if conn.uid:
            raise ServiceError("bad_request", "hello was already sent")
        try:
            session = self._session_for_hello(message, now)
        except ServiceError as error:
            if error.code == "unauthenticated":
                self._close(conn.conn_id, CLOSE_BAD_TOKEN, "unknown or expired token")
            raise
        account = self.accounts.account(session.uid)
        if account is None:
            self._close(conn.conn_id, CLOSE_BAD_TOKEN, "unknown account")
            raise ServiceError("unauthenticated", "unknown account")
        if account.status != "active":
            self._close(conn.conn_id, CLOSE_DISABLED, "account disabled")
            raise ServiceError("unauthenticated", "account disabled")
        resume = self.new_token()
        moved = replace(
            session,
            node=self.node_id,
            region=self.region,
            name=account.name,
            started=self._stamp(),
            resume_hash=token_hash(resume),
            connected=True,
        )
        self._dropped_at.pop(moved.sid, None)
        for other in [c for c in self.conns.values() if c.sid == moved.sid and c is not conn]:
            self._out.append(
                Close(other.conn_id, CLOSE_MOVED, "your session continued on another connection")
            )
            self._forget_conn(other.conn_id)
        self._put_session(moved)
        conn.uid, conn.sid, conn.name = account.uid, moved.sid, account.name
        self._by_uid.setdefault(conn.uid, set()).add(conn.conn_id)
        self._announce_unseen_rollbacks(conn, _seen_games(message.get("seen")), now)
        self._push_hello_state(conn, account)
        you = {
            "uid": account.uid,
            "name": account.name,
            "region": self.region,
            "home": account.home,
            "must_rename": account.must_rename,
        }
        live = [
            gid
            for gid, t in self.games.items()
            if t.status == LIVE and account.uid in t.info.players
        ]
        return {"you": you, "resume": resume, "games": live}, 0, ""

    def _session_for_hello(self, message: dict[str, Any], now: float) -> Session:
        token, resume = message.get("token"), message.get("resume")
        if isinstance(token, str) and token:
            session = self.session_by_token(token)
        elif isinstance(resume, str) and resume:
            wanted = token_hash(resume)
            session = self._find_session(lambda s: s.resume_hash == wanted)
        else:
            raise ServiceError("bad_request", "hello needs a token or a resume token")
        if session is None or self._expired(session):
            raise ServiceError("unauthenticated", "unknown or expired token")
        return session

    def _expired(self, session: Session) -> bool:
        """A session whose node stopped heartbeating longer ago than the grace period is over."""
        presence = self._presence.get(session.node)
        if presence is None or session.node == self.node_id:
            return False
        return self.wall_ms() - presence.heartbeat_ms > GRACE_S * 1000 + PRESENCE_TTL_MS

    def _push_hello_state(self, conn: Conn, account: Account) -> None:
        self._send(
            conn.conn_id,
            {"type": "lobby", "players": [e.to_json() for e in self._picture.lobby.values()]},
        )
        conn.sent_lobby = True
        self._push_invites(conn)
        if account.must_rename:
            self._notice_must_rename(conn)
        waiting = {u.gid for u in self._unseen_heads if u.conn_id == conn.conn_id}
        for gid, tracker in self.games.items():
            # A game waiting for a head the player saw gets its view once that is settled.
            mine = tracker.status == LIVE and account.uid in tracker.info.players
            if mine and gid not in waiting:
                self._push_player_view(conn.conn_id, gid, tracker, account.uid)

    def _push_player_view(self, conn_id: str, gid: str, tracker: GameTracker, uid: str) -> None:
        message = self._game_message(gid, tracker, uid)
        self._out.append(Send(conn_id, message, self._gate(game_doc_id(gid))))

    def _announce_unseen_rollbacks(
        self, conn: Conn, seen: dict[str, tuple[int, str]], now: float
    ) -> None:
        """The player saw plies this node's chain does not hold (a fork was resolved against
        them, or the region that showed them was lost before they replicated) and may never
        have got the rollback notice: tell them now, before the game view. A head this node
        never received may still be in flight: that one waits (`_recheck_unseen_heads`)."""
        for gid, (ply, head) in seen.items():
            tracker = self.games.get(gid)
            went_back = tracker.went_back_for(ply, head) if tracker is not None else None
            if tracker is None or went_back is None:
                continue
            if not any(record.key == head for record in tracker.records):
                due = now + UNSEEN_HEAD_WAIT_S
                self._unseen_heads.append(UnseenHead(conn.conn_id, gid, ply, head, due))
                continue
            self._send_unseen_rollback(conn.conn_id, gid, went_back)

    def _recheck_unseen_heads(self, now: float) -> None:
        """A waiting head that reached the chain needs nothing but the game view; one that is
        still missing at its deadline (or arrived on a dropped branch) gets the rollback notice
        after all, then the view. (The view was held back: it would have replaced, in the
        client's ``seen``, the head this notice is about.)"""
        waiting = []
        for unseen in self._unseen_heads:
            conn, tracker = self.conns.get(unseen.conn_id), self.games.get(unseen.gid)
            if conn is None or tracker is None:
                continue
            went_back = tracker.went_back_for(unseen.ply, unseen.head)
            arrived = any(record.key == unseen.head for record in tracker.records)
            if went_back is not None and not arrived and now < unseen.due:
                waiting.append(unseen)
                continue
            if went_back is not None:
                self._send_unseen_rollback(unseen.conn_id, unseen.gid, went_back)
            self._push_player_view(unseen.conn_id, unseen.gid, tracker, conn.uid)
        self._unseen_heads = waiting

    def _send_unseen_rollback(self, conn_id: str, gid: str, went_back: int) -> None:
        reason = "moves you saw were not kept (a region was lost or a merge undid them)"
        message = {"type": "rollback", "game": gid, "ply": went_back, "reason": reason}
        self._out.append(Send(conn_id, message, self._gate(game_doc_id(gid))))

    def _notice_must_rename(self, conn: Conn) -> None:
        self._send(
            conn.conn_id,
            {
                "type": "notice",
                "code": "must_rename",
                "message": f"the name {conn.name!r} was registered earlier in another region "
                "while the regions could not talk; pick a new name with rename",
            },
        )

    def _invite(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        target = self._require_uid_by_name(message.get("to"))
        if target.uid == conn.uid:
            raise ServiceError("bad_request", "you cannot invite yourself")
        self._require_free(conn.uid, "you are")
        if target.uid not in self._picture.sessions:
            raise ServiceError("offline", f"{target.name} is not online")
        self._require_free(target.uid, f"{target.name} is")
        resume = message.get("resume") or ""
        if resume:
            self._saved_between(resume, conn.uid, target.uid)
        invite = Invite(
            self.new_token()[:16],
            conn.uid,
            conn.name,
            target.uid,
            target.name,
            resume,
            self._stamp(),
            self.node_id,
        )
        event = self._write(self._presence_doc, lambda doc: PresenceWriter(doc).put_invite(invite))
        return {"invite": _invite_json(invite)}, event, self._presence_doc

    def _require_free(self, uid: str, who: str) -> None:
        game = self._picture.playing.get(uid)
        if game is not None:
            raise ServiceError("busy", f"{who} at a table (playing {game[1]})")

    def _find_invite(self, message: dict[str, Any]) -> Invite:
        iid = message.get("invite")
        invite = next((i for i in self._picture.invites if i.iid == iid), None)
        if invite is None:
            raise ServiceError("not_found", "no such invitation (it may have been withdrawn)")
        return invite

    def _retract(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        invite = self._find_invite(message)
        if invite.from_uid != conn.uid or invite.node != self.node_id:
            raise ServiceError("not_found", "not an invitation you sent from this connection")
        event = self._write(
            self._presence_doc, lambda doc: PresenceWriter(doc).remove_invites(invite.iid)
        )
        return {}, event, self._presence_doc

    def _decline(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        invite = self._find_invite(message)
        if invite.to_uid != conn.uid:
            raise ServiceError("not_found", "not an invitation to you")
        # The invitation lives in the inviter's node's document; this node records the refusal
        # in its own presence document and the inviter's node deletes the invitation.
        stamp = self._stamp()
        event = self._write(
            self._presence_doc, lambda doc: root_map(doc, DECLINES).__setitem__(invite.iid, stamp)
        )
        return {}, event, self._presence_doc

    def _accept(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        invite = self._find_invite(message)
        if invite.to_uid != conn.uid:
            raise ServiceError("not_found", "not an invitation to you")
        self._require_free(invite.from_uid, f"{invite.from_name} is")
        self._require_free(conn.uid, "you are")
        info = self._new_game_info(invite)
        event = self._write(
            game_doc_id(info.gid), lambda doc: GameWriter(doc, self.node_id).create(info)
        )
        if invite.resume:
            self._write(SAVED_DOC, lambda doc: remove_archived(doc, invite.resume))
        self._refresh_game(game_doc_id(info.gid))
        self._refresh_picture()
        return {"game": info.gid}, event, game_doc_id(info.gid)

    def _new_game_info(self, invite: Invite) -> GameInfo:
        gid = self.new_token()[:20]
        if invite.resume:
            saved = self._saved_between(invite.resume, invite.from_uid, invite.to_uid)
            return GameInfo(
                gid,
                saved.game,
                saved.players,
                saved.names,
                saved.seed,
                saved.first,
                self._stamp(),
                self.node_id,
                saved.gid,
                saved.moves,
            )
        seed = self.rng.randrange(2**53)
        players = [invite.from_uid, invite.to_uid]
        coin = self.rng.randrange(2)
        return GameInfo(
            gid,
            "battleline",
            players,
            [invite.from_name, invite.to_name],
            seed,
            self._swapped_first(players, coin),
            self._stamp(),
            self.node_id,
        )

    def _swapped_first(self, players: list[str], coin: int) -> int:
        """Who moves first in a new game of these two: whoever moved second in their latest
        finished game (a rematch swaps colours); the coin if they never finished one."""
        finished = [t.info for t in self.games.values() if t.status == FINISHED]
        latest = max(
            (info for info in finished if set(info.players) == set(players)),
            key=lambda info: (info.created, info.gid),
            default=None,
        )
        if latest is None:
            return coin
        return players.index(latest.players[1 - latest.first])

    def _saved_between(self, gid: str, a: str, b: str) -> ArchivedGame:
        doc = self.docs.get(SAVED_DOC)
        saved = read_archive(doc).get(gid) if doc is not None else None
        if saved is None or set(saved.players) != {a, b}:
            raise ServiceError("not_found", "no saved game between you two with that id")
        return saved

    def _player_game(self, conn: Conn, message: dict[str, Any]) -> tuple[str, GameTracker, int]:
        gid = message.get("game")
        tracker = self.games.get(gid) if isinstance(gid, str) else None
        if tracker is None or not isinstance(gid, str):
            raise ServiceError("not_found", "no such game")
        seat = tracker.info.seat_of(conn.uid)
        if seat is None:
            raise ServiceError("not_player", "you are not a player of that game")
        if tracker.status == FINISHED:
            raise ServiceError("game_over", "the game has ended")
        if tracker.status != LIVE:
            raise ServiceError("not_found", "the game is not in play (saved)")
        return gid, tracker, seat

    def _move(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        move = message.get("move")
        if not isinstance(move, dict):
            raise ServiceError("bad_request", "move must be an object")
        return self._play(conn, message, move)

    def _give_up(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        return self._play(conn, message, {"type": "give_up"})

    def _play(
        self, conn: Conn, message: dict[str, Any], move: dict[str, Any]
    ) -> tuple[dict[str, Any], int, str]:
        gid, tracker, seat = self._player_game(conn, message)
        try:
            new_state = self.rules.apply_move(tracker.chain.state, seat, move)
        except IllegalMove as error:
            code = "bad_request" if error.code == "malformed" else error.code
            raise ServiceError(code, error.message) from None
        ply, parent, stamp = tracker.ply, tracker.chain.tip, self._stamp()
        doc_id = game_doc_id(gid)
        record: list[MoveRecord] = []
        event = self._write(
            doc_id,
            lambda doc: record.append(
                GameWriter(doc, self.node_id).add_move(ply, parent, seat, move, stamp)
            ),
        )
        tracker.adopt(record[0], new_state)  # validated just above: no need to apply it twice
        self._refresh_game(doc_id)
        return {"ply": tracker.base_ply + ply}, event, doc_id

    def _save(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        gid, tracker, _seat = self._player_game(conn, message)
        self._park(gid, tracker, SAVE, conn.uid)
        return {}, 0, ""

    def _park(self, gid: str, tracker: GameTracker, kind: str, uid: str) -> None:
        saved = ArchivedGame.from_game(
            tracker.info,
            tracker.moves_with_players(),
            by=uid,
            stamp=tracker.chain.tip or tracker.info.created,
        )
        stamp = self._stamp()
        self._write(SAVED_DOC, lambda doc: put_archived(doc, saved))
        self._write(
            game_doc_id(gid),
            lambda doc: GameWriter(doc, self.node_id).mark(kind, uid, stamp, tracker.ply),
        )
        self._refresh_game(game_doc_id(gid))

    def _watch(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        gid = message.get("game")
        tracker = self.games.get(gid) if isinstance(gid, str) else None
        if tracker is None or not isinstance(gid, str):
            raise ServiceError("not_found", "no such game")
        self._set_watching(conn, gid)
        session = replace(self._conn_session(conn), status=WATCHING, game=gid)
        event = self._put_session(session)
        return {"game": self._game_message(gid, tracker, None)}, event, self._presence_doc

    def _unwatch(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        self._set_watching(conn, "")
        event = self._put_session(replace(self._conn_session(conn), status=IDLE, game=""))
        return {}, event, self._presence_doc

    def _chat(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ServiceError("bad_request", "chat needs a text")
        if len(text) > MAX_CHAT_CHARS:
            raise ServiceError("too_large", f"chat text is limited to {MAX_CHAT_CHARS} characters")
        record = {"from": conn.name, "from_uid": conn.uid, "text": text, "stamp": self._stamp()}
        if "game" in message:
            if message["game"] not in self.games:
                raise ServiceError("not_found", "no such game")
            record["game"] = message["game"]
        else:
            target = self._require_uid_by_name(message.get("to"))
            if target.uid not in self._picture.sessions:
                raise ServiceError("offline", f"{target.name} is not online")
            record["to_uid"], record["to"] = target.uid, target.name
        key = self.new_token()[:16]
        self._chat_sent_at[key] = now
        event = self._write(
            self._presence_doc,
            lambda doc: root_map(doc, CHATS).__setitem__(key, encode_record(record)),
        )
        return {}, event, self._presence_doc

    def _saved(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        doc = self.docs.get(SAVED_DOC)
        games = read_archive(doc) if doc is not None else {}
        mine = [_archived_json(g) for g in games.values() if conn.uid in g.players]
        return {"games": mine}, 0, ""

    def _rename(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        name = message.get("name")
        if not isinstance(name, str):
            raise ServiceError("bad_request", "name must be a string")
        try:
            check_name(name)
        except ValueError as exc:
            raise ServiceError("bad_request", str(exc)) from None
        owner = self.accounts.name_owner(name)
        if owner is not None and owner != conn.uid:
            raise ServiceError("name_taken", f"the name {name!r} is registered already")
        current = self.accounts.version(conn.uid)
        assert current is not None
        stamp = self._stamp()
        event = self._write(
            ACCOUNTS_DOC, lambda doc: AccountsWriter(doc, self.region).rename(current, name, stamp)
        )
        self._accounts = None
        conn.name = name
        self._put_session(replace(self._conn_session(conn), name=name))
        return {"you": {"uid": conn.uid, "name": name, "must_rename": False}}, event, ACCOUNTS_DOC

    def _ping(
        self, conn: Conn, message: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], int, str]:
        return {}, 0, ""

    # --- reacting to document changes ----------------------------------------------------

    @_background
    def process(self, now: float) -> None:
        """Apply every document change since the last call and push what changed."""
        self._now_hint = now
        dirty, self._dirty = self._dirty, set()
        if ACCOUNTS_DOC in dirty:
            self._accounts = None
            self._check_name_merges()
        for doc_id in sorted(d for d in dirty if d.startswith("game:")):
            self._refresh_game(doc_id)
        if self._unseen_heads:
            self._recheck_unseen_heads(now)
        presence_changed = False
        for doc_id in (d for d in dirty if d.startswith(PRESENCE_PREFIX)):
            doc = self.docs.get(doc_id)
            if doc is not None:
                node = doc_id[len(PRESENCE_PREFIX) :]
                self._read_presence(node)
                self._deliver_chats(node, doc)
                presence_changed = True
        # A move changes neither who is online nor who plays whom: only presence changes and
        # games starting or ending need the cluster-wide picture (and parking) recomputed.
        if presence_changed or self._live_changed:
            self._live_changed = False
            self._picture_dirty = True
        if self._picture_dirty and now >= self._picture_next:
            self._picture_dirty = False
            self._picture_next = now + self._picture_interval_s
            self._refresh_picture()
            self._park_double_games()

    def next_deadline(self) -> float | None:
        """When `process` must run again even if no document changes (a pending refresh)."""
        picture = self._picture_next if self._picture_dirty else None
        delivery = self.delivery.next_deadline()
        unseen = min((u.due for u in self._unseen_heads), default=None)
        deadlines = [d for d in (picture, delivery, unseen) if d is not None]
        return min(deadlines) if deadlines else None

    @_background
    def _refresh_game(self, doc_id: str) -> None:
        doc = self.docs.get(doc_id)
        if doc is None:
            return
        gid = doc_id[len("game:") :]
        tracker = self.games.get(gid)
        if tracker is None:
            tracker = load_tracker(self.rules, doc)
            if tracker is None:
                return
            self.games[gid] = tracker
            change_added, rolled = tracker.ply + 1, None  # a game new to this node is news
        else:
            change = tracker.refresh(doc)
            change_added, rolled = change.added, change.rolled_back_to
        self._note_live(gid, tracker)
        if rolled is not None:
            self._announce_rollback(gid, tracker, tracker.base_ply + rolled)
            self._relog_after_rollback(gid, tracker)
        if change_added or rolled is not None or tracker.status != LIVE:
            self._push_game(gid, tracker)
        if tracker.status == FINISHED:
            self._log_finished(gid, tracker)

    def _announce_rollback(self, gid: str, tracker: GameTracker, ply: int) -> None:
        if (gid, ply) in self._known_rollbacks:
            return
        self._known_rollbacks.add((gid, ply))
        self.merges.count("same_ply", f"game {gid} went back to ply {ply}")
        gate = self._gate(game_doc_id(gid))
        for conn in self._game_audience(gid, tracker):
            self._out.append(
                Send(
                    conn.conn_id,
                    {
                        "type": "rollback",
                        "game": gid,
                        "ply": ply,
                        "reason": "two moves were made for the same turn while regions could "
                        "not talk; the earlier one was kept",
                    },
                    gate,
                )
            )

    def _note_live(self, gid: str, tracker: GameTracker) -> None:
        live = tracker.status == LIVE
        if live != (gid in self._live_games):
            self._live_changed = True
            if live:
                self._live_games.add(gid)
            else:
                self._live_games.discard(gid)

    def _conns_of(self, uid: str) -> list[Conn]:
        return [self.conns[c] for c in self._by_uid.get(uid, ()) if c in self.conns]

    def _game_audience(self, gid: str, tracker: GameTracker) -> list[Conn]:
        ids = {c for uid in tracker.info.players for c in self._by_uid.get(uid, ())}
        ids.update(self._watchers.get(gid, ()))
        return [self.conns[c] for c in sorted(ids) if c in self.conns]

    def _forget_conn(self, conn_id: str) -> Conn | None:
        conn = self.conns.pop(conn_id, None)
        if conn is not None:
            self._by_uid.get(conn.uid, set()).discard(conn_id)
            self._watchers.get(conn.watching, set()).discard(conn_id)
        return conn

    def _set_watching(self, conn: Conn, gid: str) -> None:
        self._watchers.get(conn.watching, set()).discard(conn.conn_id)
        conn.watching = gid
        if gid:
            self._watchers.setdefault(gid, set()).add(conn.conn_id)

    def _push_game(self, gid: str, tracker: GameTracker) -> None:
        by_seat: dict[int | None, tuple[dict[str, Any], str]] = {}  # watchers share one message
        gate = self._gate(game_doc_id(gid))  # a move shown is a move kept
        for conn in self._game_audience(gid, tracker):
            viewer = conn.uid if conn.uid in tracker.info.players else None
            seat = tracker.info.seat_of(viewer) if viewer else None
            if seat not in by_seat:
                message = self._game_message(gid, tracker, viewer)
                by_seat[seat] = (message, json.dumps(message))
            message, text = by_seat[seat]
            self._out.append(Send(conn.conn_id, message, gate, text))

    def _game_message(self, gid: str, tracker: GameTracker, uid: str | None) -> dict[str, Any]:
        seat = tracker.info.seat_of(uid) if uid else None
        state = tracker.chain.state
        if seat is not None:
            view = self.rules.player_view(state, seat)
        else:
            view = self.rules.spectator_view(state)
        last = tracker.chain.moves[-1] if tracker.chain.moves else None
        shown_last = {"player": last.player, "move": last.move} if last else None
        # The rules' view says what of the last move this viewer may see (a Scout's returned
        # cards are the mover's secret); the chain's own record is the fallback.
        shown_last = view.get("last_move", shown_last) if isinstance(view, dict) else shown_last
        to_move = self.rules.to_move(state)
        return {
            "type": "game",
            "game": gid,
            "you": seat,
            "players": tracker.info.names,
            "view": view,
            "to_move": to_move,
            "legal": self.rules.legal_moves(state) if seat is not None and seat == to_move else [],
            "ply": tracker.base_ply + tracker.ply,
            "last_move": shown_last,
            "head": tracker.chain.tip,
            "result": self.rules.result(state),
            "status": tracker.status,
        }

    def _log_finished(self, gid: str, tracker: GameTracker) -> None:
        if gid in self._logged:
            return
        if not self._writes_log(tracker):
            return  # a node hosting a player (or the creator) writes it; the content is the same
        entry, doc_id = self._log_entry(tracker)
        self._logged[gid] = doc_id
        existing = self.docs.get(doc_id)
        if existing is not None and archive_has(existing, gid):
            return
        self._write(doc_id, lambda doc: put_archived(doc, entry))

    def _writes_log(self, tracker: GameTracker) -> bool:
        hosts_player = any(self._conns_of(uid) for uid in tracker.info.players)
        return hosts_player or tracker.info.node == self.node_id

    def _log_entry(self, tracker: GameTracker) -> tuple[ArchivedGame, str]:
        """The log entry of a finished game (derived from its chain) and its log document."""
        last = tracker.chain.moves[-1]
        entry = ArchivedGame.from_game(
            tracker.info,
            tracker.moves_with_players(),
            result=self.rules.result(tracker.chain.state),
            stamp=last.stamp,
        )
        return entry, log_doc_id(Stamp.decode(last.stamp).wall_ms)

    def _relog_after_rollback(self, gid: str, tracker: GameTracker) -> None:
        """A merge changed the chain of a game this node logged: the log must follow the
        canonical chain (a finish on a dropped branch never happened). Every node that logged
        it does the same, so the log converges on the canonical game."""
        old_doc = self._logged.pop(gid, None)
        if old_doc is None:
            return
        if tracker.status == FINISHED:
            entry, doc_id = self._log_entry(tracker)
            if doc_id == old_doc:
                self._logged[gid] = doc_id
                self._write(doc_id, lambda doc: put_archived(doc, entry))
                return
        self._write(old_doc, lambda doc: remove_archived(doc, gid))

    def _park_double_games(self) -> None:
        live = [self.games[gid].info for gid in sorted(self._live_games)]
        for gid in games_to_park(live):
            if gid in self._parked_seen:
                continue
            self._parked_seen.add(gid)
            tracker = self.games[gid]
            self.merges.count(
                "two_games", f"game {gid} parked: a player already had an earlier game"
            )
            if tracker.info.node == self.node_id or any(
                self._conns_of(uid) for uid in tracker.info.players
            ):
                self._park(gid, tracker, SUPERSEDED, "merge")
            for conn in self._game_audience(gid, tracker):
                self._send(
                    conn.conn_id,
                    {
                        "type": "notice",
                        "code": "game_parked",
                        "message": f"a partition let you start two games; game {gid}, the "
                        "later one, was saved and can be resumed",
                    },
                )

    def _check_name_merges(self) -> None:
        for name, losers in self.accounts.contested_names().items():
            for uid in losers:
                if (name, uid) in self._known_contests:
                    continue
                self._known_contests.add((name, uid))
                self.merges.count("name", f"name {name!r}: account {uid} must rename")
                for conn in self._conns_of(uid):
                    self._notice_must_rename(conn)

    def _deliver_chats(self, node: str, doc: Doc[Any]) -> None:
        for key, text in map_items(doc, CHATS):
            if key in self._chat_seen:
                continue
            self._chat_seen.add(key)
            try:
                record = decode_record(text, ("from", "from_uid", "text", "stamp"))
            except ValueError:
                continue
            for conn in self._chat_audience(record):
                push = {"type": "chat", "from": record["from"], "text": record["text"]}
                push.update({k: record[k] for k in ("to", "game") if k in record})
                self._send(conn.conn_id, push)

    def _chat_audience(self, record: dict[str, Any]) -> list[Conn]:
        if "game" in record:
            tracker = self.games.get(record["game"])
            return self._game_audience(record["game"], tracker) if tracker else []
        return self._conns_of(str(record.get("to_uid", "")))

    def _refresh_picture(self) -> None:
        now_ms = self.wall_ms()
        playing = {}
        for tracker in self.games.values():
            if tracker.status == LIVE:
                a, b = tracker.info.players
                playing[a] = (tracker.info.gid, tracker.info.names[1])
                playing[b] = (tracker.info.gid, tracker.info.names[0])
        declined = {iid for p in self._presence.values() for iid in self._declines(p.node)}
        before = self._picture
        self._picture = build_picture(
            list(self._presence.values()), now_ms, playing, declined, self.node_id
        )
        self._push_lobby(before.lobby)
        invites_by_uid = self._invites_by_uid()
        for conn in self.conns.values():
            if conn.uid:
                self._push_invites(conn, invites_by_uid)
        self._close_superseded()
        self._clean_own_invites(declined)
        self._announce_opponents()

    def _announce_opponents(self) -> None:
        """Tell players when their opponent's connection drops and when it comes back."""
        online = {uid for uid, s in self._picture.sessions.items() if s.connected}
        for uid, (gid, _opponent) in self._picture.playing.items():
            was = self._seen_online.get(uid)
            now_online = uid in online
            self._seen_online[uid] = now_online
            if was is None or was == now_online:
                continue
            tracker = self.games[gid]
            name = tracker.info.names[tracker.info.players.index(uid)]
            state = "back" if now_online else "dropped"
            for conn in self._game_audience(gid, tracker):
                if conn.uid != uid:
                    self._send(
                        conn.conn_id,
                        {"type": "opponent", "game": gid, "name": name, "state": state},
                    )

    def _declines(self, node: str) -> list[str]:
        doc = self.docs.get(presence_doc_id(node))
        return list(root_map(doc, DECLINES).keys()) if doc is not None else []

    def _push_lobby(self, before: dict[str, Any]) -> None:
        changed, gone = lobby_diff(before, self._picture.lobby)
        if not changed and not gone:
            return
        message = {"type": "lobby_update", "changed": [e.to_json() for e in changed], "gone": gone}
        text = json.dumps(message)  # once, not once per connection
        for conn in self.conns.values():
            if conn.sent_lobby:
                self._out.append(Send(conn.conn_id, message, text=text))

    def _invites_by_uid(self) -> dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]]:
        """uid -> (incoming, outgoing) invitations, in one pass over the valid ones."""
        by_uid: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {}
        for invite in self._picture.invites:
            by_uid.setdefault(invite.to_uid, ([], []))[0].append(_invite_json(invite))
            by_uid.setdefault(invite.from_uid, ([], []))[1].append(_invite_json(invite))
        return by_uid

    def _push_invites(
        self,
        conn: Conn,
        by_uid: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] | None = None,
    ) -> None:
        """Send the player's invitations if they changed since the last push."""
        incoming, outgoing = (by_uid if by_uid is not None else self._invites_by_uid()).get(
            conn.uid, ([], [])
        )
        body = {"type": "invites", "incoming": incoming, "outgoing": outgoing}
        text = json.dumps(body, sort_keys=True)
        if text != conn.last_invites:
            conn.last_invites = text
            self._out.append(Send(conn.conn_id, body, text=text))

    def _close_superseded(self) -> None:
        own = self._own_presence().sessions
        for old, new in superseded_sessions(own, self._picture.sessions):
            same = old.sid == new.sid
            if not same:
                self.merges.count(
                    "double_login", f"{old.name}: session on {old.node} replaced by {new.node}"
                )
            code, reason = (
                (CLOSE_MOVED, "your session continued on another connection")
                if same
                else (CLOSE_ELSEWHERE, f"logged in elsewhere (region {new.region})")
            )
            for conn in [c for c in self.conns.values() if c.sid == old.sid]:
                self._out.append(Close(conn.conn_id, code, reason))
                self._forget_conn(conn.conn_id)
            self._remove_own_sessions(old.sid)

    def _clean_own_invites(self, declined: set[str]) -> None:
        valid = {i.iid for i in self._picture.invites}
        stale = [i for i in self._own_presence().invites if i.iid not in valid or i.iid in declined]
        if not stale:
            return
        for invite in stale:
            why = "declined" if invite.iid in declined else self._invalid_because(invite)
            log.info(
                "invitation %s from %s to %s withdrawn: %s",
                invite.iid,
                invite.from_name,
                invite.to_name,
                why,
            )
        iids = [i.iid for i in stale]
        self._write(self._presence_doc, lambda doc: PresenceWriter(doc).remove_invites(*iids))

    def _invalid_because(self, invite: Invite) -> str:
        for uid, name in ((invite.from_uid, invite.from_name), (invite.to_uid, invite.to_name)):
            if uid not in self._picture.sessions:
                return f"{name} is not online"
            if uid in self._picture.playing:
                return f"{name} is at a table"
        return "no longer valid"

    # --- time ----------------------------------------------------------------------------

    @_background
    def tick(self, now: float) -> None:
        """Heartbeat, hello deadlines, end of grace periods, chat pruning."""
        self._now_hint = now
        self._start_restored_grace(now)
        if now >= self._next_heartbeat:
            self._heartbeat(now)
        for conn in [
            c for c in self.conns.values() if not c.uid and now - c.opened > HELLO_DEADLINE_S
        ]:
            self._close(conn.conn_id, CLOSE_IDLE, "no hello within 10 s")
        expired = [sid for sid, at in self._dropped_at.items() if now - at > GRACE_S]
        for sid in expired:
            del self._dropped_at[sid]
            if not any(c.sid == sid for c in self.conns.values()):
                self._remove_own_sessions(sid)
        old_chats = [k for k, at in self._chat_sent_at.items() if now - at > CHAT_KEEP_S]
        if old_chats:
            for key in old_chats:
                del self._chat_sent_at[key]
            self._write(
                self._presence_doc,
                lambda doc: [root_map(doc, CHATS).pop(k, None) for k in old_chats],
            )
        self.process(now)

    def _start_restored_grace(self, now: float) -> None:
        for sid in self._restored:
            self._dropped_at.setdefault(sid, now)
        self._restored.clear()

    def _heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + HEARTBEAT_S
        wall = self.hlc.now().wall_ms
        self._write(self._presence_doc, lambda doc: PresenceWriter(doc).heartbeat(wall))

    def shutdown(self) -> None:
        for conn_id in list(self.conns):
            self._out.append(Close(conn_id, CLOSE_SHUTDOWN, "server shutting down"))

    # --- drain (node.drain) -----------------------------------------------------------------

    def hand_over(self, sid: str) -> tuple[str, int] | None:
        """A fresh resume token for session `sid` hosted here, and the number of the presence
        change that records it (None: no such session here)."""
        session = self._own_session(sid)
        if session is None:
            return None
        resume = self.new_token()
        return resume, self._put_session(replace(session, resume_hash=token_hash(resume)))

    def notify(self, conn_id: str, message: dict[str, Any]) -> None:
        """Push `message` to one connection, after everything already said to it."""
        if conn_id in self.conns:
            self._send(conn_id, message)


def _invite_json(invite: Invite) -> dict[str, str]:
    return {
        "iid": invite.iid,
        "from": invite.from_name,
        "to": invite.to_name,
        "resume": invite.resume,
    }


def _archived_json(game: ArchivedGame) -> dict[str, Any]:
    return {
        "gid": game.gid,
        "players": game.names,
        "moves": len(game.moves),
        "saved": game.stamp,
        "by": game.by,
    }


Handler = Callable[[GameService, Conn, dict[str, Any], float], tuple[dict[str, Any], int, str]]
_HANDLERS: dict[str, Handler] = {
    "hello": GameService._hello,
    "invite": GameService._invite,
    "retract": GameService._retract,
    "accept": GameService._accept,
    "decline": GameService._decline,
    "move": GameService._move,
    "give_up": GameService._give_up,
    "save": GameService._save,
    "watch": GameService._watch,
    "unwatch": GameService._unwatch,
    "chat": GameService._chat,
    "saved": GameService._saved,
    "rename": GameService._rename,
    "ping": GameService._ping,
}


def _seen_games(raw: Any) -> dict[str, tuple[int, str]]:
    """hello's optional ``seen`` ({game: {"ply": n, "head": key}}, what the client last showed);
    entries that are not of that shape are ignored (the field only asks for notices)."""
    if not isinstance(raw, dict):
        return {}
    seen: dict[str, tuple[int, str]] = {}
    for gid, entry in list(raw.items())[:MAX_SEEN_GAMES]:
        if not isinstance(entry, dict):
            continue
        ply, head = entry.get("ply"), entry.get("head")
        if type(ply) is int and 0 < ply < MAX_SEEN_PLY and isinstance(head, str) and len(head) < 80:
            seen[gid] = (ply, head)
    return seen
