"""Bots: the view-based heuristic, and bots as real websocket players of a 3-region cluster."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meridian.games.battleline import (
    HeuristicBot,
    RandomBot,
    apply_move,
    legal_moves,
    new_game,
    player_view,
    to_move,
)
from meridian.games.battleline.cards import HAND
from meridian.games.battleline.viewbot import ViewBot, ViewError, state_from_view
from meridian.node.botlogs import wait_for_equal_logs
from meridian.node.botrecords import BotSummary
from meridian.node.bots import ACCEPT_PAUSE_S, GREETING, run_bots
from meridian.node.client import PlayerClient, RequestError
from meridian.node.localcluster import kill_node, stop_nodes, wait_for_mesh
from tests.conftest import Cluster

PASSWORD = "correct horse battery"


# --- the heuristic, from a player's view (no sockets) -------------------------------------


def test_view_bot_makes_the_heuristic_bots_moves_from_the_view_alone() -> None:
    for seed in range(3):
        state = new_game(seed, seed % 2)
        full_sight, view_only = HeuristicBot(seed), ViewBot(seed)
        while state.result is None:
            player = to_move(state)
            assert player is not None
            # The view lists the hand sorted; so does the reference, as ties follow hand order.
            reference = state.copy()
            reference.places[HAND[player]].sort()
            expected = full_sight.choose(reference, player)
            chosen = view_only.choose(player_view(state, player), legal_moves(state))
            assert chosen == expected, f"seed {seed}, ply {state.ply}"
            state = apply_move(state, player, chosen)


def test_view_bot_beats_random_clearly() -> None:
    games, wins = 16, 0
    for seed in range(games):
        seat = seed % 2
        smart, dumb = ViewBot(seed), RandomBot(seed)
        state = new_game(1000 + seed)
        while state.result is None:
            player = to_move(state)
            assert player is not None
            if player == seat:
                move = smart.choose(player_view(state, player), legal_moves(state))
            else:
                move = dumb.choose(state, player)
            state = apply_move(state, player, move)
        wins += state.result["winner"] == seat
    assert wins >= 14, f"the view bot won only {wins} of {games} against random"


def test_a_rebuilt_state_shows_the_same_view_and_refuses_a_view_that_does_not_add_up() -> None:
    state = new_game(5)
    rng = random.Random(1)
    for _ in range(30):
        player = to_move(state)
        assert player is not None
        state = apply_move(state, player, rng.choice(legal_moves(state)))
    view = player_view(state, 0)
    assert player_view(state_from_view(view, random.Random(2)), 0) == view
    broken = {**view, "decks": {"troop": view["decks"]["troop"] + 1, "tactic": 0}}
    with pytest.raises(ViewError, match="do not add up"):
        state_from_view(broken, random.Random(2))


# --- bots on a real cluster ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bot_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(Path(tmp_path_factory.mktemp("bots")))
    try:
        assert wait_for_mesh(running.nodes), "cluster did not form"
        yield running
    finally:
        stop_nodes(running.nodes)


def servers(cluster: Cluster) -> list[str]:
    return [cluster.url(i) for i in range(3)]


def assert_all_finished(summary: BotSummary, games: int) -> None:
    assert summary.problems() == [], summary.report()
    assert all(b.finished == games for b in summary.bots), summary.report()
    assert len(summary.gids()) == len(summary.bots) * games // 2


@pytest.mark.integration
async def test_bots_in_three_regions_finish_their_games_and_every_log_agrees(
    bot_cluster: Cluster,
) -> None:
    summary = await asyncio.wait_for(run_bots(servers(bot_cluster), 4, 1, prefix="even"), 60)
    assert_all_finished(summary, 1)
    for bot in summary.bots:  # partners sit in different regions
        assert bot.games[0].opponent in {b.name for b in summary.bots}
    homes = {b.name: b.home for b in summary.bots}
    assert homes["even1"] != homes["even2"] and homes["even3"] != homes["even4"]
    assert await wait_for_equal_logs(servers(bot_cluster), summary.gids(), 15) is None


@pytest.mark.integration
async def test_an_idle_bot_accepts_a_persons_invitation_and_plays_it_out(
    bot_cluster: Cluster,
) -> None:
    bots = asyncio.create_task(run_bots([bot_cluster.url(0)], 1, 1, prefix="lonely"))
    async with aiohttp.ClientSession() as http:
        person = await _person(http, bot_cluster.url(1), "visitor")
        await _invite_until_accepted(person, "lonely1")
        result = await asyncio.wait_for(_play_randomly(person), 60)
        await person.close()
    summary = await asyncio.wait_for(bots, 30)
    (record,) = summary.bots[0].games
    assert (record.opponent, record.outcome) == ("visitor", "lost" if result == "won" else "won")


@pytest.mark.integration
async def test_bots_reserved_for_people_are_left_alone_and_accept_a_person_with_a_visible_step(
    bot_cluster: Cluster,
) -> None:
    """wait1 waits for people; wait2 and wait3 play each other and never invite it. The person's
    invitation shows as sent, is accepted about ACCEPT_PAUSE_S later, and wait1 says hello."""
    run = run_bots(servers(bot_cluster), 3, 1, prefix="wait", for_people=1)
    bots = asyncio.create_task(run)
    async with aiohttp.ClientSession() as http:
        person = await _person(http, bot_cluster.url(2), "newcomer")
        await _invite_once_online(person, "wait1")
        sent = asyncio.get_running_loop().time()
        pending = await _outgoing_invitation(person, "wait1")
        try:
            push = await person.wait_push("game", timeout=5)
        except TimeoutError:
            shown = {k: person.latest.get(k) for k in ("invites", "lobby", "lobby_update")}
            raise AssertionError(f"wait1 did not accept in 5 s; the person was shown {shown}; "
                                 f"the bots: {await _report_soon(bots)}") from None  # fmt: skip
        waited = asyncio.get_running_loop().time() - sent
        assert push["players"] == ["newcomer", "wait1"]
        assert pending < ACCEPT_PAUSE_S <= waited + 0.1 < ACCEPT_PAUSE_S + 2.0, (pending, waited)
        hello = await person.wait_push("chat", timeout=5)
        assert (hello["from"], hello["text"], hello["game"]) == ("wait1", GREETING, push["game"])
        await asyncio.wait_for(_play_randomly(person), 60)
        await person.close()
    summary = await asyncio.wait_for(bots, 60)
    assert summary.problems() == [], summary.report()
    by_name = {b.name: b for b in summary.bots}
    assert [g.opponent for g in by_name["wait1"].games] == ["newcomer"]
    assert by_name["wait1"].for_people and by_name["wait1"].partner is None
    assert [g.opponent for g in by_name["wait2"].games] == ["wait3"]
    assert "wait1 (people)" in summary.report()


async def _report_soon(bots: asyncio.Task[BotSummary]) -> str:
    """The bots' report once their run ends (a failing test's diagnosis), or why there is none."""
    try:
        return (await asyncio.wait_for(bots, 20)).report()
    except TimeoutError:
        return "still running 20 s later"


class LobbyView:
    """The lobby as a person's client is shown it: name -> status."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}

    def take(self, push: dict[str, Any]) -> None:
        if push["type"] == "lobby":
            self.status = {p["name"]: p["status"] for p in push["players"]}
        elif push["type"] == "lobby_update":
            for name in push["gone"]:
                self.status.pop(name, None)
            self.status.update({p["name"]: p["status"] for p in push["changed"]})

    def idle(self, prefix: str) -> set[str]:
        return {n for n, s in self.status.items() if n.startswith(prefix) and s == "idle"}


