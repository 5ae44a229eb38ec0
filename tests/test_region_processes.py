"""A region of two node processes (docs/architecture.md *Several processes per region*), real
processes on 127.0.0.1: players on different processes of one region play whole games, and a
region survives one of its processes being killed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.node.botlogs import wait_for_equal_logs
from meridian.node.botrecords import BotSummary
from meridian.node.bots import run_bots
from meridian.node.client import PlayerClient, RequestError
from meridian.node.config import NodeConfig, load_config
from meridian.node.localcluster import (
    LocalNode,
    cluster_env,
    kill_node,
    start_node,
    stop_nodes,
    wait_for_mesh,
    write_configs,
)

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
GAME_TIMEOUT_S = 90.0


@dataclass
class Region:
    """eu run by two node processes, eu-1 and eu-2."""

    env: dict[str, str]
    configs: list[NodeConfig]
    nodes: list[LocalNode]

    @property
    def urls(self) -> list[str]:
        return [config.public_url for config in self.configs]


@pytest.fixture
def region(tmp_path: Path) -> Iterator[Region]:
    env = cluster_env()
    configs = [load_config(p, env) for p in write_configs(tmp_path, ["eu"], processes=2)]
    assert [(c.node_id, c.region) for c in configs] == [("eu-1", "eu"), ("eu-2", "eu")]
    running = Region(env, configs, [start_node(config, env) for config in configs])
    try:
        assert wait_for_mesh(running.nodes), "the two processes did not link"
        yield running
    finally:
        stop_nodes(running.nodes)


async def _archived(url: str, gid: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/games/{gid}") as answer:
        assert answer.status == 200, await answer.text()
        game: dict[str, Any] = await answer.json()
        return game


def _assert_one_clean_game_each(summary: BotSummary) -> None:
    assert summary.problems() == [], summary.report()
    assert all(b.finished == 1 for b in summary.bots), summary.report()
    assert len(summary.gids()) == 1, summary.report()


async def test_two_bots_on_two_processes_of_one_region_play_a_whole_game(region: Region) -> None:
    """Bot i logs in at urls[i % 2]: the pair sits on eu-1 and eu-2, every move crosses from
    one process to the other, and none is lost: both seats count every ply, and both
    processes archive the same moves."""
    summary = await asyncio.wait_for(run_bots(region.urls, 2, 1, prefix="split"), GAME_TIMEOUT_S)
    _assert_one_clean_game_each(summary)
    first, second = summary.bots
    assert (first.server, second.server) == (region.urls[0], region.urls[1]), summary.report()
    assert first.reconnects == second.reconnects == 0
    (one,), (two,) = first.games, second.games
    assert one.gid == two.gid and (one.opponent, two.opponent) == ("split2", "split1")
    assert one.plies == two.plies == first.moves + second.moves, summary.report()
    assert await wait_for_equal_logs(region.urls, summary.gids(), 15) is None
    for url in region.urls:
        archived = await _archived(url, one.gid)
        assert len(archived["moves"]) == one.plies, url


async def test_a_person_on_one_process_sees_every_move_of_a_bot_on_the_other(
    region: Region,
) -> None:
    """The person plays on eu-2, the bot on eu-1. Whenever it is the person's turn the push
    that says so shows the bot's move just made (``last_move``), as the archive has it: no move
    of the opponent is lost or shown out of order."""
    bots = asyncio.create_task(run_bots(region.urls[:1], 1, 1, prefix="host"))
    async with aiohttp.ClientSession() as http:
        person = PlayerClient(region.urls[1], http)
        await person.register("visitor", PASSWORD)
        await person.login("visitor", PASSWORD)
        await person.connect()
        assert person.you["region"] == "eu"
        shown = await asyncio.wait_for(_play_against(person, "host1"), GAME_TIMEOUT_S)
        await person.close()
    summary = await asyncio.wait_for(bots, 30)
    _assert_one_clean_game_each(summary)
    gid, seat = shown[0]["game"], shown[0]["you"]
    archived = await _archived(region.urls[1], gid)
    moves = archived["moves"]
    plies = [push["ply"] for push in shown]
    assert plies == sorted(plies) and plies[-1] == len(moves)
    handed_over = [  # the pushes that gave the person the turn right after a move of the bot
        p
        for p in shown
        if p["status"] == "live"
        and p["to_move"] == seat
        and p["ply"] > 0
        and moves[p["ply"] - 1]["player"] != seat
    ]
    assert len(handed_over) >= 10, "the person was handed the turn too few times"
    for push in handed_over:
        made = moves[push["ply"] - 1]
        seen = (push["last_move"]["player"], push["last_move"]["move"]["type"])
        assert seen == (made["player"], made["type"]), push["ply"]
    bot_moves = sum(1 for m in moves if m["player"] != seat)
    assert summary.bots[0].moves == bot_moves


async def _play_against(person: PlayerClient, bot: str) -> list[dict[str, Any]]:
    """Invite `bot` until it accepts, then play random legal moves to the end; every game push
    the person was shown, in order."""
    for _ in range(100):
        try:
            await person.request("invite", to=bot)
            break
        except RequestError as error:
            assert error.code in ("offline", "unknown_user"), error
            await asyncio.sleep(0.1)  # the bot is not online yet
    rng = random.Random(7)
    shown: list[dict[str, Any]] = []
    acted_at = -1
    while True:
        push = await person.wait_push("game", timeout=30)
        shown.append(push)
        if push["status"] != "live":
            return shown
        if push["to_move"] == push["you"] and push["legal"] and push["ply"] > acted_at:
            acted_at = push["ply"]
            await person.request("move", game=push["game"], move=rng.choice(push["legal"]))


async def test_a_region_of_two_processes_survives_one_being_killed(region: Region) -> None:
    """eu-2 is killed in the middle of the game: its player resumes on eu-1, the sibling of its
    region, and the game ends there; eu-2 restarted catches up with eu-1's game log."""
    started: list[str] = []
    playing = asyncio.Event()

    def note(line: str) -> None:
        if "started game" in line:
            started.append(line)
            if len(started) == 2:
                playing.set()

    run = run_bots(region.urls, 2, 1, prefix="kill", move_delay_s=0.02, log=note)
    bots = asyncio.create_task(run)
    async with asyncio.timeout(30):
        await playing.wait()
    await asyncio.sleep(0.5)
    assert not bots.done()
    await asyncio.to_thread(kill_node, region.nodes[1])
    summary = await asyncio.wait_for(bots, GAME_TIMEOUT_S)
    _assert_one_clean_game_each(summary)
    moved = {b.name: b for b in summary.bots}["kill2"]
    assert moved.reconnects >= 1 and moved.server == region.urls[0], summary.report()
    (game,) = moved.games
    archived = await _archived(region.urls[0], game.gid)
    assert len(archived["moves"]) == game.plies
    region.nodes[1] = start_node(region.configs[1], region.env)
    assert await asyncio.to_thread(wait_for_mesh, region.nodes), "eu-2 did not come back"
    assert await wait_for_equal_logs(region.urls, summary.gids(), 15) is None
