"""The protocol client following a drain notice (node.client.PlayerClient): what the old node
says after the client moved never overrides what the new node greeted it with.

The two nodes are small websocket servers on 127.0.0.1 that speak just enough of the protocol
to script the race seen under a rolling upgrade: the old node lists an invitation in a push
that the client reads after the new node's greeting, which lists none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from meridian.node.client import PlayerClient

STALE = {"iid": "i-old", "from": "alice", "to": "bob", "resume": "", "clock": None}
YOU = {"uid": "u1", "name": "alice", "region": "eu", "home": "eu", "must_rename": False}

Script = Callable[[web.WebSocketResponse, dict[str, Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def _serve(script: Script) -> AsyncIterator[BaseTestServer]:
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await script(ws, json.loads(message.data))
        return ws

    app = web.Application()
    app.router.add_get("/ws", websocket)
    async with TestServer(app, host="127.0.0.1") as server:
        yield server


async def test_a_late_push_of_the_node_left_behind_does_not_override_the_new_nodes_state() -> None:
    new_greeted = asyncio.Event()

    async def new_node(ws: web.WebSocketResponse, hello: dict[str, Any]) -> None:
        # The greeting (here: no invitations) goes out before the hello reply, as a node's does.
        await ws.send_json({"type": "invites", "incoming": [], "outgoing": []})
        await asyncio.sleep(0.05)
        reply = {"re": hello["id"], "ok": True, "resume": "r3", "you": {**YOU, "region": "us"}}
        await ws.send_json({**reply, "games": []})
        new_greeted.set()

    async def old_node(ws: web.WebSocketResponse, hello: dict[str, Any]) -> None:
        await ws.send_json({"re": hello["id"], "ok": True, "resume": "r1", "you": YOU, "games": []})
        await ws.send_json({"type": "invites", "incoming": [], "outgoing": [STALE]})
        url = str(new.make_url("/")).rstrip("/")
        await ws.send_json({"type": "drain", "region": "us", "url": url, "resume": "r2"})
        await new_greeted.wait()
        await asyncio.sleep(0.05)  # read after the switch: the old node still lists it
        await ws.send_json({"type": "invites", "incoming": [], "outgoing": [STALE]})
        await ws.close(code=4104, message=b"your session continued on another connection")

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        new = await stack.enter_async_context(_serve(new_node))
        old = await stack.enter_async_context(_serve(old_node))
        client = PlayerClient(str(old.make_url("/")), http)
        client.token = "t1"
        await client.connect()
        moved = await client.wait_push("_moved", timeout=5)
        assert moved["region"] == "us"
        assert (await client.wait_push("invites", timeout=5))["outgoing"] == []  # the greeting
        await asyncio.sleep(0.3)  # the old node's late push has come and gone
        assert client.latest["invites"]["outgoing"] == []
        assert client.pushes.empty(), client.pushes.get_nowait()
        await client.close()


async def test_a_request_made_while_the_client_moves_goes_to_the_new_node() -> None:
    """An accept the old node took just as the player moved would start a game the new node
    may not hold yet; the player would accept again there and start a second one."""
    asked: dict[str, list[str]] = {"old": [], "new": []}
    taken_over = asyncio.Event()
    closing: list[asyncio.Task[None]] = []

    async def close_once_taken_over(ws: web.WebSocketResponse) -> None:
        await taken_over.wait()  # meanwhile the old node still answers what it is asked
        await asyncio.sleep(0.05)
        await ws.close(code=4104, message=b"your session continued on another connection")

    def serving(name: str, resume: str, region: str, delay: float) -> Script:
        async def script(ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
            if message["type"] != "hello":
                asked[name].append(message["type"])
                await ws.send_json({"re": message["id"], "ok": True, "game": f"g-{name}"})
                return
            await asyncio.sleep(delay)  # the new node's hello answer takes a while
            you = {**YOU, "region": region}
            await ws.send_json({"re": message["id"], "ok": True, "resume": resume, "you": you})
            if name == "new":
                taken_over.set()
                return
            url = str(new.make_url("/")).rstrip("/")
            await ws.send_json({"type": "drain", "region": "us", "url": url, "resume": "r2"})
            closing.append(asyncio.create_task(close_once_taken_over(ws)))

        return script

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        new = await stack.enter_async_context(_serve(serving("new", "r3", "us", 0.2)))
        old = await stack.enter_async_context(_serve(serving("old", "r1", "eu", 0.0)))
        client = PlayerClient(str(old.make_url("/")), http)
        client.token = "t1"
        await client.connect()
        await client.wait_push("drain", timeout=5)
        reply = await client.request("accept", invite="i1")  # the switch is still under way
        assert reply["game"] == "g-new"
        assert asked == {"old": [], "new": ["accept"]}
        await client.close()
