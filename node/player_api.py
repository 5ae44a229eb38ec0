"""The players' side of a node under aiohttp: accounts and games over HTTP, live play on ``/ws``.

Thin adapter around ``node.service.GameService`` (the sans-IO core): it hashes and checks
passwords in a worker thread (argon2id is deliberately slow), feeds websocket messages to the
service, and sends what the service releases, in order per connection. The service itself holds
a reply or push until its change is durable and replicated as ``ack_regions`` asks
(``node.delivery``); the node calls `drain` again whenever the store commits or a peer acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from meridian.crdt_models.accounts import ACCOUNTS_DOC
from meridian.crdt_models.archive import LOG_PREFIX, ArchivedGame, read_archive
from meridian.crdt_models.ratings import ranking, ratings, table_digest
from meridian.node.delivery import Close, Send
from meridian.node.service import (
    MAX_MESSAGE_BYTES,
    MIN_PASSWORD_CHARS,
    GameService,
    ServiceError,
)

if TYPE_CHECKING:
    from meridian.node.server import Node

log = logging.getLogger("meridian.players")

# OWASP's minimum for argon2id; about 50 ms per hash on this class of machine.
PASSWORDS = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
ACCOUNT_PULL_S = 2.0
MAX_BODY_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store"}


@dataclass
class Connection:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[Send | Close] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None


class PlayerGateway:
    """Routes for players; owns the websocket connections of this node."""

    def __init__(self, node: Node, service: GameService) -> None:
        self.node = node
        self.service = service
        self.connections: dict[str, Connection] = {}
        self._ids = itertools.count(1)
        self._ratings: tuple[object, dict[str, Any]] = ((), {"ratings": []})  # (log key, answer)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/register", self.register)
        app.router.add_post("/api/login", self.login)
        app.router.add_post("/api/logout", self.logout)
        app.router.add_post("/api/password", self.change_password)
        app.router.add_post("/api/home", self.move_home)
        app.router.add_get("/api/regions", self.regions)
        app.router.add_get("/api/games", self.list_games)
        app.router.add_get("/api/games/{gid}", self.get_game)
        app.router.add_get("/api/ratings", self.get_ratings)
        app.router.add_get("/ws", self.websocket)

    # --- delivering what the service says ----------------------------------------------

    def drain(self) -> None:
        """Queue what the service releases (``node.delivery`` holds what must wait)."""
        for item in self.service.take_outgoing(self.node.clock()):
            connection = self.connections.get(item.conn)
            if connection is not None:
                connection.queue.put_nowait(item)

    async def _write_loop(self, conn_id: str, connection: Connection) -> None:
        while True:
            item = await connection.queue.get()
            if isinstance(item, Close):
                await connection.ws.close(code=item.code, message=item.reason.encode()[:120])
                return
            text = item.text or json.dumps(item.message)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await connection.ws.send_str(text)

    # --- websocket ---------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        # The service refuses messages over MAX_MESSAGE_BYTES with close code 4003; aiohttp's own
        # limit (close 1009) only stops a frame so large it should not even be buffered.
        ws = web.WebSocketResponse(max_msg_size=4 * MAX_MESSAGE_BYTES, heartbeat=20)
        await ws.prepare(request)
        conn_id = f"c{next(self._ids)}"
        connection = Connection(ws)
        connection.writer = asyncio.create_task(self._write_loop(conn_id, connection))
        self.connections[conn_id] = connection
        self.service.connect(conn_id, self.node.clock())
        try:
            await self._read_loop(conn_id, ws)
        finally:
            self.service.disconnect(conn_id, self.node.clock())
            self.drain()
            connection.queue.put_nowait(Close(conn_id, 1000, "closed"))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.writer, 5)
            self.connections.pop(conn_id, None)
        return ws

    async def _read_loop(self, conn_id: str, ws: web.WebSocketResponse) -> None:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                self.service.receive(conn_id, message.data, self.node.clock())
                self.service.process(self.node.clock())
            elif message.type == WSMsgType.BINARY:
                self.service.receive(conn_id, "\x00", self.node.clock())  # not JSON: 4103
            elif message.type == WSMsgType.ERROR:
                too_large = ws.close_code == WSCloseCode.MESSAGE_TOO_BIG
                if too_large:
                    log.info("connection %s: message over %d bytes", conn_id, MAX_MESSAGE_BYTES)
                break
            self.drain()

    # --- HTTP: accounts ----------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        body = await _json_body(request, ("name", "password"))
        name, password, home = body["name"], body["password"], body.get("home")
        _check_password(password)
        if home is not None and home not in self._regions():
            raise _error(
                400, "bad_request", f"unknown region {home!r}; known: {sorted(self._regions())}"
            )
        password_hash = await asyncio.to_thread(PASSWORDS.hash, password)
        try:
            account = self.service.register(str(name), password_hash, home)
        except ServiceError as error:
            raise _error(
                409 if error.code == "name_taken" else 400, error.code, error.message
            ) from None
        self.drain()
        return web.json_response(
            {"uid": account.uid, "name": account.name, "home": account.home}, status=201
        )

    async def login(self, request: web.Request) -> web.Response:
        body = await _json_body(request, ("name", "password"))
        name, password = str(body["name"]), str(body["password"])
        candidates = self.service.login_candidates(name) or await self._pull_accounts(name)
        if not candidates:
            raise _error(404, "unknown_user", f"no player named {name!r} in any reachable region")
        for account in candidates:
            if await asyncio.to_thread(_verify, account.password_hash, password):
                token = self.service.start_session(account, self.node.clock())
                self.drain()
                return web.json_response(
                    {
                        "uid": account.uid,
                        "name": account.name,
                        "token": token,
                        "home": account.home,
                        "must_rename": account.must_rename,
                    }
                )
        raise _error(401, "bad_credentials", "wrong name or password")

    async def _pull_accounts(self, name: str) -> list[Any]:
        """The account is unknown here: ask the other regions for the accounts document."""
        engine = self.node.engine
        engine.request_sync(ACCOUNTS_DOC, self.node.clock())
        self.node.replicator.pump()
        deadline = self.node.clock() + ACCOUNT_PULL_S
        while self.node.clock() < deadline:
            await asyncio.sleep(0.02)
            self.service.process(self.node.clock())
            if found := self.service.login_candidates(name):
                return found
        return []

    async def _session(self, request: web.Request) -> Any:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        session = self.service.session_by_token(token) if token else None
        if session is None:
            raise _error(401, "unauthenticated", "a valid session token is required")
        return session

    async def logout(self, request: web.Request) -> web.Response:
        await self._session(request)
        self.service.end_session(request.headers["Authorization"].removeprefix("Bearer ").strip())
        self.drain()
        return web.json_response({})

    async def change_password(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        body = await _json_body(request, ("old", "new"))
        _check_password(body["new"])
        account = self.service.accounts.account(session.uid)
        if account is None or not await asyncio.to_thread(
            _verify, account.password_hash, str(body["old"])
        ):
            raise _error(401, "bad_credentials", "the old password is wrong")
        new_hash = await asyncio.to_thread(PASSWORDS.hash, str(body["new"]))
        self._update_account(session.uid, password_hash=new_hash)
        self.drain()
        return web.json_response({})

    async def move_home(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        region = (await _json_body(request, ("region",)))["region"]
        if region not in self._regions():
            raise _error(
                400, "bad_request", f"unknown region {region!r}; known: {sorted(self._regions())}"
            )
        account = self._update_account(session.uid, home=str(region))
        self.drain()
        return web.json_response({"home": account.home})

    def _update_account(self, uid: str, **changes: str) -> Any:
        """Password and home change only in the account's home region (docs/protocol.md)."""
        try:
            return self.service.update_account(uid, **changes)
        except ServiceError as error:
            raise _error(
                409 if error.code == "not_home" else 400, error.code, error.message
            ) from None

    def _regions(self) -> set[str]:
        return {self.node.config.region} | {p.region for p in self.node.engine.peers.values()}

    async def regions(self, request: web.Request) -> web.Response:
        engine = self.node.engine
        here = {
            "region": self.node.config.region,
            "node": self.node.config.node_id,
            "url": self.node.config.public_url,
            "up": True,
        }
        up = set(engine.up_peers())
        others = [
            {"region": p.region, "node": p.node_id, "url": p.url, "up": p.node_id in up}
            for p in sorted(engine.peers.values(), key=lambda p: p.region)
        ]
        return web.json_response({"here": self.node.config.region, "regions": [here, *others]})

    # --- HTTP: finished games ----------------------------------------------------------

    def _finished_games(self) -> list[ArchivedGame]:
        games: list[ArchivedGame] = []
        for doc_id in sorted(self.node.engine.docs):
            if doc_id.startswith(LOG_PREFIX):
                games.extend(read_archive(self.node.engine.docs[doc_id]).values())
        return sorted(games, key=lambda g: g.stamp, reverse=True)

    async def list_games(self, request: web.Request) -> web.Response:
        player = request.query.get("player", "").lower()
        games = [
            g
            for g in self._finished_games()
            if not player or player in (n.lower() for n in g.names)
        ]
        return web.json_response({"games": [_game_summary(g) for g in games]})

    async def get_game(self, request: web.Request) -> web.Response:
        gid = request.match_info["gid"]
        game = next((g for g in self._finished_games() if g.gid == gid), None)
        if game is None:
            raise _error(404, "not_found", f"no finished game {gid!r}")
        return web.json_response(
            {
                **_game_summary(game),
                "seed": game.seed,
                "first": game.first,
                "game": game.game,
                "moves": game.moves,
            }
        )

    async def get_ratings(self, request: web.Request) -> web.Response:
        """The Elo table derived from the game log (crdt_models/ratings.py), best first, under
        the accounts' current names; ``?limit=N`` keeps the first N rows, ``?names=a,b`` only
        those players."""
        engine = self.node.engine
        key = tuple((d, engine.digest(d)) for d in sorted(engine.docs) if d.startswith(LOG_PREFIX))
        if self._ratings[0] != key:  # recomputed only when the log changed
            table = ratings(self._finished_games())
            ranked = [dict(r.to_json(), rank=rank) for rank, r in enumerate(ranking(table), 1)]
            self._ratings = (key, {"ratings": ranked, "digest": table_digest(table)})
        answer = self._ratings[1]
        rows = [dict(row, name=self._current_name(row)) for row in answer["ratings"]]
        names = {n.lower() for n in request.query.get("names", "").split(",") if n}
        if names:
            rows = [row for row in rows if row["name"].lower() in names]
        limit = request.query.get("limit", "")
        if limit.isdigit():
            rows = rows[: int(limit)]
        region = self.node.config.region
        return web.json_response({**answer, "ratings": rows, "region": region}, headers=NO_STORE)

    def _current_name(self, row: dict[str, Any]) -> str:
        account = self.service.accounts.account(row["uid"])
        return account.name if account is not None else str(row["name"])


def _game_summary(game: ArchivedGame) -> dict[str, Any]:
    return {
        "gid": game.gid,
        "players": game.players,
        "names": game.names,
        "result": game.result,
        "finished": game.stamp,
        "moves": len(game.moves),
    }


def _verify(password_hash: str, password: str) -> bool:
    try:
        return PASSWORDS.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _check_password(password: Any) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise _error(
            400, "weak_password", f"passwords have at least {MIN_PASSWORD_CHARS} characters"
        )


_HTTP_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    413: web.HTTPRequestEntityTooLarge,
}


def _error(status: int, code: str, message: str) -> web.HTTPException:
    body = json.dumps({"error": {"code": code, "message": message}})
    return _HTTP_ERRORS[status](text=body, content_type="application/json")


async def _json_body(request: web.Request, required: tuple[str, ...]) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _error(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _error(400, "bad_request", "body is not JSON") from None
    if not isinstance(body, dict):
        raise _error(400, "bad_request", "body must be a JSON object")
    missing = [name for name in required if name not in body]
    if missing:
        raise _error(400, "bad_request", f"missing field(s): {', '.join(missing)}")
    return body
