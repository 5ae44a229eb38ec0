"""The game service over real sockets and real node processes (three regions on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import meridian.games.battleline as battleline
from meridian.node.client import PlayerClient, RequestError
from meridian.node.config import load_config
from meridian.node.localcluster import (
    fetch_health,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from tests.conftest import Cluster, eventually

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
        with urllib.request.urlopen(url) as answer:
            record: dict[str, Any] = json.loads(answer.read())
        return record

    record = await eventually(lambda: asyncio.to_thread(logged))
    replayed = battleline.replay(record["seed"], record["moves"], record["first"])
    assert battleline.result(replayed) == result
    for client in (alice, bob, carol):
        await client.close()


async def test_save_then_resume_from_another_region_continues_the_same_position(
    game_cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    dan = await player(game_cluster, http, 0, "dan")
    erin = await player(game_cluster, http, 1, "erin")
    gid = await start_game(dan, erin)
    first = await dan.wait_push("game", game=gid)
    seats = {first["you"]: dan, 1 - first["you"]: erin}
    rng = random.Random(11)
    ply = 0
    for _ in range(6):
        pushes = await _same_ply(gid, seats, ply)
        mover = pushes[0]["to_move"]
        ply = (
            await seats[mover].request("move", game=gid, move=rng.choice(pushes[mover]["legal"]))
        )["ply"] + 1
    await _same_ply(gid, seats, ply)
    await dan.request("save", game=gid)
    saved = await eventually(lambda: _saved_list(erin))
    assert saved[0]["gid"] == gid and saved[0]["moves"] == ply
    # erin, in another region, resumes it by inviting dan to it
    invitation = (await eventually(lambda: erin.request("invite", to="dan", resume=gid)))["invite"]
    assert invitation["resume"] == gid
    resumed = (await eventually(lambda: dan.request("accept", invite=invitation["iid"])))["game"]
    push = await eventually(lambda: _game_at(erin, resumed))
    assert push["status"] == "live" and push["view"] == push["view"]
    assert await eventually(lambda: _no_saved(dan))


async def _saved_list(client: PlayerClient) -> list[dict[str, Any]] | None:
    games = (await client.request("saved"))["games"]
    return list(games) or None


async def _no_saved(client: PlayerClient) -> bool:
    return not (await client.request("saved"))["games"]


async def _game_at(client: PlayerClient, gid: str) -> dict[str, Any] | None:
    return client.games.get(gid)


async def test_chat_between_regions_and_at_a_table(
    game_cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    fay = await player(game_cluster, http, 0, "fay")
    gus = await player(game_cluster, http, 2, "gus")
    await eventually(lambda: fay.request("chat", to="gus", text="hello from eu"))
    direct = await gus.wait_push("chat")
    assert direct["from"] == "fay" and direct["text"] == "hello from eu"
    with pytest.raises(RequestError) as too_long:
        await fay.request("chat", to="gus", text="x" * 501)
    assert too_long.value.code == "too_large"
    gid = await start_game(fay, gus)
    await fay.wait_push("game", game=gid)
    await fay.request("chat", game=gid, text="good luck")
    table = await gus.wait_push("chat", game=gid)
    assert table["text"] == "good luck"


async def test_admin_exports_and_a_fresh_node_imports_the_backup(
    game_cluster: Cluster, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    hana = await player(game_cluster, http, 1, "hana")
    backup = tmp_path / "backup.json"

    async def exported_with_hana() -> bool:
        result = game_cluster.meridian(
            "admin", "export", "--node", game_cluster.url(0), str(backup)
        )
        if result.returncode != 0:
            return False
        accounts = json.loads(backup.read_text())["documents"].get("accounts", "")
        return b"hana" in base64.b64decode(accounts)

    await eventually(exported_with_hana)
    exported = game_cluster.meridian("admin", "export", "--node", game_cluster.url(0), str(backup))
    assert exported.returncode == 0, exported.stderr
    documents = json.loads(backup.read_text())["documents"]
    assert "accounts" in documents and not any(d.startswith("presence:") for d in documents)
    fresh_dir = tmp_path / "fresh"
    config_path = write_configs(fresh_dir, ["zz"])[0]
    fresh = start_node(load_config(config_path, game_cluster.env), game_cluster.env)
    try:
        url = load_config(config_path, game_cluster.env).public_url
        await eventually(lambda: asyncio.to_thread(fetch_health, url))
        imported = game_cluster.meridian("admin", "import", "--node", url, str(backup))
        assert imported.returncode == 0, imported.stderr
        again = game_cluster.meridian("admin", "import", "--node", url, str(backup))
        assert again.returncode == 2 and "not_empty" in again.stderr
        client = PlayerClient(url, http)
        assert (await client.login("hana", PASSWORD))["uid"] == hana.you["uid"]
        sessions = game_cluster.meridian("admin", "sessions", "--node", game_cluster.url(0))
        assert sessions.returncode == 0 and "hana" in sessions.stdout
    finally:
        stop_nodes([fresh])
