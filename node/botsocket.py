"""The websocket transport of the one bot: `node.botworld.PlayerSide` over `PlayerClient`.

`WebsocketSide` is one player program's connection: HTTP calls and one websocket (a new
`node.client.PlayerClient` per connection, so that nothing of an old connection reaches the
bot), whose replies and pushes go to the bot's callbacks; a refusal or a failure is a reply
with ``ok`` false (``unreachable`` when no answer came). A drain notice is followed by the
client itself (its ``_moved`` pseudo-push moves `WebsocketSide.node`). `WebsocketPlayers` makes
them for a crew of bots. ``meridian bot`` and the demo (`node.bots`) and ``meridian sim
cluster`` (`sim.cluster`) use them; whoever runs the bots provides the `Loop`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import aiohttp

from meridian.node.botworld import Done, Reply
from meridian.node.client import PlayerClient, RequestError

ABNORMAL_CLOSE = 1006  # RFC 6455: the connection ended without a close frame


class Loop(Protocol):
    """What a `WebsocketSide` needs from whoever runs the bots."""

    http: aiohttp.ClientSession

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None: ...

    def url(self, node: str) -> str: ...


def _failure(code: str, message: str) -> Reply:
    return {"ok": False, "error": {"code": code, "message": message}}


class WebsocketSide:
    """A bot's client on a real websocket (`node.botworld.PlayerSide` over a `PlayerClient`;
    a refusal or a failure is a reply with ``ok`` false, ``unreachable`` for no answer)."""

    def __init__(self, loop: Loop, region: str, nodes: Sequence[str]) -> None:
        self.loop = loop
        self.region = region
        self.nodes = list(nodes)
        self.node: str | None = None
        self.on_push: Callable[[Reply], None] = lambda push: None
        self.on_closed: Callable[[int, str], None] = lambda code, reason: None
        self.on_news: Callable[[], None] = lambda: None  # after each reply and push
        self._client: PlayerClient | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        ws = self._client.ws if self._client is not None else None
        return ws is not None and not ws.closed

    @property
    def region_name(self) -> str:
        """The region the node of the connection says it is."""
        return str(self._client.you.get("region", "?")) if self._client is not None else "?"

    def http(self, node: str, path: str, body: Reply, done: Done) -> None:
        client = PlayerClient(self.loop.url(node), self.loop.http)
        self.loop.spawn(self._call(lambda: client.post(path, body), done))

    def connect(self, node: str, hello: Reply, done: Done) -> None:
        self.close()
        client = PlayerClient(self.loop.url(node), self.loop.http)
        client.token, client.resume = str(hello.get("token", "")), str(hello.get("resume", ""))
        # The client's hello says what it was shown (``seen``) from the games it knows.
        client.games = {
            gid: {"status": "live", **seen} for gid, seen in hello.get("seen", {}).items()
        }

        async def opened() -> Reply:
            reply = await client.connect(resume="resume" in hello)
            self._client, self.node = client, node
            self._reader = asyncio.create_task(self._read(client))
            return reply

        self.loop.spawn(self._call(opened, done))

    def request(self, kind: str, fields: Reply, done: Done) -> None:
        if self._client is None or not self.connected:
            done(_failure("disconnected", "the websocket is closed"))
            return
        client = self._client
        self.loop.spawn(self._call(lambda: client.request(kind, **fields), done))

    def close(self) -> None:
        client, self._client, self.node = self._client, None, None
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if client is not None:
            self.loop.spawn(client.close())

    async def _call(self, call: Callable[[], Awaitable[Reply]], done: Done) -> None:
        # The call starts inside the task: a task cancelled before it ran leaves no coroutine
        # that was never awaited.
        try:
            reply = await call()
        except RequestError as error:
            reply = _failure(error.code, error.message)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            reply = _failure("unreachable", str(error) or type(error).__name__)
        done({"ok": True, **reply} if "ok" not in reply else reply)
        self.on_news()

    async def _read(self, client: PlayerClient) -> None:
        while True:
            push = await client.pushes.get()
            if push["type"] == "_moved":  # the client followed a drain notice
                self.node = next((n for n in self.nodes if self.loop.url(n) == push["url"]), None)
            if push["type"] != "_closed":
                self.on_push(push)
                self.on_news()
                continue
            if client is self._client:
                self._client, self.node = None, None
                self.on_closed(int(push.get("code") or ABNORMAL_CLOSE), str(push.get("reason", "")))
                self.on_news()
            return


class WebsocketPlayers:
    """`node.botworld.Players` whose clients are `WebsocketSide`s."""

    def __init__(self, loop: Loop, regions: Sequence[str], now: Callable[[], float]) -> None:
        self.loop = loop
        self.regions = list(regions)
        self.clients: list[WebsocketSide] = []
        self.on_news: Callable[[], None] = lambda: None
        self._now = now

    def new_client(self, region: str) -> WebsocketSide:
        client = WebsocketSide(self.loop, region, self.regions)
        client.on_news = self.on_news
        self.clients.append(client)
        return client

    def now(self) -> float:
        return self._now()

    def close(self) -> None:
        for client in self.clients:
            client.close()
