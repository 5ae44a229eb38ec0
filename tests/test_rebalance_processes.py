"""Rebalancing between the two processes of one region (real node processes on 127.0.0.1).

Region eu runs two processes, eu-1 and eu-2, with the rebalancer on. Every player connects to
eu-1: idle ones, and pairs playing games with a short pause before each move (the harness of
``tests/test_rebalance_cluster.py``). eu-1's rebalancer moves players to eu-2 with the drain's
notice until the two published loads are within 20 % of each other: no acknowledged move is
lost, every game goes on to its end (across the two processes when its players are split),
and no player is told to move while it is their turn or a move of theirs awaits its reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from meridian.node.config import load_config
from meridian.node.localcluster import (
    cluster_env,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from tests.conftest import Cluster, eventually
from tests.test_drain import finished_game
from tests.test_game_service import start_game
from tests.test_rebalance_cluster import (
    REBALANCE,
    Watched,
    admin_get,
    play,
    published_connections,
    signed_in,
)

pytestmark = pytest.mark.integration
IDLE = 4
PAIRS = 6  # 16 players on eu-1, of whom it keeps about half
WITHIN = 0.2  # the two loads end within 20 % of the larger
EVEN_WITHIN_S = 20.0


class RegionCluster(Cluster):
    """eu run by two node processes (eu-1, eu-2) and nothing else, the rebalancer on."""

    def __init__(self, folder: Path) -> None:  # (no call to Cluster's: other configs)
        self.env = cluster_env()
        self.paths = write_configs(folder, ["eu"], extra=REBALANCE, processes=2)
        self.configs = [load_config(path, self.env) for path in self.paths]
        self.nodes = [start_node(config, self.env) for config in self.configs]

    def urls(self) -> list[str]:
        return [config.public_url for config in self.configs]


@pytest.fixture
def region(tmp_path: Path) -> Iterator[RegionCluster]:
    running = RegionCluster(tmp_path)
    try:
        assert wait_for_mesh(running.nodes), "the two processes did not link"
        yield running
    finally:
        stop_nodes(running.nodes)


def within(connections: dict[str, int], share: float = WITHIN) -> bool:
    """The two processes' loads differ by at most `share` of the larger."""
    loads = [connections.get("eu-1", 0), connections.get("eu-2", 0)]
    return max(loads) - min(loads) <= share * max(loads)


def test_within_is_relative_to_the_larger_load() -> None:
    assert within({"eu-1": 8, "eu-2": 8}) and within({"eu-1": 9, "eu-2": 8})
    assert within({"eu-1": 10, "eu-2": 8}) and not within({"eu-1": 11, "eu-2": 5})
    assert not within({"eu-1": 16, "eu-2": 0})


async def test_one_loaded_process_of_a_region_sheds_players_to_the_other(
    region: RegionCluster,
) -> None:
    eu1 = region.url(0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        idle = list(await asyncio.gather(*(signed_in(eu1, http, f"idle{i}") for i in range(IDLE))))
        players: list[Watched] = []
        for pair in range(PAIRS):
            a, b = await asyncio.gather(
                signed_in(eu1, http, f"p{pair}a"), signed_in(eu1, http, f"p{pair}b")
            )
            a.gid = b.gid = await start_game(a.client, b.client)
            players += [a, b]
        loaded_at = time.monotonic()
        games = [asyncio.create_task(play(p, seed)) for seed, p in enumerate(players)]

        async def even_now() -> dict[str, int] | None:
            shown = await asyncio.to_thread(published_connections, region)
            total = sum(shown.values())
            return shown if total == IDLE + 2 * PAIRS and within(shown) else None

        try:
            spread = await eventually(even_now, timeout=EVEN_WITHIN_S)
        except AssertionError:
            shown = published_connections(region)
            rebalance = admin_get(region, 0, "/api/cluster")["rebalance"]
            raise AssertionError(
                f"not within 20 % in {EVEN_WITHIN_S} s: {shown}; {rebalance}"
            ) from None
        even_after_s = time.monotonic() - loaded_at
        assert spread["eu-1"] < IDLE + 2 * PAIRS, spread
        for player in players:
            player.pause_s = 0.0  # the rest of each game at full speed
        try:
            await asyncio.wait_for(asyncio.gather(*games), 60)
        except TimeoutError:
            raise AssertionError(f"games not over: {[p.state() for p in players]}") from None

        # Moved between moves only, and to the other process of the region.
        assert [m for p in players for m in p.mid_turn] == []
        watched = idle + players
        moved = [w for w in watched if w.notices]
        assert moved and all(w.client.base_url == region.url(1) for w in moved)
        assert all(w.client.base_url == eu1 for w in watched if not w.notices)
        # Every game finished on both processes, with every acknowledged move in it.
        split = 0
        for gid in {p.gid for p in players}:
            seats = [p for p in players if p.gid == gid]
            split += len({p.client.base_url for p in seats}) == 2
            for url in region.urls():
                record = await eventually(partial(asyncio.to_thread, finished_game, url, gid))
                for player in seats:
                    assert player.client.games[gid]["status"] == "finished"
                    for ply, move in player.acked.items():
                        kept = {k: v for k, v in record["moves"][ply].items() if k != "player"}
                        assert kept == move, f"game {gid}: acknowledged ply {ply} lost at {url}"
        rebalance = admin_get(region, 0, "/api/cluster")["rebalance"]
        told = sum(len(w.notices) for w in watched)
        assert rebalance["moved_to"] == {"eu-2": told}
        print(
            f"\nrebalance in one region: {told} of {len(watched)} players moved eu-1 -> eu-2 "
            f"({rebalance['moved_in_game']} in a game, {split} games split over the two "
            f"processes), within 20 % after {even_after_s:.1f} s: {spread}; "
            f"{rebalance['rounds']} rounds, {rebalance['taken_back']} taken back"
        )
        for player in watched:
            await player.client.close()
