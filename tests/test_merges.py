"""Partitions, automatic merges and failover, over real node processes whose links cross proxies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import urllib.request
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.node.client import PlayerClient, RequestError
from meridian.sim.proxied import FAST_RECONNECT, ProxiedCluster
from tests.conftest import eventually

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"
ACK_ONE_REGION = "\n[replication]\nack_regions = 1\n"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ProxiedCluster]:
    running = ProxiedCluster(tmp_path, ["eu", "us", "ap"])
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def acked_cluster(tmp_path: Path) -> AsyncIterator[ProxiedCluster]:
    """A cluster where a move is acknowledged only once another region holds it."""
    running = ProxiedCluster(tmp_path, ["eu", "us", "ap"], extra=FAST_RECONNECT + ACK_ONE_REGION)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def online(
    cluster: ProxiedCluster,
    http: aiohttp.ClientSession,
    region: str,
    name: str,
    *,
    register: bool = True,
) -> PlayerClient:
    client = PlayerClient(cluster.url(region), http)
    if register:
        await client.register(name, PASSWORD)

    async def login() -> bool:
        await client.login(name, PASSWORD)
        return True

    await eventually(login)
    await eventually(lambda: _connected(client))
    return client


async def _connected(client: PlayerClient) -> bool:
    await client.connect()
    return True


async def start_game(a: PlayerClient, b: PlayerClient) -> tuple[str, dict[int, PlayerClient]]:
    invitation = (await eventually(lambda: a.request("invite", to=b.you["name"])))["invite"]

    async def accept() -> dict[str, Any]:
        return await b.request("accept", invite=invitation["iid"])

    gid = str((await eventually(accept))["game"])
    first = await eventually(lambda: _game_push(a, gid))
    return gid, {first["you"]: a, 1 - first["you"]: b}


async def _game_push(client: PlayerClient, gid: str) -> dict[str, Any] | None:
    return client.games.get(gid)


async def play(
    gid: str, seats: dict[int, PlayerClient], rng: random.Random, plies: int, ply: int
) -> int:
    """From position `ply`, play `plies` random legal moves (fewer if the game ends); returns
    the ply reached. The caller passes `ply` because a client's last push may lag behind."""
    for _ in range(plies):
        pushes = await eventually(partial(_at_ply, gid, seats, ply))
        if pushes[0]["status"] != "live":
            break
        mover = pushes[0]["to_move"]
        reply = await seats[mover].request(
            "move", game=gid, move=rng.choice(pushes[mover]["legal"])
        )
        ply = reply["ply"] + 1
    return ply


async def _at_ply(
    gid: str, seats: dict[int, PlayerClient], ply: int
) -> dict[int, dict[str, Any]] | None:
    pushes = {seat: client.games.get(gid) for seat, client in seats.items()}
    if all(p is not None and p["ply"] == ply for p in pushes.values()):
        return pushes  # type: ignore[return-value]
    return None


def metrics(cluster: ProxiedCluster, region: str) -> str:
    with urllib.request.urlopen(f"{cluster.url(region)}/metrics") as answer:
        body: bytes = answer.read()
    return body.decode()


async def test_a_partition_mid_game_delays_moves_and_heal_delivers_them(
    cluster: ProxiedCluster, http: aiohttp.ClientSession
) -> None:
    alice = await online(cluster, http, "eu", "alice")
    bob = await online(cluster, http, "us", "bob")
    gid, seats = await start_game(alice, bob)
    rng = random.Random(3)
    ply = await play(gid, seats, rng, 6, 0)
    await eventually(lambda: _at_ply(gid, seats, ply))
    cluster.partition(["eu"], ["us", "ap"])
    mover_seat = seats[0].games[gid]["to_move"]
    mover, other = seats[mover_seat], seats[1 - mover_seat]
    await mover.request("move", game=gid, move=rng.choice(mover.games[gid]["legal"]))
    await asyncio.sleep(1.0)
    assert other.games[gid]["ply"] == ply, (
        "the other region cannot see the move during the partition"
    )
    cluster.heal()
    await eventually(lambda: _at_ply(gid, seats, ply + 1), timeout=20)
    await play(gid, seats, rng, 4, ply + 1)


