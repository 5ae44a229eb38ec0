"""Replication benchmark: three real node processes on loopback, every peer link through a proxy.

Prints (see docs/performance.md for the targets and the last recorded figures):

1. replication lag at a steady 1,000 updates/s written on one node: p50/p99 of "change made
   -> peer's durable ack" per peer (an upper bound of one-way replication lag: it includes the
   coalescing window, the peer's group commit and the ack's way back);
2. wire bytes per small update: frame bytes sent per update per peer, with an estimate of the
   websocket headers, next to the size of the update's own Yjs encoding;
3. sustained replicated updates/s: all three nodes written at full speed; updates divided by
   the time until every node holds every update (digests equal);
4. catch-up after a partition: eu cut off from us and ap, 10,000 updates written on each side,
   then healed: time from the links being back to all digests equal (and from heal, which also
   includes the reconnect backoff);
5. resident memory (RSS) of each node.

Phase 3 also runs a bare baseline in the same run: raw pycrdt making the same number of
updates, each in its own transaction on one Doc, and applying each to two other Docs (what the
two peers must at least do), with no network, store or checks; it prints Meridian's rate as a
fraction of that ceiling. Every phase prints the machine's load average (1 minute): the
machine may be shared.

It is not a test: it asserts nothing, it measures. ``--quick`` shortens every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from pycrdt import Doc, Map, TransactionEvent

from meridian.node.localcluster import TOKEN_ENV
from meridian.sim.proxied import ProxiedCluster

REGIONS = ["eu", "us", "ap"]
WS_HEADER_ESTIMATE = 6  # bytes per websocket frame: 2-4 header, +4 mask from the dialing side
BENCH_SYNC = "\n[sync]\nreconnect_min_s = 0.05\nreconnect_max_s = 0.5\nanti_entropy_s = 5\n"
CONVERGE_LIMIT_S = 120.0  # a bench that does not converge by then reports it and stops
LINKS_LIMIT_S = 30.0  # reconnect backoff is at most 0.5 s here (BENCH_SYNC)


class Bench(ProxiedCluster):
    def __init__(self, folder: Path, quick: bool) -> None:
        super().__init__(folder, REGIONS, extra=BENCH_SYNC)
        self.quick = quick
        self.http: aiohttp.ClientSession

    async def __aenter__(self) -> Bench:
        await self.start()
        self.http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.env[TOKEN_ENV]}"}
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        await self.stop()

    async def write_batch(self, region: str, doc: str, start: int, count: int) -> None:
        items = [[f"k{start + i}", start + i] for i in range(count)]
        async with self.http.post(
            f"{self.url(region)}/api/admin/docs/{doc}", json={"items": items}
        ) as r:
            if r.status != 200:
                raise SystemExit(f"write to {region} failed: {r.status} {await r.text()}")

    async def cluster_view(self, region: str) -> dict[str, Any]:
        async with self.http.get(f"{self.url(region)}/api/cluster") as response:
            view: dict[str, Any] = await response.json()
            return view

    async def health(self, region: str) -> dict[str, Any]:
        async with self.http.get(f"{self.url(region)}/healthz") as response:
            body: dict[str, Any] = await response.json()
            return body

    async def converged(self, docs: list[str]) -> bool:
        views = await asyncio.gather(*(self.cluster_view(r) for r in REGIONS))
        digests = [{d["id"]: d["digest"] for d in v["documents"]} for v in views]
        return all(all(doc in d for doc in docs) for d in digests) and all(
            len({d[doc] for d in digests}) == 1 for doc in docs
        )

    async def wait_converged(self, docs: list[str]) -> float:
        start = time.perf_counter()
        while not await self.converged(docs):
            if time.perf_counter() - start > CONVERGE_LIMIT_S:
                raise SystemExit(f"not converged after {CONVERGE_LIMIT_S:g} s")
            await asyncio.sleep(0.01)
        return time.perf_counter()

    async def wait_links(self, region: str, peers: int) -> float:
        """Poll the node's /healthz until it has `peers` links up; when that was seen."""
        start = time.perf_counter()
        while len((await self.health(region))["peers"]) < peers:
            if time.perf_counter() - start > LINKS_LIMIT_S:
                raise SystemExit(f"{region} has fewer than {peers} links after {LINKS_LIMIT_S:g} s")
            await asyncio.sleep(0.005)
        return time.perf_counter()


async def lag_and_wire_bytes(bench: Bench) -> None:
    rate, seconds = 1000, 3 if bench.quick else 10
    before = await bench.cluster_view("eu")
    interval, per_tick = 0.01, rate // 100
    ticks = int(seconds / interval)
    start = time.perf_counter()
    for tick in range(ticks):
        await bench.write_batch("eu", "bench:lag", tick * per_tick, per_tick)
        await asyncio.sleep(max(0.0, start + (tick + 1) * interval - time.perf_counter()))
    elapsed = time.perf_counter() - start
    await bench.wait_converged(["bench:lag"])
    after = await bench.cluster_view("eu")
    print(f"\n1. replication lag at {ticks * per_tick / elapsed:,.0f} updates/s written on eu:")
    for peer in after["peers"]:
        lag = peer["lag_ms"]
        print(f"   eu -> {peer['node']:<6} p50 {lag['p50']:6.2f} ms   p99 {lag['p99']:6.2f} ms")
    _print_wire_bytes(before, after)


