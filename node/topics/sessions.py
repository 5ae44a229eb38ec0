"""Sessions: logins, websocket connections, hello and resume, grace periods, heartbeats, and the
closing of sessions a newer one replaced."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pycrdt import Doc

from meridian.crdt_models.accounts import Account
from meridian.crdt_models.kinds import REVOKED, SPENT
from meridian.crdt_models.presence import (
    IDLE,
    PRESENCE_TTL_MS,
    Session,
)
from meridian.crdt_models.records import map_items, root_map
from meridian.node import protocol as p
from meridian.node.delivery import Close
from meridian.node.presence_view import superseded_sessions
from meridian.node.protocol import CloseCode, ErrorCode, Refused
from meridian.node.service_state import Conn, ServiceState, log, token_hash

GRACE_S = 60.0
HELLO_DEADLINE_S = 10.0
# A login's session is written to the presence document with its hello (one write instead of
# two) or, for a login not yet used on a websocket here, with the other such logins this long
# after the first of them (one transaction for all): a hello with the token on another node
# finds it this much later (docs/protocol.md, *Logging in*).
LOGIN_WRITE_DELAY_S = 0.05
HEARTBEAT_S = 5.0
# Resume tokens are single-use. Each node keeps, in its presence document, the hashes of the
# resume tokens it accepted (SPENT: hash -> sid) while it hosts their session; a token presented
# again, or accepted by two nodes at once, revokes its session (REVOKED: sid -> HLC wall ms),
# which every node hosting it then closes (the maps SPENT and REVOKED of ``crdt_models.kinds``,
# which peers check). Revocations are kept this long:
REVOKE_KEEP_S = 300.0


@dataclass(frozen=True)
class Replaced:
    """A session hosted here that a newer one replaced (`same`: the same session resumed)."""

    old: Session
    new: Session

    @property
    def same(self) -> bool:
        return self.old.sid == self.new.sid


class SessionsTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._restored: set[str] = set()  # sessions from before a restart; grace starts at tick
        # Sessions from before a restart not resumed since: the answer that gave their newest
        # resume token may have died with the process (`_retried_after_restart`).
        self._unanswered: set[str] = set()
        self._unwritten: dict[str, Session] = {}  # token hash -> a login's session not written
        self._unwritten_due: float | None = None  # when they are written at the latest

    # --- logins (HTTP) -------------------------------------------------------------------------

    def start(self, account: Account, now: float) -> str:
        """A session token for the account (after the password checked out)."""
        state = self.state
        token = state.new_token()
        # Above the account's newest session this node knows of: a login made after it must
        # win the double-login merge, however far ahead the clock of that session's node ran.
        known = state.picture.sessions.get(account.uid)
        session = Session(
            sid=state.new_token()[:16],
            uid=account.uid,
            name=account.name,
            node=state.node_id,
            region=state.region,
            status=IDLE,
            game="",
            opponent="",
            started=state.hlc.now_after(known.started).encode() if known else state.stamp(),
            token_hash=token_hash(token),
            resume_hash="",
            connected=False,
        )
        self._unwritten[session.token_hash] = session
        if self._unwritten_due is None:
            self._unwritten_due = now + LOGIN_WRITE_DELAY_S
        state.dropped_at[session.sid] = now  # a login never used on a websocket expires too
        return token

    def write_logins(self, now: float) -> None:
        """Write the logins' sessions that no hello wrote, once their delay is over."""
        if self._unwritten_due is None or now < self._unwritten_due:
            return
        sessions, self._unwritten, self._unwritten_due = list(self._unwritten.values()), {}, None
        if sessions:
            self.state.put_session(*sessions)

    @property
    def logins_due(self) -> float | None:
        """When `write_logins` has logins to write (None: none waiting)."""
        return self._unwritten_due

    def by_token(self, token: str) -> Session | None:
        wanted = token_hash(token)
        return self._unwritten.get(wanted) or self.state.session_by_token(wanted)

    def end(self, token: str) -> bool:
        state = self.state
        session = self.by_token(token)
        if session is None:
            return False
        state.close_uid_conns(session.uid, CloseCode.BAD_TOKEN, "logged out")
        if self._unwritten.pop(session.token_hash, None) is not None:
            state.dropped_at.pop(session.sid, None)
        elif session.node == state.node_id:
            state.remove_own_sessions(session.sid)
        return True

    def all(self) -> list[Session]:
        """The session that counts for every account online in any live region."""
        sessions = self.state.picture.sessions.values()
        return sorted(sessions, key=lambda s: (s.name.lower(), s.sid))

    # --- connections -----------------------------------------------------------------------------

    def connect(self, conn_id: str, now: float, address: str) -> Conn:
        conn = self.state.conns[conn_id] = Conn(conn_id, now, address, refilled=now)
        self.state.awaiting_hello[conn_id] = None
        return conn

    def hello(self, conn: Conn, message: p.Hello) -> tuple[Account, str, int, bool]:
        """Bind the connection to the session named by hello's token or resume token; returns
        the account, a new resume token (the one used is spent), the write that records it
        (the reply waits until that write is durable: a token the node may forget in a crash
        would leave the client with none that works) and whether the player arrives from
        elsewhere (a login, or a session another node hosted)."""
        state = self.state
        if conn.uid:
            raise Refused(ErrorCode.BAD_REQUEST, "hello was already sent")
        try:
            session = self._session_for_hello(message)
        except Refused as error:
            if error.code == ErrorCode.UNAUTHENTICATED:
                state.close(conn.conn_id, CloseCode.BAD_TOKEN, "unknown or expired token")
            raise
        account = state.accounts.account(session.uid)
        if account is None:
            state.close(conn.conn_id, CloseCode.BAD_TOKEN, "unknown account")
            raise Refused(ErrorCode.UNAUTHENTICATED, "unknown account")
        if account.status != "active":
            state.close(conn.conn_id, CloseCode.DISABLED, "account disabled")
            raise Refused(ErrorCode.UNAUTHENTICATED, "account disabled")
        resume = state.new_token()
        moved = replace(
            session,
            node=state.node_id,
            region=state.region,
            name=account.name,
            started=state.hlc.now_after(session.started).encode(),  # its account's newest
            resume_hash=token_hash(resume),
            connected=True,
        )
        state.dropped_at.pop(moved.sid, None)
        for other in [c for c in state.conns_of_session(moved.sid) if c is not conn]:
            reason = "your session continued on another connection"
            state.out.append(Close(other.conn_id, CloseCode.MOVED, reason))
            state.forget_conn(other.conn_id)
        written = state.put_session(moved)
        self._unwritten.pop(session.token_hash, None)  # written now, with the hello
        state.bind(conn, account.uid, moved.sid, account.name)
        arrived = bool(message.token) or session.node != state.node_id
        return account, resume, written, arrived

    def _session_for_hello(self, message: p.Hello) -> Session:
        if message.token:
            session = self._usable(self.by_token(message.token))
        elif message.resume:
            session = self._resumed(token_hash(message.resume))
        else:
            raise Refused(ErrorCode.BAD_REQUEST, "hello needs a token or a resume token")
        if session is None:
            raise Refused(ErrorCode.UNAUTHENTICATED, "unknown or expired token")
        return session

    def _usable(self, session: Session | None) -> Session | None:
        if session is None or self._expired(session) or session.sid in self.revoked():
            return None
        return session

    def _resumed(self, wanted: str) -> Session | None:
        """The session a resume token continues (the token is spent: a new one replaces it);
        a token that was spent already revokes the session it belonged to."""
        state = self.state
        found = state.find_session(lambda s: s.resume_hash == wanted)
        session = self._usable(found)
        if found is not None and session is None:
            return None  # an expired or revoked session: nothing to spend
        if session is None:
            spent_by = self._spent().get(wanted)
            if spent_by:
                retried = self._retried_after_restart(wanted)
                if retried is not None:
                    return retried
                self._revoke(next(iter(spent_by)), "a used resume token was presented again")
            return None
        self._unanswered.discard(session.sid)
        state.write(
            state.presence_doc, lambda doc: root_map(doc, SPENT).__setitem__(wanted, session.sid)
        )
        return session

    def _retried_after_restart(self, wanted: str) -> Session | None:
        """The session this node spent the resume token `wanted` on before it restarted, if
        not resumed since: the answer carrying its new token is sent once the change is durable,
        and the process may have died between the two, leaving the client only the old token.
        It is taken once; the token that replaced it is spent in its turn, so whichever of the
        two comes second (a thief's or the client's) still revokes the session."""
        state = self.state
        sid = dict(state.presence_maps(SPENT)).get(state.node_id, {}).get(wanted)
        session = self._usable(state.own_session(sid)) if sid in self._unanswered else None
        if session is None:
            return None
        self._unanswered.discard(session.sid)
        replaced = session.resume_hash
        state.write(
            state.presence_doc, lambda doc: root_map(doc, SPENT).__setitem__(replaced, session.sid)
        )
        log.warning("session %s resumed with the token its lost answer replaced", session.sid)
        return session

    # --- spent resume tokens and revoked sessions -----------------------------------------------

    def _spent(self) -> dict[str, set[str]]:
        """resume token hash -> the sids of the sessions it was spent on"""
        spent: dict[str, set[str]] = {}
        for _node, entries in self.state.presence_maps(SPENT):
            for token, sid in entries.items():
                spent.setdefault(token, set()).add(str(sid))
        return spent

    def revoked(self) -> set[str]:
        return {sid for _node, entries in self.state.presence_maps(REVOKED) for sid in entries}

    def _revoke(self, sid: str, why: str) -> None:
        state = self.state
        wall = state.hlc.now().wall_ms
        state.write(state.presence_doc, lambda doc: root_map(doc, REVOKED).__setitem__(sid, wall))
        log.warning("session %s revoked: %s", sid, why)
        self.enforce_revocations()

    def check_double_spends(self) -> None:
        """A resume token two nodes accepted at once (each before seeing the other's use) was
        replayed: revoke its session."""
        nodes_by_token: dict[str, set[str]] = {}
        sid_of: dict[str, str] = {}
        for node, entries in self.state.presence_maps(SPENT):
            for token, sid in entries.items():
                nodes_by_token.setdefault(token, set()).add(node)
                sid_of[token] = str(sid)
        revoked = self.revoked()
        for token, nodes in sorted(nodes_by_token.items()):
            if len(nodes) > 1 and sid_of[token] not in revoked:
                self._revoke(sid_of[token], "one resume token was used on two nodes")
                revoked.add(sid_of[token])

    def enforce_revocations(self) -> None:
        """Close and remove the sessions hosted here that some node revoked."""
        state = self.state
        revoked = self.revoked()
        ended = [sid for sid in sorted(revoked) if state.own_session(sid) is not None]
        if not ended:
            return
        for conn in [c for sid in ended for c in state.conns_of_session(sid)]:
            state.out.append(Close(conn.conn_id, CloseCode.BAD_TOKEN, "session revoked"))
            state.forget_conn(conn.conn_id)
        state.remove_own_sessions(*ended)

    def _prune(self, now_ms: int) -> None:
        """Forget spent tokens of sessions no longer hosted here, and old revocations."""
        state = self.state
        doc = state.docs.get(state.presence_doc)
        if doc is None:
            return
        hosted = {s.sid for s in state.own_presence().sessions}
        spent = [t for t, sid in map_items(doc, SPENT) if sid not in hosted]
        old = [
            sid for sid, at in map_items(doc, REVOKED) if now_ms - int(at) > REVOKE_KEEP_S * 1000
        ]
        if spent or old:

            def change(doc: Doc[Any]) -> None:
                for token in spent:
                    root_map(doc, SPENT).pop(token, None)
                for sid in old:
                    root_map(doc, REVOKED).pop(sid, None)

            state.write(state.presence_doc, change)

    def _expired(self, session: Session) -> bool:
        """A session whose node stopped heartbeating longer ago than the grace period is over."""
        state = self.state
        presence = state.presence.get(session.node)
        if presence is None or session.node == state.node_id:
            return False
        return state.wall_ms() - presence.heartbeat_ms > GRACE_S * 1000 + PRESENCE_TTL_MS

    # --- start-up and time ---------------------------------------------------------------------

    def restore(self) -> None:
        """After a restart no connection survives: this node's sessions wait out the grace
        period (their players may resume them, here or elsewhere) and are then removed."""
        state = self.state
        for session in state.own_presence().sessions:
            self._restored.add(session.sid)
            self._unanswered.add(session.sid)
            if session.connected:
                state.put_session(replace(session, connected=False))

    def tick(self, now: float) -> None:
        """Heartbeat, hello deadlines, end of grace periods."""
        state = self.state
        for sid in self._restored:
            state.dropped_at.setdefault(sid, now)
        self._restored.clear()
        last = state.heartbeat_at
        if last is None or now >= last + HEARTBEAT_S:
            self.heartbeat()
        # Only the connections still waiting for hello, oldest first: a tick costs nothing per
        # idle player.
        late = []
        for conn_id in state.awaiting_hello:
            conn = state.conns.get(conn_id)
            if conn is not None and now - conn.opened <= HELLO_DEADLINE_S:
                break
            late.append(conn_id)
        for conn_id in late:
            state.awaiting_hello.pop(conn_id, None)
            if conn_id in state.conns:
                state.close(conn_id, CloseCode.IDLE, "no hello within 10 s")
        expired = [sid for sid, at in state.dropped_at.items() if now - at > GRACE_S]
        for sid in expired:
            del state.dropped_at[sid]
            if not state.by_sid.get(sid):
                state.remove_own_sessions(sid)
        self._prune(state.hlc.now().wall_ms)

    def heartbeat(self) -> None:
        """Refresh this node's heartbeat: every write of its presence document does that
        (`ServiceState.write`), so this write changes nothing else."""
        self.state.write(self.state.presence_doc, lambda doc: None)

    def close_replaced(self, uids: set[str]) -> list[Replaced]:
        """Close the connections of sessions hosted here that a newer session replaced (after
        the picture changed for the accounts `uids`); returns them (a different session is a
        double-login merge)."""
        state = self.state
        replaced = []
        own = state.node_id
        hosted = [s for uid in sorted(uids) for s in state.live_picture.hosted(uid, own)]
        for old, new in superseded_sessions(hosted, state.picture.sessions):
            item = Replaced(old, new)
            replaced.append(item)
            code, reason = (
                (CloseCode.MOVED, "your session continued on another connection")
                if item.same
                else (CloseCode.LOGGED_IN_ELSEWHERE, f"logged in elsewhere (region {new.region})")
            )
            for conn in state.conns_of_session(old.sid):
                state.out.append(Close(conn.conn_id, code, reason))
                state.forget_conn(conn.conn_id)
            state.remove_own_sessions(old.sid)
        return replaced

    def shutdown(self) -> None:
        for conn_id in list(self.state.conns):
            self.state.out.append(Close(conn_id, CloseCode.SHUTDOWN, "server shutting down"))
