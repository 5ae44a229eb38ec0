"""The ``game-twins`` workload: game bots that all log in a second time from another region.

Two games for one player, and moves for one ply on both sides, need an account online on both
sides of a partition. The ``game-bots`` workload's random double logins make that happen now and
then; this one makes it happen to every account: at ``twins_at_s`` (meant to fall just after a
partition begins, before most games have started) every bot logs in again from another region, so
most accounts are idle on both sides and get invited on both. It takes every ``game-bots`` key.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from meridian.sim.bots import GAME_BOT_KEYS, GameBots, build_game_bots
from meridian.sim.params import Table


class TwinBots(GameBots):
    """See module docstring."""

    def __init__(self, bots: GameBots, twins_at_s: float) -> None:
        super().__init__(bots.settings)
        self.twins_at_s = twins_at_s
        self.twinned = False

    def step(self, now: float, nodes: Sequence[Any], rng: random.Random) -> float | None:
        wanted = super().step(now, nodes, rng)
        shared = self.shared
        if not self.twinned and now >= self.twins_at_s and shared is not None and not shared.calm:
            self.twinned = True
            for bot in list(shared.bots):
                if bot.phase == "online" and not bot.label.endswith("+twin"):
                    bot._double_login()
        return wanted


def build_twin_bots(params: Table) -> TwinBots:
    table = Table(
        params.reader, params.prefix, {k: v for k, v in params.values.items() if k != "twins_at_s"}
    )
    return TwinBots(build_game_bots(table), params.number("twins_at_s", 2.5, 0, inclusive=True))


TWIN_KEYS = (*GAME_BOT_KEYS, "twins_at_s")
