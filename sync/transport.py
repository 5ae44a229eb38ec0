"""aiohttp websocket transport for peer links: accept on ``/peer``, dial seeds with backoff.

Either side may dial; the engine collapses duplicate links to one. A dialer whose peer is already
linked (through the other side's dial) idles until that link drops, so the pair does not keep
re-dialing. Reconnects back off exponentially with jitter, capped at ``reconnect_max_s``.
Liveness comes from this link (heartbeats and timeouts in the engine), never from discovery.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from meridian.sync.engine import LinkState
from meridian.sync.replicator import Replicator

log = logging.getLogger("meridian.sync")

PEER_PATH = "/peer"
CLOSE_CODE_NORMAL = 1000
CLOSE_REASON_BYTES = 120


def peer_ws_url(base_url: str) -> str:
    """http(s)://host:port -> ws(s)://host:port/peer."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, PEER_PATH, "", ""))


class WebSocketLink:
    """One peer websocket: an ordered send queue drained by a writer task."""

    def __init__(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._close_reason = "closed"
        self._writer = asyncio.create_task(self._write_loop())

    def send_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._queue.put_nowait(frame)

    def close_soon(self, reason: str) -> None:
        self._close_reason = reason
        self._queue.put_nowait(None)

    async def _write_loop(self) -> None:
        try:
            while (frame := await self._queue.get()) is not None:
                await self.ws.send_bytes(frame)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            pass  # the reader sees the close and reports it
        message = self._close_reason.encode()[:CLOSE_REASON_BYTES]
        await self.ws.close(code=CLOSE_CODE_NORMAL, message=message)

    async def finish(self) -> None:
        self._queue.put_nowait(None)
        await asyncio.gather(self._writer, return_exceptions=True)


@dataclass(frozen=True)
class LinkOutcome:
    peer_id: str | None  # who answered (from its HELLO), even if the link was refused
    was_up: bool  # whether the handshake completed


async def run_link(
    replicator: Replicator,
    ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    *,
    initiator: bool,
) -> LinkOutcome:
    """Feed one websocket to the engine until it closes.

    Returns the peer's node id as soon as its HELLO named it (even if the link was then refused,
    e.g. as a duplicate), so a dialer learns which node a URL reaches.
    """
    link = WebSocketLink(ws)
    link_id = replicator.open_link(link, initiator=initiator)
    peer_id: str | None = None
    was_up = False
    reason = "connection closed"
    try:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                replicator.receive(link_id, message.data)
                peer_id = peer_id or replicator.engine.link_peer(link_id)
                was_up = was_up or replicator.engine.link_state(link_id) is LinkState.UP
            elif message.type == aiohttp.WSMsgType.TEXT:
                reason = "text frame received; the peer protocol is binary"
                break
            elif message.type == aiohttp.WSMsgType.ERROR:
                reason = f"websocket error: {ws.exception()}"
                break
    finally:
        replicator.link_lost(link_id, reason)
        await link.finish()
    return LinkOutcome(peer_id, was_up)


class PeerAcceptor:
    """The ``/peer`` route: incoming links from other nodes."""

    def __init__(self, replicator: Replicator, max_frame_bytes: int) -> None:
        self.replicator = replicator
        self.max_frame_bytes = max_frame_bytes

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.max_frame_bytes, autoping=True)
        await ws.prepare(request)
        await run_link(self.replicator, ws, initiator=False)
        return ws


class PeerDialer:
    """Keeps one outgoing link per known peer URL alive, with capped jittered backoff."""

    def __init__(
        self,
        replicator: Replicator,
        *,
        min_backoff_s: float,
        max_backoff_s: float,
        max_frame_bytes: int,
        connect_timeout_s: float,
        rng: random.Random,
    ) -> None:
        self.replicator = replicator
        self.connect_timeout_s = connect_timeout_s
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_frame_bytes = max_frame_bytes
        self.rng = rng
        self.url_peer: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def add(self, url: str) -> None:
        """Start dialing a peer URL (idempotent)."""
        if url not in self._tasks:
            self._tasks[url] = asyncio.create_task(self._dial_loop(url), name=f"dial {url}")

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _dial_loop(self, url: str) -> None:
        backoff = self.min_backoff_s
        failures = 0
        while True:
            known = self.url_peer.get(url)
            if known is not None and known in self.replicator.engine.up_peers():
                await asyncio.sleep(self.max_backoff_s * self.rng.uniform(0.5, 1.0))
                continue
            outcome = await self._dial_once(url, failures)
            if outcome.peer_id is not None:
                self.url_peer[url] = outcome.peer_id
            if outcome.was_up:
                backoff, failures = self.min_backoff_s, 0
            else:
                failures += 1
            await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.0))
            backoff = min(self.max_backoff_s, backoff * 2)

    async def _dial_once(self, url: str, failures: int) -> LinkOutcome:
        if self._session is None:
            # Without a connect timeout a dial made during a partition waits out the kernel's
            # SYN retries, which delays the reconnect long after the network heals.
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self.connect_timeout_s, sock_connect=self.connect_timeout_s
            )
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.ws_connect(
                peer_ws_url(url),
                max_msg_size=self.max_frame_bytes,
                timeout=aiohttp.ClientWSTimeout(ws_close=self.connect_timeout_s),
                autoping=True,
            ) as ws:
                return await run_link(self.replicator, ws, initiator=True)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # Log the first failure and then every 20th, so a down region does not flood the log.
            if failures % 20 == 0:
                log.info("cannot reach peer %s: %s (retrying with backoff)", url, exc)
            return LinkOutcome(None, False)
