"""The heartbeat sweep of player websockets (`player_api.sweep_heartbeats`): one timer for the
node pings the connections it heard nothing from and closes those that never answered."""

from __future__ import annotations

import asyncio
from typing import Any

from meridian.node.player_api import PING, Connection, sweep_heartbeats


class FakeSocket:
    def __init__(self) -> None:
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1


def test_a_silent_connection_is_pinged_then_closed_and_a_talking_one_is_left_alone() -> None:
    async def run() -> None:
        sockets = {name: FakeSocket() for name in ("talks", "answers", "silent")}
        ws: Any = sockets
        connections = {name: Connection(ws[name]) for name in sockets}
        assert sweep_heartbeats(connections) == []  # everyone was heard when it connected
        assert sweep_heartbeats(connections) == []  # nothing heard since: each one pinged
        await asyncio.sleep(0)
        assert [s.pings for s in sockets.values()] == [1, 1, 1]
        connections["talks"].heard = connections["answers"].heard = True  # a frame, a pong
        assert sweep_heartbeats(connections) == ["silent"]
        del connections["silent"]  # (the gateway closes it)
        for _ in range(4):
            connections["talks"].heard = True
            assert sweep_heartbeats(connections) == []
            await asyncio.sleep(0)
            connections["answers"].heard = connections["answers"].pinged  # its pong
        assert sockets["talks"].pings == 1  # a connection that talks is never pinged again
        assert sockets["answers"].pings == 3  # pinged every other sweep, answering each time

    asyncio.run(run())


def test_the_ping_is_queued_behind_what_waits_to_be_written() -> None:
    async def run() -> None:
        ws: Any = FakeSocket()
        connection = Connection(ws, heard=False)
        sweep_heartbeats({"c": connection})
        assert connection.pending == [PING]

    asyncio.run(run())
