"""`sim.proxied.ProxiedCluster` for synchronous tests (the Playwright sync API runs no event
loop of ours): its fault proxies run on an event loop in a background thread.

The browser talks to the nodes directly; the nodes talk to each other through proxies the test
can cut, like bench/replication.py does. Bots (`node.bots.run_bots`) can play on the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from meridian.node.botrecords import BotSummary
from meridian.node.bots import run_bots
from meridian.node.localcluster import TOKEN_ENV
from meridian.sim.proxied import ProxiedCluster

REGIONS = ["eu", "us", "ap"]
T = TypeVar("T")


class ThreadedCluster:
    def __init__(self, folder: Path) -> None:
        self.cluster = ProxiedCluster(folder, REGIONS)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._bots: list[tuple[asyncio.Event, Future[BotSummary]]] = []

    @property
    def admin_token(self) -> str:
        return self.cluster.env[TOKEN_ENV]

    def url(self, region: str) -> str:
        return self.cluster.url(region)

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _call(self, fn: Callable[[], T]) -> T:
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:  # handed to the caller's thread
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def start(self) -> None:
        self._thread.start()
        self._run(self.cluster.start())

    def start_bots(self, prefix: str, count: int, *, for_people: int = 0, **options: Any) -> int:
        """Run bots on every region (until `stop_bots`); returns a handle for `stop_bots`."""

        async def run() -> BotSummary:
            servers = [self.url(region) for region in REGIONS]
            return await run_bots(
                servers, count, 0, prefix=prefix, for_people=for_people, stop=stop, **options
            )

        stop = self._call(asyncio.Event)
        self._bots.append((stop, asyncio.run_coroutine_threadsafe(run(), self._loop)))
        return len(self._bots) - 1

    def stop_bots(self, handle: int) -> BotSummary:
        stop, done = self._bots[handle]
        self._loop.call_soon_threadsafe(stop.set)
        return done.result(timeout=60)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        for stop, _done in self._bots:
            self._loop.call_soon_threadsafe(stop.set)
        for _stop, done in self._bots:
            # Bots still running when the loop stops are destroyed pending, which fails the
            # session at exit under warnings-as-errors: let them finish, or cancel them.
            with contextlib.suppress(Exception):
                done.result(timeout=30)
            if not done.done():
                done.cancel()
                with contextlib.suppress(BaseException):
                    done.result(timeout=5)
        try:
            self._run(self.cluster.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()  # its selector and self-pipe sockets

    def cut(self, a: str, b: str) -> None:
        self._call(lambda: self.cluster.cut(a, b))

    def partition(self, *groups: list[str]) -> None:
        self._call(lambda: self.cluster.partition(*groups))

    def heal(self) -> None:
        self._call(self.cluster.heal)

    def kill(self, region: str) -> None:
        self.cluster.kill(region)

    def alive(self, region: str) -> bool:
        return self.cluster.nodes[region].process.poll() is None

    def restart(self, region: str) -> None:
        """Start a killed node again and wait until the mesh is whole."""
        if not self.alive(region):
            self.cluster.restart(region)
        self._run(self.cluster.wait_linked())
