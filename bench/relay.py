"""The bare websocket relay `bench/service.py` compares Meridian with.

The server is the least a two-player game server must do: an aiohttp websocket endpoint that
knows each connected player by name, parses each message's JSON to find its addressee, forwards
the message text unchanged and answers the sender with a small acknowledgement. No accounts,
rules, storage or replication. Run it as its own process (``python bench/relay.py --port N``)
so that its CPU and memory are measured apart from the load generator.

`RelayClient` lets the benchmark's players (`bench/service.py` ``BenchPlayer``) drive the relay
unchanged: it speaks the few requests they send (``invite``, ``accept``, ``move``) and turns what
the relay forwards into the ``invites`` and ``game`` pushes they expect. The game is a stand-in
kept on the clients (a fixed list of legal moves, `GAME_PLIES` plies, then a rematch): the
relay's cost per move does not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

GAME_PLIES = 60  # about a Battleline game's length, so rematches come as often
LEGAL = [{"card": n} for n in range(7)]


# --- the server ----------------------------------------------------------------------------


async def relay_socket(request: web.Request) -> web.WebSocketResponse:
    """One player's websocket: forward each message to its ``to``, acknowledge to the sender."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    players: dict[str, web.WebSocketResponse] = request.app["players"]
    name = request.query.get("name", "")
    players[name] = ws
    try:
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            target = players.get(message.get("to", ""))
            if target is not None and not target.closed:
                await target.send_str(frame.data)
            await ws.send_str(json.dumps({"id": message.get("id"), "ok": target is not None}))
    finally:
        if players.get(name) is ws:
            del players[name]
    return ws


def relay_app() -> web.Application:
    app = web.Application()
    app["players"] = {}
    app.router.add_get("/ws", relay_socket)
    return app


# --- the client ------------------------------------------------------------------------------


class RelayClient:
    """The part of `node.client.PlayerClient` the benchmark's players use, over the relay."""

    def __init__(self, base_url: str, http: aiohttp.ClientSession, name: str) -> None:
        self.base_url, self.http = base_url.rstrip("/"), http
        self.you: dict[str, Any] = {"name": name}
        self.on_push: Callable[[dict[str, Any]], None] | None = None
        self.latest: dict[str, dict[str, Any]] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed: tuple[int | None, str] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._invites: dict[str, str] = {}  # invitation id -> who sent it
        self._games: dict[str, dict[str, Any]] = {}  # game id -> {"opponent", "seat", "ply"}

    @property
    def name(self) -> str:
        return str(self.you["name"])

    async def connect(self) -> None:
        ws_url = self.base_url.replace("http", "ws", 1) + f"/ws?name={self.name}"
        self.ws = await self.http.ws_connect(ws_url, heartbeat=None)
        self._reader = asyncio.create_task(self._read_loop(self.ws))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        if kind == "invite":
            iid = f"{self.name}-{next(self._ids)}"
            return await self._send({"to": fields["to"], "type": "invite", "iid": iid})
        if kind == "accept":
            iid = fields["invite"]
            inviter = self._invites.pop(iid)
            self._start(iid, inviter, seat=1)  # before the inviter's first move can arrive
            return await self._send({"to": inviter, "type": "start", "game": iid})
        if kind == "move":
            game = self._games[fields["game"]]
            ply = game["ply"]
            reply = await self._send(
                {"to": game["opponent"], "type": "move", "game": fields["game"], "ply": ply}
                | {"move": fields["move"]}
            )
            self._advance(fields["game"], ply + 1)
            return reply
        raise ValueError(f"the relay client does not send {kind!r}")

    async def _send(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        rid = next(self._ids)
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = waiting
        await self.ws.send_str(json.dumps(message | {"id": rid, "from": self.name}))
        return await waiting

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self._received(json.loads(frame.data))
        self.closed = (ws.close_code, "")

    def _received(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind is None:  # an acknowledgement
            waiting = self._waiting.pop(message["id"], None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
        elif kind == "invite":
            self._invites[message["iid"]] = message["from"]
            incoming = [{"iid": iid, "from": who} for iid, who in self._invites.items()]
            self._push({"type": "invites", "incoming": incoming})
        elif kind == "start":
            self._start(message["game"], message["from"], seat=0)
        elif kind == "move":
            self._advance(message["game"], message["ply"] + 1)

    def _start(self, gid: str, opponent: str, seat: int) -> None:
        self._games[gid] = {"opponent": opponent, "seat": seat, "ply": 0}
        self._advance(gid, 0)

    def _advance(self, gid: str, ply: int) -> None:
        """The game at `ply` (seat 0 moves at even plies), pushed to the player."""
        game = self._games[gid]
        if ply < game["ply"]:
            return  # the opponent's answer was read before the acknowledgement of our move
        game["ply"] = ply
        to_move = ply % 2
        self._push(
            {
                "type": "game",
                "game": gid,
                "you": game["seat"],
                "ply": ply,
                "to_move": to_move,
                "legal": LEGAL if to_move == game["seat"] else [],
                "status": "live" if ply < GAME_PLIES else "finished",
            }
        )

    def _push(self, push: dict[str, Any]) -> None:
        self.latest[push["type"]] = push
        if self.on_push is not None:
            self.on_push(push)


def main() -> None:
    parser = argparse.ArgumentParser(description="the bare websocket relay of bench/service.py")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(relay_app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
