"""A rematch swaps colours: in consecutive games of the same two players, whoever moved second
moves first next time, whoever sends the invitation (three regions on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.node.client import PlayerClient, RequestError
from meridian.node.localcluster import stop_nodes, wait_for_mesh
from tests.conftest import Cluster, eventually

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def rematch_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(Path(tmp_path_factory.mktemp("rematch")))
    try:
        assert wait_for_mesh(running.nodes), "cluster did not form"
        yield running
    finally:
        stop_nodes(running.nodes)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def signed_in(cluster: Cluster, http: aiohttp.ClientSession, index: int, name: str) -> Any:
    client = PlayerClient(cluster.url(index), http)
    await client.register(name, PASSWORD)
    await client.login(name, PASSWORD)
    await client.connect()
    return client


async def new_game(inviter: PlayerClient, invitee: PlayerClient) -> dict[str, Any]:
    """The invitee accepts the inviter's invitation; the game's first push (ply 0)."""

    async def invite() -> dict[str, Any] | None:
        try:
            return await inviter.request("invite", to=invitee.you["name"])
        except RequestError as error:
            assert error.code in ("busy", "offline"), error  # not yet seen, or still playing
            return None

    iid = (await eventually(invite))["invite"]["iid"]

    async def accept() -> dict[str, Any] | None:
        try:
            return await invitee.request("accept", invite=iid)
        except RequestError as error:
            assert error.code == "not_found", error  # the invitation is still on its way
            return None

    gid = (await eventually(accept))["game"]
    return await inviter.wait_push("game", game=gid)


async def test_consecutive_games_of_two_players_swap_who_moves_first(
    rematch_cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    ann = await signed_in(rematch_cluster, http, 0, "ann")
    ben = await signed_in(rematch_cluster, http, 1, "ben")
    firsts = []
    # ann invites, then ben (the rematch from the other side), then ann again.
    for inviter, invitee in ((ann, ben), (ben, ann), (ann, ben)):
        push = await new_game(inviter, invitee)
        assert push["ply"] == 0 and push["players"][0] == inviter.you["name"]
        firsts.append(push["players"][push["to_move"]])
        await inviter.request("give_up", game=push["game"])
        for client in (ann, ben):
            await client.wait_push("game", game=push["game"], status="finished")
    assert firsts[1] != firsts[0] and firsts[2] != firsts[1], firsts
    await ann.close()
    await ben.close()
