"""Rebalancing between real node processes: one region loaded, the others take players.

Three local regions with the rebalancer on. Every player connects to eu: 8 idle ones, and 8
pairs playing games with a short pause before each move. eu's rebalancer moves players to us and ap
with the drain's notice (target URL plus resume token) until the published loads are even:
the idle players go first, a player in a game is told only between their turns (never while it
is their turn or a move of theirs awaits its reply), every game finishes with every
acknowledged move in it, and the moves are counted in /api/cluster and /metrics.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meridian.node.client import PlayerClient, RequestError
from meridian.node.localcluster import TOKEN_ENV, stop_nodes, wait_for_mesh
from meridian.node.rebalance import START_ABOVE, STOP_BELOW
from meridian.node.rebalancer import TRUST_LINK_S
from tests.conftest import Cluster, eventually
from tests.test_drain import STALE_MOVE, finished_game
from tests.test_game_service import PASSWORD, start_game

pytestmark = pytest.mark.integration
IDLE = 8  # players connected and doing nothing
PAIRS = 8  # games, both players on eu: 24 players, of whom eu keeps 8
MOVE_PAUSE_S = 0.05  # before each move until the load is even: the games outlast the moves
EVEN_WITHIN_S = 20.0
# The notices of one round reach their clients within this of each other: a target whose
# acknowledgement of the new resume token lags (after a link was replaced) is trusted after
# TRUST_LINK_S; a round starts only once the last one's notices are out.
ONE_ROUND_S = TRUST_LINK_S + 0.25
REBALANCE = """
[rebalance]
enabled = true
interval_s = 1
"""


@pytest.fixture
def loaded_cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, extra=REBALANCE)
    try:
        assert wait_for_mesh(cluster.nodes), "cluster did not form"
        yield cluster
    finally:
        stop_nodes(cluster.nodes)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


@dataclass
class Watched:
    """One player's client, and what it was doing whenever a move notice reached it."""

    client: PlayerClient
    gid: str = ""
    pause_s: float = MOVE_PAUSE_S
    moving: bool = False  # a move request sent, its reply not yet read by the player's task
    sent_ply: int = -1  # the ply of the last move sent
    notices: list[dict[str, Any]] = field(default_factory=list)
    told_at: list[float] = field(default_factory=list)
    told_in_game: list[bool] = field(default_factory=list)  # in a live game when told
    mid_turn: list[str] = field(default_factory=list)
    acked: dict[int, dict[str, Any]] = field(default_factory=dict)

    def state(self) -> str:
        shown = self.client.games.get(self.gid) or {}
        keys = ("status", "ply", "to_move", "you")
        return f"{self.client.you.get('name')}@{self.client.base_url}: " + str(
            [shown.get(k) for k in keys]
            + [self.sent_ply, self.moving, len(self.notices), self.client.closed]
        )

    def on_push(self, push: dict[str, Any]) -> None:
        if push["type"] != "drain":
            return
        self.notices.append(push)
        self.told_at.append(time.monotonic())
        # (Its one game, by the pushes: a notice may arrive before start_game returned the gid.)
        shown = next(iter(self.client.games.values()), None)
        self.told_in_game.append(shown is not None and shown["status"] == "live")
        if shown is not None and shown["status"] == "live" and shown["to_move"] == shown["you"]:
            self.mid_turn.append(f"told to move at ply {shown['ply']}, on its turn")
        # The node shows a move (a game push of the next ply) right after its reply.
        if self.moving and (shown is None or shown["ply"] <= self.sent_ply):
            self.mid_turn.append(f"told to move while its move of ply {self.sent_ply} was sent")


async def play(player: Watched, seed: int) -> None:
    """A random legal move, after a pause, whenever it is this player's turn; until the end."""
    rng = random.Random(seed)
    client, gid, tried = player.client, player.gid, set[int]()
    while True:
        push = client.games.get(gid)
        if push is not None and push["status"] != "live":
            return
        if push and push["to_move"] == push["you"] and push["legal"] and push["ply"] not in tried:
            await asyncio.sleep(player.pause_s)
            tried.add(push["ply"])
            move = rng.choice(push["legal"])
            player.moving, player.sent_ply = True, push["ply"]
            try:
                reply = await client.request("move", game=gid, move=move)
                player.acked[reply["ply"]] = move
            except RequestError as error:
                if error.code == "disconnected":
                    tried.discard(push["ply"])  # asked the node left behind: look again
                elif error.code not in STALE_MOVE:
                    raise
            finally:
                player.moving = False
        await asyncio.sleep(0.005)


async def signed_in(url: str, http: aiohttp.ClientSession, name: str) -> Watched:
    """A player registered and connected at `url`, watched from its first push on."""
    watched = Watched(PlayerClient(url, http))
    watched.client.on_push = watched.on_push
    await watched.client.register(name, PASSWORD)
    await watched.client.login(name, PASSWORD)
    await watched.client.connect()
    return watched