async def test_name_race_the_earliest_registration_keeps_the_name(
    cluster: ProxiedCluster, http: aiohttp.ClientSession
) -> None:
    cluster.partition(["eu"], ["us", "ap"])
    await asyncio.sleep(0.5)
    first = PlayerClient(cluster.url("eu"), http)
    await first.register("dave", "first-password")
    second = PlayerClient(cluster.url("us"), http)
    await second.register("Dave", "second-password")
    cluster.heal()
    await cluster.wait_linked()

    async def loser_told() -> dict[str, Any] | None:
        reply = await PlayerClient(cluster.url("ap"), http).login("DAVE", "second-password")
        return reply if reply["must_rename"] else None

    loser = await eventually(loser_told)
    winner = await PlayerClient(cluster.url("ap"), http).login("dave", "first-password")
    assert winner["must_rename"] is False and loser["uid"] != winner["uid"]
    second.token = loser["token"]
    await eventually(second.connect)  # logged in on ap: us knows the token once it replicates
    notice = await second.wait_push("notice", code="must_rename")
    assert "registered earlier" in notice["message"]
    await second.request("rename", name="dave2")
    assert (await PlayerClient(cluster.url("eu"), http).login("dave2", "second-password"))[
        "uid"
    ] == loser["uid"]
    assert any(
        'meridian_merges_total{kind="name"} 1' in metrics(cluster, r) for r in cluster.regions
    )


async def test_double_login_across_a_partition_closes_the_older_session_and_merges_the_ply(
    cluster: ProxiedCluster, http: aiohttp.ClientSession
) -> None:
    alice = await online(cluster, http, "eu", "alice")
    bob = await online(cluster, http, "us", "bob")
    gid, seats = await start_game(alice, bob)
    alice_seat = next(seat for seat, client in seats.items() if client is alice)
    rng = random.Random(5)
    ply = 0
    for _ in range(40):  # play until it is alice's turn
        pushes = await eventually(partial(_at_ply, gid, seats, ply))
        if pushes[0]["to_move"] == alice_seat:
            break
        ply = await play(gid, seats, rng, 1, ply)
    cluster.partition(["eu"], ["us", "ap"])
    await asyncio.sleep(0.5)
    alice_in_us = await online(cluster, http, "us", "alice", register=False)  # a second login
    legal = alice.games[gid]["legal"]
    await alice.request("move", game=gid, move=legal[0])  # earlier: this one is kept
    await eventually(lambda: _game_push(alice_in_us, gid))
    await alice_in_us.request("move", game=gid, move=legal[-1])
    cluster.heal()
    closed = await alice.wait_push("_closed", timeout=20)
    assert closed["code"] == 4100
    rollback = await bob.wait_push("rollback", timeout=20, game=gid)
    assert rollback["ply"] == ply
    await eventually(lambda: _same_last_move(alice_in_us, bob, gid, legal[0]))
    text = "".join(metrics(cluster, r) for r in cluster.regions)
    assert 'meridian_merges_total{kind="double_login"} 1' in text
    assert 'meridian_merges_total{kind="same_ply"} 1' in text


async def _same_last_move(a: PlayerClient, b: PlayerClient, gid: str, move: dict[str, Any]) -> bool:
    pa, pb = a.games.get(gid), b.games.get(gid)
    return bool(
        pa
        and pb
        and pa["ply"] == pb["ply"]
        and pa["last_move"]["move"] == move == pb["last_move"]["move"]
    )


