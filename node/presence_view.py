"""The cluster-wide picture built from every node's presence document and the live games.

Pure functions over read models: who is online where (the public list), what each player is
doing, which invitations are still valid, which sessions must be closed because a newer one of
the same account exists. Each node computes the same picture from the same documents.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass

from meridian.crdt_models.presence import (
    IDLE,
    PLAYING,
    WATCHING,
    Invite,
    Presence,
    Session,
    newest_sessions,
    session_rank,
)


@dataclass(frozen=True, slots=True)
class LobbyEntry:
    name: str
    region: str
    status: str
    opponent: str
    game: str  # the game played or watched, else ""

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "region": self.region,
            "status": self.status,
            "opponent": self.opponent,
            "game": self.game,
        }


@dataclass(frozen=True)
class Picture:
    """Everything derived from the live presence documents at one moment."""

    sessions: dict[str, Session]  # uid -> the session that counts
    invites: list[Invite]  # valid invitations
    lobby: dict[str, LobbyEntry]  # name -> entry
    # uid -> (gid, opponent name): the live games held here, and the tables the players'
    # sessions report for games this node does not hold (`tables`)
    playing: dict[str, tuple[str, str]]


# Above this many connections on a node the picture (O(sessions) to rebuild, then a pass over
# every connection) is refreshed at most every PICTURE_S_PER_CONN per connection: 10,000 idle
# players mean a refresh a second, not five, while logins pour in.
PICTURE_SCALE_FROM = 2000
PICTURE_S_PER_CONN = 0.0001


def picture_interval(base_s: float, connections: int) -> float:
    """How long after a refresh of the picture the next one may come."""
    if connections <= PICTURE_SCALE_FROM:
        return base_s
    return max(base_s, connections * PICTURE_S_PER_CONN)


def build_picture(
    presences: list[Presence],
    now_ms: int,
    playing: dict[str, tuple[str, str]],
    declined: set[str],
    own_node: str,
    held: Container[str] = (),
) -> Picture:
    """`own_node`'s presence always counts: the node computing the picture is alive.
    `playing`: the live games held here; `held`: every game held here (see `tables`).

    The whole picture from scratch, O(sessions): the reference `LivePicture` (what the node
    keeps) must always equal (tests/test_presence_view.py)."""
    live = [p for p in presences if p.node == own_node or p.live(now_ms)]
    sessions = newest_sessions([s for p in live for s in p.sessions])
    owner: dict[str, Session] = {}  # name -> the session whose entry the list shows
    for session in sessions.values():
        current = owner.get(session.name)
        if current is None or session_rank(session) > session_rank(current):
            owner[session.name] = session
    at_tables = tables(playing, reported_tables(sessions.values(), held))
    lobby = {name: lobby_entry(session, at_tables) for name, session in owner.items()}
    return Picture(sessions, valid_invites(live, sessions, at_tables, declined), lobby, at_tables)


def tables(
    playing: dict[str, tuple[str, str]], reported: dict[str, tuple[str, str]]
) -> dict[str, tuple[str, str]]:
    """Who is at which table: the live games held here, and for the others what their
    sessions report. Under partial replication (docs/architecture.md) a node holds only some
    games; the node hosting a player writes its table into the player's session, which every
    node holds. A game held here is read from its document, never from the report, which may
    lag it by a replication hop."""
    return {**reported, **playing} if reported else playing


def reported_tables(
    sessions: Iterable[Session], held: Container[str]
) -> dict[str, tuple[str, str]]:
    """uid -> (gid, opponent) for the sessions that report a table in a game not held here."""
    return {s.uid: (s.game, s.opponent) for s in sessions if reports_table(s, held)}


def reports_table(session: Session, held: Container[str]) -> bool:
    return session.status == PLAYING and bool(session.game) and session.game not in held


def lobby_entry(session: Session, playing: dict[str, tuple[str, str]]) -> LobbyEntry:
    """The public list's entry for the session that counts for its account."""
    game = playing.get(session.uid)
    status, opponent = _status(session, game)
    gid = game[0] if game else (session.game if status == WATCHING else "")
    return LobbyEntry(session.name, session.region, status, opponent, gid)


def valid_invites(
    live: list[Presence],
    sessions: dict[str, Session],
    playing: dict[str, tuple[str, str]],
    declined: set[str],
) -> list[Invite]:
    """The invitations of the live presences that still count (O(invitations))."""
    return [
        invite
        for p in live
        for invite in p.invites
        if invite.iid not in declined and _invite_valid(invite, sessions, playing)
    ]


