"""A move shown is a move kept, over real node processes killed with SIGKILL mid-play.

Players on one region play quick games while that region's node is killed at random moments.
Every `game` push any client receives is recorded; once the games have finished, each shown
ply must be the move at that ply in the finished game's log entry (`GET /api/games/{gid}`),
and nobody may have needed a `rollback`: with the disk kept (restart) or with
``ack_regions = 1`` (the node never comes back), nothing a player saw may vanish.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.node.client import PlayerClient, RequestError
from meridian.sim.proxied import FAST_RECONNECT, ProxiedCluster
from tests.conftest import SIM_RANDOM_SEED, eventually

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"
GAMES = 20
THINK_S = (0.0, 0.01)
PLAY_TIMEOUT_S = 90.0


@dataclass
class Seat:
    """One player: its client, what it was shown, and where it may reconnect."""

    client: PlayerClient
    gid: str = ""
    seat: int = 0
    shown: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)

    def record(self, push: dict[str, Any]) -> None:
        if push["type"] == "game":
            self.shown.append(push)
        elif push["type"] == "rollback":
            self.rollbacks.append(push)


async def seated_players(
    cluster: ProxiedCluster, http: aiohttp.ClientSession, seats: list[Seat]
) -> None:
    """2 x GAMES players on eu (appended to `seats` as they connect, so the caller can close
    them whatever happens), paired into GAMES live games. Players sign up and pair at once, not
    one after another: each signup waits for two argon2id hashes, and nothing here is about
    their order."""

    async def signed_up(i: int) -> None:
        client = PlayerClient(cluster.url("eu"), http, queue_pushes=False)
        await client.register(f"player{i}", PASSWORD)
        await client.login(f"player{i}", PASSWORD)
        await client.connect()
        seat = Seat(client)
        client.on_push = seat.record
        seats.append(seat)
        seated[i] = seat

    seated: dict[int, Seat] = {}
    await asyncio.gather(*(signed_up(i) for i in range(2 * GAMES)))
    ordered = [seated[i] for i in range(2 * GAMES)]
    await asyncio.gather(*(_paired(h, g) for h, g in zip(ordered[::2], ordered[1::2], strict=True)))


async def _paired(host: Seat, guest: Seat) -> None:
    invite = (await eventually(partial(_invite, host, guest)))["invite"]
    accepted = await eventually(partial(guest.client.request, "accept", invite=invite["iid"]))
    gid = accepted["game"]
    for player in (host, guest):
        push = await eventually(partial(_game, player.client, gid))
        player.gid, player.seat = gid, push["you"]


async def _invite(host: Seat, guest: Seat) -> dict[str, Any]:
    return await host.client.request("invite", to=guest.client.you["name"])


async def _game(client: PlayerClient, gid: str) -> dict[str, Any] | None:
    return client.games.get(gid)


async def keep_playing(player: Seat, urls: list[str], rng: random.Random) -> None:
    """Move whenever it is this player's turn; after a drop, resume on the first node that
    answers. Returns once the game is over."""
    client = player.client
    while True:
        push = client.games[player.gid]
        if push["status"] != "live":
            return
        if client.ws is None or client.ws.closed:
            await _resume(client, urls)
        elif push["to_move"] == player.seat and push["legal"]:
            await asyncio.sleep(rng.uniform(*THINK_S))
            try:
                await client.request("move", game=player.gid, move=rng.choice(push["legal"]))
            except RequestError:
                await asyncio.sleep(0.05)  # a stale view or a dropped link: look again
        else:
            await asyncio.sleep(0.005)


# Why each player's last resume failed (printed when the play times out).
RESUME_ERRORS: dict[str, str] = {}


async def _resume(client: PlayerClient, urls: list[str]) -> None:
    for url in urls:
        try:
            await client.connect(resume=True, base_url=url, heartbeat=None)
            RESUME_ERRORS.pop(client.you.get("name", "?"), None)
            return
        except (RequestError, aiohttp.ClientError, OSError) as error:
            RESUME_ERRORS[client.you.get("name", "?")] = f"{type(error).__name__}: {error}"[:200]
            continue
    await asyncio.sleep(0.1)


def finished_moves(url: str, gid: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/games/{gid}", timeout=5) as response:
        moves: list[dict[str, Any]] = json.loads(response.read())["moves"]
        return moves


async def _logged(url: str, gid: str) -> list[dict[str, Any]] | None:
    try:
        return await asyncio.to_thread(finished_moves, url, gid)
    except OSError:
        return None


async def vanished_plies(seats: list[Seat], url: str) -> list[str]:
    """Every shown ply that is not the move at that ply of the finished game."""
    problems = []
    for gid in {s.gid for s in seats}:
        moves = await eventually(partial(_logged, url, gid), timeout=30)
        for player in (s for s in seats if s.gid == gid):
            for push in player.shown:
                ply, last = push["ply"], push["last_move"]
                if ply == 0 or last is None:
                    continue
                if ply > len(moves) or not _same_move(moves[ply - 1], last):
                    problems.append(f"{gid} ply {ply} shown to {player.client.you['name']}")
        if any(p.startswith(gid) for p in problems):
            print(_story(gid, moves, [s for s in seats if s.gid == gid]))
    return problems


def _story(gid: str, moves: list[dict[str, Any]], players: list[Seat]) -> str:
    """What a failure needs to be explained: the finished game against what each player was
    shown (ply, player, move), where they differ."""
    lines = [f"game {gid}: {len(moves)} moves in the finished game"]
    for player in players:
        for push in player.shown:
            ply, last = push["ply"], push["last_move"]
            if ply == 0 or last is None:
                continue
            logged = moves[ply - 1] if ply <= len(moves) else None
            if logged is None or not _same_move(logged, last):
                name = player.client.you.get("name")
                lines.append(f"  ply {ply} shown to {name}: {last} | finished game: {logged}")
        lines.append(f"  {player.client.you.get('name')} rollbacks: {player.rollbacks}")
    return "\n".join(lines[:60])


def _same_move(logged: dict[str, Any], shown: dict[str, Any]) -> bool:
    """The logged move is the one shown; a view may hide parts of it (a Scout's returned cards
    are shown to the opponent as the decks they went to), so only what was shown is compared."""
    if logged["player"] != shown["player"]:
        return False
    move = shown["move"]
    if logged["type"] == move["type"] == "scout_return" and "cards" not in move:
        return True
    return {**move, "player": shown["player"]} == logged


async def play_through_kills(
    cluster: ProxiedCluster,
    http: aiohttp.ClientSession,
    kills: list[float],
    restart: bool,
    seats: list[Seat],
) -> None:
    rng = random.Random(SIM_RANDOM_SEED)
    RESUME_ERRORS.clear()
    await seated_players(cluster, http, seats)
    # With ack_regions = 0 a move durable only on eu must wait for eu to come back: players who
    # moved on to another region could fork the game there (a documented, notified merge).
    urls = [cluster.url("eu")] if restart else [cluster.url("us"), cluster.url("ap")]
    games = asyncio.gather(*(keep_playing(s, urls, random.Random(rng.random())) for s in seats))
    for delay in kills:
        await asyncio.sleep(delay)
        cluster.kill("eu")  # SIGKILL: whatever was not on disk is gone
        if restart:
            cluster.restart("eu")
    try:
        await asyncio.wait_for(games, PLAY_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"play did not end; last resume errors: {RESUME_ERRORS}") from None


async def stopped(cluster: ProxiedCluster, seats: list[Seat]) -> None:
    """Players leave, then the nodes stop: a node stopping with players still connected drains
    first, waiting for them to move to another region (here: until stop_nodes kills it)."""
    for seat in seats:
        await seat.client.close()
    await cluster.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_sigkill_and_restart_mid_play_never_takes_back_a_shown_ply(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # One region alone: eu's disk is the only copy of a move, so nothing but the push gate
    # stands between a SIGKILL and a shown ply that the restart no longer has.
    cluster = ProxiedCluster(tmp_path, ["eu"], extra=FAST_RECONNECT)
    await cluster.start()
    seats: list[Seat] = []
    try:
        kills = [random.Random(SIM_RANDOM_SEED + i).uniform(0.3, 1.2) for i in range(3)]
        await play_through_kills(cluster, http, kills, restart=True, seats=seats)
        assert await vanished_plies(seats, cluster.url("eu")) == []
        assert [r for s in seats for r in s.rollbacks] == []
        assert sum(len(s.shown) for s in seats) > 50
    finally:
        await stopped(cluster, seats)


async def test_with_ack_regions_1_a_lost_node_takes_back_no_shown_ply(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    extra = FAST_RECONNECT + "\n[replication]\nack_regions = 1\n"
    cluster = ProxiedCluster(tmp_path, ["eu", "us", "ap"], extra=extra)
    await cluster.start()
    seats: list[Seat] = []
    try:
        kill_at = random.Random(SIM_RANDOM_SEED).uniform(0.5, 1.5)
        await play_through_kills(cluster, http, [kill_at], restart=False, seats=seats)
        assert await vanished_plies(seats, cluster.url("us")) == []
        assert [r for s in seats for r in s.rollbacks] == []
    finally:
        await stopped(cluster, seats)
