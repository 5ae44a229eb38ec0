"""Draining a node (SIGTERM, `meridian admin drain`): its players move to another region.

Real node processes on 127.0.0.1. A game between a player on eu and one on us goes on while eu
is sent SIGTERM: the eu player is told once where to go, its client moves by itself, every
acknowledged move is in the finished game, a watcher on eu moves too and is shown the game to
its end, and eu exits 0.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.node.bots import run_bots
from meridian.node.client import PlayerClient, RequestError
from meridian.node.config import load_config
from meridian.node.localcluster import (
    LocalNode,
    cluster_env,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)
from tests.conftest import REGIONS, Cluster, eventually
from tests.test_game_service import PASSWORD, start_game

pytestmark = pytest.mark.integration
DRAIN_DEADLINE_S = 8
PLIES_BEFORE_DRAIN = 8
STALE_MOVE = {"not_your_turn", "illegal_move", "game_over"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def drain_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, list[LocalNode]]]:
    """Three regions whose nodes drain within DRAIN_DEADLINE_S and log JSON lines."""
    cluster = Cluster.__new__(Cluster)  # its configs edited before any node starts
    cluster.env = cluster_env()
    cluster.paths = write_configs(tmp_path, REGIONS)
    for path in cluster.paths:
        node_keys = f'drain_deadline_s = {DRAIN_DEADLINE_S}\nlog_format = "json"\n'
        path.write_text(path.read_text().replace("\n\n[cluster]", f"\n{node_keys}\n[cluster]", 1))
    cluster.configs = [load_config(path, cluster.env) for path in cluster.paths]
    assert cluster.configs[0].drain_deadline_s == DRAIN_DEADLINE_S
    cluster.nodes = [start_node(config, cluster.env) for config in cluster.configs]
    try:
        assert wait_for_mesh(cluster.nodes), "cluster did not form"
        yield cluster, cluster.nodes
    finally:
        stop_nodes(cluster.nodes)


async def signed_in(
    url: str, http: aiohttp.ClientSession, name: str, **options: Any
) -> PlayerClient:
    client = PlayerClient(url, http, **options)
    await client.register(name, PASSWORD)
    await client.login(name, PASSWORD)
    await client.connect()
    return client


async def play_until_over(
    client: PlayerClient, gid: str, acked: dict[int, dict[str, Any]], seed: int
) -> None:
    """Play a random legal move whenever it is this client's turn (always the first one can
    go on forever); note what was acknowledged."""
    rng = random.Random(seed)
    tried: set[int] = set()
    while True:
        push = client.games.get(gid)
        if push is not None and push["status"] != "live":
            return
        if push and push["to_move"] == push["you"] and push["legal"] and push["ply"] not in tried:
            tried.add(push["ply"])
            move = rng.choice(push["legal"])
            try:
                reply = await client.request("move", game=gid, move=move)
                acked[reply["ply"]] = move
            except RequestError as error:
                if error.code == "disconnected":
                    tried.discard(push["ply"])  # sent to the node left behind: look again
                elif error.code not in STALE_MOVE:
                    raise
        await asyncio.sleep(0.005)


def finished_game(url: str, gid: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url}/api/games/{gid}", timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        error.close()  # the error holds the response and its socket
        return None


async def test_sigterm_mid_game_moves_the_player_to_another_region_and_loses_no_move(
    drain_cluster: tuple[Cluster, list[LocalNode]], http: aiohttp.ClientSession
) -> None:
    cluster, nodes = drain_cluster
    alice = await signed_in(cluster.url(0), http, "alice")  # on eu, which is drained
    bob = await signed_in(cluster.url(1), http, "bob")
    carol = await signed_in(cluster.url(0), http, "carol")  # watches the game from eu
    seen: dict[str, list[str]] = {"alice": [], "bob": []}
    alice.on_push = lambda push: seen["alice"].append(push["type"])
    bob.on_push = lambda push: seen["bob"].append(push["type"])
    gid = await start_game(alice, bob)
    await eventually(lambda: carol.request("watch", game=gid))
    acked: dict[int, dict[str, Any]] = {}
    players = [
        asyncio.create_task(play_until_over(c, gid, acked, seed))
        for seed, c in enumerate([alice, bob])
    ]

    await eventually(lambda: _at_least(acked, PLIES_BEFORE_DRAIN))
    nodes[0].process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*players), 120)

    assert await asyncio.to_thread(nodes[0].process.wait, DRAIN_DEADLINE_S + 20) == 0
    assert alice.base_url in (cluster.url(1), cluster.url(2)), "alice did not leave eu"
    assert seen["alice"].count("drain") == 1, "one short notice for the moved player"
    assert "drain" not in seen["bob"]
    assert "rollback" not in seen["alice"] + seen["bob"]
    record = await eventually(lambda: asyncio.to_thread(finished_game, cluster.url(1), gid))
    assert len(acked) > PLIES_BEFORE_DRAIN
    for ply, move in acked.items():
        kept = {k: v for k, v in record["moves"][ply].items() if k != "player"}
        assert kept == move, f"the acknowledged move of ply {ply} is not in the game"
    assert alice.games[gid]["status"] == "finished" and bob.games[gid]["status"] == "finished"
    # The new node's hello restores the watch from carol's session record (resume_watching):
    # her client never asks again.
    assert carol.base_url in (cluster.url(1), cluster.url(2)), "carol did not leave eu"
    await eventually(lambda: _finished_for(carol, gid))
    log = [json.loads(line) for line in nodes[0].log_path.read_text().splitlines() if line]
    (done,) = [e for e in log if e["message"].startswith("drain: done")]
    assert (done["node"], done["logger"]) == ("eu-1", "meridian.drain")
    assert "'told': 2, 'left': 0," in done["message"]  # alice and carol
    for client in (alice, bob, carol):
        await client.close()


async def _at_least(acked: dict[int, Any], plies: int) -> bool:
    return len(acked) >= plies


async def _finished_for(client: PlayerClient, gid: str) -> bool:
    return client.games.get(gid, {}).get("status") == "finished"


def meridian(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "meridian", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def http_status(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        with error:  # the error holds the response and its socket
            return error.code, dict(json.loads(error.read()))


async def test_admin_drain_refuses_new_players_and_waits_for_the_connected_one(
    drain_cluster: tuple[Cluster, list[LocalNode]], http: aiohttp.ClientSession
) -> None:
    cluster, nodes = drain_cluster
    ap = cluster.url(2)
    # A client that does not follow notices by itself: the node waits for it.
    carol = await signed_in(ap, http, "carol", follow_drain=False)
    dave = await signed_in(ap, http, "dave", follow_drain=False)
    assert http_status(f"{ap}/readyz")[0] == 200
    drain = meridian(cluster.env, "admin", "drain", "--node", ap, "--wait")

    notice = await carol.wait_push("drain", timeout=10)
    assert notice["url"] in (cluster.url(0), cluster.url(1)) and notice["resume"]
    assert "region ap is going down" in notice["message"]
    assert http_status(f"{ap}/readyz") == (503, {"status": "draining", "node": "ap-1"})
    status, body = http_status(f"{ap}/api/login", {"name": "carol", "password": PASSWORD})
    assert (status, body["error"]["code"]) == (503, "draining")
    assert nodes[2].process.poll() is None, "the node waits for its players"

    # A target that cannot be reached: the client drops the old node and fails over as usual,
    # with the notice's resume token (the old one is void).
    dave_notice = await dave.wait_push("drain", timeout=10)
    assert not await dave.follow_drain_notice({**dave_notice, "url": "http://127.0.0.1:9"})
    assert (await dave.wait_push("_closed", timeout=10))["type"] == "_closed"
    assert dave.resume == dave_notice["resume"]
    await dave.connect(resume=True, base_url=dave_notice["url"])
    assert dave.you["region"] == dave_notice["region"]

    assert await carol.follow_drain_notice(notice)
    assert carol.base_url == notice["url"] and carol.you["region"] == notice["region"]
    assert (await carol.request("ping"))["ok"]
    out, err = await asyncio.to_thread(drain.communicate, timeout=DRAIN_DEADLINE_S + 30)
    assert drain.returncode == 0, err
    report = "drained ap-1: 2 of 2 sessions told where to go, 0 still connected at the end"
    assert report in out
    assert await asyncio.to_thread(nodes[2].process.wait, 20) == 0
    for client in (carol, dave):
        await client.close()


async def test_bots_follow_the_drain_notice_and_finish_their_game(
    drain_cluster: tuple[Cluster, list[LocalNode]],
) -> None:
    cluster, nodes = drain_cluster
    servers = [cluster.url(i) for i in range(3)]  # bot1 plays from eu, bot2 from us
    lines: list[str] = []
    bots = asyncio.create_task(
        run_bots(servers, 2, 1, seed=5, pause_s=0, move_delay_s=0.02, log=lines.append)
    )
    await eventually(lambda: _has_line(lines, "started game"))
    nodes[0].process.send_signal(signal.SIGTERM)
    summary = await asyncio.wait_for(bots, 90)
    assert summary.problems() == []
    assert len(summary.gids()) == 1
    drained, other = summary.bots
    assert drained.server != servers[0] and drained.reconnects == 1, summary.report()
    assert other.server == servers[1] and other.reconnects == 0, summary.report()
    assert sum("drain notice" in line for line in lines) == 1
    assert await asyncio.to_thread(nodes[0].process.wait, DRAIN_DEADLINE_S + 20) == 0


async def _has_line(lines: list[str], text: str) -> bool:
    return any(text in line for line in lines)
