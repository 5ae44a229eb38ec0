"""Accounts: registration, the account fields, renaming, and the name merges to announce."""

from __future__ import annotations

from dataclasses import dataclass, replace

from meridian.crdt_models.accounts import ACCOUNTS_DOC, Account, AccountsWriter, NotHomeError
from meridian.node import protocol as p
from meridian.node.protocol import ErrorCode, NoticeCode, Refused
from meridian.node.service_state import Answer, Conn, ServiceState


@dataclass(frozen=True)
class NameContest:
    """An account that lost its name to an earlier registration (a merge to announce)."""

    name: str
    uid: str


class AccountsTopic:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._known_contests: set[tuple[str, str]] = set()

    def reserved_names(self) -> frozenset[str]:
        """Names no player may take besides `protocol.RESERVED_NAMES`: the ids and regions of
        this node and of every node it has heard from (lowercase)."""
        state = self.state
        names = {state.node_id, state.region}
        for presence in state.presence.values():
            names.add(presence.node)
            names.update(session.region for session in presence.sessions[:1])
        return frozenset(name.lower() for name in names)

    def check_free(self, name: str) -> None:
        """Refuse a name that breaks the rule, is reserved or is registered already."""
        p.check_name(name, self.reserved_names())
        if self.state.accounts.claimants(name) or self.state.accounts.name_owner(name):
            raise Refused(ErrorCode.NAME_TAKEN, f"the name {name!r} is registered already")

    def register(self, name: str, password_hash: str, home: str | None) -> Account:
        state = self.state
        self.check_free(name)
        uid = state.new_token()[:22]
        stamp = state.stamp()
        region = state.region
        state.write(
            ACCOUNTS_DOC,
            lambda doc: AccountsWriter(doc, region).register(
                uid, name, password_hash, home or region, stamp
            ),
        )
        account = state.accounts.account(uid)
        assert account is not None
        return account

    def login_candidates(self, name: str) -> list[Account]:
        """Accounts that may be logging in with this name (owner first, then merge losers)."""
        return [a for a in self.state.accounts.claimants(name) if a.status == "active"]

    def update(self, uid: str, **changes: str) -> Account:
        state = self.state
        current = state.accounts.version(uid)
        if current is None:
            raise Refused(ErrorCode.UNKNOWN_USER, "no such account")
        stamp, region = state.stamp(), state.region
        try:
            state.write(
                ACCOUNTS_DOC,
                lambda doc: AccountsWriter(doc, region).update(current, stamp, **changes),
            )
        except NotHomeError as refused:  # password and home change only in the home region
            raise Refused(ErrorCode.NOT_HOME, str(refused)) from None
        account = state.accounts.account(uid)
        assert account is not None
        return account

    def by_name(self, name: str) -> Account:
        uid = self.state.accounts.name_owner(name)
        account = self.state.accounts.account(uid) if uid else None
        if account is None:
            raise Refused(ErrorCode.UNKNOWN_USER, f"no player named {name!r}")
        return account

    def rename(self, conn: Conn, message: p.Rename) -> Answer:
        state = self.state
        name = p.check_name(message.name, self.reserved_names())
        owner = state.accounts.name_owner(name)
        if owner is not None and owner != conn.uid:
            raise Refused(ErrorCode.NAME_TAKEN, f"the name {name!r} is registered already")
        current = state.accounts.version(conn.uid)
        assert current is not None
        stamp, region = state.stamp(), state.region
        event = state.write(
            ACCOUNTS_DOC, lambda doc: AccountsWriter(doc, region).rename(current, name, stamp)
        )
        conn.name = name
        state.put_session(replace(state.conn_session(conn), name=name))
        you = {"uid": conn.uid, "name": name, "must_rename": False}
        return Answer({"you": you}, ACCOUNTS_DOC, event)

    def new_contests(self) -> list[NameContest]:
        """Accounts that lost their name since the last call (each is a merge)."""
        found = []
        for name, losers in self.state.accounts.contested_names().items():
            for uid in losers:
                if (name, uid) not in self._known_contests:
                    self._known_contests.add((name, uid))
                    found.append(NameContest(name, uid))
        return found

    def notice_must_rename(self, conn: Conn) -> None:
        self.state.send(
            conn.conn_id,
            {
                "type": "notice",
                "code": NoticeCode.MUST_RENAME,
                "message": f"the name {conn.name!r} was registered earlier in another region "
                "while the regions could not talk; pick a new name with rename",
            },
        )
