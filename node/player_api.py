"""The players' side of a node under aiohttp: accounts and games over HTTP, live play on ``/ws``.

Thin adapter around ``node.service.GameService`` (the sans-IO core): it hashes and checks
passwords in a bounded pool of threads (``node.password_pool``: argon2id is deliberately slow),
feeds websocket messages to the service, and sends what the service releases, in order per
connection. The service itself holds a reply or push until its change is durable and replicated
as ``ack_regions`` asks (``node.delivery``); the node calls `drain` again whenever the store
commits or a peer acks. An idle connection costs its socket and aiohttp's objects: no task, no
queue, no timer of its own (one heartbeat sweep serves them all; docs/performance.md,
"Connections").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from argon2.exceptions import InvalidHashError, VerificationError

from meridian.crdt_models.accounts import ACCOUNTS_DOC
from meridian.crdt_models.archive import LOG_PREFIX, ArchivedGame, read_archive
from meridian.crdt_models.ratings import ranking, ratings, table_digest
from meridian.node.account_flow import (
    AccountFlow,
    CheckPassword,
    Effect,
    Flow,
    HashPassword,
    RequestAccounts,
    known_regions,
    run_async,
)
from meridian.node.delivery import Close, Send
from meridian.node.password_pool import PASSWORD_COSTS, PasswordPool
from meridian.node.protocol import (
    MAX_BODY_BYTES,
    MAX_MESSAGE_BYTES,
    BodyT,
    CloseCode,
    ErrorCode,
    HomeBody,
    LoginBody,
    LogoutBody,
    PasswordBody,
    Refused,
    RegisterBody,
    decode_body,
    encode_message,
)
from meridian.node.service import GameService

if TYPE_CHECKING:
    from meridian.node.server import Node

log = logging.getLogger("meridian.players")

NO_STORE = {"Cache-Control": "no-store"}


# Heartbeats: every HEARTBEAT_S one sweep over the connections pings those the node heard
# nothing from since the last sweep, and closes those that stayed silent after such a ping (no
# pong within HEARTBEAT_S). One timer for the node instead of aiohttp's per-connection timers
# (two handles per connection, and a reset on every frame received).
HEARTBEAT_S = 20.0
# No permessage-deflate: its zlib state is about 300 KB per connection (15 times the whole
# budget of an idle player), for messages that are mostly a few hundred bytes.
COMPRESS = False
# A close sent by a connection's reading task (see `Connection`) waits at most this long for
# what is queued before it to be written and for the player to answer it; then the socket is
# closed anyway (a player that neither reads nor answers holds the task no longer).
CLOSE_WAIT_S = 10.0
PING = "ping"  # a `Connection.put` item: send a websocket ping


@dataclass(slots=True)
class Connection:
    """A player websocket and what waits to be written to it. A writer task exists only while
    there is something to write (an idle connection costs no task and no queue).

    A close is written after everything put before it; nothing put after it is. Who sends it
    matters when the player is still sending: a close decided while the connection's own task
    hands a message over (a flood, a protocol error) is sent by that task once the rest is
    written (`close_from_reader`), which then reads and drops the player's frames until the
    close is answered. Sent from another task, aiohttp closes the socket at once with the
    player's frames unread, the kernel answers them with a reset, and the player may lose the
    close frame (a 1006 instead of the code)."""

    ws: web.WebSocketResponse
    pending: list[Send | str] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None
    heard: bool = True  # a frame came in since the last heartbeat sweep
    pinged: bool = False  # the last sweep pinged it (and has heard nothing since)
    closing: Close | None = None  # the close to write after what is pending
    reading: bool = False  # the connection's task is handing a message over (see above)
    reader_closes: bool = False  # that task sends `closing`, not the writer

    def put(self, item: Send | Close | str) -> None:
        if self.closing is not None:
            return  # nothing is written after a close
        if isinstance(item, Close):
            self.closing, self.reader_closes = item, self.reading
        else:
            self.pending.append(item)
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Write what is pending, in order, then the close unless the reader sends it."""
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                for item in batch:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        if isinstance(item, str):
                            await self.ws.ping()
                        else:
                            await self.ws.send_str(item.text or encode_message(item.message))
            if self.closing is not None and not self.reader_closes:
                await self._close(self.closing)
        finally:
            self.writer = None

    async def close_from_reader(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """From the connection's own task: the close decided while it handed a message over,
        given up after `wait_s` (the writer is cancelled then)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._close_after_writes(), wait_s)

    async def _close_after_writes(self) -> None:
        if self.writer is not None:
            await self.writer
        if self.closing is not None:
            await self._close(self.closing)

    async def _close(self, close: Close) -> None:
        await self.ws.close(code=close.code, message=close.reason.encode()[:120])


def sweep_heartbeats(connections: dict[str, Connection]) -> list[str]:
    """One heartbeat sweep (see HEARTBEAT_S): pings the silent connections; returns the ids of
    those that did not answer the previous sweep's ping (to be closed)."""
    dead = []
    for conn_id, connection in connections.items():
        if connection.heard:
            connection.heard = connection.pinged = False
        elif connection.pinged:
            dead.append(conn_id)
        else:
            connection.pinged = True
            connection.put(PING)
    return dead


class PlayerGateway:
    """Routes for players; owns the websocket connections of this node."""

    def __init__(self, node: Node, service: GameService) -> None:
        self.node = node
        self.service = service
        # argon2id at the cost the config names (node.password_pool); a hash no password
        # matches is checked for an unknown name, so that it costs as much as a known one
        self.hasher = PASSWORD_COSTS[node.config.password_cost]
        self.flow = AccountFlow(service, self._regions, self.hasher.hash(secrets.token_urlsafe(24)))
        self.connections: dict[str, Connection] = {}
        self.passwords = PasswordPool(on_refused=self._count_password_refusal)
        self._ids = itertools.count(1)
        self._ratings: tuple[object, dict[str, Any]] = ((), {"ratings": []})  # (log key, answer)
        self._sweep: asyncio.TimerHandle | None = None  # the next heartbeat sweep

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/register", answers_refusals(self.register))
        app.router.add_post("/api/login", answers_refusals(self.login))
        app.router.add_post("/api/logout", answers_refusals(self.logout))
        app.router.add_post("/api/password", answers_refusals(self.change_password))
        app.router.add_post("/api/home", answers_refusals(self.move_home))
        app.router.add_get("/api/regions", answers_refusals(self.regions))
        app.router.add_get("/api/games", answers_refusals(self.list_games))
        app.router.add_get("/api/games/{gid}", answers_refusals(self.get_game))
        app.router.add_get("/api/ratings", answers_refusals(self.get_ratings))
        app.router.add_get("/ws", self.websocket)

    # --- delivering what the service says ----------------------------------------------

    def drain(self) -> None:
        """Queue what the service releases (``node.delivery`` holds what must wait)."""
        for item in self.service.take_outgoing(self.node.clock()):
            connection = self.connections.get(item.conn)
            if connection is not None:
                connection.put(item)

    # --- websocket ---------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        # The service refuses messages over MAX_MESSAGE_BYTES with close code 4003; aiohttp's own
        # limit (close 1009) only stops a frame so large it should not even be buffered.
        ws = web.WebSocketResponse(
            max_msg_size=4 * MAX_MESSAGE_BYTES, compress=COMPRESS, autoping=False
        )
        await ws.prepare(request)
        conn_id = f"c{next(self._ids)}"
        connection = Connection(ws)
        self.connections[conn_id] = connection
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(HEARTBEAT_S, self._heartbeats)
        self.service.connect(conn_id, self.node.clock())
        try:
            # The loop is here, not in a coroutine of its own: every frame awaiting for the
            # connection's whole life costs each idle player (about 0.25 KB a frame).
            async for message in ws:
                connection.heard = True
                if message.type == WSMsgType.PING:  # (autoping is off: pongs are heard here)
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.pong(message.data)
                    continue
                connection.reading = True
                try:
                    go_on = self._on_message(conn_id, ws, message)
                finally:
                    connection.reading = False
                if connection.reader_closes:
                    await connection.close_from_reader()
                    break
                if not go_on:
                    break
        finally:
            self.service.disconnect(conn_id, self.node.clock())
            self.drain()
            connection.put(Close(conn_id, 1000, "closed"))
            if connection.writer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.writer, 5)
            self.connections.pop(conn_id, None)
        return ws

    def _heartbeats(self) -> None:
        """Every HEARTBEAT_S while there are connections: `sweep_heartbeats`."""
        self._sweep = None
        for conn_id in sweep_heartbeats(self.connections):
            log.info("connection %s: no answer to a ping within %.0f s", conn_id, HEARTBEAT_S)
            self.connections[conn_id].put(Close(conn_id, CloseCode.IDLE, "no answer to ping"))
        if self.connections:
            self._sweep = asyncio.get_running_loop().call_later(HEARTBEAT_S, self._heartbeats)

    def _on_message(self, conn_id: str, ws: web.WebSocketResponse, message: WSMessage) -> bool:
        """Hand one websocket message (not a ping) to the service; False ends the connection."""
        if message.type == WSMsgType.TEXT:
            self.service.receive(conn_id, message.data, self.node.clock())
            self.service.process(self.node.clock())
        elif message.type == WSMsgType.PONG:
            return True
        elif message.type == WSMsgType.BINARY:
            self.service.receive(conn_id, "\x00", self.node.clock())  # not JSON: 4103
        elif message.type == WSMsgType.ERROR:
            if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
                log.info("connection %s: message over %d bytes", conn_id, MAX_MESSAGE_BYTES)
            return False
        self.drain()
        return True

    # --- HTTP: accounts ----------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        body = await read_body(request, RegisterBody)
        return await self.run(self.flow.register(body, _address(request), self.node.clock()))

    async def login(self, request: web.Request) -> web.Response:
        body = await read_body(request, LoginBody)
        return await self.run(self.flow.login(body, _address(request), self.node.clock()))

    async def logout(self, request: web.Request) -> web.Response:
        await read_body(request, LogoutBody)
        return await self.run(self.flow.logout(_bearer(request)))

    async def change_password(self, request: web.Request) -> web.Response:
        body = await read_body(request, PasswordBody)
        flow = self.flow.change_password(
            _bearer(request), body, _address(request), self.node.clock()
        )
        return await self.run(flow)

    async def move_home(self, request: web.Request) -> web.Response:
        body = await read_body(request, HomeBody)
        return await self.run(self.flow.move_home(_bearer(request), body))

    async def run(self, flow: Flow) -> web.Response:
        """Run an account flow (``node.account_flow``), performing its effects here."""
        try:
            answer = await run_async(flow, self._perform)
        finally:
            self.node.host.deliver_output()  # (and arms the service's next deadline)
        return web.json_response(answer.body, status=answer.status)

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, HashPassword):
            return await self.passwords.run(self.hasher.hash, effect.password)
        if isinstance(effect, CheckPassword):
            return await self.passwords.run(self._verify, effect.password_hash, effect.password)
        if isinstance(effect, RequestAccounts):
            self.node.engine.request_sync(ACCOUNTS_DOC, self.node.clock())
            self.node.replicator.pump()
            return None
        await asyncio.sleep(effect.seconds)
        return self.node.clock()

    def _verify(self, password_hash: str, password: str) -> bool:
        """Does `password` match? (argon2id at the cost `password_hash` records; a pool thread)"""
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _count_password_refusal(self) -> None:
        self.service.limits.counts["password_checks"] += 1

    def _regions(self) -> set[str]:
        return known_regions(self.node.config.region, self.node.engine)

    async def regions(self, request: web.Request) -> web.Response:
        """Every node process (several per region where a region runs several), with its
        player connections as its load observer last published them (None: no fresh entry),
        so that a page can spread its players over a region's processes."""
        engine = self.node.engine
        players = {entry.node: entry.connections for entry in self.node.observer.view().nodes}
        here = {
            "region": self.node.config.region,
            "node": self.node.config.node_id,
            "url": self.node.config.public_url,
            "up": True,
            "players": len(self.service.conns),
        }
        up = set(engine.up_peers())
        others = [
            {
                "region": p.region,
                "node": p.node_id,
                "url": p.url,
                "up": p.node_id in up,
                "players": players.get(p.node_id),
            }
            for p in sorted(engine.peers.values(), key=lambda p: (p.region, p.node_id))
        ]
        return web.json_response(
            {
                "here": self.node.config.region,
                "node": self.node.config.node_id,
                "regions": [here, *others],
            }
        )

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
            raise Refused(ErrorCode.NOT_FOUND, f"no finished game {gid[:64]!r}")
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


def _address(request: web.Request) -> str:
    return request.remote or ""


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""


def refusal_response(refused: Refused) -> web.Response:
    return web.json_response(refused.body(), status=refused.status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answers_refusals(handler: Handler) -> Handler:
    """A route whose `Refused` becomes its JSON error answer (never a 500)."""

    @functools.wraps(handler)
    async def route(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as refused:
            return refusal_response(refused)

    return route


async def read_body(
    request: web.Request, body_type: type[BodyT], *, limit: int = MAX_BODY_BYTES
) -> BodyT:
    """The request's body decoded once into its schema type (`node.protocol`), or `Refused`."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(ErrorCode.TOO_LARGE, f"body over {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(ErrorCode.TOO_LARGE, f"body over {limit} bytes") from None
    if len(raw) > limit:
        raise Refused(ErrorCode.TOO_LARGE, f"body over {limit} bytes")
    return decode_body(raw, body_type)