def admin_get(cluster: Cluster, index: int, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{cluster.url(index)}{path}")
    request.add_header("Authorization", f"Bearer {cluster.env[TOKEN_ENV]}")
    with urllib.request.urlopen(request, timeout=5) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


def even(connections: dict[str, int]) -> bool:
    """Within the policy's lines: nothing above the start line, the loaded one at its stop line
    (one player of slack: players move whole)."""
    mean = sum(connections.values()) / len(connections)
    return (
        max(connections.values()) <= START_ABOVE * mean + 1
        and connections.get("eu-1", 0) <= STOP_BELOW * mean + 1
    )


def published_connections(cluster: Cluster) -> dict[str, int]:
    load = admin_get(cluster, 0, "/api/cluster")["load"]
    return {entry["node"]: entry["connections"] for entry in load["nodes"]}


async def test_a_loaded_region_sheds_idle_players_first_and_games_lose_nothing(
    loaded_cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    cluster = loaded_cluster
    eu = cluster.url(0)
    # The idle players first; then the pairs, each starting its game at once. A player not yet
    # in a game is idle too, and would be moved as such: the pairs start together, so that
    # window is one sign-in and invitation long, not eight (one pair after another, a busy
    # machine's second round caught a pair before its game; its invitation, then withdrawn,
    # now follows it: docs/architecture.md, *Invitations of a player who moves*).
    idle = list(await asyncio.gather(*(signed_in(eu, http, f"idle{i}") for i in range(IDLE))))

    async def paired(pair: int) -> list[Watched]:
        a, b = await asyncio.gather(
            signed_in(eu, http, f"p{pair}a"), signed_in(eu, http, f"p{pair}b")
        )
        a.gid = b.gid = await start_game(a.client, b.client)
        return [a, b]

    players = [p for pair in await asyncio.gather(*map(paired, range(PAIRS))) for p in pair]
    watched = idle + players
    loaded_at = time.monotonic()
    games = [asyncio.create_task(play(p, seed)) for seed, p in enumerate(players)]

    async def evened() -> dict[str, int] | None:
        shown = await asyncio.to_thread(published_connections, cluster)
        return shown if len(shown) == 3 and sum(shown.values()) == IDLE + 2 * PAIRS else None

    async def even_now() -> dict[str, int] | None:
        shown = await evened()
        return shown if shown and even(shown) else None

    try:
        spread = await eventually(even_now, timeout=EVEN_WITHIN_S)
    except AssertionError:
        shown = published_connections(cluster)
        rebalance = admin_get(cluster, 0, "/api/cluster")["rebalance"]
        raise AssertionError(f"not even in {EVEN_WITHIN_S} s: {shown}; eu: {rebalance}") from None
    even_after_s = time.monotonic() - loaded_at
    for player in players:
        player.pause_s = 0.0  # the rest of each game at full speed
    try:
        await asyncio.wait_for(asyncio.gather(*games), 60)
    except TimeoutError:
        raise AssertionError(f"games not over: {[p.state() for p in players]}") from None

    # The idle players went first: all of them left eu, each told once, no later than the
    # round in which anyone in a game was.
    stayed = [(w.client.you["name"], w.client.base_url, w.notices) for w in idle
              if w.client.base_url == eu or len(w.notices) != 1]  # fmt: skip
    assert not stayed, stayed
    in_game = [at for p in players for at, g in zip(p.told_at, p.told_in_game, strict=True) if g]
    assert in_game, "enough load that players in a game moved too"
    assert max(at for w in idle for at in w.told_at) <= min(in_game) + ONE_ROUND_S
    # ... and those in a game only between their turns.
    assert [m for p in players for m in p.mid_turn] == []
    # Every game finished, with every acknowledged move in it.
    for gid in {p.gid for p in players}:
        record = await eventually(partial(asyncio.to_thread, finished_game, eu, gid))
        for player in (p for p in players if p.gid == gid):
            assert player.client.games[gid]["status"] == "finished"
            for ply, move in player.acked.items():
                kept = {k: v for k, v in record["moves"][ply].items() if k != "player"}
                assert kept == move, f"game {gid}: the acknowledged move of ply {ply} was lost"

    # Once the games are over eu may still move a player who was in one: wait for the round
    # under way (if any) to end and its notices to arrive, then compare.
    async def settled() -> tuple[int, dict[str, Any]] | None:
        view = await asyncio.to_thread(admin_get, cluster, 0, "/api/cluster")
        told = sum(len(w.notices) for w in idle + players)
        moved = view["rebalance"]
        return (told, view) if moved["moving"] == 0 and moved["moved_out"] == told else None

    told, cluster_view = await eventually(settled)
    rebalance = cluster_view["rebalance"]
    assert rebalance["enabled"] and rebalance["moved_out"] == told
    assert (rebalance["moved_idle"], rebalance["moved_in_game"]) == (
        told - len(in_game),
        len(in_game),
    )
    assert rebalance["taken_back"] >= 0 and rebalance["moving"] == 0

    async def counted_everywhere() -> bool:
        nodes = [(await asyncio.to_thread(admin_get, cluster, i, "/api/cluster"))["load"]["nodes"]
                 for i in range(3)]  # fmt: skip
        return all(
            sum(n["moved_in"] for n in view) == told
            and {n["node"]: n["moved_out"] for n in view}["eu-1"] == told
            for view in nodes
        )

    await eventually(counted_everywhere, timeout=10)
    assert moved_out_in_metrics(cluster, 1) == {"eu-1": told, "us-1": 0, "ap-1": 0}
    print(
        f"\nrebalance: {told} players moved ({told - len(in_game)} idle, "
        f"{len(in_game)} in a game), "
        f"even after {even_after_s:.1f} s: {spread}; rebalancer on eu: "
        f"{rebalance['rounds']} rounds, {rebalance['cpu_s'] * 1000:.1f} ms CPU, "
        f"{rebalance['taken_back']} taken back"
    )
    for player in watched:
        await player.client.close()


def moved_out_in_metrics(cluster: Cluster, index: int) -> dict[str, int]:
    with urllib.request.urlopen(f"{cluster.url(index)}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        sample.labels["node"]: int(sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == "meridian_rebalance_moved_out"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