async def test_a_node_killed_mid_game_loses_no_game_nor_acknowledged_move(
    acked_cluster: ProxiedCluster, http: aiohttp.ClientSession
) -> None:
    cluster = acked_cluster
    alice = await online(cluster, http, "eu", "alice")
    bob = await online(cluster, http, "us", "bob")
    gid, seats = await start_game(alice, bob)
    rng = random.Random(9)
    ply = await play(gid, seats, rng, 8, 0)
    cluster.kill("eu")  # right after eu acknowledged a move: with ack_regions = 1 it is safe
    await alice.wait_push("_closed", timeout=10)
    moved = PlayerClient(cluster.url("ap"), http)  # alice fails over to another region
    moved.token, moved.resume = alice.token, alice.resume
    await eventually(lambda: _resumed(moved))
    seats = {seat: (moved if client is alice else client) for seat, client in seats.items()}
    pushes = await eventually(lambda: _at_ply(gid, seats, ply))
    assert pushes[0]["status"] == "live"
    ply = await play(gid, seats, rng, 400, ply)
    final = (await eventually(lambda: _at_ply(gid, seats, ply)))[0]
    assert final["status"] == "finished" and final["result"] is not None


async def _resumed(client: PlayerClient) -> bool:
    await client.connect(resume=True)
    return True


async def test_bad_messages_get_their_error_and_leave_the_state_untouched(
    cluster: ProxiedCluster, http: aiohttp.ClientSession
) -> None:
    alice = await online(cluster, http, "eu", "alice")
    bob = await online(cluster, http, "eu", "bob")
    gid, seats = await start_game(alice, bob)
    waiting = next(c for seat, c in seats.items() if seat != alice.games[gid]["to_move"])
    before = alice.games[gid]["ply"]
    with pytest.raises(RequestError) as out_of_turn:
        await waiting.request("move", game=gid, move={"type": "pass"})
    assert out_of_turn.value.code in ("not_your_turn", "illegal_move")
    with pytest.raises(RequestError) as malformed:
        await waiting.request("move", game=gid, move={"type": "play", "card": "x"})
    assert malformed.value.code in ("bad_request", "not_your_turn")
    with pytest.raises(RequestError) as unknown:
        await alice.request("teleport")
    assert unknown.value.code == "unknown_type"
    await asyncio.sleep(0.3)
    assert alice.games[gid]["ply"] == before == bob.games[gid]["ply"]
    for payload, code in (
        ("not json", 4103),
        (json.dumps({"type": "move"}), 4103),
        ("x" * 20_000, 4003),
    ):
        ws = await http.ws_connect(cluster.url("eu").replace("http", "ws") + "/ws")
        await ws.send_str(payload)
        await ws.receive()
        assert ws.close_code == code
    ws = await http.ws_connect(cluster.url("eu").replace("http", "ws") + "/ws")
    await ws.send_str(json.dumps({"id": "1", "type": "hello", "token": "forged"}))
    reply = json.loads((await ws.receive()).data)
    assert reply["ok"] is False and reply["error"]["code"] == "unauthenticated"
    await ws.close()


async def test_a_flood_is_rate_limited_without_hurting_others(
    cluster: ProxiedCluster, http: aiohttp.ClientSession
) -> None:
    flooder = await online(cluster, http, "eu", "flooder")
    calm = await online(cluster, http, "eu", "calm")
    assert flooder.ws is not None
    with contextlib.suppress(aiohttp.ClientConnectionResetError):  # the server cuts it mid-flood
        for i in range(300):
            await flooder.ws.send_str(json.dumps({"id": f"f{i}", "type": "ping"}))
    started = asyncio.get_running_loop().time()
    await calm.request("ping")
    assert asyncio.get_running_loop().time() - started < 1.0
    closed = await flooder.wait_push("_closed", timeout=10)
    assert closed["code"] == 4002
    refused = [r for r in flooder.unmatched if r.get("error", {}).get("code") == "rate_limited"]
    assert refused and refused[0]["re"].startswith("f"), "over the burst: answered, by request id"
