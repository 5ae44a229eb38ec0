"""The game service over real sockets and real node processes (three regions on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import games.battleline as battleline
from node.client import PlayerClient, RequestError
from node.localcluster import stop_nodes, wait_for_mesh
from tests.conftest import Cluster

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def game_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        assert wait_for_mesh(running.nodes), "cluster did not form"
        yield running
    finally:
        stop_nodes(running.nodes)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def player(
    cluster: Cluster, http: aiohttp.ClientSession, index: int, name: str
) -> PlayerClient:
    client = PlayerClient(cluster.url(index), http)
    await client.register(name, PASSWORD)
    await client.login(name, PASSWORD)
    await client.connect()
    return client


async def eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            result = await check()
            if result:
                return result
        except RequestError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def start_game(a: PlayerClient, b: PlayerClient) -> str:
    async def invite() -> dict[str, Any]:
        return await a.request("invite", to=b.you["name"])

    invitation = (await eventually(invite))["invite"]
    await b.wait_push("invites")

    async def incoming() -> bool:
        pushed = b.latest.get("invites", {})
        return any(i["iid"] == invitation["iid"] for i in pushed.get("incoming", []))

    await eventually(incoming)
    return str((await b.request("accept", invite=invitation["iid"]))["game"])


async def play_out(gid: str, seats: dict[int, PlayerClient], seed: int = 7) -> dict[str, Any]:
    """Each player plays a random legal move from its own region's view until the game ends."""
    rng = random.Random(seed)
    ply = 0
    while True:
        pushes = await _same_ply(gid, seats, ply)
        if pushes[0]["status"] == "finished":
            return dict(pushes[0]["result"])
        mover = pushes[0]["to_move"]
        legal = pushes[mover]["legal"]
        assert legal, "the player to move is offered its legal moves"
        assert pushes[1 - mover]["legal"] == [], "only the player to move is offered moves"
        reply = await seats[mover].request("move", game=gid, move=rng.choice(legal))
        ply = reply["ply"] + 1


async def _same_ply(
    gid: str, seats: dict[int, PlayerClient], ply: int
) -> dict[int, dict[str, Any]]:
    """Wait until both regions show position `ply`, and return each seat's latest push."""

    async def settled() -> dict[int, dict[str, Any]] | None:
        pushes = {seat: client.games.get(gid) for seat, client in seats.items()}
        if any(p is None or p["ply"] != ply for p in pushes.values()):
            return None
        return pushes  # type: ignore[return-value]

    return dict(await eventually(settled))


async def test_players_in_two_regions_play_a_full_game_while_a_third_watches(
    game_cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    alice = await player(game_cluster, http, 0, "alice")
    bob = await player(game_cluster, http, 1, "bob")
    carol = await player(game_cluster, http, 2, "carol")
    gid = await start_game(alice, bob)
    watched = await eventually(lambda: carol.request("watch", game=gid))
    assert watched["game"]["you"] is None
    first = await alice.wait_push("game", game=gid)
    seats = {first["you"]: alice, 1 - first["you"]: bob}
    result = await play_out(gid, seats)
    assert result["winner"] in (0, 1)
    final = await carol.wait_push("game", timeout=15, game=gid, status="finished")
    assert final["result"] == result
    assert final["view"] == final["view"] and final["legal"] == []

    def logged() -> dict[str, Any]:
        url = f"{game_cluster.url(2)}/api/games/{gid}"
        return json.loads(urllib.request.urlopen(url).read())

    record = await eventually(lambda: asyncio.to_thread(logged))
    replayed = battleline.replay(record["seed"], record["moves"], record["first"])
    assert battleline.result(replayed) == result
    for client in (alice, bob, carol):
        await client.close()
