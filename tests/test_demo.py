"""``meridian demo`` with bots, run as a user would: a subprocess on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.node.bots import ACCEPT_PAUSE_S, GREETING
from meridian.node.client import PlayerClient
from meridian.node.config import load_config
from meridian.node.localcluster import cluster_env, fetch_health, write_configs
from meridian.node.topics.lobby import LOBBY_AT_TABLE_S
from tests.conftest import REGIONS

pytestmark = pytest.mark.integration


def meridian_demo(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "meridian", "demo", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_demo_bots_finish_their_games_and_the_demo_exits_0_when_every_log_agrees(
    tmp_path: Path,
) -> None:
    write_configs(tmp_path, REGIONS)
    result = meridian_demo(
        *("--bots", "4", "--games", "1", "--exit-when-done", "--fresh"),
        *("--config-dir", str(tmp_path)),
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "player client: http://127.0.0.1:" in result.stdout
    assert "/dashboard" in result.stdout
    assert result.stdout.count("started game") == 4  # two games, seen from both seats
    # bot1 and bot2 (the default --bots-for-people 2) wait for people and play no bot.
    assert "bot1 and bot2 wait for people: invite one" in result.stdout
    assert "4 bots (bot3 ... bot6) play each other" in result.stdout
    assert "bot1 (people)" in result.stdout
    assert "every region's game log holds the same 2 bot games" in result.stdout


def test_demo_refuses_exit_when_done_without_games(tmp_path: Path) -> None:
    write_configs(tmp_path, REGIONS)
    result = meridian_demo("--exit-when-done", "--config-dir", str(tmp_path), timeout=30)
    assert result.returncode == 2
    assert "--exit-when-done needs --bots N and --games G" in result.stderr


@contextlib.contextmanager
def running_demo(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``meridian demo ARGS`` in the background, its stdout readable; stopped with SIGINT."""
    # The with block closes the pipe (and waits) whatever happens inside.
    with subprocess.Popen(
        [sys.executable, "-m", "meridian", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as demo:
        try:
            yield demo
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=30)


def _wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    """Read the demo's stdout until a line holds `needle`; the lines read so far."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not printed; saw:\n{''.join(seen)}")


def test_a_killed_region_leaves_the_others_running_and_comes_back(tmp_path: Path) -> None:
    """The demo's promise: one node dies, the other regions play on, the dead one restarts."""
    paths = write_configs(tmp_path, REGIONS)
    folder = ("--config-dir", str(tmp_path))
    with running_demo("--bots", "0", "--restart-after", "1", *folder) as demo:
        _wait_for_line(demo, "Ctrl-C stops the cluster", timeout=60)
        killed = meridian_demo("kill", "us", *folder, timeout=30)
        assert killed.returncode == 0, killed.stderr
        assert "killed region us" in killed.stdout
        _wait_for_line(demo, "region us is DOWN", timeout=10)
        urls = [load_config(path, cluster_env()).public_url for path in paths]
        assert fetch_health(urls[0]) is not None and fetch_health(urls[2]) is not None
        _wait_for_line(demo, "region us restarted", timeout=10)
        status = meridian_demo("status", *folder, timeout=30)
        assert status.stdout.count(" up ") == 3, status.stdout
        assert demo.poll() is None, "the demo stopped when one region died"
        deadline = time.monotonic() + 30
        while (health := fetch_health(urls[1])) is None or len(health["peers"]) < 2:
            assert time.monotonic() < deadline, "the restarted region did not rejoin the mesh"
            time.sleep(0.2)


def _admin_token(lines: list[str]) -> str:
    for line in lines:
        if "admin token (this run only):" in line:
            return line.split(":", 1)[1].strip()
    raise AssertionError("the demo printed no admin token")


def _post(url: str, token: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:  # the error holds the response and its socket
            return error.code, json.loads(error.read())


def test_the_dashboard_api_kills_and_starts_a_region_of_the_demo(tmp_path: Path) -> None:
    """What the dashboard's Kill and Start buttons call, behind the admin token."""
    paths = write_configs(tmp_path, REGIONS)
    urls = [load_config(path, cluster_env()).public_url for path in paths]
    quiet = ("--bots", "0", "--bots-for-people", "0", "--restart-after", "0")
    with running_demo(*quiet, "--config-dir", str(tmp_path)) as demo:
        token = _admin_token(_wait_for_line(demo, "Ctrl-C stops the cluster", timeout=60))
        eu, us = urls[0], urls[1]
        assert _post(f"{eu}/api/demo/kill/us", "wrong token")[0] == 401
        assert _post(f"{eu}/api/demo/kill/mars", token)[0] == 404
        status, answer = _post(f"{eu}/api/demo/kill/us", token)
        assert status == 200 and answer["action"] == "kill", answer
        _wait_for_line(demo, "region us is DOWN", timeout=10)
        assert fetch_health(us) is None and fetch_health(eu) is not None
        status, answer = _post(f"{eu}/api/demo/start/us", token)
        assert status == 200, answer
        _wait_for_line(demo, "region us restarted (on request)", timeout=10)
        deadline = time.monotonic() + 30
        while fetch_health(us) is None:
            assert time.monotonic() < deadline, "us did not come back"
            time.sleep(0.2)


def test_a_newcomer_invites_a_bot_of_the_demo_at_once_and_sees_it_accept(tmp_path: Path) -> None:
    """The README's "invite one of the bots": bot1 and bot2 wait idle for people while bot3 and
    bot4 play each other; a person's invitation to bot1 shows as sent and is accepted about a
    second later, with a hello in the game's chat; bot5 logs in to wait in bot1's place."""
    paths = write_configs(tmp_path, REGIONS)
    eu = load_config(paths[0], cluster_env()).public_url
    folder = ("--config-dir", str(tmp_path))
    with running_demo("--bots", "2", "--restart-after", "0", *folder) as demo:
        _wait_for_line(demo, "Ctrl-C stops the cluster", timeout=60)
        story = asyncio.run(asyncio.wait_for(_newcomer_invites(eu, "bot1"), 30))
        assert story["bot2"] == {"idle"}, story  # reserved: no bot invited it
        assert story["online_after_s"] < 5.0, story  # the bot was there at once
        assert story["sent_shown_s"] < ACCEPT_PAUSE_S <= story["accepted_s"] + 0.1, story
        assert story["accepted_s"] < ACCEPT_PAUSE_S + 2.5, story
        assert story["greeting"] == GREETING, story
        assert story["waiting"] == {"bot2", "bot5"}, story  # still two idle for people
        _wait_for_line(demo, "bot5 logs in to wait for people in place of bot1", timeout=10)
        _wait_for_line(demo, "against newcomer", timeout=10)


async def _newcomer_invites(url: str, bot: str) -> dict[str, Any]:
    """Register at `url`, invite `bot` as soon as it is online; what the person saw, and when."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    lobby: dict[str, str] = {}
    bot2_seen: set[str] = set()  # every status the lobby showed for bot2

    def follow_lobby(push: dict[str, Any]) -> None:
        if push["type"] == "lobby":
            lobby.clear()
        if push["type"] in ("lobby", "lobby_update"):
            for name in push.get("gone", []):
                lobby.pop(name, None)
            changed = push.get("players", []) + push.get("changed", [])
            lobby.update({p["name"]: p["status"] for p in changed})
            bot2_seen.update({lobby["bot2"]} if "bot2" in lobby else set())

    async with aiohttp.ClientSession() as http:
        person = PlayerClient(url, http)
        person.on_push = follow_lobby
        await person.register("newcomer", "correct horse battery")
        await person.login("newcomer", "correct horse battery")
        await person.connect()
        while not {bot, "bot2"} <= set(lobby):
            await person.wait_push("lobby_update", timeout=10)
        await person.request("invite", to=bot)
        sent = loop.time()
        story: dict[str, Any] = {"online_after_s": sent - started}
        while not any(i["to"] == bot for i in person.latest.get("invites", {}).get("outgoing", [])):
            await person.wait_push("invites", timeout=5)
        story["sent_shown_s"] = loop.time() - sent
        game = await person.wait_push("game", timeout=5)
        story["accepted_s"] = loop.time() - sent
        assert game["players"] == ["newcomer", bot]
        story["greeting"] = (await person.wait_push("chat", timeout=5, game=game["game"]))["text"]
        # bot3 and bot4 play meanwhile; nobody invites bot2. The person, at a table now, is
        # told the list's changes every LOBBY_AT_TABLE_S: wait for one such update.
        await asyncio.sleep(LOBBY_AT_TABLE_S + 0.5)
        story["bot2"] = bot2_seen
        paired = {"bot3", "bot4"}
        story["waiting"] = {n for n, s in lobby.items() if s == "idle" and n[:3] == "bot"} - paired
        await person.close()
    return story
