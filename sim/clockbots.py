"""The ``clock-bots`` workload: game bots whose every invitation asks for a time control.

It takes every ``game-bots`` key (``sim.bots``) and two more: ``clock_s``, each player's time at
the start (default 20 s, short so that times run out within a run), and ``increment_s`` (the
Fischer increment per turn, default 1). With a fast ``think_s`` the bots mostly move in time;
a player cut off by a partition, or whose node died, runs out of time, which the time-controls
checker (``sim.clockcheck``) then holds to the rule.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from meridian.sim.bots import (
    GAME_BOT_KEYS,
    START_S,
    Bot,
    GameBots,
    Players,
    Reply,
    Shared,
    build_game_bots,
)
from meridian.sim.params import Table

FINISHED_SEEN = 6  # finished games a bot still reports in hello's seen (the cap is 16 games)


class ClockBot(Bot):
    """A game bot whose invitations carry `clock`, and whose ``hello`` also reports the last
    view of its recently finished games (as the web client does): a time-out it was shown can
    be beaten by a move made in time in a region it could not hear, and a node it moves to
    can then tell it so."""

    def __init__(self, shared: Shared, clock: dict[str, int], *args: Any) -> None:
        super().__init__(shared, *args)
        self.clock = clock
        self.finished: list[str] = []  # finished games in `seen`, oldest first

    def _game_push(self, push: Reply) -> None:
        super()._game_push(push)
        gid = push["game"]
        if push["you"] is None or push["status"] == "live":
            if gid in self.finished and push["status"] == "live":
                self.finished.remove(gid)
            return
        self.seen[gid] = {"ply": push["ply"], "head": push["head"]}
        if gid not in self.finished:
            self.finished.append(gid)
        while len(self.finished) > FINISHED_SEEN:
            self.seen.pop(self.finished.pop(0), None)

    def _double_login(self) -> None:
        """``Bot._double_login``, with a clock bot as the twin."""
        if self.name in self.shared.twins or self.label.startswith("race"):
            return
        self.shared.twins.add(self.name)
        region = self.shared.other_region(self.client.region)
        twin = ClockBot(self.shared, self.clock, f"{self.label}+twin", self.name, region, "login")
        twin.node = region
        self.shared.bots.append(twin)

    def _request(self, kind: str, then: Callable[[Reply], None], **fields: Any) -> None:
        if kind == "invite" and self.clock:
            fields = {**fields, "clock": self.clock}
        super()._request(kind, then, **fields)


class ClockBots(GameBots):
    """See module docstring."""

    def __init__(self, bots: GameBots, clock: dict[str, int]) -> None:
        super().__init__(bots.settings)
        self.clock = clock

    def _start(self, nodes: Sequence[Any], rng: random.Random) -> Shared:
        """The game-bots workload's start (``GameBots._start``), with clock bots."""
        players: Players = nodes[0].players
        recorders = {node.node_id: node for node in nodes}
        self.shared = shared = Shared(self.settings, players, rng, recorders)
        regions, count = shared.regions, self.settings.players
        for index in range(count):
            partner = f"bot{index + 1}" if index % 2 == 0 and index + 1 < count else ""
            home = regions[index % len(regions)]
            bot = ClockBot(shared, self.clock, f"b{index}", f"bot{index}", home, "new", partner)
            bot.wake = rng.uniform(0, START_S)
            shared.bots.append(bot)
        return shared


def build_clock_bots(params: Table) -> ClockBots:
    own = ("clock_s", "increment_s")
    table = Table(
        params.reader, params.prefix, {k: v for k, v in params.values.items() if k not in own}
    )
    clock = {
        "initial_s": params.integer("clock_s", 20, 15),
        "increment_s": params.integer("increment_s", 1, 0),
    }
    return ClockBots(build_game_bots(table), clock)


CLOCK_BOT_KEYS = (*GAME_BOT_KEYS, "clock_s", "increment_s")
