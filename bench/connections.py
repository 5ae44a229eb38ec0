"""Connections benchmark: N idle logged-in websocket players on one real node process.

Opens N players against one node in steps: each logs in over HTTP (``POST /api/login``), opens
``/ws`` and says hello, then stays idle, reading (and discarding) what the node pushes. Prints,
with the machine's load average beside every figure (the machine is shared):

1. per step: connections opened per second (login + websocket + hello, `--concurrency` at a
   time), node CPU per connection, node RSS and RSS delta / connections so far;
2. with all N idle: RSS delta / N (target: 10,000 at <= 20 KB each), node CPU while idle, and
   the event-loop lag seen from outside (round trip of ``GET /healthz``, which does no work);
3. a burst of logins with the server's own argon2id settings (`--burst`, 0 to skip): how the
   bounded password-check pool answers (200, or 503 ``unavailable`` over its limit; never 500).

The accounts are written into the node's store before it starts with a cheap argon2 hash
(as in ``bench/service.py``): the login rate then measures the service, not argon2. The
benchmark raises its own open-files limit to the hard limit (resource.setrlimit; the node
inherits it): 10,000 players need 20,000 descriptors here and 10,000 in the node.
It is not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for bench.service

from bench.service import (
    PASSWORD,
    node_pids,
    node_urls,
    percentile,
    process_usage,
    raise_fd_limit,
    start_cluster,
    temp_folder,
)
from meridian.node.password_pool import DEFAULT_PASSWORD_COST, PASSWORD_COST_ENV, PASSWORD_COSTS

TARGET_CONNECTIONS, TARGET_KB, TARGET_LOGINS_PER_S = 10_000, 20.0, 1000.0
HELLO_TIMEOUT_S = 30.0


def load() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"[load {one:.1f}/{five:.1f}]"


class IdlePlayer:
    """A logged-in websocket that reads and discards whatever the node pushes."""

    def __init__(self) -> None:
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.closed: tuple[int | None, str] | None = None

    async def open(self, http: aiohttp.ClientSession, url: str, name: str) -> None:
        async with http.post(f"{url}/api/login", json={"name": name, "password": PASSWORD}) as r:
            reply = await r.json()
            if r.status != 200:
                raise RuntimeError(f"login of {name}: {r.status} {reply}")
        ws = self.ws = await http.ws_connect(url.replace("http", "ws", 1) + "/ws", heartbeat=None)
        await ws.send_str(json.dumps({"id": "h", "type": "hello", "token": reply["token"]}))
        async with asyncio.timeout(HELLO_TIMEOUT_S):
            while True:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"hello of {name}: {message.type} {message.extra}")
                if '"re":"h"' in message.data:  # the reply (pushes may come before it)
                    if '"ok":true' not in message.data:
                        raise RuntimeError(f"hello of {name}: {message.data[:200]}")
                    break
        self.reader = asyncio.create_task(self._drain(ws))

    async def _drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            message = await ws.receive()  # answers the node's pings itself
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
                self.closed = (ws.close_code, str(message.extra or ""))
                return
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                self.closed = (ws.close_code, "")
                return

    @property
    def open_now(self) -> bool:
        return self.ws is not None and not self.ws.closed and self.closed is None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


async def open_many(
    http: aiohttp.ClientSession, url: str, names: list[str], concurrency: int
) -> list[IdlePlayer]:
    """Open a player per name, at most `concurrency` being opened at once."""
    players = [IdlePlayer() for _ in names]
    gate = asyncio.Semaphore(concurrency)

    async def one(player: IdlePlayer, name: str) -> None:
        async with gate:
            await player.open(http, url, name)

    await asyncio.gather(*(one(p, n) for p, n in zip(players, names, strict=True)))
    return players


async def loop_lag_ms(http: aiohttp.ClientSession, url: str, seconds: float) -> tuple[float, float]:
    """p50 and p99 round trip of ``GET /healthz`` every 50 ms for `seconds`: the node's
    event-loop lag plus a loopback request."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        async with http.get(f"{url}/healthz") as response:
            await response.read()
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.05)
    return percentile(samples, 0.5), percentile(samples, 0.99)


async def ramp(args: argparse.Namespace, http: aiohttp.ClientSession, url: str, pid: int) -> Any:
    base_rss, _cpu = process_usage(pid)
    print(f"\n1. opening {args.players:,} players in steps of {args.step:,} {load()}")
    print(f"   node RSS before the first player: {base_rss / 1024:,.0f} MB")
    names = [f"idle{i:05d}" for i in range(args.players)]
    players: list[IdlePlayer] = []
    rates: list[float] = []
    for start in range(0, args.players, args.step):
        chunk = names[start : start + args.step]
        started, cpu_before = time.perf_counter(), process_usage(pid)[1]
        try:
            players += await asyncio.wait_for(
                open_many(http, url, chunk, args.concurrency), args.step_budget
            )
        except (TimeoutError, RuntimeError, aiohttp.ClientError, OSError) as error:
            print(f"   step to {start + len(chunk):,} failed or too slow: {error!r}; stop")
            break
        elapsed = time.perf_counter() - started
        rss, cpu = process_usage(pid)
        rates.append(len(chunk) / elapsed)
        print(
            f"   {len(players):>6,} open: {len(chunk) / elapsed:6,.0f} connections/s, "
            f"{(cpu - cpu_before) / len(chunk) * 1000:.2f} ms node CPU each; node RSS "
            f"{rss / 1024:,.0f} MB, {(rss - base_rss) / len(players):.1f} KB per connection "
            f"{load()}"
        )
    return base_rss, players, rates


