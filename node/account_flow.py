"""The account HTTP flow, sans-IO: register, log in, log out, change password, move home.

One implementation for the aiohttp adapter (``node.player_api``, ``node.admin_api``) and the
simulator (``sim.players``). A flow is a generator: it takes the typed body (``node.protocol``)
and yields the effects it needs from its runner (hash a password, check one, pull the accounts
document from the other regions, wait), then returns an `HttpAnswer`. The runner performs each
effect its own way: aiohttp hashes with argon2id in a worker thread and polls while the
accounts document is pulled, the simulator hashes at no cost and polls on its virtual clock.
A `Refused` raised by a flow is its answer too (`answer_of`).

Login never tells an unknown name from a wrong password: both are ``bad_credentials``, and an
unknown name is checked against a stand-in hash so that both cost one password check.
Failed logins are limited per account and per address (``node.topics.limits``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meridian.crdt_models.accounts import Account
from meridian.node.protocol import (
    ErrorCode,
    HomeBody,
    LoginBody,
    PasswordBody,
    Refused,
    RegisterBody,
    check_password,
)

if TYPE_CHECKING:
    from meridian.node.service import GameService
    from meridian.sync.engine import SyncEngine

ACCOUNT_PULL_S = 2.0  # how long a login of a name unknown here waits for the other regions
PULL_POLL_S = 0.02  # how often it looks whether they answered


@dataclass(frozen=True)
class HashPassword:
    """Effect: hash a new password (the runner returns the hash)."""

    password: str


@dataclass(frozen=True)
class CheckPassword:
    """Effect: does `password` match `password_hash`? (the runner returns a bool)."""

    password_hash: str
    password: str


@dataclass(frozen=True)
class RequestAccounts:
    """Effect: ask the other regions for the accounts document (the runner returns None)."""


@dataclass(frozen=True)
class Wait:
    """Effect: hold the request this long (the runner returns its clock afterwards)."""

    seconds: float


Effect = HashPassword | CheckPassword | RequestAccounts | Wait


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


Flow = Generator[Effect, Any, HttpAnswer]


def known_regions(region: str, engine: SyncEngine) -> set[str]:
    """A node's region and its peers' (a home region must be one of them)."""
    return {region} | {peer.region for peer in engine.peers.values()}


def answer_of(refused: Refused) -> HttpAnswer:
    return HttpAnswer(refused.status, refused.body())


def run_sync(flow: Flow, perform: Callable[[Effect], Any]) -> HttpAnswer:
    """Run a flow whose effects `perform` completes at once (tests, tools)."""
    try:
        effect = next(flow)
        while True:
            effect = flow.send(perform(effect))
    except StopIteration as done:
        answer: HttpAnswer = done.value
        return answer
    except Refused as refused:
        return answer_of(refused)


async def run_async(flow: Flow, perform: Callable[[Effect], Awaitable[Any]]) -> HttpAnswer:
    """Run a flow whose effects `perform` completes later (the aiohttp adapter). An effect
    refused by the runner (its password pool is full) is thrown into the flow, so that the
    flow's own clean-up runs, and becomes the answer."""
    try:
        effect = next(flow)
        while True:
            try:
                result = await perform(effect)
            except Refused as refused:
                effect = flow.throw(refused)
                continue
            effect = flow.send(result)
    except StopIteration as done:
        answer: HttpAnswer = done.value
        return answer
    except Refused as refused:
        return answer_of(refused)