def _print_wire_bytes(before: dict[str, Any], after: dict[str, Any]) -> None:
    def totals(view: dict[str, Any]) -> tuple[int, int]:
        return (
            sum(p["bytes_sent"] for p in view["peers"]),
            sum(p["frames_sent"] for p in view["peers"]),
        )

    bytes_before, frames_before = totals(before)
    bytes_after, frames_after = totals(after)
    updates = after["changes"]["local"] - before["changes"]["local"]
    yjs = after["changes"]["local_update_bytes"] - before["changes"]["local_update_bytes"]
    peers = len(after["peers"])
    frame_bytes = (bytes_after - bytes_before) / (updates * peers)
    ws_bytes = frame_bytes + WS_HEADER_ESTIMATE * (frames_after - frames_before) / (updates * peers)
    print("\n2. wire bytes per small update (per peer, all frames incl. acks and pings):")
    print(
        f"   Yjs update {yjs / updates:5.1f} B   frames {frame_bytes:5.1f} B   "
        f"with websocket headers ~{ws_bytes:5.1f} B   ratio {ws_bytes / (yjs / updates):4.2f}x"
    )


async def throughput(bench: Bench) -> None:
    seconds, batch = (3 if bench.quick else 10), 1000
    written = {region: 0 for region in REGIONS}

    async def writer(region: str, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            first = written[region]
            written[region] += batch
            await bench.write_batch(region, f"bench:tp-{region}", first, batch)

    start = time.perf_counter()
    # Two writers per region keep a batch in flight while the previous one commits.
    await asyncio.gather(*(writer(r, start + seconds) for r in REGIONS for _ in range(2)))
    writes_done = time.perf_counter()
    converged = await bench.wait_converged([f"bench:tp-{r}" for r in REGIONS])
    total = sum(written.values())
    meridian_rate = total / (converged - start)
    print(f"\n3. sustained replication, all three nodes written at full speed ({_load()}):")
    print(
        f"   {total:,} updates written in {writes_done - start:.1f} s "
        f"({total / (writes_done - start):,.0f}/s accepted); every node held every update "
        f"after {converged - start:.2f} s\n   -> {total / (converged - start):,.0f} distinct "
        f"updates/s replicated to every region, {2 * total / (converged - start):,.0f} "
        f"update deliveries/s applied at peers"
    )
    raw_rate = raw_pycrdt_rate(min(total, 30_000))
    print(
        f"   baseline, raw pycrdt in this process: {raw_rate:,.0f} updates/s made and applied "
        f"at two peer Docs on one core ({_load()})\n   -> Meridian reaches "
        f"{meridian_rate / raw_rate:.2f}x of that ceiling (target 20,000/s)"
    )


def raw_pycrdt_rate(count: int) -> float:
    """Updates/s raw pycrdt sustains for phase 3's work: `count` small map writes, each its own
    transaction on one Doc, each update applied to two peer Docs (no network, store, checks)."""
    writer: Doc[Any] = Doc()
    peers: list[Doc[Any]] = [Doc(), Doc()]
    updates: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        updates.append(event.update)

    subscription = writer.observe(capture)
    items = writer.get("items", type=Map)
    start = time.process_time()
    for number in range(count):
        items[f"k{number}"] = number
    for update in updates:
        for peer in peers:
            peer.apply_update(update)
    elapsed = time.process_time() - start
    writer.unobserve(subscription)
    return count / elapsed


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


async def catch_up(bench: Bench) -> None:
    count = 2000 if bench.quick else 10_000
    bench.partition(["eu"], ["us", "ap"])
    await asyncio.sleep(0.5)
    for start in range(0, count, 1000):
        await asyncio.gather(
            bench.write_batch("eu", "bench:part", start, 1000),
            bench.write_batch("us", "bench:part", count + start, 1000),
        )
    healed = time.perf_counter()
    bench.heal()
    links_up = await bench.wait_links("eu", 2)
    converged = await bench.wait_converged(["bench:part"])
    print(f"\n4. catch-up after a partition ({count:,} updates on each side of eu | us+ap):")
    print(
        f"   links back {links_up - healed:.2f} s after heal (reconnect backoff); "
        f"converged {converged - links_up:.3f} s after the links were back "
        f"({converged - healed:.2f} s after heal)"
    )


def print_rss(bench: Bench) -> None:
    print("\n5. node memory:")
    for node in bench.nodes.values():
        status = Path(f"/proc/{node.process.pid}/status").read_text()
        rss_kb = int(
            next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
        )
        print(f"   {node.config.node_id:<6} RSS {rss_kb / 1024:6.1f} MiB")


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short phases (about 30 s in all)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meridian-bench-") as folder:
        async with Bench(Path(folder), args.quick) as bench:
            print(f"3 nodes up ({', '.join(bench.url(r) for r in REGIONS)}), links via proxies")
            await lag_and_wire_bytes(bench)
            await throughput(bench)
            await catch_up(bench)
            print_rss(bench)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
