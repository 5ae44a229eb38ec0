"""The lobby: the cluster-wide picture (who is online, playing, watching), invitations, and the
notices that follow it (public list updates, your invitations, your opponent dropping)."""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from dataclasses import replace
from typing import Any

from meridian.crdt_models.kinds import DECLINES
from meridian.crdt_models.presence import IDLE, PLAYING, WATCHING, Invite, PresenceWriter
from meridian.crdt_models.records import root_map
from meridian.node import protocol as p
from meridian.node.game_tracker import LIVE
from meridian.node.presence_view import LobbyEntry
from meridian.node.protocol import ErrorCode, Refused, encode_message
from meridian.node.service_state import Answer, Conn, ServiceState

log = logging.getLogger("meridian.service")

# The public list a player is sent holds at most this many entries (the first names in order):
# with every login pushed to every player, a lobby of N players costs O(N) bytes per login for
# each of N players. Anyone online can still be invited by name (docs/protocol.md, "Pushes").
LOBBY_MAX_ENTRIES = 500
# A player at a table (who has a game to look at, not the list) is told the public list's
# changes at most this often, all of them at once; a player not at one is told at every refresh
# of the picture (docs/protocol.md, "Pushes"). With every player at a table this divides the
# list's pushes by about ten.
LOBBY_AT_TABLE_S = 2.0
# A `lobby_page` request answers at most this many entries of the whole list (docs/protocol.md).
LOBBY_PAGE_ENTRIES = 500
NO_INVITES: dict[str, Any] = {"type": "invites", "incoming": [], "outgoing": []}
NO_INVITES_TEXT = encode_message(NO_INVITES)
InvitesByUid = dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]


def invite_json(invite: Invite) -> dict[str, Any]:
    return {
        "iid": invite.iid,
        "from": invite.from_name,
        "to": invite.to_name,
        "resume": invite.resume,
        "clock": clock_json(invite),
    }


