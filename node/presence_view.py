"""The cluster-wide picture built from every node's presence document and the live games.

Pure functions over read models: who is online where (the public list), what each player is
doing, which invitations are still valid, which sessions must be closed because a newer one of
the same account exists. Each node computes the same picture from the same documents.
"""

from __future__ import annotations

from dataclasses import dataclass

from meridian.crdt_models.presence import (
    IDLE,
    PLAYING,
    WATCHING,
    Invite,
    Presence,
    Session,
    newest_sessions,
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
    playing: dict[str, tuple[str, str]]  # uid -> (gid, opponent name)


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
) -> Picture:
    """`own_node`'s presence always counts: the node computing the picture is alive."""
    live = [p for p in presences if p.node == own_node or p.live(now_ms)]
    sessions = newest_sessions([s for p in live for s in p.sessions])
    lobby = {}
    for uid, session in sessions.items():
        game = playing.get(uid)
        status, opponent = _status(session, game)
        gid = game[0] if game else (session.game if status == WATCHING else "")
        lobby[session.name] = LobbyEntry(session.name, session.region, status, opponent, gid)
    invites = [
        invite
        for p in live
        for invite in p.invites
        if invite.iid not in declined and _invite_valid(invite, sessions, playing)
    ]
    return Picture(sessions, invites, lobby, playing)


def _status(session: Session, game: tuple[str, str] | None) -> tuple[str, str]:
    if game is not None:
        return PLAYING, game[1]
    if session.status == WATCHING and session.game:
        return WATCHING, ""
    return IDLE, ""


def _invite_valid(
    invite: Invite, sessions: dict[str, Session], playing: dict[str, tuple[str, str]]
) -> bool:
    """An invitation counts while both players are online and neither is at a table."""
    return (
        invite.from_uid in sessions
        and invite.to_uid in sessions
        and invite.from_uid not in playing
        and invite.to_uid not in playing
    )


def lobby_diff(
    before: dict[str, LobbyEntry], after: dict[str, LobbyEntry]
) -> tuple[list[LobbyEntry], list[str]]:
    changed = [entry for name, entry in sorted(after.items()) if before.get(name) != entry]
    gone = sorted(name for name in before if name not in after)
    return changed, gone


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
    "LobbyEntry",
    "Picture",
    "build_picture",
    "lobby_diff",
    "picture_interval",
    "superseded_sessions",
]