class AccountFlow:
    """The account routes of one node, over its game service."""

    def __init__(
        self,
        service: GameService,
        regions: Callable[[], set[str]],
        stand_in_hash: str,
    ) -> None:
        self.service = service
        self.regions = regions  # this node's region and its peers': the valid home regions
        self.stand_in_hash = stand_in_hash  # checked for an unknown name (see module docstring)

    def _check_home(self, home: str | None) -> None:
        if home is not None and home not in self.regions():
            known = sorted(self.regions())
            raise Refused(ErrorCode.BAD_REQUEST, f"unknown region {home!r}; known: {known}")

    def register(self, body: RegisterBody, address: str, now: float) -> Flow:
        """``POST /api/register`` (and the admin's account creation, with `address` "")."""
        check_password(body.password)
        self._check_home(body.home)
        service = self.service
        if address:
            service.limits.admit_registration(address, now)
        # Refuse a bad or taken name before paying for the hash (checked again after it).
        service.accounts_topic.check_free(body.name)
        password_hash = yield HashPassword(body.password)
        account = service.register(body.name, password_hash, body.home)
        return HttpAnswer(201, {"uid": account.uid, "name": account.name, "home": account.home})

    def login(self, body: LoginBody, address: str, now: float) -> Flow:
        """``POST /api/login``: a session token for the name and password."""
        service = self.service
        limits = service.limits
        limits.start_login(body.name, address, now)
        try:
            delay = limits.login_delay(body.name, address, now)
            if delay > 0:
                now = yield Wait(delay)
            candidates = service.login_candidates(body.name)
            if not candidates:
                candidates, now = yield from self._pull(body.name, now)
            account = yield from self._matching(candidates, body.password)
        finally:
            limits.end_login(address)
        if account is None:
            limits.login_failed(body.name, address, now)
            raise Refused(ErrorCode.BAD_CREDENTIALS, "wrong name or password")
        limits.login_succeeded(body.name, address)
        token = service.start_session(account, now)
        return HttpAnswer(
            200,
            {
                "uid": account.uid,
                "name": account.name,
                "token": token,
                "home": account.home,
                "must_rename": account.must_rename,
            },
        )

    def _pull(self, name: str, now: float) -> Generator[Effect, Any, tuple[list[Account], float]]:
        """The name is unknown here: ask the other regions for the accounts document and look
        again every PULL_POLL_S until it names the player or ACCOUNT_PULL_S have passed."""
        service = self.service
        yield RequestAccounts()
        deadline = now + ACCOUNT_PULL_S
        candidates: list[Account] = []
        while not candidates and now < deadline:
            now = yield Wait(PULL_POLL_S)
            service.process(now)
            candidates = service.login_candidates(name)
        return candidates, now

    def _matching(
        self, candidates: list[Account], password: str
    ) -> Generator[Effect, Any, Account | None]:
        if not candidates:
            yield CheckPassword(self.stand_in_hash, password)  # as long as a wrong password
            return None
        for account in candidates:
            if (yield CheckPassword(account.password_hash, password)):
                return account
        return None

    def session(self, token: str) -> Any:
        """The session of a bearer token, if its account is active."""
        service = self.service
        session = service.session_by_token(token) if token else None
        account = service.accounts.account(session.uid) if session is not None else None
        if session is None or account is None or account.status != "active":
            raise Refused(ErrorCode.UNAUTHENTICATED, "a valid session token is required")
        return session

    def logout(self, token: str) -> Flow:
        self.session(token)
        self.service.end_session(token)
        return HttpAnswer(200, {})
        yield  # a generator like the others  # pragma: no cover

    def change_password(self, token: str, body: PasswordBody, address: str, now: float) -> Flow:
        service = self.service
        session = self.session(token)
        check_password(body.new)
        account = service.accounts.account(session.uid)
        if account is None:
            raise Refused(ErrorCode.UNAUTHENTICATED, "a valid session token is required")
        delay = service.limits.login_delay(account.name, address, now)
        if delay > 0:
            yield Wait(delay)
        if not (yield CheckPassword(account.password_hash, body.old)):
            service.limits.login_failed(account.name, address, now)
            raise Refused(ErrorCode.BAD_CREDENTIALS, "the old password is wrong")
        new_hash = yield HashPassword(body.new)
        service.update_account(session.uid, password_hash=new_hash)
        return HttpAnswer(200, {})

    def move_home(self, token: str, body: HomeBody) -> Flow:
        session = self.session(token)
        if body.region not in self.regions():
            self._check_home(body.region)
        account = self.service.update_account(session.uid, home=body.region)
        return HttpAnswer(200, {"home": account.home})
        yield  # a generator like the others  # pragma: no cover
