"""Per-node presence documents (``presence:<node_id>``): who is online where, and invitations.

Each node writes only its own presence document, so its content never conflicts. It holds:

* ``sessions``: sid -> a player's session on this node (uid, name, status idle / playing /
  watching, the game and opponent, when it started, hashes of its session and resume tokens,
  whether the connection is currently up);
* ``invites``: iid -> an invitation sent by a player connected here;
* ``meta``: ``heartbeat`` (the node's HLC wall time, refreshed every few seconds).

A presence document whose heartbeat is older than PRESENCE_TTL_MS is stale: its node is gone
(or cut off), and its sessions and invitations no longer count. The rule "one login per
identity" is `newest_sessions`: of all live sessions of a user, the one started last (HLC)
is kept; every node closes the older ones it hosts as soon as it sees the newer.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.records import (
    KeyChanges,
    RecordError,
    decode_record,
    encode_record,
    map_get,
    observe_map,
    root_map,
)

PRESENCE_PREFIX = "presence:"
SESSIONS = "sessions"
INVITES = "invites"
META = "meta"
HEARTBEAT = "heartbeat"
PRESENCE_TTL_MS = 15_000
IDLE, PLAYING, WATCHING = "idle", "playing", "watching"


def presence_doc_id(node_id: str) -> str:
    return f"{PRESENCE_PREFIX}{node_id}"


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    uid: str
    name: str
    node: str
    region: str
    status: str
    game: str  # gid while playing or watching, else ""
    opponent: str  # opponent's name while playing, else ""
    started: str  # HLC stamp of the login (or of the resume that moved it here)
    token_hash: str
    resume_hash: str
    connected: bool

    @classmethod
    def from_text(cls, text: Any) -> Session:
        record = decode_record(text, tuple(cls.__dataclass_fields__))
        for name in SHARED_FIELDS:  # one string for every session of a node, not one each
            if isinstance(value := record[name], str):
                record[name] = sys.intern(value)
        return cls(**{name: record[name] for name in cls.__dataclass_fields__})

    def to_text(self) -> str:
        # Not dataclasses.asdict: it deep-copies field by field, twice a login.
        return encode_record({name: getattr(self, name) for name in SESSION_FIELDS})


SESSION_FIELDS = tuple(Session.__dataclass_fields__)
SHARED_FIELDS = ("node", "region", "status")  # few values over thousands of sessions


@dataclass(frozen=True)
class Invite:
    iid: str
    from_uid: str
    from_name: str
    to_uid: str
    to_name: str
    resume: str  # gid of a saved game to resume, else ""
    stamp: str
    node: str
    clock_ms: int = 0  # the time control of the game it starts (0: none)
    increment_ms: int = 0

    @classmethod
    def from_text(cls, text: Any) -> Invite:
        record = decode_record(text, INVITE_REQUIRED)
        for name in ("clock_ms", "increment_ms"):
            value = record.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RecordError(f"{name} is not a count of milliseconds")
        return cls(**{name: record[name] for name in cls.__dataclass_fields__ if name in record})

    def to_text(self) -> str:
        return encode_record(asdict(self))


INVITE_REQUIRED = ("iid", "from_uid", "from_name", "to_uid", "to_name", "resume", "stamp", "node")


@dataclass(frozen=True)
class Presence:
    node: str
    heartbeat_ms: int
    sessions: list[Session]  # by sid
    invites: list[Invite]
    # token hash -> the sids of the sessions with it (empty: not indexed; `session_by_token`)
    by_token: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    by_sid: dict[str, Session] = field(default_factory=dict, compare=False)

    def session(self, sid: str) -> Session | None:
        """The session `sid` (by index when the reader built one, else by a scan)."""
        if self.by_sid or not self.sessions:
            return self.by_sid.get(sid)
        return next((s for s in self.sessions if s.sid == sid), None)

    def with_token(self, wanted: str) -> list[Session]:
        """The sessions whose token hash is `wanted`."""
        if self.by_sid or not self.sessions:
            return [self.by_sid[sid] for sid in self.by_token.get(wanted, ())]
        return [s for s in self.sessions if s.token_hash == wanted]

    def live(self, now_ms: int) -> bool:
        return now_ms - self.heartbeat_ms <= PRESENCE_TTL_MS


class PresenceReader:
    """Follows one node's presence document, parsing only the records that change.

    A presence document changes on every login, heartbeat and invitation while most of its
    records stay the same; reading every record again made a node with thousands of players
    spend most of its time here. The reader reads the maps once, then keeps its parsed copy up
    to date from the maps' change events (which carry the new values; the callbacks run inside
    the commit and only parse text, never touching the document). Call `close` when done with it
    so the document can be freed.
    """

    def __init__(self, node: str, doc: Doc[Any], also: tuple[str, ...] = ()) -> None:
        self.node = node
        self.doc = doc
        # Bumped by every change to the sessions, the invitations and the maps named in `also`,
        # not by the heartbeat: a reader of the picture can tell that nothing it shows changed.
        self.version = 0
        self.also_version = 0  # bumped by every change to the maps named in `also` only
        self.sessions: dict[str, Session] = {}
        self.invites: dict[str, Invite] = {}
        # Kept in order of sid as records change, so that a read after one change (a login)
        # neither sorts nor copies every record again.
        self._sids: list[str] = []
        self._sorted: list[Session] = []
        self._by_token: dict[str, tuple[str, ...]] = {}
        self._invites: list[Invite] | None = None  # sorted by iid; None: to be built again
        # sid -> its session before its first change since `take_changes` (None: it was not
        # there): what an incremental reader of the picture applies (``node.presence_view``).
        self._changes: dict[str, Session | None] = {}
        sessions, invites = root_map(doc, SESSIONS), root_map(doc, INVITES)
        for key in list(sessions.keys()):
            self._put_session(key, _parse(Session, sessions[key]))
        for key in list(invites.keys()):
            _store(self.invites, key, _parse(Invite, invites[key]))
        self._subscriptions = [
            (sessions, observe_map(sessions, self._apply_sessions)),
            (invites, observe_map(invites, self._apply_invites)),
        ]
        for name in also:
            shared = root_map(doc, name)
            self._subscriptions.append((shared, observe_map(shared, self._bump)))

    def _bump(self, _keys: KeyChanges) -> None:
        self.version += 1
        self.also_version += 1

    def _apply_sessions(self, keys: KeyChanges) -> None:
        self.version += 1
        for key, change in keys.items():
            parsed = None if change["action"] == "delete" else _parse(Session, change["newValue"])
            self._put_session(key, parsed)

    def _apply_invites(self, keys: KeyChanges) -> None:
        self.version += 1
        for key, change in keys.items():
            if change["action"] == "delete":
                self.invites.pop(key, None)
            else:
                _store(self.invites, key, _parse(Invite, change["newValue"]))
        self._invites = None

    def _put_session(self, sid: str, session: Session | None) -> None:
        """Record (None: forget) one session in the dict, the sorted lists and the index."""
        old = self.sessions.pop(sid, None)
        if sid not in self._changes:
            self._changes[sid] = old
        index = bisect_left(self._sids, sid)
        if old is not None:
            self._unindex(old)
            if session is None:
                del self._sids[index], self._sorted[index]
            else:
                self._sorted[index] = session
        elif session is not None:
            self._sids.insert(index, sid)
            self._sorted.insert(index, session)
        if session is not None:
            self.sessions[sid] = session
            self._by_token[session.token_hash] = (
                *self._by_token.get(session.token_hash, ()),
                sid,
            )

    def _unindex(self, session: Session) -> None:
        left = tuple(s for s in self._by_token.get(session.token_hash, ()) if s != session.sid)
        if left:
            self._by_token[session.token_hash] = left
        else:
            self._by_token.pop(session.token_hash, None)

    def take_changes(self) -> dict[str, Session | None]:
        """The sessions changed since the last call: sid -> the session before (None: new);
        the session now is in `sessions` (absent: removed)."""
        changes, self._changes = self._changes, {}
        return changes

    def read(self) -> Presence:
        """The presence as it is now. Its session list and indexes are the reader's own, kept
        up to date in place (copying them on every read made each login cost O(players));
        its invitation list is a copy."""
        heartbeat = map_get(root_map(self.doc, META), HEARTBEAT)
        if self._invites is None:
            self._invites = [self.invites[k] for k in sorted(self.invites)]
        return Presence(
            self.node,
            int(heartbeat or 0),
            self._sorted,
            self._invites,
            self._by_token,
            self.sessions,
        )

    def close(self) -> None:
        for shared, subscription in self._subscriptions:
            shared.unobserve(subscription)
        self._subscriptions = []


def _store(records: dict[str, Any], key: str, parsed: Any) -> None:
    if parsed is None:
        records.pop(key, None)  # an unreadable record counts as absent
    else:
        records[key] = parsed


def _parse(kind: type[Session] | type[Invite], text: Any) -> Any:
    try:
        return kind.from_text(text)
    except (RecordError, TypeError):
        return None


def newest_sessions(sessions: list[Session]) -> dict[str, Session]:
    """uid -> the session that counts (started last; ties broken by sid, then node)."""
    newest: dict[str, Session] = {}
    for session in sessions:
        current = newest.get(session.uid)
        if current is None or session_rank(session) > session_rank(current):
            newest[session.uid] = session
    return newest


def session_rank(session: Session) -> tuple[str, str, str]:
    """Of two sessions of one account, the greater counts (`newest_sessions`)."""
    return (session.started, session.sid, session.node)


class PresenceWriter:
    """Writes to this node's presence document; call inside one transaction."""

    def __init__(self, doc: Doc[Any]) -> None:
        self.doc = doc

    def put_session(self, session: Session) -> None:
        root_map(self.doc, SESSIONS)[session.sid] = session.to_text()

    def remove_sessions(self, *sids: str) -> None:
        sessions = root_map(self.doc, SESSIONS)
        for sid in sids:
            if sid in sessions:
                del sessions[sid]

    def put_invite(self, invite: Invite) -> None:
        root_map(self.doc, INVITES)[invite.iid] = invite.to_text()

    def remove_invites(self, *iids: str) -> None:
        invites = root_map(self.doc, INVITES)
        for iid in iids:
            if iid in invites:
                del invites[iid]

    def heartbeat(self, wall_ms: int) -> None:
        root_map(self.doc, META)[HEARTBEAT] = wall_ms


def with_heartbeat(change: Callable[[Doc[Any]], Any], wall_ms: int) -> Callable[[Doc[Any]], Any]:
    """`change` of a node's presence document, then its heartbeat set to `wall_ms` (in the same
    transaction: one update carries both)."""

    def change_and_heartbeat(doc: Doc[Any]) -> Any:
        result = change(doc)
        PresenceWriter(doc).heartbeat(wall_ms)
        return result

    return change_and_heartbeat
