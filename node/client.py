"""An asyncio client of the player protocol (docs/protocol.md), used by bots, tests and benchmarks.

`PlayerClient` holds one player's HTTP session token and one websocket: `request(type, **fields)`
sends an envelope and waits for the reply with the same id; server pushes land in `pushes` (an
asyncio.Queue) and in `latest` (the newest push of each type). Refused requests raise
`RequestError` with the protocol's error code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

import aiohttp

REQUEST_TIMEOUT_S = 15.0


class RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PlayerClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = session
        self.token = ""
        self.resume = ""
        self.you: dict[str, Any] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.latest: dict[str, dict[str, Any]] = {}
        self.games: dict[str, dict[str, Any]] = {}
        self.closed: tuple[int | None, str] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

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

    async def connect(self, *, resume: bool = False) -> dict[str, Any]:
        """Open /ws on base_url and say hello (with the resume token if `resume`)."""
        ws_url = self.base_url.replace("http", "ws", 1) + "/ws"
        self.ws = await self.http.ws_connect(ws_url, heartbeat=20)
        self.closed = None
        self._reader = asyncio.create_task(self._read_loop(self.ws))
        hello = {"resume": self.resume} if resume else {"token": self.token}
        reply = await self.request("hello", **hello)
        self.resume = reply["resume"]
        self.you = reply["you"]
        return reply

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        if self.ws is None or self.ws.closed:
            raise RequestError("disconnected", "the websocket is closed")
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        await self.ws.send_str(json.dumps({"id": request_id, "type": kind, **fields}))
        try:
            reply = await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        finally:
            self._waiting.pop(request_id, None)
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise RequestError(error.get("code", "error"), error.get("message", ""))
        return reply

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            waiter = self._waiting.get(data.get("re") or "")
            if waiter is not None and not waiter.done():
                waiter.set_result(data)
                continue
            if "type" in data:
                self.latest[data["type"]] = data
                if data["type"] == "game":
                    self.games[data["game"]] = data
                self.pushes.put_nowait(data)
        self.closed = (ws.close_code, str(ws.extra) if hasattr(ws, "extra") else "")
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(RequestError("disconnected", f"closed with {ws.close_code}"))
        self.pushes.put_nowait({"type": "_closed", "code": ws.close_code})

    async def wait_push(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
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