class LivePicture:
    """The picture kept up to date from what changed (sessions of one node, the nodes that
    count, the tables), in time proportional to the change: a login costs O(1), not a rebuild
    over every player. Equal to `build_picture` over the same presences at every `settle`.

    Feed it with `session_changed` (from ``PresenceReader.take_changes``) for every node, then
    `set_live` and `set_playing`, then `settle`."""

    def __init__(self) -> None:
        self.live: set[str] = set()  # the nodes whose sessions count
        # uid -> its sessions on live nodes, as (node, session); usually one
        self._candidates: dict[str, tuple[tuple[str, Session], ...]] = {}
        self.sessions: dict[str, Session] = {}  # uid -> the session that counts
        self.lobby: dict[str, LobbyEntry] = {}  # name -> entry
        self._owners: dict[str, tuple[Session, ...]] = {}  # name -> counting sessions with it
        self.playing: dict[str, tuple[str, str]] = {}  # the live games held here
        self.held: Container[str] = ()  # every game held here
        self.tables: dict[str, tuple[str, str]] = {}  # `presence_view.tables`
        self._reported: dict[str, tuple[str, str]] = {}  # `reported_tables` of `sessions`
        self._reported_in: dict[str, set[str]] = {}  # gid -> the uids reporting it
        self._dirty: set[str] = set()  # uids whose sessions or table changed since `settle`

    def session_changed(
        self, node: str, sid: str, before: Session | None, now: Session | None
    ) -> None:
        """One session of `node`'s presence changed (ignored while `node` does not count)."""
        if node not in self.live:
            return
        if before is not None:
            self._remove(node, sid, before.uid)
        if now is not None:
            self._add(node, now)

    def set_live(self, nodes: set[str], sessions_of: Callable[[str], Iterable[Session]]) -> None:
        """The nodes that count now; `sessions_of(node)`: that node's sessions as they are
        (every change before them already given to `session_changed`)."""
        for node in sorted(self.live - nodes):
            for session in sessions_of(node):
                self._remove(node, session.sid, session.uid)
        added = nodes - self.live
        self.live = set(nodes)
        for node in sorted(added):
            for session in sessions_of(node):
                self._add(node, session)

    def set_playing(self, playing: dict[str, tuple[str, str]], held: Container[str] = ()) -> None:
        """The live games held here and every game held here (a report of a game that is now
        held stops counting: its players are looked at again)."""
        self.held = held
        for gid in [gid for gid in self._reported_in if gid in held]:
            self._dirty.update(self._reported_in.pop(gid))
        old = self.playing
        self._dirty.update(uid for uid in old.keys() ^ playing.keys())
        self._dirty.update(uid for uid, game in playing.items() if old.get(uid, game) != game)
        self.playing = playing

    def settle(self) -> tuple[set[str], set[str]]:
        """Bring `sessions` and `lobby` up to date: (uids whose sessions or table changed,
        names whose entry changed or went)."""
        dirty, self._dirty = self._dirty, set()
        names: set[str] = set()
        for uid in dirty:
            before = self.sessions.get(uid)
            candidates = self._candidates.get(uid, ())
            now = max((s for _, s in candidates), key=session_rank, default=None)
            if before is not None:
                self._own_name(before, None)
                names.add(before.name)
            if now is None:
                self.sessions.pop(uid, None)
            else:
                self.sessions[uid] = now
                self._own_name(None, now)
                names.add(now.name)
            self._report(uid, now)
        self.tables = tables(self.playing, self._reported)
        for name in names:
            owners = self._owners.get(name)
            if owners:
                self.lobby[name] = lobby_entry(max(owners, key=session_rank), self.tables)
            else:
                self.lobby.pop(name, None)
        return dirty, names

    def _report(self, uid: str, session: Session | None) -> None:
        """Keep `_reported` (and its index by game) for `uid`'s session that counts now."""
        before = self._reported.pop(uid, None)
        if before is not None:
            uids = self._reported_in.get(before[0], set())
            uids.discard(uid)
            if not uids:
                self._reported_in.pop(before[0], None)
        if session is not None and reports_table(session, self.held):
            self._reported[uid] = (session.game, session.opponent)
            self._reported_in.setdefault(session.game, set()).add(uid)

    def hosted(self, uid: str, node: str) -> list[Session]:
        """The sessions of `uid` on `node` (a live node)."""
        return [s for n, s in self._candidates.get(uid, ()) if n == node]

    def _own_name(self, before: Session | None, now: Session | None) -> None:
        if before is not None:
            left = tuple(s for s in self._owners.get(before.name, ()) if s is not before)
            if left:
                self._owners[before.name] = left
            else:
                self._owners.pop(before.name, None)
        if now is not None:
            self._owners[now.name] = (*self._owners.get(now.name, ()), now)

    def _add(self, node: str, session: Session) -> None:
        self._candidates[session.uid] = (*self._candidates.get(session.uid, ()), (node, session))
        self._dirty.add(session.uid)

    def _remove(self, node: str, sid: str, uid: str) -> None:
        candidates = self._candidates.get(uid, ())
        left = tuple(c for c in candidates if (c[0], c[1].sid) != (node, sid))
        if left:
            self._candidates[uid] = left
        else:
            self._candidates.pop(uid, None)
        self._dirty.add(uid)


def _status(session: Session, game: tuple[str, str] | None) -> tuple[str, str]:
    if game is not None:
        return PLAYING, game[1]
    if session.status == WATCHING and session.game:
        return WATCHING, ""
    return IDLE, ""


def _invite_valid(
    invite: Invite, sessions: dict[str, Session], playing: dict[str, tuple[str, str]]
) -> bool:
    """An invitation counts while both players are online, neither is at a table and the
    inviter's session is still hosted by the node that holds the invitation: once the inviter
    moves (a drain, a rebalance, a failover, a login elsewhere) the old node can no longer
    withdraw it for them, so it ends there (docs/protocol.md, *Invitations*)."""
    inviter = sessions.get(invite.from_uid)
    return (
        inviter is not None
        and inviter.node == invite.node
        and invite.to_uid in sessions
        and invite.from_uid not in playing
        and invite.to_uid not in playing
    )


def superseded_sessions(
    hosted: list[Session], newest: dict[str, Session]
) -> list[tuple[Session, Session]]:
    """Sessions hosted here that a newer session of the same account replaced: (old, new)."""
    result = []
    for session in hosted:
        winner = newest.get(session.uid)
        if winner is None or (winner.node, winner.sid) == (session.node, session.sid):
            continue
        if (winner.started, winner.sid) > (session.started, session.sid):
            result.append((session, winner))
    return result


__all__ = [
    "PLAYING",
    "LivePicture",
    "LobbyEntry",
    "Picture",
    "build_picture",
    "lobby_entry",
    "picture_interval",
    "superseded_sessions",
    "valid_invites",
]
