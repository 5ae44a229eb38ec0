"""Game bots: simulated people playing Battleline on the cluster while faults happen.

The ``game-bots`` workload runs ``players`` bots. Each is the one bot state machine of
`node.botbrain` (the same as ``meridian bot`` and ``meridian demo`` run), with the simulator's
settings: random legal moves (`node.botworld.random_move`), think times, give-ups, saves,
chat, watching, travel to another region, double logins and logins at a random region (see
`node.botworld.BotSettings` for the ``[workload]`` keys, whose defaults are the simulator's).
Each bot's client is a ``PlayerSide``: a :class:`sim.players.SimClient` in the simulator, a
websocket (`node.botsocket.WebsocketSide`) in ``meridian sim cluster``. A bot sits in a region
(round robin over the regions, or over ``regions`` when given: a scenario whose node is not to
serve players lists the others), registers with that region as its home, and starts within the
first ``START_S`` seconds; the even bots have the next bot as partner (they invite it, or a
random idle player when it is not idle), the odd ones only accept.

What stays here is what only the simulator does: ``name_races`` races (at ``race_at_s`` one new
bot in each of ``race_regions`` registers the same name ``race<k>`` at its own region's node; a
partition lets both succeed; the merge keeps the earliest claim and the other must rename), the
heal (from then on bots only react, `node.botbrain.Shared.calm`, so the quiet period shows
convergence), and the history: every bot note goes to the node it was made at
(``registered``, ``hello``, ``closed``, ``notice``, ``shown``, ``move``, ``rollback``,
``renamed``, ``error``, ... see `node.botbrain` and `node.botplay`), and at the end one
``end`` per client (connection open or not, and the latest view of each of its games on that
connection). All randomness comes from the workload's stream, so a seed replays the same games.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

from meridian.node.botbrain import Bot, Shared
from meridian.node.botworld import TICK_S, BotSettings, Players
from meridian.sim.params import Table

START_S = 2.0  # bots start within the first START_S seconds
PASSWORD = "bot-password-"

__all__ = [
    "GAME_BOT_KEYS",
    "PASSWORD",
    "BotSettings",
    "GameBots",
    "build_game_bots",
]


class Recorder(Protocol):
    """A node handle's ``note`` (sim.workload.NodeHandle)."""

    node_id: str

    def note(self, kind: str, **fields: Any) -> None: ...


class NodeNotes:
    """`node.botworld.Notes` into the history: each note at the node it names."""

    def __init__(self, recorders: dict[str, Recorder]) -> None:
        self.recorders = recorders

    def note(self, node: str, kind: str, **fields: Any) -> None:
        self.recorders[node].note(kind, **fields)


class GameBots:
    """The ``game-bots`` workload (see module docstring)."""

    def __init__(self, settings: BotSettings) -> None:
        self.settings = settings
        self.shared: Shared | None = None
        self.races_started = False

    def step(self, now: float, nodes: Sequence[Any], rng: random.Random) -> float | None:
        shared = self.shared or self._start(nodes, rng)
        if not self.races_started and now >= self.settings.race_at_s and not shared.calm:
            self.races_started = True
            self._start_races(shared)
        for bot in list(shared.bots):
            bot.act(now)
        return now + TICK_S

    def _start(self, nodes: Sequence[Any], rng: random.Random) -> Shared:
        players: Players = nodes[0].players
        recorders = {node.node_id: node for node in nodes}
        self.shared = shared = Shared(self.settings, players, rng, NodeNotes(recorders))
        unknown = sorted(set(self.settings.regions) - set(players.regions))
        if unknown:
            raise ValueError(f"workload.regions: no region {', '.join(unknown)}")
        regions = shared.regions
        count = self.settings.players
        for index in range(count):
            partner = f"bot{index + 1}" if index % 2 == 0 and index + 1 < count else ""
            home = regions[index % len(regions)]
            name = f"bot{index}"
            bot = Bot(shared, f"b{index}", name, home, "new", partner, password=PASSWORD + name)
            bot.wake = rng.uniform(0, START_S)
            shared.bots.append(bot)
        return shared

    def _start_races(self, shared: Shared) -> None:
        regions = list(self.settings.race_regions) or shared.players.regions
        unknown = sorted(set(regions) - set(shared.players.regions))
        if unknown:
            raise ValueError(f"workload.race_regions: no region {', '.join(unknown)}")
        for race in range(self.settings.name_races):
            for region in regions:
                name = f"race{race}"
                password = f"{PASSWORD}race{race}-{region}"
                bot = Bot(shared, f"{name}@{region}", name, region, "new", password=password)
                shared.bots.append(bot)

    def healed(self, now: float) -> None:
        if self.shared is not None:
            self.shared.calm = True

    def finish(self, now: float) -> None:
        if self.shared is not None:
            for bot in self.shared.bots:
                bot.end_note()


def build_game_bots(params: Table) -> GameBots:
    default = BotSettings()
    think = params.seconds_range("think_s", default.think_s)
    return GameBots(
        BotSettings(
            players=params.integer("players", default.players, 0),
            think_s=think,
            give_up=params.fraction("give_up", default.give_up),
            save=params.fraction("save", default.save),
            chat=params.fraction("chat", default.chat),
            watch=params.fraction("watch", default.watch),
            invite_per_s=params.number("invite_per_s", default.invite_per_s, 0, inclusive=True),
            random_region=params.fraction("random_region", default.random_region),
            travel_per_min=params.number(
                "travel_per_min", default.travel_per_min, 0, inclusive=True
            ),
            double_login_per_min=params.number(
                "double_login_per_min", default.double_login_per_min, 0, inclusive=True
            ),
            name_races=params.integer("name_races", default.name_races, 0),
            race_at_s=params.number("race_at_s", default.race_at_s, 0, inclusive=True),
            race_regions=tuple(params.string_list("race_regions", "region names"))
            if "race_regions" in params.values
            else (),
            regions=tuple(params.string_list("regions", "region names"))
            if "regions" in params.values
            else (),
        )
    )


GAME_BOT_KEYS = (
    "players",
    "think_s",
    "give_up",
    "save",
    "chat",
    "watch",
    "invite_per_s",
    "random_region",
    "travel_per_min",
    "double_login_per_min",
    "name_races",
    "race_at_s",
    "race_regions",
    "regions",
)
