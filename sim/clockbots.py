"""The ``clock-bots`` workload: game bots whose every invitation asks for a time control.

It takes every ``game-bots`` key (``sim.bots``) and two more: ``clock_s``, each player's time at
the start (default 20 s, short so that times run out within a run), and ``increment_s`` (the
Fischer increment per turn, default 1). With a fast ``think_s`` the bots mostly move in time;
a player cut off by a partition, or whose node died, runs out of time, which the time-controls
checker (``sim.clockcheck``) then holds to the rule. The bots are the one bot machine
(``node.botbrain``) with ``clock`` set.
"""

from __future__ import annotations

import dataclasses

from meridian.sim.bots import GAME_BOT_KEYS, GameBots, build_game_bots
from meridian.sim.params import Table


def build_clock_bots(params: Table) -> GameBots:
    own = ("clock_s", "increment_s")
    table = Table(
        params.reader, params.prefix, {k: v for k, v in params.values.items() if k not in own}
    )
    clock = (params.integer("clock_s", 20, 15), params.integer("increment_s", 1, 0))
    bots = build_game_bots(table)
    bots.settings = dataclasses.replace(bots.settings, clock=clock)
    return bots


CLOCK_BOT_KEYS = (*GAME_BOT_KEYS, "clock_s", "increment_s")
