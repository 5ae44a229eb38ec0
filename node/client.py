"""An asyncio client of the player protocol (docs/protocol.md), used by bots, tests and benchmarks.

`PlayerClient` holds one player's HTTP session token and one websocket: `request(type, **fields)`
sends an envelope and waits for the reply with the same id; server pushes land in `pushes` (an
asyncio.Queue) and in `latest` (the newest push of each type). Refused requests raise
`RequestError` with the protocol's error code; a request on a dropped websocket raises it with
the code ``disconnected``. When the websocket closes, a ``{"type": "_closed", "code": ...}``
pseudo-push is queued. `connect(resume=True, base_url=...)` continues the session on another
node (failover, see docs/protocol.md *Reconnecting*).

A ``drain`` push (the node is shutting down, docs/protocol.md *Drain*) is followed by itself
unless ``follow_drain=False``: the client resumes the session at the region the push names on a
second websocket, switches to it once its hello is answered, and queues a ``{"type": "_moved",
"region", "url"}`` pseudo-push. A request made meanwhile waits for the switch and goes to the new
node: the old node would still serve it, but what it wrote then (a game an accept started) may
not have reached the new node when the player continues there. If the new region refuses, the
client closes the old connection and the usual failover applies (with the notice's resume token).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

REQUEST_TIMEOUT_S = 15.0
RATE_LIMIT_RETRIES = 5
RATE_LIMIT_PAUSE_S = 0.25

# Every frame a node sends is a JSON object; msgspec reads one several times faster than the
# standard library (a bot or benchmark reads a push per move and per public-list change).
_read_json = msgspec.json.Decoder().decode


class RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PlayerClient:
    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        queue_pushes: bool = True,
        follow_drain: bool = True,
    ) -> None:
        """`queue_pushes=False` keeps only `latest` and `games` (for clients nobody drains).

        `on_push`, if set, is called with every push as it arrives (benchmarks time them).
        """
        self.base_url = base_url.rstrip("/")
        self.queue_pushes = queue_pushes
        self.follow_drain = follow_drain
        self.on_push: Callable[[dict[str, Any]], None] | None = None
        self.http = session
        self.token = ""
        self.resume = ""
        self.you: dict[str, Any] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.latest: dict[str, dict[str, Any]] = {}
        self.games: dict[str, dict[str, Any]] = {}
        self.unmatched: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._sent_on: dict[str, aiohttp.ClientWebSocketResponse] = {}  # request id -> socket
        self._following: asyncio.Task[bool] | None = None
        # While a drain is followed: the new node's pushes, held until its hello reply; then
        # the connection left behind, whose later pushes are dropped (see `_switch_to`).
        self._held: dict[aiohttp.ClientWebSocketResponse, list[dict[str, Any]]] = {}
        self._left_behind: set[aiohttp.ClientWebSocketResponse] = set()

    # --- HTTP ----------------------------------------------------------------------------

    async def post(self, path: str, body: dict[str, Any], token: str = "") -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.post(f"{self.base_url}{path}", json=body, headers=headers) as response:
            payload: dict[str, Any] = await response.json()
            if response.status >= 400:
                error = payload.get("error", {})
                raise RequestError(
                    error.get("code", str(response.status)), error.get("message", "")
                )
            return payload

    async def register(self, name: str, password: str, home: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "password": password}
        if home:
            body["home"] = home
        return await self.post("/api/register", body)

    async def login(self, name: str, password: str) -> dict[str, Any]:
        reply = await self.post("/api/login", {"name": name, "password": password})
        self.token = reply["token"]
        return reply

    # --- websocket -----------------------------------------------------------------------

    async def connect(
        self, *, resume: bool = False, base_url: str | None = None, heartbeat: float | None = 20
    ) -> dict[str, Any]:
        """Open /ws and say hello (with the resume token if `resume`, else the login token).

        `base_url` switches to another node first. If the hello is refused, the websocket is
        closed again and the RequestError propagates.
        """
        if base_url is not None:
            self.base_url = base_url.rstrip("/")
        ws_url = self.base_url.replace("http", "ws", 1) + "/ws"
        self.ws = await self.http.ws_connect(ws_url, heartbeat=heartbeat)
        self.closed = None
        self._reader = asyncio.create_task(self._read_loop(self.ws))
        hello: dict[str, Any] = {"resume": self.resume} if resume else {"token": self.token}
        if seen := self.seen():
            hello["seen"] = seen  # a node lacking what we were shown answers with a rollback
        try:
            reply = await self.request("hello", **hello)
        except BaseException:
            ws, self.ws = self.ws, None  # its reader then ends quietly: no _closed push
            await ws.close()
            raise
        self.resume = reply["resume"]
        self.you = reply["you"]
        return reply

    def seen(self) -> dict[str, dict[str, Any]]:
        """hello's ``seen``: the ply and head move of each live game as last shown here."""
        return {
            gid: {"ply": push["ply"], "head": push["head"]}
            for gid, push in self.games.items()
            if push.get("status") == "live" and "head" in push
        }

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its reply; a `rate_limited` refusal is retried after a
        pause (the server allows 20 messages/s per connection), other refusals raise."""
        for attempt in range(RATE_LIMIT_RETRIES):
            try:
                return await self._request_once(kind, fields)
            except RequestError as error:
                if error.code != "rate_limited" or attempt == RATE_LIMIT_RETRIES - 1:
                    raise
                await asyncio.sleep(RATE_LIMIT_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")

    async def _request_once(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        following = self._following
        if following is not None and not following.done():
            with contextlib.suppress(Exception):  # failed: the old connection is closed
                await asyncio.shield(following)
        if self.ws is None or self.ws.closed:
            raise RequestError("disconnected", "the websocket is closed")
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._sent_on[request_id] = self.ws
        try:
            await self.ws.send_str(json.dumps({"id": request_id, "type": kind, **fields}))
            reply = await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        except (ConnectionError, RuntimeError) as lost:  # aiohttp: closing or reset transport
            raise RequestError("disconnected", str(lost) or "the websocket is closed") from None
        finally:
            self._waiting.pop(request_id, None)
            self._sent_on.pop(request_id, None)
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise RequestError(error.get("code", "error"), error.get("message", ""))
        return reply

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = ""
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                self._take(ws, _read_json(message.data))
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
                reason = str(message.extra or "")
                break
            elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
        following = self._following
        if ws is self.ws and following is not None and not following.done():
            # The old node closes this connection (4104) as soon as the session continues on
            # the new one, which may be before the new node's hello reply is read: wait for
            # the move; if it succeeded, this end is no news (the bot would stop on 4104).
            with contextlib.suppress(Exception):
                await asyncio.shield(following)
        self._left_behind.discard(ws)
        if ws is not self.ws:
            # A connection given up for a newer one (failover, drain): its end is no news, but
            # what was asked on it and not answered will not be.
            self._fail_waiters(ws)
            return
        self.closed = (ws.close_code, reason)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(RequestError("disconnected", f"closed with {ws.close_code}"))
        self.pushes.put_nowait({"type": "_closed", "code": ws.close_code, "reason": reason})

    def _fail_waiters(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        for request_id, sent_on in list(self._sent_on.items()):
            waiter = self._waiting.get(request_id)
            if sent_on is ws and waiter is not None and not waiter.done():
                waiter.set_exception(RequestError("disconnected", "sent to a node left behind"))

    def _take(self, ws: aiohttp.ClientWebSocketResponse, data: dict[str, Any]) -> None:
        """A message read on `ws`: a reply always counts; a push of a node left behind is
        dropped, and a new node's push waits for that node's hello reply."""
        if "re" not in data:
            if ws in self._left_behind:
                return
            held = self._held.get(ws)
            if held is not None:
                held.append(data)
                return
        self._deliver(data)

    def _deliver(self, data: dict[str, Any]) -> None:
        waiter = self._waiting.get(data.get("re") or "")
        if waiter is not None and not waiter.done():
            waiter.set_result(data)
            return
        if "re" in data:
            self.unmatched.append(data)  # a reply to a request sent without `request`
            return
        if "type" in data:
            self.latest[data["type"]] = data
            if data["type"] == "game":
                self.games[data["game"]] = data
            if data["type"] == "drain" and self.follow_drain and self._following is None:
                self._following = asyncio.create_task(self.follow_drain_notice(data))
            if self.queue_pushes:
                self.pushes.put_nowait(data)
            if self.on_push is not None:
                self.on_push(data)

    async def follow_drain_notice(self, notice: dict[str, Any]) -> bool:
        """Continue the session at the notice's ``url`` with its ``resume`` token (see module
        docstring); True once the client talks to the new node.

        If the new node cannot be reached or refuses, the old connection is closed at once (the
        old node is going away, and its resume token was replaced by the notice's): the usual
        ``_closed`` pseudo-push follows and the caller fails over with the new token."""
        old = self.ws
        try:
            if await self._switch_to(str(notice["url"]), str(notice["resume"])):
                return True
        except (aiohttp.ClientError, OSError, TimeoutError, RequestError, KeyError):
            pass
        finally:
            self._following = None
        self.resume = str(notice.get("resume") or self.resume)
        if old is not None and old is self.ws:
            await old.close()
        return False

    async def _switch_to(self, url: str, resume: str) -> bool:
        """Continue the session on the node at `url`. Its pushes (the whole state it greets
        with: lobby, invitations, games) are held until its hello reply, and then delivered
        after everything the old node said until then; whatever the old node says after that
        is dropped, so a late push of the old node (an invitation it still listed) never
        overrides the new node's state."""
        ws = await self.http.ws_connect(url.rstrip("/").replace("http", "ws", 1) + "/ws")
        held = self._held[ws] = []
        reader = asyncio.create_task(self._read_loop(ws))
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        hello: dict[str, Any] = {"id": request_id, "type": "hello", "resume": resume}
        if seen := self.seen():
            hello["seen"] = seen
        try:
            await ws.send_str(json.dumps(hello))
            reply = await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        finally:
            self._waiting.pop(request_id, None)
            self._held.pop(ws, None)
        if not reply.get("ok"):
            await ws.close()  # not self.ws: its reader ends quietly
            return False
        if self.ws is not None:
            self._left_behind.add(self.ws)
        self.ws, self._reader, self.closed = ws, reader, None
        self.base_url = url.rstrip("/")
        self.resume, self.you = reply["resume"], reply["you"]
        if self.queue_pushes:
            moved = {"type": "_moved", "region": self.you.get("region"), "url": self.base_url}
            self.pushes.put_nowait(moved)
        for push in held:
            self._deliver(push)
        return True

    # A timeout parameter with a default, not a caller's asyncio.timeout: a push that never comes
    # fails with an error naming the push awaited instead of hanging the caller.
    async def wait_push(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:  # noqa: ASYNC109
        """The next push of this type whose fields equal `match` (earlier others are skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} push matching {match} within {timeout} s")
            push = await asyncio.wait_for(self.pushes.get(), remaining)
            if push["type"] == kind and all(push.get(k) == v for k, v in match.items()):
                return push

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