async def idle(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    url: str,
    pid: int,
    base_rss: float,
    players: list[IdlePlayer],
    rates: list[float],
) -> None:
    await asyncio.sleep(2.0)  # let the last refresh of the public list go out
    rss, cpu_before = process_usage(pid)
    started = time.perf_counter()
    lag50, lag99 = await loop_lag_ms(http, url, args.idle_seconds)
    idle_cpu = (process_usage(pid)[1] - cpu_before) / (time.perf_counter() - started)
    held = sum(1 for p in players if p.open_now)
    per_kb = (rss - base_rss) / max(1, len(players))
    closes = Counter(str(p.closed) for p in players if p.closed is not None)
    slowest = min(rates) if rates else 0.0
    met = held >= TARGET_CONNECTIONS and per_kb <= TARGET_KB
    print(f"\n2. {held:,} of {len(players):,} players open and idle {load()}")
    print(
        f"   RSS delta / N: {per_kb:.1f} KB per connection (node RSS {rss / 1024:,.0f} MB)   "
        f"target {TARGET_CONNECTIONS:,} at <= {TARGET_KB:.0f} KB: {'MET' if met else 'MISSED'}"
    )
    print(
        f"   connections/s: slowest step {slowest:,.0f}, mean "
        f"{sum(rates) / max(1, len(rates)):,.0f}   target >= {TARGET_LOGINS_PER_S:,.0f}/s: "
        f"{'MET' if slowest >= TARGET_LOGINS_PER_S else 'MISSED'}"
    )
    print(
        f"   idle for {args.idle_seconds:.0f} s: node CPU {idle_cpu:.1%} of a core; "
        f"GET /healthz round trip p50 {lag50:.1f} ms, p99 {lag99:.1f} ms {load()}"
    )
    if closes:
        print(f"   closed by the node (code, reason): {dict(closes)}")


async def burst(args: argparse.Namespace, http: aiohttp.ClientSession, url: str) -> None:
    """`--burst` logins at once of one account registered with the server's argon2id."""
    name = "burster"
    async with http.post(
        f"{url}/api/register", json={"name": name, "password": PASSWORD}
    ) as response:
        await response.read()
    started = time.perf_counter()

    async def login() -> int:
        body = {"name": name, "password": PASSWORD}
        async with http.post(f"{url}/api/login", json=body) as response:
            await response.read()
            return response.status

    statuses = Counter(await asyncio.gather(*(login() for _ in range(args.burst))))
    elapsed = time.perf_counter() - started
    ok = statuses.get(200, 0)
    cost = os.environ.get(PASSWORD_COST_ENV, DEFAULT_PASSWORD_COST)  # what the node was given
    hasher = PASSWORD_COSTS[cost]
    print(
        f"\n3. {args.burst} logins at once with the server's argon2id "
        f"({cost}: t={hasher.time_cost}, m={hasher.memory_cost} KiB) {load()}"
    )
    print(
        f"   answers by HTTP status: {dict(sorted(statuses.items()))} in {elapsed:.1f} s "
        f"({ok / elapsed:,.0f} verified logins/s)"
    )


async def run(args: argparse.Namespace) -> None:
    with temp_folder() as folder:
        names = [f"idle{i:05d}" for i in range(args.players)]
        cluster = await start_cluster(folder / "connections", ["eu"], names)
        url, pid = node_urls(cluster)[0], node_pids(cluster)[0]
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as http:
                base_rss, players, rates = await ramp(args, http, url, pid)
                await idle(args, http, url, pid, base_rss, players, rates)
                if args.burst:
                    await burst(args, http, url)
                await asyncio.gather(*(p.close() for p in players))
        finally:
            await cluster.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/connections.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--players", type=int, default=10_000, help="players to open (10000)")
    parser.add_argument("--step", type=int, default=1000, help="players per step (1000)")
    parser.add_argument("--concurrency", type=int, default=100, help="opened at once (100)")
    parser.add_argument(
        "--step-budget", type=float, default=60.0, help="seconds a step may take (60)"
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle phase (10)")
    parser.add_argument("--burst", type=int, default=200, help="phase 3 logins (200; 0: skip)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_fd_limit()
    print(
        f"connections benchmark: {os.cpu_count()} cores, open-files limit raised to {limit:,} "
        f"(resource.setrlimit, inherited by the node) {load()}"
    )
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
