"""A fault-injecting TCP proxy for peer links between real node processes on loopback.

Each proxy listens on one port and forwards to one node. Between a pair of nodes, each node's
config names the other through a proxy, so every link between them crosses a proxy the
simulator (or a benchmark) controls:

* ``cut()``: close live connections and refuse new ones (a full partition of that path);
* ``block("forward" | "backward")``: silently drop the bytes of one direction while the TCP
  connection stays open (a one-way partition; the engine's heartbeat timeout notices it);
* ``latency_s``: delay every chunk in both directions, keeping order;
* ``heal()``: undo cut and block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger("meridian.sim.proxy")

Direction = Literal["forward", "backward"]
CHUNK_BYTES = 64 * 1024


@dataclass
class ProxyCounters:
    connections: int = 0
    refused: int = 0
    bytes_forward: int = 0
    bytes_backward: int = 0
    bytes_dropped: int = 0


@dataclass
class FaultProxy:
    """Forwards 127.0.0.1:listen_port to target_host:target_port, with injectable faults."""

    listen_port: int
    target_host: str
    target_port: int
    latency_s: float = 0.0
    counters: ProxyCounters = field(default_factory=ProxyCounters)

    def __post_init__(self) -> None:
        self._cut = False
        self._blocked: set[Direction] = set()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._drop_connections()

    def cut(self) -> None:
        self._cut = True
        self._drop_connections()

    def block(self, direction: Direction) -> None:
        self._blocked.add(direction)

    def heal(self) -> None:
        self._cut = False
        self._blocked.clear()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def _drop_connections(self) -> None:
        for task in list(self._connections):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.counters.refused += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.counters.connections += 1
        try:
            await self._bridge(reader, writer)
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _bridge(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            target_r, target_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            return
        try:
            forward = asyncio.create_task(self._pump(client_r, target_w, "forward"))
            backward = asyncio.create_task(self._pump(target_r, client_w, "backward"))
            try:
                await asyncio.wait([forward, backward], return_when=asyncio.FIRST_COMPLETED)
            finally:
                forward.cancel()
                backward.cancel()
                await asyncio.gather(forward, backward, return_exceptions=True)
        finally:
            target_w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(CHUNK_BYTES):
                if direction in self._blocked:
                    self.counters.bytes_dropped += len(chunk)
                    continue
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
                writer.write(chunk)
                await writer.drain()
                if direction == "forward":
                    self.counters.bytes_forward += len(chunk)
                else:
                    self.counters.bytes_backward += len(chunk)
