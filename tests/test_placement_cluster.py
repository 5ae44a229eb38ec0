"""Partial replication on real node processes (three regions on 127.0.0.1, game_backups = 0):
a game of two players of one region is kept by two regions, the third never receives its moves,
and a player who resumes the session on that third region is fetched the game and plays on."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from meridian.node.client import PlayerClient
from meridian.node.localcluster import TOKEN_ENV, stop_nodes, wait_for_mesh
from tests.conftest import Cluster, eventually
from tests.test_game_service import _same_ply, player, start_game

pytestmark = pytest.mark.integration


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def documents(cluster: Cluster, index: int) -> set[str]:
    request = urllib.request.Request(f"{cluster.url(index)}/api/cluster")
    request.add_header("Authorization", f"Bearer {cluster.env[TOKEN_ENV]}")
    with urllib.request.urlopen(request) as answer:
        view = json.loads(answer.read())
    return {d["id"] for d in view["documents"]}


async def test_a_game_stays_on_its_replicas_and_follows_a_player_who_resumes_elsewhere(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cluster = Cluster(tmp_path, extra="[replication]\ngame_backups = 0\nack_regions = 1\n")
    try:
        assert wait_for_mesh(cluster.nodes), "cluster did not form"
        alice = await player(cluster, http, 0, "alice")
        bob = await player(cluster, http, 0, "bob")
        gid = await start_game(alice, bob)
        doc_id = f"game:{gid}"
        first = await alice.wait_push("game", game=gid)
        seats: dict[int, PlayerClient] = {first["you"]: alice, 1 - first["you"]: bob}
        mover = first["to_move"]
        shown = await _same_ply(gid, seats, 0)
        await seats[mover].request("move", game=gid, move=shown[mover]["legal"][0])

        async def placed() -> list[int] | None:
            held = [i for i in range(3) if doc_id in await asyncio.to_thread(documents, cluster, i)]
            return held if len(held) == 2 else None

        held = await eventually(placed)  # the creating region and the nearest other: k + 2
        assert 0 in held
        outside = next(i for i in range(3) if i not in held)
        await asyncio.sleep(1.0)  # moves and anti-entropy had time to reach it: they did not
        assert doc_id not in await asyncio.to_thread(documents, cluster, outside)

        other = seats[1 - mover]
        await other.close()
        await other.connect(resume=True, base_url=cluster.url(outside))
        await other.wait_push("game", timeout=15, game=gid, ply=1)  # fetched from a replica
        moved_outside = 0
        for ply in range(1, 9):  # play on from both regions, each seeing every position
            views = await _same_ply(gid, seats, ply)
            to_move = views[0]["to_move"]
            await seats[to_move].request("move", game=gid, move=views[to_move]["legal"][0])
            moved_outside += seats[to_move] is other
        assert moved_outside > 0, "the player who resumed outside the placement played there"
        await _same_ply(gid, seats, 9)
        for client in (alice, bob):
            await client.close()
    finally:
        stop_nodes(cluster.nodes)