async def _until(
    check: Callable[[], bool], within: float, what: str, show: Callable[[], object] = str
) -> float:
    """Seconds until `check` holds (the clients' readers update what it looks at); on a
    failure, what did not happen and what `show` shows then."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not check():
        assert loop.time() - started < within, f"not within {within} s: {what}; {show()}"
        await asyncio.sleep(0.05)
    return loop.time() - started


@pytest.mark.integration
async def test_bots_for_people_refill_while_people_play_and_decline_the_crews_invitations(
    bot_cluster: Cluster,
) -> None:
    """pool1 and pool2 wait for people. While alice plays pool1, a standby (pool3) logs in so
    that two stay idle; bob's invitation to that standby is accepted (pool4 steps in); an
    invitation from an account of the crew (pool10, a standby's name) is declined; once the
    people's games end the surplus standbys log out and pool1 and pool2 wait again."""
    stop = asyncio.Event()
    said: dict[str, str] = {}  # bot -> its latest decline, from the run's log

    def log(line: str) -> None:
        if "declined" in line:
            said[line.split()[0]] = line.split(": ", 1)[1]

    run = run_bots(
        servers(bot_cluster),
        count=2,
        games=0,
        prefix="pool",
        for_people=2,
        standby_linger_s=1.0,
        log=log,
        stop=stop,
    )
    bots = asyncio.create_task(run)
    async with aiohttp.ClientSession() as http:
        lobby = LobbyView()
        alice = await _person(http, bot_cluster.url(0), "alice", lobby.take)
        await _until(lambda: lobby.idle("pool") == {"pool1", "pool2"}, 30, "pool1, pool2 idle")
        await alice.request("invite", to="pool1")
        await alice.wait_push("game", timeout=5)

        def refilled() -> bool:
            return lobby.status["pool1"] == "playing" and lobby.idle("pool") == {"pool2", "pool3"}

        await _until(refilled, 5, "pool1 playing, pool2 and pool3 idle", lambda: lobby.status)

        bob = await _person(http, bot_cluster.url(1), "bob")
        await bob.request("invite", to="pool3")  # a standby accepts a person, with a hello
        push = await bob.wait_push("game", timeout=5)
        assert push["players"] == ["bob", "pool3"]
        assert (await bob.wait_push("chat", timeout=5))["text"] == GREETING
        await _until(lambda: lobby.idle("pool") == {"pool2", "pool4"}, 5, "pool4 steps in")

        crew = await _person(http, bot_cluster.url(2), "pool10")  # a name of the crew's
        await _until(lambda: "pool10" in lobby.status, 5, "pool10 online everywhere")
        iid = (await crew.request("invite", to="pool4"))["invite"]["iid"]

        def declined() -> bool:
            outgoing = crew.latest.get("invites", {}).get("outgoing", [])
            return "pool4" in said and not any(i["iid"] == iid for i in outgoing)

        await _until(declined, 5, "pool4 declines", lambda: (said, crew.latest.get("invites")))
        assert said["pool4"] == "declined an invitation from pool10 (it waits for people)"
        assert "game" not in crew.latest and lobby.status["pool4"] == "idle"
        await crew.close()
        await crew.post("/api/logout", {}, token=crew.token)

        await asyncio.wait_for(asyncio.gather(_play_randomly(alice), _play_randomly(bob)), 60)
        standbys_gone = lambda: set(lobby.status) & POOL == {"pool1", "pool2"}  # noqa: E731
        await _until(standbys_gone, 10, "standbys gone", lambda: lobby.status)
        assert lobby.idle("pool") == {"pool1", "pool2"}
        for person in (alice, bob):
            await person.close()
    stop.set()
    summary = await asyncio.wait_for(bots, 30)
    assert summary.problems() == [], summary.report()
    by_name = {b.name: b for b in summary.bots}
    assert [g.opponent for g in by_name["pool3"].games] == ["bob"]
    assert by_name["pool4"].games == [] and by_name["pool4"].for_people
    assert "pool3 (people)" in summary.report()


POOL = {f"pool{i}" for i in range(1, 11)}


async def _outgoing_invitation(person: PlayerClient, bot: str) -> float:
    """Seconds until the person's ``invites`` push lists the invitation to `bot` as sent."""
    started = asyncio.get_running_loop().time()
    while not any(i["to"] == bot for i in person.latest.get("invites", {}).get("outgoing", [])):
        await person.wait_push("invites", timeout=5)
    return asyncio.get_running_loop().time() - started


async def _person(
    http: aiohttp.ClientSession,
    url: str,
    name: str,
    on_push: Callable[[dict[str, Any]], None] | None = None,
) -> PlayerClient:
    """A person registered at `url`, logged in and connected (`on_push` sees every push)."""
    person = PlayerClient(url, http)
    person.on_push = on_push
    await person.register(name, PASSWORD)
    await person.login(name, PASSWORD)
    await person.connect()
    return person


async def _invite_once_online(person: PlayerClient, bot: str) -> None:
    for _ in range(200):
        try:
            await person.request("invite", to=bot)
            return
        except RequestError as error:
            assert error.code in ("offline", "unknown_user"), error
            await asyncio.sleep(0.05)  # the bot is not online yet
    raise AssertionError(f"{bot} never came online")


async def _invite_until_accepted(person: PlayerClient, bot: str) -> None:
    for _ in range(100):
        try:
            await person.request("invite", to=bot)
            await person.wait_push("game", timeout=5)
            return
        except (RequestError, TimeoutError):
            await asyncio.sleep(0.1)  # the bot is not online yet
    raise AssertionError(f"{bot} never accepted the invitation")


async def _play_randomly(person: PlayerClient) -> str:
    """Random legal moves until the game ends; the person's outcome."""
    rng = random.Random(3)
    (push,) = person.games.values()
    acted_at = -1
    while True:
        if push["status"] != "live":
            return "won" if push["result"]["winner"] == push["you"] else "lost"
        if push["to_move"] == push["you"] and push["legal"] and push["ply"] > acted_at:
            acted_at = push["ply"]
            await person.request("move", game=push["game"], move=rng.choice(push["legal"]))
        push = await person.wait_push("game", timeout=20)


@pytest.mark.integration
async def test_bots_fail_over_when_their_node_is_killed_and_finish_their_games(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path)
    try:
        assert wait_for_mesh(cluster.nodes), "cluster did not form"
        started: list[str] = []
        all_started = asyncio.Event()

        def note(line: str) -> None:
            if "started game" in line:
                started.append(line)
                if len(started) == 4:
                    all_started.set()

        # bot1 eu, bot2 us, bot3 ap, bot4 eu: killing ap moves bot3 in the middle of its game
        run = run_bots(servers(cluster), 4, 1, prefix="fo", move_delay_s=0.02, log=note)
        bots = asyncio.create_task(run)
        async with asyncio.timeout(30):
            await all_started.wait()
        await asyncio.sleep(0.5)
        assert not bots.done()
        await asyncio.to_thread(kill_node, cluster.nodes[2])
        summary = await asyncio.wait_for(bots, 60)
        assert_all_finished(summary, 1)
        moved = {b.name: b for b in summary.bots}["fo3"]
        assert moved.reconnects >= 1 and moved.server != cluster.url(2)
        survivors = servers(cluster)[:2]
        assert await wait_for_equal_logs(survivors, summary.gids(), 15) is None
    finally:
        stop_nodes(cluster.nodes)