def clock_json(invite: Invite) -> dict[str, int] | None:
    """The invitation's time control as the protocol spells it (None: no clock)."""
    if not invite.clock_ms:
        return None
    return {"initial_s": invite.clock_ms // 1000, "increment_s": invite.increment_ms // 1000}


def lobby_update(
    told: dict[str, LobbyEntry], shown: dict[str, LobbyEntry]
) -> tuple[dict[str, Any], str]:
    """The ``lobby_update`` that turns the public list `told` into `shown`, and its text."""
    changed = [entry.to_json() for name, entry in shown.items() if told.get(name) != entry]
    message = {"type": "lobby_update", "changed": changed, "gone": sorted(told.keys() - shown)}
    return message, encode_message(message)


class LobbyTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._seen_online: dict[str, bool] = {}
        # The whole public list as sent after hello, built once per picture (a node logging in
        # a thousand players a second must not build and encode it a thousand times).
        self._greeting: tuple[object, dict[str, Any], str] | None = None
        self._names: list[str] = []  # every name in the public list, in order
        # The public list players are shown now: a new dict at each change, so a connection's
        # `lobby_told` (the one it was last told) says by identity whether it is behind.
        self._shown: dict[str, LobbyEntry] = {}
        self.lobby_owed_at: float | None = None  # when a player at a table is next owed one
        # Connections last told of some invitation: the others need no push until they have one.
        self._invited: set[str] = set()
        # Opponent name -> (gid, reporting player's name) of the tables reported for games not
        # held here, for the picture it was built from (`_reported_against`).
        self._against: tuple[object, dict[str, tuple[str, str]]] | None = None

    # --- the picture -------------------------------------------------------------------------

    def refresh(self) -> tuple[set[str], set[str]]:
        """Bring the picture up to date, push what changed in it; returns (the declined
        invitations, the uids whose sessions or table changed)."""
        state = self.state
        playing = {}
        for tracker in state.games.values():
            if tracker.status == LIVE:
                a, b = tracker.info.players
                playing[a] = (tracker.info.gid, tracker.info.names[1])
                playing[b] = (tracker.info.gid, tracker.info.names[0])
        declined = {iid for _node, entries in state.presence_maps(DECLINES) for iid in entries}
        uids, names = state.settle_picture(playing, declined)
        self._push_lobby(names)
        invites_by_uid = self._invites_by_uid()
        # Only players with an invitation now or at the last push: most have none and were told.
        targets = {c for uid in invites_by_uid for c in state.by_uid.get(uid, ())}
        for conn_id in sorted(targets | self._invited):
            conn = state.conns.get(conn_id)
            if conn is not None and conn.uid:
                self.push_invites(conn, invites_by_uid)
        self._invited &= state.conns.keys()
        return declined, uids

    def _push_lobby(self, names: set[str]) -> None:
        """Tell every greeted player what changed in the part of the public list they are
        shown: the first LOBBY_MAX_ENTRIES names (so that most logins of a large lobby change
        nothing anyone is shown); O(changed names + LOBBY_MAX_ENTRIES), not O(players)."""
        state = self.state
        lobby = state.picture.lobby
        for name in names:
            index = bisect_left(self._names, name)
            listed = index < len(self._names) and self._names[index] == name
            if name in lobby and not listed:
                self._names.insert(index, name)
            elif listed and name not in lobby:
                del self._names[index]
        before = self._shown
        shown = self._names[:LOBBY_MAX_ENTRIES]
        if len(shown) != len(before) or any(before.get(n) != lobby[n] for n in shown):
            self._shown = {name: lobby[name] for name in shown}
        self.tell_lobby(state.now_hint)

    def tell_lobby(self, now: float) -> None:
        """Send every greeted connection that is behind what changed in the public list since
        it was last told (one message per list it was told, encoded once): at once if its player
        is not at a table, else once LOBBY_AT_TABLE_S passed since it was last told."""
        state, shown = self.state, self._shown
        playing = state.picture.playing
        updates: dict[int, tuple[dict[str, Any], str]] = {}  # id(list told) -> its update
        owed: float | None = None
        for conn in state.conns.values():
            told = conn.lobby_told
            if told is None or told is shown:
                continue
            if conn.uid in playing and now < conn.lobby_told_at + LOBBY_AT_TABLE_S:
                due = conn.lobby_told_at + LOBBY_AT_TABLE_S
                owed = due if owed is None else min(owed, due)
                continue
            update = updates.get(id(told))
            if update is None:
                update = updates[id(told)] = lobby_update(told, shown)
            state.send(conn.conn_id, update[0], text=update[1])
            conn.lobby_told, conn.lobby_told_at = shown, now
        self.lobby_owed_at = owed

    def greet(self, conn: Conn) -> None:
        """After hello: the whole public list and the player's invitations."""
        message, text = self._greeting_for(self._shown)
        self.state.send(conn.conn_id, message, text=text)
        conn.lobby_told, conn.lobby_told_at = self._shown, self.state.now_hint
        self.push_invites(conn)

    def _greeting_for(self, lobby: dict[str, LobbyEntry]) -> tuple[dict[str, Any], str]:
        """The ``lobby`` message for the public list `lobby` and its text, shared by every
        connection greeted while the picture stays the same."""
        if self._greeting is None or self._greeting[0] is not lobby:
            message = {"type": "lobby", "players": [e.to_json() for e in lobby.values()]}
            self._greeting = (lobby, message, encode_message(message))
        return self._greeting[1], self._greeting[2]

    def page(self, after: str) -> dict[str, Any]:
        """Up to LOBBY_PAGE_ENTRIES entries of the whole public list after the name `after`
        ("": from the start), in name order, and the name to ask after for the next page (""
        at the end): how a client reads a lobby larger than what it is pushed."""
        names, lobby = self._names, self.state.picture.lobby
        start = bisect_right(names, after) if after else 0
        chunk = names[start : start + LOBBY_PAGE_ENTRIES]
        more = start + LOBBY_PAGE_ENTRIES < len(names)
        return {
            "players": [lobby[name].to_json() for name in chunk],
            "next": chunk[-1] if more and chunk else "",
        }

    def _invites_by_uid(self) -> InvitesByUid:
        """uid -> (incoming, outgoing) invitations, in one pass over the valid ones."""
        by_uid: InvitesByUid = {}
        for invite in self.state.picture.invites:
            by_uid.setdefault(invite.to_uid, ([], []))[0].append(invite_json(invite))
            by_uid.setdefault(invite.from_uid, ([], []))[1].append(invite_json(invite))
        return by_uid

    def push_invites(self, conn: Conn, by_uid: InvitesByUid | None = None) -> None:
        """Send the player's invitations if they changed since the last push."""
        incoming, outgoing = (by_uid if by_uid is not None else self._invites_by_uid()).get(
            conn.uid, ([], [])
        )
        if not incoming and not outgoing:
            body, text = NO_INVITES, NO_INVITES_TEXT  # one string shared by every idle player
            self._invited.discard(conn.conn_id)
        else:
            body = {"type": "invites", "incoming": incoming, "outgoing": outgoing}
            text = encode_message(body)  # built in a fixed order: equal text, equal invitations
            self._invited.add(conn.conn_id)
        if text != conn.last_invites:
            conn.last_invites = text
            self.state.send(conn.conn_id, body, text=text)

    def announce_opponents(self) -> None:
        """Tell players when their opponent's connection drops and when it comes back."""
        state = self.state
        online = {uid for uid, s in state.picture.sessions.items() if s.connected}
        for uid, (gid, _opponent) in state.picture.playing.items():
            was = self._seen_online.get(uid)
            now_online = uid in online
            self._seen_online[uid] = now_online
            if was is None or was == now_online:
                continue
            tracker = state.games.get(gid)
            if tracker is None:  # a table its player's session reports (not held here)
                continue
            name = tracker.info.names[tracker.info.players.index(uid)]
            message = {
                "type": "opponent",
                "game": gid,
                "name": name,
                "state": "back" if now_online else "dropped",
            }
            for conn in state.game_audience(gid, tracker):
                if conn.uid != uid:
                    state.send(conn.conn_id, message)

    def clean_own_invites(self, declined: set[str]) -> None:
        """Withdraw this node's invitations that are declined or no longer valid."""
        state = self.state
        valid = {i.iid for i in state.picture.invites}
        stale = [i for i in state.own_presence().invites if i.iid not in valid or i.iid in declined]
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
        state.write(state.presence_doc, lambda doc: PresenceWriter(doc).remove_invites(*iids))

    def _invalid_because(self, invite: Invite) -> str:
        picture = self.state.picture
        for uid, name in ((invite.from_uid, invite.from_name), (invite.to_uid, invite.to_name)):
            if uid not in picture.sessions:
                return f"{name} is not online"
            if uid == invite.from_uid and picture.sessions[uid].node != invite.node:
                return f"{name} moved to {picture.sessions[uid].node}"
            if uid in picture.playing:
                return f"{name} is at a table"
        return "no longer valid"

    def record_tables(self, uids: set[str]) -> None:
        """Write into the sessions hosted here of the accounts `uids` the table their player
        sits at, as the games held here tell it. Sessions reach every region, a game only its
        replicas (partial replication), so a region without the game still shows its players
        at a table (`presence_view.tables`). A report of a game not held here stays: this node
        cannot tell when that game ends."""
        state = self.state
        playing = state.live_picture.playing
        changed = []
        for uid in sorted(uids):
            for hosted in state.live_picture.hosted(uid, state.node_id):
                session = state.own_session(hosted.sid)
                if session is None or (uid not in playing and session.status != PLAYING):
                    continue
                if uid in playing:
                    table = (PLAYING, *playing[uid])
                elif session.game in state.games:  # over: back to what the connection does
                    watching = [c.watching for c in state.conns_of_session(session.sid)]
                    table = (WATCHING, max(watching), "") if any(watching) else (IDLE, "", "")
                else:
                    continue
                if (session.status, session.game, session.opponent) != table:
                    status, game, opponent = table
                    changed.append(replace(session, status=status, game=game, opponent=opponent))
        if changed:
            state.put_session(*changed)

    # --- handlers ----------------------------------------------------------------------------

    def require_free(self, uid: str, who: str) -> None:
        picture = self.state.picture
        game = picture.playing.get(uid) or self._reported_against(uid)
        tracker = None if game is None else self.state.games.get(game[0])
        if tracker is not None and tracker.status != LIVE:
            return  # it ended here since the picture (refreshed at most every few tenths of a s)
        if game is not None:
            raise Refused(ErrorCode.BUSY, f"{who} at a table (playing {game[1]})")

    def tables_of(self, uid: str) -> list[str]:
        """The games a player sits at as this node knows them: held here, reported by the
        player's session or by an opponent's (a hello fetches those it does not hold)."""
        found = (self.state.picture.playing.get(uid), self._reported_against(uid))
        return sorted({table[0] for table in found if table is not None})

    def _reported_against(self, uid: str) -> tuple[str, str] | None:
        """(gid, opponent) of a table an opponent's session reports against this player, for a
        game not held here. Under partial replication the player's own report can be missing
        for good: the node hosting the player was lost before it wrote it, while the opponent's
        node wrote its own (docs/architecture.md, *Who is at a table*)."""
        picture = self.state.picture
        if self._against is None or self._against[0] is not picture:
            names = {u: s.name for u, s in picture.sessions.items()}
            against = {
                opponent: (gid, names.get(other, ""))
                for other, (gid, opponent) in picture.playing.items()
                if gid not in self.state.games
            }
            self._against = (picture, against)  # built once per picture, when first needed
        account = self.state.accounts.account(uid)
        return self._against[1].get(account.name) if account is not None else None

    def invite(
        self,
        conn: Conn,
        target_uid: str,
        target_name: str,
        resume: str,
        clock: p.TimeControl | None = None,
    ) -> Answer:
        state = self.state
        if target_uid == conn.uid:
            raise Refused(ErrorCode.BAD_REQUEST, "you cannot invite yourself")
        self.require_free(conn.uid, "you are")
        if target_uid not in state.picture.sessions:
            raise Refused(ErrorCode.OFFLINE, f"{target_name} is not online")
        self.require_free(target_uid, f"{target_name} is")
        if resume:
            state.saved_between(resume, conn.uid, target_uid)
        invite = Invite(
            state.new_token()[:16],
            conn.uid,
            conn.name,
            target_uid,
            target_name,
            resume,
            state.stamp(),
            state.node_id,
            clock.initial_s * 1000 if clock else 0,
            clock.increment_s * 1000 if clock else 0,
        )
        event = state.write(state.presence_doc, lambda doc: PresenceWriter(doc).put_invite(invite))
        return Answer({"invite": invite_json(invite)}, state.presence_doc, event)

    def _find(self, iid: str) -> Invite:
        invite = next((i for i in self.state.picture.invites if i.iid == iid), None)
        if invite is None:
            raise Refused(ErrorCode.NOT_FOUND, "no such invitation (it may have been withdrawn)")
        return invite

    def retract(self, conn: Conn, message: p.Retract) -> Answer:
        state = self.state
        invite = self._find(message.invite)
        if invite.from_uid != conn.uid or invite.node != state.node_id:
            raise Refused(ErrorCode.NOT_FOUND, "not an invitation you sent from this connection")
        event = state.write(
            state.presence_doc, lambda doc: PresenceWriter(doc).remove_invites(invite.iid)
        )
        return Answer({}, state.presence_doc, event)

    def decline(self, conn: Conn, message: p.Decline) -> Answer:
        state = self.state
        invite = self._find(message.invite)
        if invite.to_uid != conn.uid:
            raise Refused(ErrorCode.NOT_FOUND, "not an invitation to you")
        # The invitation lives in the inviter's node's document; this node records the refusal
        # in its own presence document and the inviter's node deletes the invitation.
        stamp = state.stamp()
        event = state.write(
            state.presence_doc, lambda doc: root_map(doc, DECLINES).__setitem__(invite.iid, stamp)
        )
        return Answer({}, state.presence_doc, event)

    def accepted(self, conn: Conn, message: p.Accept) -> Invite:
        """The invitation `accept` names, if this player may accept it now."""
        invite = self._find(message.invite)
        if invite.to_uid != conn.uid:
            raise Refused(ErrorCode.NOT_FOUND, "not an invitation to you")
        self.require_free(invite.from_uid, f"{invite.from_name} is")
        self.require_free(conn.uid, "you are")
        return invite
