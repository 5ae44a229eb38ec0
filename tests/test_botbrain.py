"""The one bot state machine (node.botbrain) without I/O: a scripted transport and clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from meridian.node.botbrain import Bot, Shared
from meridian.node.botlobby import ACCEPTED_GAME_WAIT_S
from meridian.node.botworld import STEADY, BotSettings, Done, Reply
from meridian.node.refusals import CloseCode

# Nothing random happens: the bot only does what the tests look at.
QUIET = replace(STEADY, think_s=(0.0, 0.0))


class ScriptedSide:
    """A `PlayerSide` that answers every call at once with what the test says."""

    def __init__(self, region: str, answers: dict[str, Reply]) -> None:
        self.region = region
        self.node: str | None = None
        self.on_push: Callable[[Reply], None] = lambda push: None
        self.on_closed: Callable[[int, str], None] = lambda code, reason: None
        self.answers = answers
        self.calls: list[tuple[str, Reply]] = []
        self.open = False

    @property
    def connected(self) -> bool:
        return self.open

    def http(self, node: str, path: str, body: Reply, done: Done) -> None:
        self.calls.append((path, body))
        done(self.answers.get(path, {"ok": True, "uid": "u1", "token": "t1"}))

    def connect(self, node: str, hello: Reply, done: Done) -> None:
        self.calls.append(("hello", hello))
        self.node, self.open = node, True
        you = {"uid": "u1", "name": "bot1", "must_rename": False}
        done({"ok": True, "resume": "r1", "you": you, "games": []})

    def request(self, kind: str, fields: Reply, done: Done) -> None:
        self.calls.append((kind, fields))
        done(self.answers.get(kind, {"ok": True, "game": "g1", "ply": 1}))

    def close(self) -> None:
        self.open = False

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


class World:
    """`Players` and `Notes` for one crew: scripted sides and a clock the test moves."""

    def __init__(self, answers: dict[str, Reply] | None = None) -> None:
        self.regions = ["eu", "us"]
        self.t = 0.0
        self.sides: list[ScriptedSide] = []
        self.notes: list[tuple[str, str, dict[str, Any]]] = []
        self.answers = answers or {}

    def new_client(self, region: str) -> ScriptedSide:
        side = ScriptedSide(region, self.answers)
        self.sides.append(side)
        return side

    def now(self) -> float:
        return self.t

    def note(self, node: str, kind: str, **fields: Any) -> None:
        self.notes.append((node, kind, fields))


def online_bot(settings: BotSettings, world: World, partner: str = "") -> tuple[Bot, ScriptedSide]:
    shared = Shared(settings, world, random.Random(1), world)
    shared.bots.append(Bot(shared, "bot2", "bot2", "us", "new", password="x" * 12))
    bot = Bot(shared, "bot1", "bot1", "eu", "new", partner, password="x" * 12)
    shared.bots.append(bot)
    for _ in range(3):  # register, log in, say hello
        bot.act(world.t)
    assert bot.phase == "online"
    return bot, world.sides[-1]


def invitations(*senders: str) -> Reply:
    incoming = [{"iid": f"i-{name}", "from": name} for name in senders]
    return {"type": "invites", "incoming": incoming, "outgoing": []}


def test_a_persons_invitation_is_accepted_after_the_pause_then_greeted_and_a_bots_at_once() -> None:
    settings = replace(QUIET, accept_pause_s=0.8, greeting="hello!")
    world = World()
    bot, side = online_bot(settings, world)
    side.on_push(invitations("bot2", "alice"))
    bot.act(world.t)
    assert side.calls[-1] == ("accept", {"invite": "i-bot2"})  # a bot's: at once

    settings = replace(settings, people_first=True)
    world = World()
    bot, side = online_bot(settings, world)
    side.on_push(invitations("bot2", "alice"))
    bot.act(world.t)
    assert "accept" not in side.kinds()  # alice's comes first, and only after the pause
    world.t = 0.5
    bot.act(world.t)
    assert "accept" not in side.kinds()
    world.t = 0.8
    bot.act(world.t)
    assert side.calls[-2:] == [
        ("accept", {"invite": "i-alice"}),
        ("chat", {"text": "hello!", "game": "g1"}),
    ]


def test_a_bot_without_a_partner_never_invites_and_one_with_a_partner_invites_only_it() -> None:
    lobby = {"type": "lobby", "players": [{"name": n, "status": "idle"} for n in ("bot2", "carol")]}
    settings = replace(QUIET, invite_per_s=4.0, invite_anyone=False)
    world = World()
    alone, side = online_bot(settings, world)
    side.on_push(lobby)
    for tick in range(20):
        alone.act(tick * 0.25)
    assert "invite" not in side.kinds()

    world = World()
    paired, side = online_bot(settings, world, partner="bot2")
    side.on_push({**lobby, "players": [{"name": "carol", "status": "idle"}]})
    paired.act(world.t)
    assert "invite" not in side.kinds()  # the partner is not idle: nobody else is asked
    side.on_push(lobby)
    paired.act(world.t)
    assert side.calls[-1] == ("invite", {"to": "bot2"})


def test_a_game_without_progress_is_saved_after_stall_s() -> None:
    settings = replace(QUIET, stall_s=10.0)
    world = World()
    bot, side = online_bot(settings, world)
    game = {"type": "game", "game": "g7", "players": ["bot1", "x"], "you": 0, "ply": 3}
    side.on_push({**game, "status": "live", "to_move": 1, "legal": [], "head": "h"})
    world.t = 9.0
    bot.act(world.t)
    assert "save" not in side.kinds()
    world.t = 10.5
    bot.act(world.t)
    assert side.calls[-1] == ("save", {"game": "g7"}) and bot.table.game is None
    assert ("eu", "stalled") in [(node, kind) for node, kind, _ in world.notes]


def test_closes_a_bad_token_logs_in_again_a_final_close_stops_another_fails_over() -> None:
    world = World()
    bot, side = online_bot(QUIET, world)
    side.on_closed(CloseCode.BAD_TOKEN, "")
    assert bot.phase == "login"
    bot, side = online_bot(QUIET, World())
    side.on_closed(CloseCode.SHUTDOWN, "")
    assert bot.phase == "resume" and bot.node == "us"  # the other region
    bot, side = online_bot(QUIET, World())
    side.on_closed(CloseCode.LOGGED_IN_ELSEWHERE, "")
    assert bot.phase == "done" and "logged in elsewhere" in bot.stopped


def test_a_name_registered_with_another_password_stops_the_bot() -> None:
    refused = {"ok": False, "error": {"code": "bad_credentials", "message": ""}}
    taken = {"ok": False, "error": {"code": "name_taken", "message": ""}}
    world = World({"/api/register": taken, "/api/login": refused})
    shared = Shared(QUIET, world, random.Random(1), world)
    bot = Bot(shared, "bot1", "bot1", "eu", "new", password="x" * 12)
    bot.act(0.0)
    bot.act(0.0)
    assert bot.phase == "done" and "another password" in bot.stopped


def test_a_bot_for_people_declines_a_bots_invitation_and_accepts_a_persons() -> None:
    settings = replace(QUIET, people_first=True, accept_pause_s=0.8)
    world = World()
    shared = Shared(settings, world, random.Random(1), world)
    shared.names = {"bot9"}  # a standby of the crew that is not running
    bot = Bot(shared, "bot1", "bot1", "eu", "new", password="x" * 12, people_only=True)
    shared.bots.append(bot)
    for _ in range(3):
        bot.act(world.t)
    side = world.sides[-1]
    side.on_push(invitations("bot9", "alice"))
    assert bot.lobby.person_waiting()
    bot.act(world.t)
    assert side.calls[-1] == ("decline", {"invite": "i-bot9"})  # refused, not ignored
    bot.act(world.t)
    assert "accept" not in side.kinds()  # alice's, after the pause
    world.t = 0.8
    bot.act(world.t)
    assert side.calls[-1] == ("accept", {"invite": "i-alice"})
    assert side.kinds().count("decline") == 1
    assert [f["invite"] for _, kind, f in world.notes if kind == "declined"] == ["i-bot9"]


def test_an_invitation_its_node_no_longer_knows_is_forgotten_and_the_bot_invites_again() -> None:
    # A push of a node left behind may list an invitation no node lists any more: retracting it
    # answers not_found, and the bot invites its partner again instead of waiting for ever.
    lobby = {"type": "lobby", "players": [{"name": "bot2", "status": "idle"}]}
    settings = replace(QUIET, invite_per_s=4.0, reinvite_s=0.0)
    world = World({"retract": {"ok": False, "error": {"code": "not_found", "message": "gone"}}})
    bot, side = online_bot(settings, world, partner="bot2")
    side.on_push(lobby)
    stale = {"iid": "i-old", "from": "bot1", "to": "bot2"}
    side.on_push({"type": "invites", "incoming": [], "outgoing": [stale]})
    for tick in range(60):
        bot.act(tick * 0.25)
    assert ("retract", {"invite": "i-old"}) in side.calls
    assert side.kinds()[side.kinds().index("retract") + 1 :].count("invite") >= 1


def test_after_an_accept_no_other_is_made_until_its_game_shows_or_the_wait_ends() -> None:
    # The node took the accept just as a drain moved the bot; the new node does not hold that
    # game yet and still lists the invitation: accepting it there again would start a second
    # game. The bot waits for the game it accepted, a while at most.
    world = World()
    bot, side = online_bot(QUIET, world)
    side.on_push(invitations("bot2"))
    bot.act(world.t)
    assert side.kinds().count("accept") == 1  # answered {"game": "g1"}; no push of g1 yet
    world.t = ACCEPTED_GAME_WAIT_S - 0.1
    bot.act(world.t)
    assert side.kinds().count("accept") == 1
    world.t = ACCEPTED_GAME_WAIT_S
    bot.act(world.t)
    assert side.kinds().count("accept") == 2  # it never came: the invitation is open again

    world = World()
    bot, side = online_bot(QUIET, world)
    side.on_push(invitations("bot2"))
    bot.act(world.t)
    over = {"type": "game", "game": "g1", "you": 1, "status": "finished", "ply": 3, "head": "h3"}
    side.on_push(over)
    side.on_push(invitations("bot2"))  # a new invitation right after that game
    world.t = 0.5
    bot.act(world.t)
    assert side.kinds().count("accept") == 2  # the game came: no wait
