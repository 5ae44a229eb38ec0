"""The ``insider`` workload: one node writes forged move records into the games it holds.

A node is trusted to replicate, not to play fair: the canonical chain must come out the same on
every node whatever records a faulty or hostile node writes, and the players must be shown it.
Every ``every_s`` the insider ``node`` picks a live game it holds and writes, directly into the
document (bypassing its game service), one record of a random kind:

* ``illegal``: at the tip, a move the rules refuse (a card that does not exist);
* ``wrong-player``: at the tip, a legal move credited to the player who is not to move;
* ``wrong-parent``: a legal move for the next ply whose parent is not the tip;
* ``future``: a legal move at the tip stamped a day ahead (it may stand until a real one comes:
  the earliest stamp wins);
* ``duplicate``: a copy of the last move with an earlier stamp (it replaces it, and the moves
  made after it lose their parent: the game goes back).

Each forged record is noted (``forged``: game, kind, key). The rules engine's public API
(``meridian.games.battleline``) computes the state; the reference reader (``sim.reference``) the
chain.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import meridian.games.battleline as battleline
from meridian.sim.params import Table
from meridian.sim.refdocs import format_stamp
from meridian.sim.reference import GAME_PREFIX, LIVE, Game, game

KINDS = ("illegal", "wrong-player", "wrong-parent", "future", "duplicate")
DAY_MS = 86_400_000
PICKS = 4  # games looked at per forgery (finished ones are skipped)


@dataclass
class Insider:
    node: str
    every_s: tuple[float, float]
    start_s: float
    _due: float | None = None
    _calm: bool = False
    _forged: int = 0

    def step(self, now: float, nodes: Sequence[Any], rng: random.Random) -> float | None:
        if self._calm:
            return None
        if self._due is None:
            self._due = self.start_s + rng.uniform(*self.every_s)
        if now >= self._due:
            self._due = now + rng.uniform(*self.every_s)
            handle = next(n for n in nodes if n.node_id == self.node)
            if handle.up:
                self._forge(handle, rng)
        return self._due

    def _forge(self, handle: Any, rng: random.Random) -> None:
        doc_ids = [d for d in handle.document_ids() if d.startswith(GAME_PREFIX)]
        rng.shuffle(doc_ids)
        for doc_id in doc_ids[:PICKS]:
            update = handle.document(doc_id)
            target = game(update) if update is not None else None
            if target is not None and target.status == LIVE and not target.problem:
                self._forge_in(handle, rng, doc_id, target)
                return

    def _forge_in(self, handle: Any, rng: random.Random, doc_id: str, target: Game) -> None:
        kind = rng.choice(KINDS if target.chain else KINDS[:4])
        state = battleline.replay(target.seed, [dict(m) for m in target.moves], target.first)
        legal = battleline.legal_moves(state)
        player = battleline.to_move(state)
        if player is None or not legal:
            return
        self._forged += 1
        stamp = (handle.wall_ms(), 90_000 + self._forged % 10_000, self.node)
        ply, parent, move = len(target.chain), target.tip, dict(rng.choice(legal))
        if kind == "illegal":
            move = {"type": "play", "card": 9999, "flag": 0}
        elif kind == "wrong-player":
            player = 1 - player
        elif kind == "wrong-parent":
            parent = target.chain[-2].key if len(target.chain) > 1 else "00000|forged"
        elif kind == "future":
            stamp = (stamp[0] + DAY_MS, stamp[1], stamp[2])
        else:  # duplicate: an earlier twin of the last move
            last = target.chain[-1]
            ply, parent, player, move = last.ply, last.parent, last.player, dict(last.move)
            stamp = (last.stamp[0] - 1, last.stamp[1], self.node)
        text = format_stamp(stamp)
        record = {"ply": ply, "parent": parent, "player": player, "move": move}
        record |= {"stamp": text, "node": self.node}
        key = f"{ply:05d}|{text}"
        handle.forge(
            doc_id, "moves", key, json.dumps(record, sort_keys=True, separators=(",", ":"))
        )
        handle.note("forged", game=target.gid, forgery=kind, key=key)

    def healed(self, now: float) -> None:
        self._calm = True

    def finish(self, now: float) -> None:
        return None


def build_insider(params: Table, nodes: Sequence[str] = ()) -> Insider:
    return Insider(
        node=params.string("node", "ap", "a node name"),
        every_s=params.seconds_range("every_s", (1.5, 4.0)),
        start_s=params.number("start_s", 3.0, 0, inclusive=True),
    )


INSIDER_KEYS = ("node", "every_s", "start_s")
